"""Response compression: MOSN's ``gzip`` stream filter (``pkg/filter/stream/gzip``)
and Envoy's ``envoy.filters.http.compressor`` with its gzip library, on the
standard library's zlib.

A response is compressed when the request accepts gzip (``accept-encoding`` names
``gzip`` or ``*`` with a non-zero ``q``), its media type is in the configured list,
it is not encoded already, not ``cache-control: no-transform``, not an answer to
HEAD nor a 1xx/204/304, and its ``content-length`` (when it says one) is at least the
minimum. The body is compressed as it streams (one ``zlib.compressobj`` per
response, a gzip member flushed at the end), ``content-length`` is dropped (HTTP/1.1
then sends chunks), ``vary: accept-encoding`` is added and a strong ``etag`` becomes
weak (Envoy's behaviour). HTTP/1.1, HTTP/2; gRPC bodies are not compressed (gRPC
compresses its messages itself) unless a gRPC media type is listed; RPC protocols
have no HTTP response to compress.
"""

from __future__ import annotations

import functools
import zlib
from typing import Any, Callable, ClassVar

from pydantic import Field, model_validator

from mosn.config.base import Model, Unsupported
from mosn.filters.common import FilterStats, PerRoute, ProtoModel
from mosn.network.filter import FilterStatus
from mosn.plugins import BuildContext, Extension, hookimpl
from mosn.proxy.stream_filter import Phase, StreamFilter
from mosn.stream.types import ResponseHead

MOSN_DEFAULT_LEVEL = 6
"""MOSN's ``defaultGzipLevel`` (zlib's own default trade of speed for size)."""
MOSN_DEFAULT_CONTENT_TYPES = ("text/html",)
"""MOSN's ``defaultContentType``."""
ENVOY_DEFAULT_MIN_LENGTH = 30
"""Envoy's ``min_content_length`` default: a smaller body would grow (gzip adds 18 bytes
of header and trailer)."""
ENVOY_DEFAULT_CONTENT_TYPES = (
    "text/html", "text/plain", "text/css", "application/javascript",
    "application/x-javascript", "text/javascript", "text/x-javascript", "text/ecmascript",
    "text/js", "text/jscript", "text/x-js", "application/ecmascript", "application/x-json",
    "application/xml", "application/json", "image/svg+xml", "text/xml",
    "application/xhtml+xml")
"""Envoy's default ``content_type`` list (``compressor_filter.cc``)."""
ENVOY_DEFAULT_WINDOW_BITS = 12
"""Envoy's gzip ``window_bits`` default (4 KiB window: less memory per response)."""
ENVOY_DEFAULT_MEMORY_LEVEL = 5
"""Envoy's gzip ``memory_level`` default."""
GZIP_HEADER_BITS = 16
"""Added to zlib's window bits to write a gzip member instead of a zlib stream."""
NO_BODY_STATUSES = frozenset({204, 304})
"""Responses that never carry a body (RFC 9110 sections 15.3.5 and 15.4.5)."""
ENVOY_LEVELS = {"BEST_SPEED": 1, "COMPRESSION_LEVEL_1": 1, "COMPRESSION_LEVEL_2": 2,
                "COMPRESSION_LEVEL_3": 3, "COMPRESSION_LEVEL_4": 4, "COMPRESSION_LEVEL_5": 5,
                "COMPRESSION_LEVEL_6": 6, "COMPRESSION_LEVEL_7": 7, "COMPRESSION_LEVEL_8": 8,
                "COMPRESSION_LEVEL_9": 9, "BEST_COMPRESSION": 9, "DEFAULT_COMPRESSION": 6}
"""Envoy's gzip ``CompressionLevel`` names."""
GZIP_TYPE = "type.googleapis.com/envoy.extensions.compression.gzip.compressor.v3.Gzip"

STATS = ("compressed", "not_compressed", "no_accept_header", "content_length_too_small",
         "not_compressed_etag", "total_uncompressed_bytes", "total_compressed_bytes")
"""Envoy's compressor stats (``compressor_filter.h``)."""


class GzipConfig(Model):
    """MOSN's ``gzip``: ``gzip_level`` (1-9, 0 for the default 6), ``content_length``
    (the least body length compressed; 0: any), ``content_types``."""

    gzip_level: int = Field(default=0, ge=0, le=9)
    content_length: int = Field(default=0, ge=0)
    content_types: list[str] | None = None
    per_route: ClassVar[type[Model]]


class CompressorPerRoute(ProtoModel):
    """Envoy's ``CompressorPerRoute``: ``disabled: true`` turns compression off."""

    disabled: bool = False
    overrides: Unsupported = None


GzipConfig.per_route = CompressorPerRoute


