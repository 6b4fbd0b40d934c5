"""Registers ``hsf`` so that using it is refused with the reason, not "unknown protocol".

The protocol matches nothing under ``downstream_protocol: Auto`` (no HSF connection is
ever taken for one), and naming it is refused by ``HsfConfig.cross_check``; the codec
factory refuses too (``mosn mock client --protocol hsf``).
"""

from __future__ import annotations

from typing import Any

from mosn.plugins import Extension, hookimpl
from mosn.stream.types import MatchResult
from mosn_hsf.config import NOT_PUBLIC, HsfConfig

NAME = "hsf"


class HsfNotAvailable:
    """The ``hsf`` protocol object a proxy holds: it never claims a connection."""

    name = NAME
    multiplexed = True

    def match(self, data: bytes) -> MatchResult:
        return MatchResult.NO_MATCH

    def server(self, conn: Any, new_stream: Any) -> Any:
        raise RuntimeError(NOT_PUBLIC)

    def client(self, conn: Any, on_idle: Any) -> Any:
        raise RuntimeError(NOT_PUBLIC)


def hsf_protocol(config: HsfConfig | None = None, *_: Any) -> HsfNotAvailable:
    return HsfNotAvailable()


def hsf_codec(config: HsfConfig | None = None, *_: Any) -> Any:
    raise ValueError(NOT_PUBLIC)


@hookimpl
def mosn_protocols() -> list[Extension]:
    return [Extension(NAME, hsf_protocol, HsfConfig,
                      description="not available: HSF's wire format is not public")]


@hookimpl
def mosn_xprotocol_codecs() -> list[Extension]:
    return [Extension(NAME, hsf_codec, HsfConfig,
                      description="not available: HSF's wire format is not public")]
