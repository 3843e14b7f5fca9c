"""Credentials of MONGODB_URI never reach logs, health details or documents."""

from __future__ import annotations

import pytest
from usvc_mongo import redact_uri, scrub


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("mongodb://alice:s3cret@db:27017/app", "mongodb://***@db:27017/app"),
        ("mongodb://alice@db/", "mongodb://***@db/"),
        (
            "mongodb://u:p%40ss@h1:1,h2:2/?replicaSet=rs&authSource=admin",
            "mongodb://***@h1:1,h2:2/?replicaSet=rs&authSource=admin",
        ),
        ("mongodb+srv://u:pw@cluster0.example.net/x", "mongodb+srv://***@cluster0.example.net/x"),
        ("mongodb://127.0.0.1:27017/?directConnection=true", None),
    ],
)
def test_redact_uri_hides_userinfo_and_keeps_the_rest(uri: str, expected: str | None) -> None:
    """user:password@ becomes ***@; hosts, path and options stay readable."""
    assert redact_uri(uri) == (expected if expected is not None else uri)


def test_scrub_removes_the_password_in_any_form() -> None:
    """The raw and percent-decoded password disappear from free text, and so do URIs."""
    uri = "mongodb://alice:p%40ssw0rd@db:27017/"
    text = "auth failed for p@ssw0rd / p%40ssw0rd via mongodb://alice:p%40ssw0rd@db:27017/"
    cleaned = scrub(text, uri)
    assert "ssw0rd" not in cleaned
    assert "mongodb://***@db:27017/" in cleaned


def test_scrub_leaves_text_alone_without_credentials() -> None:
    """A URI without a password changes nothing (and short passwords do not garble text)."""
    assert scrub("connection refused", "mongodb://db/") == "connection refused"
    assert scrub("a b c", "mongodb://u:a@db/") == "a b c"
