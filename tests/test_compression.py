"""Response compression (MOSN's ``gzip``, Envoy's ``compressor``) in a real mosn:
curl over HTTP/1.1 and HTTP/2 against a real upstream, the bodies decompressed and
compared with what the upstream sent."""

from __future__ import annotations

import gzip
import subprocess
from typing import Any

import pytest

from http_scripted import Reply, ScriptedHttpUpstream, proxy_config
from mosn.filters.compression import accepts_gzip
from mosn.testing import free_port

CURL_TIMEOUT = "10"
PAGE = b"<html>" + b"hello compressed world " * 200 + b"</html>"


def response(body: bytes, content_type: str = "text/html; charset=utf-8", *extra: str,
             chunked: bool = False) -> Reply:
    fields = [f"content-type: {content_type}", *extra]
    if chunked:
        half = len(body) // 2
        payload = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in (body[:half], body[half:]))
        framed = payload + b"0\r\n\r\n"
        fields.append("transfer-encoding: chunked")
    else:
        framed = body
        fields.append(f"content-length: {len(body)}")
    head = "HTTP/1.1 200 OK\r\n" + "".join(f"{f}\r\n" for f in fields) + "\r\n"
    return Reply(head.encode() + framed)


REPLIES = {
    "/page": response(PAGE),
    "/chunked": response(PAGE, chunked=True),
    "/tiny": response(b"<p>hi</p>"),
    "/image": response(b"\x89PNG" + b"\0" * 400, "image/png"),
    "/encoded": response(gzip.compress(PAGE), "text/html", "content-encoding: gzip"),
    "/etag": response(PAGE, "text/html", 'etag: "v1"'),
}


def fetch(port: int, path: str, *args: str) -> tuple[dict[str, str], bytes]:
    """Response fields and the body exactly as sent (not decompressed)."""
    done = subprocess.run(["curl", "-sS", "-m", CURL_TIMEOUT, "-D", "-", *args,
                           f"http://127.0.0.1:{port}{path}"], capture_output=True, check=True)
    head, _, body = done.stdout.partition(b"\r\n\r\n")
    fields = {}
    for line in head.decode().split("\r\n")[1:]:
        name, _, value = line.partition(":")
        fields[name.strip().lower()] = value.strip()
    return fields, body


def start(start_mosn: Any, upstream: ScriptedHttpUpstream, flt: dict[str, Any],
          downstream: str = "Http1", **route: Any) -> int:
    port = free_port()
    start_mosn(proxy_config(port, upstream.port, downstream=downstream,
                            listener={"stream_filters": [flt]}, route=route or None))
    return port


GZIP = {"type": "gzip", "config": {"gzip_level": 6, "content_length": 100,
                                    "content_types": ["text/html"]}}
ENVOY = {"type": "envoy.filters.http.compressor", "config": {
    "compressor_library": {"name": "text_optimized", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.compression.gzip.compressor.v3.Gzip",
        "compression_level": "BEST_SPEED", "window_bits": 12}},
    "response_direction_config": {"common_config": {"min_content_length": 100},
                                  "disable_on_etag_header": True}}}


@pytest.mark.parametrize("flt", [GZIP, ENVOY], ids=["gzip", "compressor"])
def test_a_response_is_compressed_when_the_client_accepts_gzip(start_mosn, flt) -> None:
    with ScriptedHttpUpstream(REPLIES) as upstream:
        port = start(start_mosn, upstream, flt)
        fields, body = fetch(port, "/page", "-H", "accept-encoding: gzip, deflate")
        plain_fields, plain = fetch(port, "/page")
        chunked_fields, chunked = fetch(port, "/chunked", "-H", "accept-encoding: br;q=1, gzip")
        refused_fields, _ = fetch(port, "/page", "-H", "accept-encoding: gzip;q=0")
    assert fields["content-encoding"] == "gzip" and fields["vary"] == "accept-encoding"
    assert "content-length" not in fields and fields["transfer-encoding"] == "chunked"
    assert gzip.decompress(body) == PAGE and len(body) < len(PAGE) // 4
    assert "content-encoding" not in plain_fields and plain == PAGE
    assert chunked_fields["content-encoding"] == "gzip" and gzip.decompress(chunked) == PAGE
    assert "content-encoding" not in refused_fields


@pytest.mark.parametrize("path", ["/tiny", "/image", "/encoded"])
def test_what_is_not_compressed(start_mosn, path) -> None:
    with ScriptedHttpUpstream(REPLIES) as upstream:
        port = start(start_mosn, upstream, GZIP)
        fields, body = fetch(port, path, "-H", "accept-encoding: gzip")
    assert fields.get("content-encoding", "") == ("gzip" if path == "/encoded" else "")
    assert int(fields["content-length"]) == len(body)


def test_an_etag_is_weakened_or_turns_compression_off(start_mosn) -> None:
    with ScriptedHttpUpstream(REPLIES) as upstream:
        mosn_port = start(start_mosn, upstream, GZIP)
        weak, _ = fetch(mosn_port, "/etag", "-H", "accept-encoding: gzip")
        envoy_port = start(start_mosn, upstream, ENVOY)
        kept, body = fetch(envoy_port, "/etag", "-H", "accept-encoding: gzip")
    assert weak["etag"] == 'W/"v1"' and weak["content-encoding"] == "gzip"
    assert kept["etag"] == '"v1"' and "content-encoding" not in kept and body == PAGE


def test_http2_downstream_is_compressed(start_mosn) -> None:
    with ScriptedHttpUpstream(REPLIES) as upstream:
        port = start(start_mosn, upstream, GZIP, downstream="Http2")
        done = subprocess.run(["curl", "-sS", "-m", CURL_TIMEOUT, "--http2-prior-knowledge",
                               "--compressed", "-w", "%{http_version}",
                               f"http://127.0.0.1:{port}/chunked"],
                              capture_output=True, check=True)
    assert done.stdout == PAGE + b"2"


def test_a_route_turns_compression_off(start_mosn) -> None:
    with ScriptedHttpUpstream(REPLIES) as upstream:
        port = free_port()
        config = proxy_config(port, upstream.port, listener={"stream_filters": [GZIP]},
                              routes=[{"match": {"prefix": "/chunked"},
                                       "route": {"cluster_name": "up"},
                                       "per_filter_config": {"gzip": {"disabled": True}}}])
        mosn = start_mosn(config)
        off, body = fetch(port, "/chunked", "-H", "accept-encoding: gzip")
        on, _ = fetch(port, "/page", "-H", "accept-encoding: gzip")
        stats = mosn.stats()
    assert "content-encoding" not in off and body == PAGE
    assert on["content-encoding"] == "gzip"
    assert stats["gzip.compressed"] == 1
    assert stats["gzip.total_uncompressed_bytes"] == len(PAGE)
    assert 0 < stats["gzip.total_compressed_bytes"] < len(PAGE) // 4


@pytest.mark.parametrize("value, accepted", [
    ("gzip", True), ("gzip, deflate", True), ("deflate, GZIP;q=0.5", True), ("*", True),
    ("gzip;q=0", False), ("identity", False), ("", False), ("*;q=0", False),
    ("x-gzip", True), ("br, *;q=0.1", True), ("gzip;q=0, *", False)])
def test_accept_encoding(value, accepted) -> None:
    assert accepts_gzip(value) is accepted
