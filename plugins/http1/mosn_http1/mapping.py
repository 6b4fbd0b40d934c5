"""Statuses. The proxy speaks HTTP-like statuses for its own outcomes (503 no healthy
upstream, 504 timeout, 431 head too large ...) and reads every protocol's response
status as one (MOSN's ``MappingHeaderStatus``); HTTP/1 needs no translation either way."""

from __future__ import annotations

from http import HTTPStatus

REASONS: dict[int, str] = {s.value: s.phrase for s in HTTPStatus}
UNKNOWN_REASON = "Unknown"
"""The phrase for a status with no registered one (what Envoy writes)."""


def http_status(status: int) -> int:
    """The HTTP-like status a response of this protocol means to the proxy."""
    return status


def protocol_status(http_status: int) -> int:
    """The status a proxy outcome (an HTTP-like status) is answered with."""
    return http_status


def reason_phrase(status: int) -> str:
    return REASONS.get(status, UNKNOWN_REASON)
