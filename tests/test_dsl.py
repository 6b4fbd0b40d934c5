"""MOSN's ``dsl`` stream filter in a real mosn with curl: MOSN's own ``dsl-sample``
run as written (ports moved), and each phase's edits seen by a real upstream and by
the client; the expression compiler's errors and values as unit tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from http_scripted import Reply, ScriptedHttpUpstream, proxy_config
from mosn.config.loader import ConfigError, validate
from mosn.filters.dsl import DslError, Env, compile_expression
from mosn.stream.types import Headers, RequestHead
from mosn.testing import free_port
from test_ratelimit import curl
from test_variables import upstream_fields

SAMPLE = Path(__file__).parent / "data" / "mosn_samples" / "dsl-sample" / "config.json"


def dsl_sample(server: int, client: int) -> dict[str, Any]:
    config = json.loads(SAMPLE.read_text())
    server_listener, client_listener = config["servers"][0]["listeners"]
    server_listener["address"] = f"127.0.0.1:{server}"
    client_listener["address"] = f"127.0.0.1:{client}"
    config["cluster_manager"]["clusters"][0]["hosts"] = [{"address": f"127.0.0.1:{client}"}]
    config["admin"]["address"]["socket_address"] = {"address": "127.0.0.1",
                                                    "port_value": free_port()}
    return config


def test_mosns_dsl_sample(start_mosn) -> None:
    """The sample's two scenarios: with ``host: dslhost`` the request is rewritten to
    ``/dsl`` (answered by the second listener's direct response), without it to
    ``/dsl1`` (no route there: 404)."""
    server, client = free_port(), free_port()
    start_mosn(dsl_sample(server, client))
    status, _, body = curl(server, "/", "host: dslhost")
    assert (status, body) == (200, "hello DSL!")
    assert curl(server, "/")[0] == 404


DSL = {"type": "dsl", "config": {
    "before_router_by_dsl": 'ctx.add_request_header("x-phase", "before") && '
                            'conditional(request.headers["x-old"] | "" == "yes", '
                            'ctx.rewrite_request_url("/new"), true)',
    "after_router_by_dsl": 'ctx.add_request_header("x-route", request.url_path + "!") && '
                           'ctx.del_request_header("x-secret")',
    "after_balancer_by_dsl": 'conditional(string(destination.ip) == "127.0.0.1", '
                             'ctx.add_request_header("upstream_addr", "localhost"), '
                             'ctx.add_request_header("upstream_addr", "nolocalhost"))',
    "send_filter_by_dsl": 'conditional(response.headers["dsl0"] == "dsl0", '
                          'ctx.add_response_header("dsl1", "dsl1"), '
                          'ctx.add_response_header("dsl2", "dsl2"))'}}


def test_each_phase_edits_what_it_should(start_mosn) -> None:
    replies = {path: Reply(b"HTTP/1.1 200 OK\r\ndsl0: %s\r\ncontent-length: 2\r\n\r\nok" % value)
               for path, value in (("/marked", b"dsl0"), ("/other", b"other"))}
    with ScriptedHttpUpstream(replies) as upstream:
        port = free_port()
        start_mosn(proxy_config(port, upstream.port, listener={"stream_filters": [DSL]}))
        status, fields, body = curl(port, "/a?q=1", "x-old: yes", "x-secret: s")
        marked = curl(port, "/marked")
        other = curl(port, "/other")
    sent = upstream_fields(body)
    assert status == 200
    assert body.startswith("GET /new?q=1 HTTP/1.1")  # rewritten before routing, query kept
    assert sent["x-phase"] == "before" and sent["x-route"] == "/new!"
    assert "x-secret" not in sent
    assert sent["upstream_addr"] == "localhost"
    assert "dsl1" not in fields and "dsl2" not in fields  # dsl0 absent: the expression fails
    assert marked[1]["dsl1"] == "dsl1" and "dsl2" not in marked[1]
    assert other[1]["dsl2"] == "dsl2" and "dsl1" not in other[1]


def test_a_bad_expression_is_refused_with_its_path() -> None:
    config = proxy_config(free_port(), 1, listener={"stream_filters": [
        {"type": "dsl", "config": {"after_router_by_dsl": "ctx.no_such(1)"}}]})
    with pytest.raises(ConfigError) as refused:
        validate(config)
    assert any(e.startswith("servers[0].listeners[0].stream_filters[0].config."
                            "after_router_by_dsl: unknown function ctx.no_such")
               for e in refused.value.errors), refused.value.errors


class _Stream:
    def __init__(self, head: RequestHead) -> None:
        self.request = head
        self.protocol = "Http1"


def evaluate(text: str, **headers: str) -> Any:
    head = RequestHead("GET", "/p/q?x=1&y=2", "example.com", "http", Headers(headers.items()))
    return compile_expression(text)(Env(_Stream(head)))


@pytest.mark.parametrize("text, value", [
    ('request.host == "example.com" && request.method == "GET"', True),
    ('request.headers["x-a"] | "none"', "none"),
    ('request.headers["x-b"] | "none"', "b"),
    ('request.query_params["y"] + "/" + request.url_path', "2//p/q"),
    ('!(1 < 2) || request.path.startsWith("/p")', True),
    ('conditional(match(request.url_path, "/p*"), toUpper("a"), "b")', "A"),
    ('request.url_path.matches("^/p/[a-z]$")', True),
    ('variable("x-mosn-querystring")', "x=1&y=2"),
    ("context.protocol != 'Http2'", True),
])
def test_expression_values(text: str, value: Any) -> None:
    assert evaluate(text, **{"x-b": "b"}) == value


@pytest.mark.parametrize("text, error", [
    ("request.nope", "unknown attribute 'request.nope'"),
    ("conditional(true, 1)", "conditional takes three arguments"),
    ('variable("nope")', "unknown variable %nope%"),
    ("(1 == 1", "expected ')'"),
    ("1 ==", "unexpected 'end'"),
    ("a" * 5000, "longer than 4096 characters"),
    ("(" * 100 + "1" + ")" * 100, "nested deeper than 64"),
])
def test_expression_errors(text: str, error: str) -> None:
    with pytest.raises(DslError, match=error.replace("(", r"\(").replace(")", r"\)")):
        compile_expression(text)
