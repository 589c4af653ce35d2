"""``enqueue users list`` against the real server: accounts in aligned columns."""

from __future__ import annotations

from enqueue.commands import users
from enqueue.connection import Connection


def test_users_list_aligns_its_columns(couch_server, tmp_path):
    connection = Connection(couch_server.url, "_users", username=couch_server.username,
                            password=couch_server.password)
    names = ["ops-a", "ops-with-a-much-longer-name"]
    try:
        for name in names:
            users.add(connection, name, password_file=str(tmp_path / f"{name}.password"), show_password=False,
                      replace=True, role="enqueue_site")
        lines = users.list_accounts(connection)
    finally:
        for name in names:
            try:
                users.remove(connection, name)
            except users.UsersError:
                pass
    header, rows = lines[0], {line.split()[0]: line for line in lines[1:]}
    assert header.split() == ["ACCOUNT", "ROLES"]
    column = header.index("ROLES")
    for name in names:
        assert rows[name].index("enqueue_site") == column, lines
