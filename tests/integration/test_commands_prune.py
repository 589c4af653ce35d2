"""``enqueue prune --keep N``: deletes the older turn records by CAS, keeps the newest N."""

from __future__ import annotations

from enqueue import documents as docs
from tests.support.commands import enqueue_cli, put_record, race  # noqa: F401  (fixture)


def turns_left(database) -> list[int]:
    return [d["turn"] for d in database.store.list_prefix(docs.TURN_PREFIX)]


def stage(database, count: int = 8) -> None:
    for turn in range(1, count + 1):
        put_record(database.store, turn, "alpha" if turn % 2 else "bravo")


def test_prune_keeps_the_newest(enqueue_cli, database):
    stage(database)
    result = enqueue_cli("prune", "--keep", "3")
    assert (result.code, result.out) == (0, "deleted 5 turn records (turns 1 to 5); kept 3 (turns 6 to 8)\n")
    assert turns_left(database) == [6, 7, 8]
    again = enqueue_cli("prune", "--keep", "3")
    assert again.out == "nothing to prune: 3 turn records, keeping up to 3\n"


def test_prune_dry_run_deletes_nothing(enqueue_cli, database):
    stage(database)
    result = enqueue_cli("prune", "--keep", "7", "--dry-run")
    assert result.out == "would delete 1 turn record (turn 1); would keep 7 (turns 2 to 8)\n"
    assert turns_left(database) == list(range(1, 9))


def test_prune_keep_0_deletes_all(enqueue_cli, database):
    stage(database, 2)
    result = enqueue_cli("prune", "--keep", "0")
    assert result.out == "deleted 2 turn records (turns 1 to 2); kept 0\n"
    assert turns_left(database) == []


def test_a_record_changed_between_read_and_delete_is_deleted_at_its_new_revision(enqueue_cli, database, monkeypatch):
    stage(database, 4)
    record_id = docs.turn_record_id(1)

    def a_site_adds_its_report():
        body = database.store.get(record_id)
        body["runner_report"] = {"site": "alpha", "how": "exited"}
        database.store.put(body)

    racing = race(monkeypatch, database.store, record_id, a_site_adds_its_report)
    result = enqueue_cli("prune", "--keep", "2")
    assert result.code == 0, result.err
    assert racing.writes == 2
    assert turns_left(database) == [3, 4]


def test_prune_needs_keep(enqueue_cli, database):
    result = enqueue_cli("prune")
    assert result.code == 2 and "--keep" in result.err


def test_prune_help_is_accurate(enqueue_cli):
    text = enqueue_cli.help_text("prune")
    for expected in ("usage: enqueue prune", "CONFIG", "--keep N", "--dry-run", "newest N", "--log-level",
                     "4 credentials refused"):
        assert expected in text, expected
