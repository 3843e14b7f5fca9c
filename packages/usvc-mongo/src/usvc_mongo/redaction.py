"""Keeping the credentials of ``MONGODB_URI`` out of logs, health details and documents."""

from __future__ import annotations

import re
from urllib.parse import unquote

__all__ = ["redact_uri", "scrub"]

# ``scheme://user:password@hosts``: everything between ``://`` and the last ``@`` before
# the path is the userinfo (an unescaped ``@`` in it is invalid, but we still hide it all).
_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<userinfo>[^/?#\s]*)@")
_MIN_SECRET_LEN = 3  # replacing a one- or two-character password everywhere would garble text


def redact_uri(uri: str) -> str:
    """``mongodb://user:pw@host/db`` -> ``mongodb://***@host/db``; URIs without userinfo
    are returned unchanged."""
    return _USERINFO.sub(lambda m: f"{m['scheme']}***@", uri)


def _password_of(uri: str) -> str:
    match = _USERINFO.search(uri)
    if match is None:
        return ""
    _, sep, password = match["userinfo"].partition(":")
    return password if sep else ""


def scrub(text: str, uri: str) -> str:
    """Remove ``uri``'s userinfo and password (raw and percent-decoded) from ``text``."""
    cleaned = redact_uri(text)
    password = _password_of(uri)
    for secret in {password, unquote(password)}:
        if len(secret) >= _MIN_SECRET_LEN:
            cleaned = cleaned.replace(secret, "***")
    return cleaned
