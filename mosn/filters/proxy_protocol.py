"""The ``proxy_protocol`` listener filter (Envoy's ``envoy.filters.listener.proxy_protocol``):
a load balancer in front says who the client is in a PROXY protocol header (v1 text
or v2 binary, haproxy's spec ``proxy-protocol.txt``) before the client's bytes; the
filter reads it, takes it off the stream, and the connection's remote address (and
local address) become the ones it carries: access logs, ``x-forwarded-for``, hash
policies and ``source_prefix_ranges`` see the client, not the load balancer.

A header that is malformed or longer than allowed closes the connection and is
counted (``downstream_cx_proxy_proto_error``); other connections are not touched.
A connection without a header is refused too, unless
``allow_requests_without_proxy_protocol``.

The parser is sans-IO: :func:`parse` takes the first bytes and returns what they say.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass
from typing import Any, Callable

from mosn.config.models import StrictModel
from mosn.network.filter import FilterStatus, ListenerFilter, ListenerFilterError
from mosn.plugins import BuildContext, Extension, hookimpl

V1_PREFIX = b"PROXY "
V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
V1_MAX_LENGTH = 107
"""Bytes of the longest v1 header, CRLF included (the spec's bound)."""
V2_MAX_LENGTH = 16 + 4096
"""Bytes of a v2 header taken (16 fixed, then addresses and TLVs): load balancers send
addresses and a few TLVs in far less; a longer header is refused as malformed."""
_V2_FIXED = struct.Struct("!12sBBH")
_V2_INET = struct.Struct("!4s4sHH")
_V2_INET6 = struct.Struct("!16s16sHH")
ERROR_STAT = "downstream_cx_proxy_proto_error"


class ProxyProtocolError(ListenerFilterError):
    def __init__(self, message: str) -> None:
        super().__init__(f"bad PROXY protocol header: {message}", ERROR_STAT)


@dataclass(frozen=True, slots=True)
class ProxyHeader:
    """A complete header: ``length`` bytes; ``source``/``destination`` None when the
    header carries no addresses (v1 ``UNKNOWN``, v2 ``LOCAL`` or ``UNSPEC``)."""

    length: int
    source: tuple[str, int] | None = None
    destination: tuple[str, int] | None = None


NEED_MORE = "need_more"
ABSENT = "absent"
"""What :func:`parse` says of bytes too short to tell, or that carry no header."""


def parse(data: bytes) -> ProxyHeader | str:
    """The header at the front of ``data``, NEED_MORE, or ABSENT; raises
    :class:`ProxyProtocolError` for a malformed or too long one."""
    for prefix in (V1_PREFIX, V2_SIGNATURE):
        n = min(len(data), len(prefix))
        if data[:n] == prefix[:n]:
            if n < len(prefix):
                return NEED_MORE
            return _parse_v1(data) if prefix is V1_PREFIX else _parse_v2(data)
    return ABSENT


def _parse_v1(data: bytes) -> ProxyHeader | str:
    end = data.find(b"\r\n", 0, V1_MAX_LENGTH)
    if end < 0:
        if len(data) >= V1_MAX_LENGTH:
            raise ProxyProtocolError(f"v1 header without CRLF in {V1_MAX_LENGTH} bytes")
        return NEED_MORE
    parts = data[len(V1_PREFIX):end].split(b" ")
    if parts[0] == b"UNKNOWN":
        return ProxyHeader(end + 2)
    if len(parts) != 5 or parts[0] not in (b"TCP4", b"TCP6"):
        raise ProxyProtocolError("v1 header is not 'PROXY TCP4|TCP6 src dst sport dport'")
    version = 4 if parts[0] == b"TCP4" else 6
    try:
        source = _v1_address(parts[1], parts[3], version)
        destination = _v1_address(parts[2], parts[4], version)
    except ValueError as exc:
        raise ProxyProtocolError(f"v1 {exc}") from None
    return ProxyHeader(end + 2, source, destination)


def _v1_address(ip: bytes, port: bytes, version: int) -> tuple[str, int]:
    address = ipaddress.ip_address(ip.decode("ascii"))
    if address.version != version:
        raise ValueError(f"address {address} is not IPv{version}")
    if not port.isdigit() or (len(port) > 1 and port.startswith(b"0")) or int(port) > 65535:
        raise ValueError(f"port {port!r} is not a port number")
    return str(address), int(port)


def _parse_v2(data: bytes) -> ProxyHeader | str:
    if len(data) < _V2_FIXED.size:
        return NEED_MORE
    _, version_command, family, length = _V2_FIXED.unpack_from(data)
    total = _V2_FIXED.size + length
    if version_command >> 4 != 2:
        raise ProxyProtocolError(f"v2 header of version {version_command >> 4}")
    command = version_command & 0x0F
    if command > 1:
        raise ProxyProtocolError(f"v2 command {command} is neither LOCAL nor PROXY")
    if total > V2_MAX_LENGTH:
        raise ProxyProtocolError(f"v2 header of {total} bytes (at most {V2_MAX_LENGTH})")
    if len(data) < total:
        return NEED_MORE
    if command == 0:  # LOCAL: the load balancer's own connection (a health check)
        return ProxyHeader(total)
    transport = family & 0x0F
    if transport not in (0, 1, 2):
        raise ProxyProtocolError(f"v2 transport {transport} is not STREAM or DGRAM")
    address_family = family >> 4
    if address_family == 1:
        layout = _V2_INET
    elif address_family == 2:
        layout = _V2_INET6
    elif address_family in (0, 3):  # UNSPEC, or UNIX: no IP to take
        return ProxyHeader(total)
    else:
        raise ProxyProtocolError(f"v2 address family {address_family}")
    if length < layout.size:
        raise ProxyProtocolError(f"v2 header of {length} bytes cannot hold its addresses")
    src, dst, sport, dport = layout.unpack_from(data, _V2_FIXED.size)
    return ProxyHeader(total, (str(ipaddress.ip_address(src)), sport),
                       (str(ipaddress.ip_address(dst)), dport))


class ProxyProtocolConfig(StrictModel):
    """Envoy's ``ProxyProtocol`` config."""

    allow_requests_without_proxy_protocol: bool = False
    """A client whose first bytes are not a PROXY header is served as it is (its
    address is the socket's), not closed."""


class ProxyProtocol(ListenerFilter):
    __slots__ = ("allow_absent", "_length")

    def __init__(self, allow_absent: bool) -> None:
        self.allow_absent = allow_absent
        self._length = 0

    def on_accept(self, conn: Any) -> FilterStatus:
        return FilterStatus.STOP  # the header comes first

    def on_data(self, conn: Any, data: bytes) -> FilterStatus:
        header = parse(data)
        if header == NEED_MORE:
            return FilterStatus.STOP
        if header == ABSENT:
            if self.allow_absent:
                return FilterStatus.CONTINUE
            raise ProxyProtocolError("the connection does not start with one")
        assert isinstance(header, ProxyHeader)
        self._length = header.length
        if header.source is not None:
            conn.restored_remote = header.source
            conn.restored_local = header.destination
        return FilterStatus.CONTINUE

    def consumed(self) -> int:
        return self._length


def build(config: ProxyProtocolConfig | None,
          context: BuildContext | None = None) -> Callable[[], ListenerFilter]:
    allow = config.allow_requests_without_proxy_protocol if config is not None else False
    return lambda: ProxyProtocol(allow)


@hookimpl
def mosn_listener_filters() -> list[Extension]:
    return [Extension("proxy_protocol", build, ProxyProtocolConfig,
                      description="the client's address from a load balancer's PROXY "
                                  "protocol v1/v2 header")]
