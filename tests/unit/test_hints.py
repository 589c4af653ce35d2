"""enqueue.hints: the setting to check behind a store error, named where it came from -- no server."""

from __future__ import annotations

from enqueue import errors, hints
from enqueue.connection import Connection

CFG = "/etc/enqueue/alpha.ini"


def connection(server: str = "http://db:5984", **sources: str) -> Connection:
    """A connection to database 'enqueue' whose settings came from ``sources`` (default: all from CFG)."""
    base = {"url": f"{CFG}: [couchdb] url", "database": f"{CFG}: [couchdb] database"}
    user = "alpha" if "password" in sources else None
    return Connection(server, "enqueue", username=user, password="pw" if user else None, sources={**base, **sources})


def missing(database: str = "enqueue") -> errors.DatabaseMissing:
    return errors.DatabaseMissing(f"database {database!r} at http://db:5984: the database does not exist")


def test_a_missing_database_points_at_the_setting_in_the_file():
    assert hints.advice(missing(), connection()) == (
        f"check the database name 'enqueue': database = in {CFG}; or create it with 'enqueue init' "
        "(an admin's configuration)")


def test_a_missing_database_set_by_the_environment_names_the_variable():
    advice = hints.advice(missing(), connection(database="environment variable ENQUEUE_COUCHDB_DATABASE"))
    assert "environment variable ENQUEUE_COUCHDB_DATABASE, which overrides the file" in advice


def test_a_path_in_the_url_is_explained():
    advice = hints.advice(missing(), connection("http://db:5984/enqueue"))
    assert "the url ends in /enqueue" in advice and "remove it from the url" in advice


def test_another_databases_absence_gets_no_advice_about_this_one():
    assert hints.advice(missing("_users"), connection()) is None


def test_refused_credentials_name_the_user_and_the_password_file():
    conn = connection(password=f"password file /etc/enqueue/alpha.password ({CFG}: [couchdb] password_file)")
    advice = hints.advice(errors.AuthFailed("refused"), conn)
    assert advice == ("check the password of user 'alpha': password file /etc/enqueue/alpha.password "
                      f"({CFG}: [couchdb] password_file)")
    env = connection(password="environment variable ENQUEUE_COUCHDB_PASSWORD")
    assert hints.advice(errors.AuthFailed("refused"), env).endswith(
        "environment variable ENQUEUE_COUCHDB_PASSWORD, which overrides the file")


def test_refused_without_a_user_says_to_configure_one():
    assert "no username is configured" in hints.advice(errors.AuthFailed("refused"), connection())


def test_an_unreachable_url_names_its_source():
    assert hints.advice(errors.Unreachable("x"), connection()) == f"check url = in {CFG}"
    env = connection(url="environment variable ENQUEUE_COUCHDB_URL")
    assert hints.advice(errors.Unreachable("x"), env) == (
        "the url comes from environment variable ENQUEUE_COUCHDB_URL, which overrides the file")


def test_explain_adds_the_advice_of_the_remembered_connection_and_nothing_without_one():
    hints.forget()
    assert hints.explain(missing()) == str(missing())
    hints.remember(connection())
    try:
        assert hints.explain(missing()).startswith(str(missing()) + "; check the database name")
        assert hints.explain(errors.EnqueueError("other")) == "other"
    finally:
        hints.forget()
