"""Request paths as routing and the upstream see them (mosn/proxy/path.py): the pure
steps first, then end to end: a rule for ``/admin`` is not passed by any spelling of
``/admin``, over HTTP/1.1 (raw, curl ``--path-as-is``) and HTTP/2 (raw h2 client), and
the upstream receives the normalized path."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import ROOT
from http_scripted import ScriptedHttpUpstream, exchange, proxy_config
from mosn.config import ConfigError, validate
from mosn.proxy.path import EscapedSlashesAction, PathAction, canonical_path, merge_slashes, \
    normalize
from mosn.testing.process import free_port

sys.path.insert(0, str(ROOT / "plugins" / "http2" / "tests"))
from h2_peers import RawClient  # noqa: E402

KEEP = EscapedSlashesAction.KEEP_UNCHANGED
REDIRECT = EscapedSlashesAction.UNESCAPE_AND_REDIRECT


@pytest.mark.parametrize("path, canonical", [
    ("/admin", "/admin"),
    ("/./admin", "/admin"),
    ("/x/../admin", "/admin"),
    ("/x/%2e%2E/admin", "/admin"),
    ("/a/./b/.", "/a/b/"),
    ("/a/b/..", "/a/"),
    ("/../../a", "/a"),  # never above the root
    ("/a/..b/.c", "/a/..b/.c"),  # dots inside names are names
    ("/%61dmin", "/admin"),  # unreserved characters decoded
    ("/%7e%2D%5f", "/~-_"),
    ("/%2Fadmin", "/%2Fadmin"),  # a reserved one kept escaped, its case too
    ("/a%2fb", "/a%2fb"),
    ("/a\\b", "/a/b"),  # backslash is a slash (Chromium's, so Envoy's)
    ("/a b\"<>", "/a%20b%22%3C%3E"),  # what a path may not hold raw is escaped
    ("/\xe9", "/%E9"),
    ("/100%", "/100%"),  # a stray % is kept...
    ("/%%30%30", "/%2500"),  # ... unless decoding would make it an escape
    ("//admin", "//admin"),  # merge_slashes is a separate step
])
def test_canonical_path(path, canonical):
    assert canonical_path(path) == canonical
    assert canonical_path(canonical) == canonical  # idempotent


@pytest.mark.parametrize("path", ["/a%00b", "/a\0b"])
def test_nul_fails_normalization(path):
    assert canonical_path(path) is None
    assert normalize(path, True, True, KEEP)[1] is PathAction.REJECT


_PIECES = st.sampled_from(["/", ".", "..", "%", "2", "e", "E", "f", "F", "5", "c", "a", "x",
                           "\\", "~", " ", "\xe9", "#", "%2e", "%2F", "%5c", "%%", "%41",
                           "%30", "%46", "%66", "%32", "%35", "%63", "%2"])
PATHS = st.lists(_PIECES, max_size=30).map(lambda pieces: "/" + "".join(pieces))


@settings(max_examples=2000, deadline=None)
@given(PATHS)
def test_normalizing_twice_changes_nothing(path):
    """No output of a step reads differently when normalized again (an escape made
    by decoding, a dot segment left over): what routing saw is what the upstream
    would make of it."""
    once, action = normalize(path, True, True, EscapedSlashesAction.UNESCAPE_AND_FORWARD)
    if action is PathAction.CONTINUE:
        assert normalize(once, True, True, EscapedSlashesAction.UNESCAPE_AND_FORWARD) == (
            once, PathAction.CONTINUE)
        assert "/./" not in once and "/../" not in once and "//" not in once


def test_merge_slashes():
    assert merge_slashes("//a///b/") == "/a/b/"
    assert merge_slashes("/a/b") == "/a/b"


def test_query_is_never_touched():
    assert normalize("//a/./b/../c?x=/./..//%2F%61", True, True, REDIRECT) == (
        "/a/c?x=/./..//%2F%61", PathAction.CONTINUE)


@pytest.mark.parametrize("action, result", [
    (EscapedSlashesAction.KEEP_UNCHANGED, ("/%2Fadmin", PathAction.CONTINUE)),
    (EscapedSlashesAction.IMPLEMENTATION_SPECIFIC_DEFAULT, ("/admin", PathAction.REDIRECT)),
    (EscapedSlashesAction.UNESCAPE_AND_REDIRECT, ("/admin", PathAction.REDIRECT)),
    (EscapedSlashesAction.UNESCAPE_AND_FORWARD, ("/admin", PathAction.CONTINUE)),
    (EscapedSlashesAction.REJECT_REQUEST, ("/%2Fadmin", PathAction.REJECT)),
])
def test_escaped_slashes_actions(action, result):
    assert normalize("/%2Fadmin", True, True, action) == result


def test_escaped_backslash_becomes_a_slash():
    assert normalize("/a%5cb", True, True, EscapedSlashesAction.UNESCAPE_AND_FORWARD) == (
        "/a/b", PathAction.CONTINUE)


def test_each_step_can_be_turned_off():
    assert normalize("//a/../b", False, False, KEEP) == ("//a/../b", PathAction.CONTINUE)
    assert normalize("//a/../b", True, False, KEEP) == ("//b", PathAction.CONTINUE)
    assert normalize("//a/../b", False, True, KEEP) == ("/a/../b", PathAction.CONTINUE)


def test_forms_other_than_origin_and_asterisk_are_refused():
    assert normalize("*", True, True, REDIRECT) == ("*", PathAction.CONTINUE)
    assert normalize("http://x/admin", True, True, REDIRECT)[1] is PathAction.REJECT


def test_an_unknown_escaped_slashes_action_is_refused_with_its_path():
    config = proxy_config(free_port(), free_port(), path_with_escaped_slashes_action="DECODE",
                          normalize_path="maybe")
    with pytest.raises(ConfigError) as info:
        validate(config)
    proxy = "servers[0].listeners[0].filter_chains[0].filters[0].config"
    errors = "\n".join(info.value.errors)
    assert f"{proxy}.path_with_escaped_slashes_action: " in errors
    assert f"{proxy}.normalize_path: " in errors


# -- end to end -----------------------------------------------------------------------

BYPASSES = ["//admin", "/./admin", "/x/../admin", "/%61dmin", "/admin/./", "///admin//x",
            "/x/.%2E/admin", "/x\\..\\admin"]


ADMIN_FORBIDDEN = [{"match": {"prefix": "/admin"},
                    "direct_response": {"status": 403, "body": "forbidden\n"}}]


def config(port: int, upstream_port: int, **kwargs: Any) -> dict[str, Any]:
    return proxy_config(port, upstream_port, routes=ADMIN_FORBIDDEN, **kwargs)


def status_of(port: int, target: str, host: str = "h") -> tuple[int, bytes]:
    reply = exchange(port, f"GET {target} HTTP/1.1\r\nhost: {host}\r\nconnection: close"
                           "\r\n\r\n".encode())
    return int(reply.split(b" ", 2)[1]), reply


@pytest.fixture
def upstream():
    with ScriptedHttpUpstream() as scripted:
        yield scripted


def test_no_spelling_of_admin_passes_the_rule_over_http1(start_mosn, upstream):
    port = free_port()
    mosn = start_mosn(config(port, upstream.port))
    for target in ["/admin", "http://h/admin", "http://other/x/../admin?q=1", *BYPASSES]:
        assert status_of(port, target)[0] == 403, target
    status, reply = status_of(port, "/%2Fadmin")  # the default: redirect to /admin
    assert status == 307 and b"\r\nlocation: /admin\r\n" in reply
    status, reply = status_of(port, "/x/..%2f..%2fadmin?k=%2F")
    assert status == 307 and b"\r\nlocation: /admin?k=%2F\r\n" in reply
    assert status_of(port, "/a%00b")[0] == 400
    assert upstream.heads == []  # none of them reached the upstream
    stats = mosn.wait_stat("listener.http.downstream_rq_failed_path_normalization", 1)
    assert stats["listener.http.downstream_rq_redirected_with_normalized_path"] == 2
    assert stats["listener.http.downstream_rq_failed_path_normalization"] == 1


def test_curl_path_as_is_cannot_pass_the_rule(start_mosn, upstream):
    port = free_port()
    start_mosn(config(port, upstream.port))
    for path in BYPASSES:
        out = subprocess.run(["curl", "-s", "--path-as-is", "-o", "/dev/null", "-w",
                              "%{http_code}", f"http://127.0.0.1:{port}{path}"],
                             capture_output=True, text=True, timeout=30)
        assert out.stdout == "403", path


def test_upstream_receives_the_normalized_path_and_the_absolute_forms_host(start_mosn,
                                                                           upstream):
    port = free_port()
    start_mosn(config(port, upstream.port))
    assert status_of(port, "//a/./b/../%63?x=/./")[0] == 200
    assert status_of(port, "http://api.example:8080//p", host="ignored.example")[0] == 200
    assert upstream.targets() == ["/a/c?x=/./", "/p"]
    assert b"\r\nhost: api.example:8080" in upstream.heads[1]
    assert b"ignored" not in upstream.heads[1]


def test_escaped_slashes_reject_and_keep(start_mosn, upstream):
    reject, keep = free_port(), free_port()
    start_mosn(config(reject, upstream.port,
                      path_with_escaped_slashes_action="REJECT_REQUEST"))
    start_mosn(config(keep, upstream.port, path_with_escaped_slashes_action="KEEP_UNCHANGED",
                      normalize_path=False, merge_slashes=False))
    assert status_of(reject, "/%2Fadmin")[0] == 400
    assert status_of(keep, "/%2Fadmin")[0] == 200
    assert status_of(keep, "//x/../y")[0] == 200  # everything off: forwarded as sent
    assert upstream.targets() == ["/%2Fadmin", "//x/../y"]


def test_no_spelling_of_admin_passes_the_rule_over_http2(start_mosn, upstream):
    port = free_port()
    start_mosn(config(port, upstream.port, downstream="Http2"))
    client = RawClient(port)
    try:
        sids = {path: client.request(path) for path in ["/admin", *BYPASSES, "/%2Fadmin",
                                                        "/a/./b"]}
        client.pump(lambda: client.done(*sids.values()))
        statuses = {path: client.results[sid].status for path, sid in sids.items()}
    finally:
        client.close()
    assert statuses == {**{p: 403 for p in ["/admin", *BYPASSES]}, "/%2Fadmin": 307,
                        "/a/./b": 200}
    assert upstream.targets() == ["/a/b"]
