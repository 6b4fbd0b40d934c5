"""The proxy's gRPC helpers (mosn/proxy/grpc.py): pure functions, no IO. Their use
through mosn is tested end to end in plugins/http2/tests/test_http2_grpc.py."""

from __future__ import annotations

import pytest

from mosn.proxy import grpc
from mosn.proxy.http import strip_hop_by_hop
from mosn.stream.types import Headers


@pytest.mark.parametrize("value, seconds", [
    ("1H", 3600.0), ("2M", 120.0), ("3S", 3.0), ("250m", 0.25), ("1500u", 0.0015),
    ("12345678n", 0.012345678),
])
def test_grpc_timeout_units(value, seconds):
    assert grpc.parse_timeout(value) == pytest.approx(seconds)


@pytest.mark.parametrize("value", ["", "S", "10", "123456789S", "1.5S", "-1S", "10s", "1 S"])
def test_malformed_grpc_timeout_is_ignored(value):
    assert grpc.parse_timeout(value) is None


def test_http_to_grpc_status_follows_envoy():
    assert [grpc.grpc_status(s) for s in (400, 401, 403, 404, 429, 502, 503, 504, 500, 418)] \
        == [13, 16, 7, 12, 14, 14, 14, 14, 2, 2]


def test_grpc_content_types():
    for value in ("application/grpc", "application/grpc+proto", "application/grpc;charset=x"):
        assert grpc.is_grpc(Headers([("content-type", value)]))
    for value in ("application/grpc-web", "application/json"):
        assert not grpc.is_grpc(Headers([("content-type", value)]))
    assert not grpc.is_grpc(Headers())


def test_grpc_message_is_percent_encoded():
    assert grpc.encode_message("no route") == "no route"
    assert grpc.encode_message("100% \u00e9\n") == "100%25 %C3%A9%0A"


def test_te_trailers_survives_hop_by_hop_stripping():
    headers = Headers([("te", "trailers"), ("connection", "te, keep-alive"),
                       ("keep-alive", "5"), ("x", "1")])
    strip_hop_by_hop(headers, False)
    assert headers.items() == [("te", "trailers"), ("x", "1")]
    other = Headers([("te", "gzip"), ("x", "1")])
    strip_hop_by_hop(other, False)
    assert other.items() == [("x", "1")]
