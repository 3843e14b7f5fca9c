"""``RestAPIConfig.BASE_URL`` is checked as httpx will parse it, without importing httpx:
the check accepts exactly what ``httpx.URL`` accepts as an absolute http(s) URL with a host."""

from __future__ import annotations

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from usvc_http import RestAPIConfig
from usvc_http.rest.config import base_url_problem


def _httpx_accepts(value: str) -> bool:
    """What the check did before: ``httpx.URL`` parses it, http(s), with a host."""
    try:
        url = httpx.URL(value)
        return url.scheme in ("http", "https") and bool(url.host)
    except (httpx.InvalidURL, ValueError):
        return False


_SCHEMES = st.sampled_from(["http", "https", "HTTPS", "hTTp", "ftp", "ws", "", "h+.-1", "1http"])
_HOSTS = st.sampled_from(
    [
        "example.com",
        "EXAMPLE.com",
        "127.0.0.1",
        "1.2.3.999",
        "1.2.3",
        "01.2.3.4",
        "[::1]",
        "[::g]",
        "[]",
        "[",
        "]",
        "::1",
        "xn--bcher-kva.de",
        "xn--abc",
        "XN--abc",
        "bücher.de",
        "é",
        "a\u200db",
        "☃.net",
        "a b",
        "%zz",
        "%41",
        "a..b",
        "-a.com",
        "a_b",
        "",
    ]
)
_PORTS = st.sampled_from(
    ["", ":", ":80", ":443", ":0", ":-1", ":+80", ": 80", ":65536", ":x", ":80:90", ":٨٠", ":8_0"]
)
_TAIL_ALPHABET = st.sampled_from(list("/?#@:[]% abcAZ09-._~!$&'()*+,;=é\u2028\t\n\x7f\ud800\x00"))


@st.composite
def _urls(draw: st.DrawFn) -> str:
    scheme = draw(st.one_of(st.sampled_from(["http", "https"]), _SCHEMES))
    sep = draw(st.one_of(st.just("://"), st.sampled_from([":", ":/", "//", ":///", ""])))
    userinfo = draw(st.sampled_from(["", "user@", "u:p@", "@", "a@b@", "é@"]))
    host = draw(st.one_of(_HOSTS, st.text(_TAIL_ALPHABET, max_size=6)))
    port = draw(st.one_of(st.just(""), _PORTS))
    tail = draw(st.text(_TAIL_ALPHABET, max_size=12))
    return f"{scheme}{sep}{userinfo}{host}{port}{tail}"


@settings(max_examples=3000, deadline=None)
@given(st.one_of(_urls(), st.text(max_size=30)))
def test_the_check_agrees_with_httpx(value: str) -> None:
    assert (base_url_problem(value) is None) == _httpx_accepts(value)


@pytest.mark.parametrize(
    "value",
    [
        "https://payments.example.com",
        "http://127.0.0.1:8001",
        "http://[::1]:8080/api/",
        "https://bücher.de/v1?x=1#y",
        "HTTP://EXAMPLE.COM",
    ],
)
def test_valid_base_urls(value: str) -> None:
    assert _httpx_accepts(value)
    assert value == RestAPIConfig(BASE_URL=value).BASE_URL


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("/charges", "absolute"),
        ("payments.example.com", "absolute"),
        ("ftp://example.com", "absolute"),
        ("http://", "absolute"),
        ("http://1.2.3.999/", "not a valid URL"),
        ("http://[::g]/", "not a valid URL"),
        ("http://example.com:eighty/", "not a valid URL"),
        ("http://exa\tmple.com/", "not a valid URL"),
        ("http://xn--abc/", "not a valid URL"),
    ],
)
def test_invalid_base_urls(value: str, message: str) -> None:
    assert not _httpx_accepts(value)
    with pytest.raises(ValidationError, match=message):
        RestAPIConfig(BASE_URL=value)