class GzipLibrary(ProtoModel):
    """Envoy's ``envoy.extensions.compression.gzip.compressor.v3.Gzip``."""

    type_: str = Field(default=GZIP_TYPE, alias="@type")
    compression_level: str = "DEFAULT_COMPRESSION"
    compression_strategy: str = "DEFAULT_STRATEGY"
    memory_level: int = Field(default=ENVOY_DEFAULT_MEMORY_LEVEL, ge=1, le=9)
    window_bits: int = Field(default=ENVOY_DEFAULT_WINDOW_BITS, ge=9, le=15)
    chunk_size: int = Field(default=4096, ge=4096, le=65536)

    @model_validator(mode="after")
    def _known(self) -> "GzipLibrary":
        if self.type_ != GZIP_TYPE:
            raise ValueError(f"only the gzip compressor is built in ({GZIP_TYPE}), "
                             f"not {self.type_}")
        if self.compression_level not in ENVOY_LEVELS:
            raise ValueError(f"unknown compression_level {self.compression_level!r}")
        if self.compression_strategy != "DEFAULT_STRATEGY":
            raise ValueError("only compression_strategy DEFAULT_STRATEGY is supported")
        return self


class CompressorLibrary(ProtoModel):
    name: str = "gzip"
    typed_config: GzipLibrary = Field(default_factory=GzipLibrary)


class CommonDirectionConfig(ProtoModel):
    enabled: dict[str, Any] | None = None
    min_content_length: int = Field(default=ENVOY_DEFAULT_MIN_LENGTH, ge=0)
    content_type: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _always(self) -> "CommonDirectionConfig":
        if self.enabled is not None and self.enabled.get("default_value", True) is not True:
            raise ValueError("enabled: mosn has no runtime; leave it out or make "
                             "default_value true (use per_filter_config disabled per route)")
        return self


class ResponseDirectionConfig(ProtoModel):
    common_config: CommonDirectionConfig = Field(default_factory=CommonDirectionConfig)
    disable_on_etag_header: bool = False
    remove_accept_encoding_header: bool = False


class CompressorConfig(ProtoModel):
    """Envoy's ``envoy.extensions.filters.http.compressor.v3.Compressor`` (gzip)."""

    type_: str | None = Field(default=None, alias="@type")
    compressor_library: CompressorLibrary = Field(default_factory=CompressorLibrary)
    response_direction_config: ResponseDirectionConfig = Field(
        default_factory=ResponseDirectionConfig)
    request_direction_config: Unsupported = None
    content_length: Unsupported = None
    content_type: Unsupported = None
    disable_on_etag_header: Unsupported = None
    remove_accept_encoding_header: Unsupported = None
    stat_prefix: str = ""
    per_route: ClassVar[type[Model]] = CompressorPerRoute


class Settings:
    """What one listener's compression does, from either config shape."""

    __slots__ = ("level", "window_bits", "memory_level", "min_length", "types",
                 "etag_disables", "remove_accept_encoding")

    def __init__(self, level: int, window_bits: int, memory_level: int, min_length: int,
                 types: tuple[str, ...], etag_disables: bool = False,
                 remove_accept_encoding: bool = False) -> None:
        self.level = level
        self.window_bits = window_bits
        self.memory_level = memory_level
        self.min_length = min_length
        self.types = frozenset(t.lower().partition(";")[0].strip() for t in types)
        self.etag_disables = etag_disables
        self.remove_accept_encoding = remove_accept_encoding


def accepts_gzip(value: str | None) -> bool:
    """Whether an ``accept-encoding`` value accepts gzip (RFC 9110 section 12.5.3):
    ``gzip`` (or ``x-gzip``), else ``*``, with a q-value above zero."""
    if not value:
        return False
    star = None
    for item in value.split(","):
        coding, _, params = item.partition(";")
        coding = coding.strip().lower()
        q = 1.0
        for param in params.split(";"):
            key, eq, number = param.strip().partition("=")
            if eq and key.strip().lower() == "q":
                try:
                    q = float(number)
                except ValueError:
                    q = 0.0
        if coding in ("gzip", "x-gzip"):
            return q > 0
        if coding == "*":
            star = q > 0
    return bool(star)


def _weak(etag: str) -> str:
    return etag if etag.startswith("W/") else "W/" + etag


