"""The fuzz targets: each takes the fuzzer's bytes and runs one of the properties the
hypothesis tests hold the code to (the ``check_*`` functions of the test modules), so
a long coverage-guided run and the suite check the same things. Each also gives its
seeds: real frames and configs for the fuzzer to start from.

A target raises only when a property fails (an exception the code under test should
never raise, or a wrong answer); that is a finding.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Callable, Iterable

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT / "tests")] + [str(p) for p in sorted((ROOT / "plugins").glob("*/tests"))]

import yaml  # noqa: E402

from mosn.testing import check_decode  # noqa: E402
from mosn_dubbo import DubboCodec  # noqa: E402
from mosn_http2 import PREFACE, ServerConnection  # noqa: E402
from mosn_sofarpc import BoltCodec, BoltV2Codec  # noqa: E402
from mosn.stream.types import ResponseHead  # noqa: E402
from mosn.testing.streams import Recorder  # noqa: E402
from mosn_http1 import Limits  # noqa: E402

from http1_fakes import Server  # noqa: E402
from test_config_fuzz import VALID, check_file  # noqa: E402
from test_dubbo_hessian2_fuzz import check_reader  # noqa: E402
from test_http1_fuzz import _check, _drive  # noqa: E402
from test_http1_roundtrip_fuzz import check_response_bytes  # noqa: E402
from test_http2_codec import VALID_FRAMES, MemoryConnection  # noqa: E402
from test_http2_fuzz import SERVER_FRAMES, check_client_frames  # noqa: E402
from test_rpc_engine_fuzz import CODECS, check_client_side, check_server_side  # noqa: E402
from test_xprotocol_fuzz import DECLARATIONS, _numbers, _set, check_declaration  # noqa: E402
from xprotocol_examples import PROTOCOLS, codec as declared_codec  # noqa: E402

MAX_PIECE = 64
"""Largest piece a target cuts its input into (the first byte picks 1..64)."""
BOLT = (BoltCodec(max_frame_size=64 * 1024), BoltV2Codec(max_frame_size=64 * 1024))
DUBBO = DubboCodec(max_body_size=64 * 1024)
XPROTOCOL = [declared_codec(name) for name in sorted(PROTOCOLS)]
READER_METHODS = ("read_string", "read_string_or_null", "read_int", "read_string_map", "skip")
METHODS = ("GET", "HEAD", "POST", "PUT", "CONNECT", "OPTIONS")


def _pieces(data: bytes, size: int) -> list[bytes]:
    return [data[i:i + size] for i in range(0, len(data), size)]


def _head(data: bytes) -> tuple[int, bytes]:
    """The first byte (0 if none) and the rest."""
    return (data[0], data[1:]) if data else (0, b"")


def _frames(*folders: str) -> list[bytes]:
    return [p.read_bytes() for folder in folders for p in sorted((ROOT / folder).glob("*.bin"))]


# -- the targets --------------------------------------------------------------------------


def config_yaml(data: bytes) -> None:
    check_file(data.decode("utf-8", "replace"), ".yaml")


def config_json(data: bytes) -> None:
    check_file(data.decode("utf-8", "replace"), ".json")


def http1_server(data: bytes) -> None:
    first, rest = _head(data)
    srv = Server(Limits(max_request_head_bytes=512, max_headers_count=8,
                        max_pipelined_requests=2))
    _drive(srv, _pieces(rest, first % MAX_PIECE + 1), bool(first & 0x80))
    _check(srv)


def http1_client(data: bytes) -> None:
    first, rest = _head(data)
    check_response_bytes(METHODS[first % len(METHODS)], bool(first & 0x40),
                         _pieces(rest, (first >> 2) % 16 * 4 + 1), bool(first & 0x80))


def http2_server(data: bytes) -> None:
    """Any bytes after the preface: the codec never raises (the suite's own fuzz test
    of the server codec checks what it sends back)."""
    first, rest = _head(data)
    conn = MemoryConnection()
    handlers: list[Recorder] = []

    def new_stream(stream: object) -> Recorder:
        handlers.append(Recorder(stream))
        return handlers[-1]

    ServerConnection(conn, new_stream)
    conn.take()
    conn.feed(PREFACE)
    answered = 0
    for piece in _pieces(rest, first % MAX_PIECE + 1):
        conn.feed(piece)
        for handler in handlers[answered:]:
            handler.stream.send_headers(ResponseHead(200), True)
        answered = len(handlers)
    conn.take()


def http2_client(data: bytes) -> None:
    first, rest = _head(data)
    check_client_frames(first % 3 + 1, _pieces(rest, (first >> 2) % MAX_PIECE + 1))


def bolt(data: bytes) -> None:
    for codec in BOLT:
        check_decode(codec, data)


def dubbo(data: bytes) -> None:
    check_decode(DUBBO, data)
    first, rest = _head(data)
    check_reader(rest, READER_METHODS[first % len(READER_METHODS)])


def xprotocol(data: bytes) -> None:
    for codec in XPROTOCOL:
        check_decode(codec, data)


def xprotocol_declarations(data: bytes) -> None:
    """The bytes pick a declaration, up to three of its numbers and their new values
    (two bytes each), then are a frame's tail."""
    first, rest = _head(data)
    name = sorted(DECLARATIONS)[first % len(DECLARATIONS)]
    declared = DECLARATIONS[name]
    paths = list(_numbers(declared))
    changes, rest = rest[:3 * (first >> 6)], rest[3 * (first >> 6):]
    for i in range(0, len(changes) - 2, 3):
        value = int.from_bytes(changes[i + 1:i + 3], "big") - 256
        declared = _set(declared, paths[changes[i] % len(paths)], value)
    check_declaration(declared, "svc", rest[:16], rest, first & 0x3F)


