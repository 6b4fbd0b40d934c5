"""Protocols declared in YAML, as a user writes them under ``extend_config.xprotocol``,
shared by the declarative codec's tests."""

from __future__ import annotations

import struct
from typing import Any

import yaml

from mosn_xprotocol import CodecConfig, DeclarativeCodec

MINIRPC = """
name: minirpc
header_size: 14
magic: {text: MR}
kind: {offset: 2, request: 1, response: 2, oneway: 3, heartbeat: 4, heartbeat_reply: 5, goaway: 6}
status: {offset: 3, size: 1, success: 0, no_route: 1, no_healthy_upstream: 2, timeout: 3,
         upstream_lost: 4, bad_frame: 5, error: 5, overflow: 6}
request_id: {offset: 4, size: 4}
length:
  fields: [{offset: 8, size: 2}, {offset: 10, size: 4}]
routing:
  service: {offset: 14, length_field: {offset: 8, size: 2}}
"""
"""tests/plugins/minirpc's protocol (written there in Python), declared instead."""

ACME = """
name: acme
byte_order: little
header_size: 24
magic: {hex: "41 58"}
kind: {offset: 3, mask: 0x0f, request: 1, response: 2, oneway: 3, heartbeat: 4,
       heartbeat_reply: 5}
status: {offset: 4, size: 2, success: 0, error: 500, no_route: 404, no_healthy_upstream: 503,
         overflow: 429, timeout: 504, upstream_lost: 502, bad_frame: 400}
request_id: {offset: 6, size: 8}
timeout: {offset: 14, size: 4, unit: ms}
length: {offset: 20, size: 4, counts: frame}
routing:
  tenant: {offset: 18, size: 2, type: uint}
  service: {offset: 24, length_prefix: 1}
  method: {after: service, length_prefix: 1}
"""
"""A little-endian protocol: "AX" · version · flags (kind in the low nibble, the
serialization in the high one) · status (2) · request id (8) · timeout ms (4) ·
tenant (2) · frame length (4, the whole frame) · service, method (each a one-byte
length then the bytes) · body."""

DUBBO_LIKE = """
name: dubbo_like
header_size: 16
magic: {hex: dabb}
kind: {offset: 2, mask: 0xe0, request: 0xc0, oneway: 0x80, heartbeat: 0xe0, response: 0x00,
       heartbeat_reply: 0x20}
status: {offset: 3, size: 1, success: 20, error: 80, no_route: 60, timeout: 31,
         bad_frame: 40, overflow: 100}
request_id: {offset: 4, size: 8}
length: {offset: 12, size: 4}
routing:
  service: {offset: 16, length_prefix: 2}
"""
"""Dubbo's 16-byte header and flag bits (request, two-way, event) with a simple
length-prefixed service instead of a hessian2 body."""

PING_PONG = """
name: pingpong
header_size: 8
multiplexed: false
kind: {offset: 0, request: 0x51, response: 0x52}
status: {offset: 1, size: 1, error: 1}
request_id: {offset: 2, size: 2}
length: {offset: 4, size: 4, counts: after_field}
routing:
  service: {offset: 8, length_prefix: 2}
"""
"""No magic, a length counting the bytes after itself, ping-pong."""

PROTOCOLS = {"minirpc": MINIRPC, "acme": ACME, "dubbo_like": DUBBO_LIKE, "pingpong": PING_PONG}


def codec_config(text: str, **changes: Any) -> CodecConfig:
    data = yaml.safe_load(text)
    data.update(changes)
    return CodecConfig.model_validate(data)


def codec(name: str) -> DeclarativeCodec:
    return DeclarativeCodec(codec_config(PROTOCOLS[name]))


# -- ACME frames written by hand (what the test's backend and client speak) ----------------

ACME_HEADER = struct.Struct("<2sBBHQiHI")
"""magic, version, flags, status, request id, timeout ms, tenant, frame length."""
ACME_REQUEST, ACME_RESPONSE, ACME_ONEWAY, ACME_HEARTBEAT, ACME_HEARTBEAT_REPLY = 1, 2, 3, 4, 5
ACME_SERIALIZATION = 0x70
"""High nibble of the flags: must come back unchanged in replies."""


def acme_frame(kind: int, request_id: int, service: str = "", method: str = "",
               body: bytes = b"", *, status: int = 0, timeout_ms: int = 0,
               tenant: int = 0) -> bytes:
    strings = bytes([len(service)]) + service.encode() + bytes([len(method)]) + method.encode()
    size = ACME_HEADER.size + len(strings) + len(body)
    return ACME_HEADER.pack(b"AX", 1, ACME_SERIALIZATION | kind, status, request_id,
                            timeout_ms, tenant, size) + strings + body


def acme_parse(data: bytes | bytearray) -> tuple[dict[str, Any], int] | None:
    """The first ACME frame in ``data`` and its size, or None if incomplete."""
    if len(data) < ACME_HEADER.size:
        return None
    magic, _, flags, status, request_id, timeout, tenant, size = ACME_HEADER.unpack_from(data)
    assert magic == b"AX"
    if len(data) < size:
        return None
    pos = ACME_HEADER.size
    service = bytes(data[pos + 1:pos + 1 + data[pos]]).decode()
    pos += 1 + data[pos]
    method = bytes(data[pos + 1:pos + 1 + data[pos]]).decode()
    pos += 1 + data[pos]
    return ({"kind": flags & 0x0F, "serialization": flags & 0xF0, "status": status,
             "request_id": request_id, "timeout": timeout, "tenant": tenant,
             "service": service, "method": method, "body": bytes(data[pos:size])}, size)
