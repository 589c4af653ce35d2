"""The test servers' description never shows the admin password (pytest prints it on a failure)."""

from tests.support.servers import CouchServer


def test_a_test_server_repr_hides_its_password():
    server = CouchServer("http://127.0.0.1:5984", "admin", "s3cret-admin-password", "env")

    assert "s3cret-admin-password" not in repr(server)
    assert "admin" in repr(server)
