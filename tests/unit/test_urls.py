"""Splitting a server URL: where the server is, and the credentials it carries."""

from __future__ import annotations

import pytest

from enqueue.urls import BadUrl, ServerUrl, split_url


@pytest.mark.parametrize("text, base", [
    ("http://127.0.0.1:5984", "http://127.0.0.1:5984"),
    ("  https://db.example:6984/  ", "https://db.example:6984"),
    ("https://db.example/couch/", "https://db.example/couch"),
    ("http://[::1]:5984", "http://[::1]:5984"),
])
def test_the_base_keeps_scheme_host_port_and_path_without_a_trailing_slash(text, base):
    assert split_url(text) == ServerUrl(base)


def test_credentials_are_taken_out_and_decoded_and_the_raw_password_kept_for_redaction():
    url = split_url("http://bob%20b:p%40ss:word@127.0.0.1:5984/")
    assert (url.base, url.username, url.password, url.raw_password) == (
        "http://127.0.0.1:5984", "bob b", "p@ss:word", "p%40ss:word")
    assert "p@ss" not in repr(url) and "p%40ss" not in repr(url)
    assert split_url("http://bob@h").password is None
    assert split_url("http://:pw@h").username is None


@pytest.mark.parametrize("text, reason", [
    ("ftp://host:21", "expected http://HOST:PORT"),
    ("http://", "expected http://HOST:PORT"),
    ("nonsense", "expected http://HOST:PORT"),
    ("http://host:59x4", "not a valid URL"),
    ("http://host:99999", "not a valid URL"),
    ("http://host:5984/?a=b", "must not have a query or fragment"),
    ("http://host:5984/#top", "must not have a query or fragment"),
])
def test_anything_but_an_http_server_url_is_refused_with_the_reason(text, reason):
    with pytest.raises(BadUrl, match=reason):
        split_url(text)


@pytest.mark.parametrize("text", [
    "http://bob:S3cret-value-42/host",  # the '@' forgotten: the password reads as a port
    "ftp://bob:S3cret-value-42@host",
    "http://bob:S3cret-value-42@host:59x4",
    "http://bob:S3cret-value-42@[::1",
])
def test_a_refusal_never_quotes_the_credentials(text):
    with pytest.raises(BadUrl) as refused:
        split_url(text)
    assert "S3cret" not in str(refused.value) and "bob" not in str(refused.value)