class Compression(StreamFilter):
    """One per stream: notes the request's acceptance, then decides on the response."""

    phase = Phase.AFTER_ROUTE

    def __init__(self, shared: "Compressor") -> None:
        self.shared = shared
        self.accepts = False

    def on_request(self, stream: Any) -> FilterStatus:
        shared = self.shared
        if shared.routes.get(stream) is None:
            return FilterStatus.CONTINUE
        head = stream.request
        if head.frame is not None or head.method == "HEAD":
            return FilterStatus.CONTINUE
        self.accepts = accepts_gzip(head.headers.get("accept-encoding"))
        if not self.accepts:
            shared.stats.count("no_accept_header")
        elif shared.settings.remove_accept_encoding:
            head.headers.pop("accept-encoding", None)
        return FilterStatus.CONTINUE

    def on_response(self, stream: Any, head: ResponseHead) -> None:
        if not self.accepts:
            return
        settings = self.shared.settings
        count = self.shared.stats.count
        headers = head.headers
        if head.frame is not None or head.status < 200 or head.status in NO_BODY_STATUSES:
            return
        media = (headers.get("content-type") or "").lower().partition(";")[0].strip()
        if (media not in settings.types or headers.get("content-encoding")
                or "no-transform" in (headers.get("cache-control") or "").lower()):
            count("not_compressed")
            return
        length = headers.get("content-length")
        if length is not None and length.isdigit() and int(length) < settings.min_length:
            count("content_length_too_small")
            count("not_compressed")
            return
        etag = headers.get("etag")
        if etag is not None:
            if settings.etag_disables and not etag.startswith("W/"):
                count("not_compressed_etag")
                count("not_compressed")
                return
            headers["etag"] = _weak(etag)
        headers.pop("content-length", None)
        headers["content-encoding"] = "gzip"
        vary = headers.get("vary")
        if not vary:
            headers["vary"] = "accept-encoding"
        elif "accept-encoding" not in vary.lower() and vary.strip() != "*":
            headers["vary"] = f"{vary}, accept-encoding"
        count("compressed")
        stream.transform_response_body(self.shared.gzip_body())


class Compressor:
    """A listener's compression: its settings, per-route switches and stats."""

    __slots__ = ("settings", "routes", "stats")

    def __init__(self, name: str, settings: Settings, context: BuildContext,
                 stat_prefix: str) -> None:
        self.settings = settings
        self.routes: PerRoute[Settings | None] = PerRoute(
            name, CompressorPerRoute, lambda per, _: None if per.disabled else settings,
            settings)
        self.stats = FilterStats(context.stats, stat_prefix, STATS)

    def gzip_body(self) -> Callable[[bytes, bool], bytes]:
        s = self.settings
        compressor = zlib.compressobj(s.level, zlib.DEFLATED, GZIP_HEADER_BITS + s.window_bits,
                                      s.memory_level)
        store, scope = self.stats.store, self.stats.scope

        def gzip(data: bytes, end_stream: bool) -> bytes:
            out = compressor.compress(data) if data else b""
            if end_stream:
                out += compressor.flush()
            else:  # each piece goes on at once: a streamed response must not stall
                out += compressor.flush(zlib.Z_SYNC_FLUSH) if data else b""
            if scope is not None:
                store.values[scope.total_uncompressed_bytes] += len(data)
                store.values[scope.total_compressed_bytes] += len(out)
            return out
        return gzip


def build_gzip(name: str, config: GzipConfig, context: BuildContext) -> Callable[[], StreamFilter]:
    settings = Settings(config.gzip_level or MOSN_DEFAULT_LEVEL, zlib.MAX_WBITS,
                        zlib.DEF_MEM_LEVEL, config.content_length,
                        tuple(config.content_types or MOSN_DEFAULT_CONTENT_TYPES))
    compressor = Compressor(name, settings, context, "gzip")
    return lambda: Compression(compressor)


def build_compressor(name: str, config: CompressorConfig,
                     context: BuildContext) -> Callable[[], StreamFilter]:
    library = config.compressor_library.typed_config
    direction = config.response_direction_config
    common = direction.common_config
    settings = Settings(ENVOY_LEVELS[library.compression_level], library.window_bits,
                        library.memory_level, common.min_content_length,
                        tuple(common.content_type or ENVOY_DEFAULT_CONTENT_TYPES),
                        direction.disable_on_etag_header, direction.remove_accept_encoding_header)
    prefix = f"{config.stat_prefix}compressor.{config.compressor_library.name}.gzip"
    compressor = Compressor(name, settings, context, prefix)
    return lambda: Compression(compressor)


@hookimpl
def mosn_stream_filters() -> list[Extension]:
    return [
        Extension("gzip", functools.partial(build_gzip, "gzip"), GzipConfig,
                  description="MOSN's response compression"),
        *(Extension(name, functools.partial(build_compressor, name), CompressorConfig,
                    description="Envoy's response compressor (gzip)")
          for name in ("compressor", "envoy.filters.http.compressor")),
    ]
