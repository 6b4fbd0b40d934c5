"""The ``proxy`` network filter's config: MOSN's ``Proxy`` (``pkg/config/v2/proxy.go``)."""

from __future__ import annotations

from typing import Any, Iterable

from pydantic import Field, PrivateAttr, ValidationError, model_validator

from mosn.config.base import Model, did_you_mean, is_empty
from mosn.config.types import Duration, Timeout
from mosn.proxy.path import DEFAULT_ESCAPED_SLASHES_ACTION, EscapedSlashesAction

AUTO = "Auto"
"""``downstream_protocol: Auto``: pick the protocol by its first bytes."""
X = "X"
"""MOSN's older form for RPC: ``downstream_protocol: X`` with
``extend_config: {sub_protocol: bolt}`` (or a list, ``bolt,boltv2``)."""
SUB_PROTOCOL = "sub_protocol"
"""The ``extend_config`` key naming MOSN's X-protocol sub-protocols."""
EXTEND_CONFIG_REFUSED = {
    "http2_use_stream": "X protocol over HTTP/2 streams is not supported yet",
}
"""MOSN's ``extend_config`` keys whose feature mosn does not run yet: refused when set."""
DEFAULT_ROUTER_HANDLER = "default"
"""MOSN's only built-in router handler (``types.DefaultRouteHandler``)."""
DEFAULT_ROUTE_TIMEOUT = 15.0
"""Seconds from a complete request to a complete response when the route sets no
``timeout`` (Envoy's default)."""
DEFAULT_MAX_REQUEST_BYTES = None
"""No request body limit unless the proxy or the route sets one."""
DEFAULT_REQUEST_HEADERS_TIMEOUT = 30.0
"""Seconds from a request head's first byte to its last: a slow link sends a head in
well under this, a client trickling one to hold the connection is cut (Envoy's field;
Envoy leaves it off by default)."""
DEFAULT_STREAM_IDLE_TIMEOUT = 300.0
"""Seconds a stream may go with no bytes either way (Envoy's default, 5 min)."""