def rpc_engine(data: bytes) -> None:
    first, rest = _head(data)
    names = sorted(CODECS)
    name = names[first % len(names)]
    sizes = [(first >> 2) % 16 + 1, (first >> 4) % 8 * 7 + 1]
    check_server_side(name, rest, sizes, bool(first & 0x80))
    replies: list[bytes | int] = [b for b in rest[:4]] + _pieces(rest[4:], 24)
    check_client_side(name, first % 4 + 1, replies, sizes)


# -- seeds --------------------------------------------------------------------------------


def _requests(codecs: Iterable[object]) -> list[bytes]:
    return [c.request(s, "m", b) for c in codecs  # type: ignore[attr-defined]
            for s, b in (("com.acme.Echo:1.0", b"hi"), ("s", b""))]


def _seeds() -> dict[str, list[bytes]]:
    configs = [yaml.safe_dump(c).encode() for c in VALID]
    json_configs = [json.dumps(c, indent=1).encode() for c in VALID]
    sofa = _frames("plugins/sofarpc/tests/data")
    dub = [f for f in _frames("plugins/dubbo/tests/data") if len(f) < 64 * 1024]
    http1 = [b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
             b"POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
             b"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\nxyz"]
    responses = [b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc",
                 b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nx: y\r\n\r\n",
                 b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\nraw"]
    return {
        "config_yaml": configs,
        "config_json": json_configs,
        "http1_server": [bytes([n]) + r for n in (0x03, 0x8f) for r in http1],
        "http1_client": [bytes([n]) + r for n in (0x00, 0x42, 0x87) for r in responses],
        "http2_server": [b"\x10" + b"".join(VALID_FRAMES), b"\x05" + VALID_FRAMES[0]],
        "http2_client": [b"\x11" + b"".join(SERVER_FRAMES[:4]), b"\x02" + b"".join(SERVER_FRAMES)],
        "bolt": sofa + _requests(BOLT),
        "dubbo": [bytes([n]) + f for n in (0, 4) for f in dub[:4]] + dub + _requests([DUBBO]),
        "xprotocol": _requests(XPROTOCOL),
        "xprotocol_declarations": [bytes([n]) + f for n in (0x01, 0x42, 0x83)
                                   for f in _requests(XPROTOCOL)[:2]],
        "rpc_engine": [bytes([n]) + f for n in range(0, 256, 37)
                       for f in _requests(list(CODECS.values()))[:4] + sofa[:2]],
    }


TARGETS: dict[str, Callable[[bytes], None]] = {
    f.__name__: f for f in (config_yaml, config_json, http1_server, http1_client, http2_server,
                            http2_client, bolt, dubbo, xprotocol, xprotocol_declarations,
                            rpc_engine)}
SEEDS = _seeds()