class ProxyConfig(Model):
    name: str = ""
    downstream_protocol: str = AUTO
    upstream_protocol: str = ""
    """Empty (or MOSN's ``Auto``): the protocol the downstream spoke."""
    router_config_name: str
    router_handler_name: str = ""
    """MOSN's: the handler that picks a route; mosn has MOSN's ``default`` one only."""
    fallback_for_unknown_protocol: bool = False
    """MOSN's: with ``downstream_protocol: Auto``, a connection no installed protocol
    claims goes on to the network filters after ``proxy`` in its filter chain (a
    ``tcp_proxy``, say) with the bytes read so far, instead of being closed."""
    extend_config: dict[str, Any] = Field(default_factory=dict)
    """Kept as written; protocol plugins may read it."""
    timeout: Timeout = DEFAULT_ROUTE_TIMEOUT
    """mosn's own: the route timeout for routes that set none (``0``: MOSN's global
    default, 60 s; ``disabled``: none)."""
    max_request_bytes: int | None = Field(default=DEFAULT_MAX_REQUEST_BYTES, ge=0)
    """mosn's own: a request body larger than this is answered 413."""
    request_headers_timeout: Duration = DEFAULT_REQUEST_HEADERS_TIMEOUT
    """Envoy's: from the first byte of a request head to its last (HTTP/2: of a
    stream's header block); past it HTTP/1 answers ``408`` and closes, HTTP/2 resets
    the stream. ``0`` turns it off."""
    stream_idle_timeout: Duration = DEFAULT_STREAM_IDLE_TIMEOUT
    """Envoy's: a stream with no bytes either way for this long ends: ``408`` (gRPC:
    DEADLINE_EXCEEDED; RPC: the protocol's timeout status) if its response has not
    begun, else a reset. ``0`` turns it off."""
    max_connection_duration: Duration | None = None
    """Envoy's: a downstream connection open this long is drained (HTTP/1:
    ``connection: close`` on the next response, or closed if idle; HTTP/2: GOAWAY;
    RPC: closed once idle). Unset or ``0``: no limit."""
    normalize_path: bool = True
    """Envoy's: RFC 3986 normalization of the path before routing (see
    :mod:`mosn.proxy.path`); on by default (Envoy's is off), so a path rule cannot be
    passed by ``/./admin`` or ``/%61dmin``."""
    merge_slashes: bool = True
    """Envoy's: ``//a//b`` is ``/a/b`` before routing; on by default (Envoy's is off)."""
    path_with_escaped_slashes_action: EscapedSlashesAction = DEFAULT_ESCAPED_SLASHES_ACTION
    """Envoy's: what a path with ``%2F`` or ``%5C`` gets."""
    _detect: tuple[str, ...] = PrivateAttr(default=())
    """With ``downstream_protocol: Auto``: the protocols detection may choose (empty:
    every installed one), from MOSN's lists (``bolt,boltv2``, or ``X`` with several
    sub-protocols)."""
    _rpc_only: tuple[str, ...] = PrivateAttr(default=())
    """``Auto`` with ``extend_config.sub_protocol``: the X-protocol (RPC) protocols
    detection may choose; the others (HTTP) are all detected, as in MOSN."""

    @property
    def detect(self) -> tuple[str, ...]:
        return self._detect

    @property
    def rpc_only(self) -> tuple[str, ...]:
        return self._rpc_only

    @model_validator(mode="after")
    def _mosn_keys(self) -> "ProxyConfig":
        if self.router_handler_name not in ("", DEFAULT_ROUTER_HANDLER):
            raise ValueError(f"router_handler_name {self.router_handler_name!r}: mosn has "
                             f"MOSN's {DEFAULT_ROUTER_HANDLER!r} router handler only")
        for key, why in EXTEND_CONFIG_REFUSED.items():
            if not is_empty(self.extend_config.get(key)):
                raise ValueError(f"extend_config.{key}: {why}")
        return self

    @model_validator(mode="after")
    def _protocol_lists(self) -> "ProxyConfig":
        """MOSN's ways to name several protocols: ``X`` with ``sub_protocol`` (one or a
        comma-separated list), a list in ``downstream_protocol`` (``bolt,boltv2``: detect
        among them), and ``Auto`` with ``sub_protocol`` (detect HTTP and those RPC
        protocols)."""
        if self.upstream_protocol == AUTO:
            self.upstream_protocol = ""  # MOSN's way to say "as the downstream"
        sub = self.extend_config.get(SUB_PROTOCOL)
        subs = _names(sub) if isinstance(sub, str) else []
        if sub is not None and not subs:
            raise ValueError(f"extend_config.{SUB_PROTOCOL}: a protocol name or a "
                             f"comma-separated list of them, not {sub!r}")
        downstream = self.downstream_protocol
        if downstream == X:
            if not subs:
                raise ValueError(f"downstream_protocol: {X} needs extend_config.{SUB_PROTOCOL}")
            self._pick(subs)
        elif "," in downstream:
            self._pick(_names(downstream))
        elif downstream == AUTO and subs:
            self._rpc_only = tuple(subs)
        elif subs and self.upstream_protocol != X:
            raise ValueError(f"extend_config.{SUB_PROTOCOL}: names X-protocol sub-protocols "
                             f"for downstream_protocol {X} or {AUTO}, not {downstream!r}")
        if self.upstream_protocol == X:
            if not subs:
                raise ValueError(f"upstream_protocol: {X} needs extend_config.{SUB_PROTOCOL}")
            # several: the one the downstream spoke, as MOSN does
            self.upstream_protocol = subs[0] if len(subs) == 1 else ""
        return self

    def _pick(self, names: list[str]) -> None:
        if len(names) == 1:
            self.downstream_protocol = names[0]
        else:
            self.downstream_protocol = AUTO
            self._detect = tuple(names)

    @model_validator(mode="after")
    def _fallback_needs_auto(self) -> "ProxyConfig":
        if self.fallback_for_unknown_protocol and self.downstream_protocol != AUTO:
            raise ValueError(f"fallback_for_unknown_protocol: only a proxy that detects the "
                             f"protocol (downstream_protocol: {AUTO}) can fall back, not "
                             f"{self.downstream_protocol!r}")
        return self

    def cross_check(self, root: Any, plugins: Any) -> Iterable[tuple[str, str]]:
        names = {r.router_config_name for _, r in root.routers()}
        if self.router_config_name not in names:
            yield "router_config_name", f"no router configuration named {self.router_config_name!r}"
        known = plugins.names("protocol")
        listed = ", ".join(known) if known else "none installed"
        for field in ("downstream_protocol", "upstream_protocol"):
            value = getattr(self, field)
            if value and value != AUTO and value not in known:
                if plugins.disabled_owner("protocol", value) is not None:
                    yield field, f"unknown protocol {value!r}{plugins.unknown('protocol', value)}"
                    continue
                yield field, f"unknown protocol {value!r} (known: {AUTO}, {listed})"
        for name in self._detect:
            if name not in known:
                yield "downstream_protocol", f"unknown protocol {name!r} (known: {listed})"
        codecs = plugins.names("xprotocol_codec")
        for name in self._rpc_only:
            if name not in codecs:
                yield (f"extend_config.{SUB_PROTOCOL}",
                       f"unknown X-protocol sub-protocol {name!r} (known: "
                       f"{', '.join(codecs) or 'none installed'})")
        yield from self._check_protocol_configs(root, plugins, known)

    def _check_protocol_configs(self, root: Any, plugins: Any,
                                known: list[str]) -> Iterable[tuple[str, str]]:
        """Each protocol's config, as the proxy will build it from ``extend_config.<name>``,
        validated now rather than when the listener starts; a protocol this proxy names
        may also refuse the config through its model's ``cross_check``."""
        naming = {name: "downstream_protocol" for name in self._detect}
        for field in ("upstream_protocol", "downstream_protocol"):
            value = getattr(self, field)
            if value and value != AUTO:
                naming[value] = field
        takes = {k.lower(): k for k in (*known, SUB_PROTOCOL, *EXTEND_CONFIG_REFUSED)}
        for key in self.extend_config:
            if key not in takes.values():
                close = did_you_mean(key, takes)
                hint = f"; did you mean {close!r}?" if close else \
                    f" (known: {', '.join(sorted(takes.values()))})"
                yield f"extend_config.{key}", f"neither a protocol nor a MOSN key{hint}"
        for name in known:
            ext = plugins.get("protocol", name)
            if ext is None or ext.config_model is None or (
                    name not in self.extend_config and name not in naming):
                continue
            try:
                parsed = ext.config_model.model_validate(self.extend_config.get(name) or {})
            except ValidationError as exc:
                for err in exc.errors():
                    loc = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err["loc"])
                    yield f"extend_config.{name}{loc}", err["msg"].removeprefix("Value error, ")
                continue
            if isinstance(parsed, Model):
                for extra in parsed.extra_keys(f"extend_config.{name}"):
                    yield extra.path, extra.error()
            check = getattr(parsed, "cross_check", None)
            if check is not None and name in naming:
                for loc, message in check(root, plugins):
                    yield (f"extend_config.{name}.{loc}" if loc else naming[name]), message


def _names(text: str) -> list[str]:
    """MOSN's comma-separated protocol list."""
    return [n.strip() for n in text.split(",") if n.strip()]
