"""Choosing a listener's filter chain for a connection: Envoy's ``filter_chain_match``.

Each step below keeps the chains that match the connection most specifically on one
field, in Envoy's order; a chain that leaves a field empty matches any value, less
specifically than one that names it. A chain that is not kept at a step is out for
good (Envoy prunes, it does not backtrack): a connection that no chain survives gets
no chain and is closed (``no_filter_chain_match``).

1. destination port; 2. destination IP (the longest matching prefix); 3. server name
(exact, then the longest ``*.suffix``); 4. transport protocol; 5. application
protocols; 6. directly connected source IP; 7. source type; 8. source IP; 9. source
port. The destination is the original destination when a listener filter recovered
one, the source what the PROXY protocol said when it did.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any, Callable

from mosn.config.models import FilterChainMatch

RAW_BUFFER = "raw_buffer"
"""The transport of a connection no listener filter recognised (Envoy's default)."""
_EXACT_NAME = 1 << 16
"""An exact server name beats any wildcard (whose score is its suffix's length)."""

IP = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class ChainMatch:
    """A ``filter_chain_match`` made ready for matching."""

    __slots__ = ("destination_port", "destinations", "exact_names", "wildcards",
                 "transport", "protocols", "direct_sources", "source_type", "sources",
                 "source_ports")

    def __init__(self, config: FilterChainMatch) -> None:
        self.destination_port = config.destination_port
        self.destinations = [r.network() for r in config.prefix_ranges]
        names = [n.lower() for n in config.server_names]
        self.exact_names = frozenset(n for n in names if not n.startswith("*."))
        self.wildcards = tuple(n[1:] for n in names if n.startswith("*."))  # ".example.com"
        self.transport = config.transport_protocol
        self.protocols = frozenset(config.application_protocols)
        self.direct_sources = [r.network() for r in config.direct_source_prefix_ranges]
        self.source_type = config.source_type
        self.sources = [r.network() for r in config.source_prefix_ranges]
        self.source_ports = frozenset(config.source_ports)


_ANY = ChainMatch(FilterChainMatch())


@dataclass(eq=False, slots=True)
class FilterChain:
    """One of a listener's filter chains, as it runs."""

    name: str
    install: Callable[[Any], None]
    """Adds the chain's filters to a connection."""
    match: ChainMatch | None = None
    tls: Any = None
    """The chain's ``mosn.tls.ServerTls`` (None: plaintext)."""
    tls_stats: Any = None


class _Facts:
    """What the steps look at, read once from the connection."""

    __slots__ = ("destination", "destination_port", "server_name", "transport", "alpn",
                 "direct_source", "source", "source_port")

    def __init__(self, conn: Any) -> None:
        self.destination, self.destination_port = _ip_port(conn.destination_address)
        self.source, self.source_port = _ip_port(conn.remote_address)
        self.direct_source, _ = _ip_port(conn.direct_remote_address)
        self.server_name = (conn.requested_server_name or "").lower()
        self.transport = conn.detected_transport or RAW_BUFFER
        self.alpn = conn.requested_alpn


def _ip_port(sockaddr: Any) -> tuple[IP | None, int | None]:
    if not isinstance(sockaddr, tuple):  # a Unix socket has neither
        return None, None
    try:
        ip = ipaddress.ip_address(sockaddr[0].split("%", 1)[0])
    except ValueError:
        return None, sockaddr[1]
    mapped = getattr(ip, "ipv4_mapped", None)  # an IPv4 peer of a dual-stack socket
    return mapped or ip, sockaddr[1]


def _prefix(networks: list[Network], ip: IP | None) -> int | None:
    if not networks:
        return 0
    if ip is None:
        return None
    best = max((n.prefixlen for n in networks if ip in n), default=-1)
    return best + 1 if best >= 0 else None


def _destination_port(m: ChainMatch, f: _Facts) -> int | None:
    if m.destination_port is None:
        return 0
    return 1 if m.destination_port == f.destination_port else None


def _destination_ip(m: ChainMatch, f: _Facts) -> int | None:
    return _prefix(m.destinations, f.destination)


def _server_name(m: ChainMatch, f: _Facts) -> int | None:
    if not m.exact_names and not m.wildcards:
        return 0
    name = f.server_name
    if not name:
        return None
    if name in m.exact_names:
        return _EXACT_NAME
    best = max((len(w) for w in m.wildcards if name.endswith(w)), default=0)
    return best or None


def _transport(m: ChainMatch, f: _Facts) -> int | None:
    if not m.transport:
        return 0
    return 1 if m.transport == f.transport else None


def _application_protocols(m: ChainMatch, f: _Facts) -> int | None:
    if not m.protocols:
        return 0
    return 1 if any(p in m.protocols for p in f.alpn) else None


def _direct_source_ip(m: ChainMatch, f: _Facts) -> int | None:
    return _prefix(m.direct_sources, f.direct_source)


def _source_type(m: ChainMatch, f: _Facts) -> int | None:
    if m.source_type == "ANY":
        return 0
    local = f.source is not None and (f.source.is_loopback or f.source == f.destination)
    return 1 if local == (m.source_type == "SAME_IP_OR_LOOPBACK") else None


def _source_ip(m: ChainMatch, f: _Facts) -> int | None:
    return _prefix(m.sources, f.source)


def _source_port(m: ChainMatch, f: _Facts) -> int | None:
    if not m.source_ports:
        return 0
    return 1 if f.source_port in m.source_ports else None


STEPS = (_destination_port, _destination_ip, _server_name, _transport,
         _application_protocols, _direct_source_ip, _source_type, _source_ip, _source_port)
"""Envoy's order of the matching steps."""


class FilterChainSelector:
    """Picks the filter chain of a connection among a listener's ``chains``."""

    __slots__ = ("chains", "_only")

    def __init__(self, chains: list[FilterChain]) -> None:
        self.chains = chains
        self._only = chains[0] if len(chains) == 1 and chains[0].match is None else None
        """MOSN's one chain without a match takes every connection: no steps to run."""

    def select(self, conn: Any) -> FilterChain | None:
        if self._only is not None:
            return self._only
        facts = _Facts(conn)
        candidates = self.chains
        for step in STEPS:
            best, kept = -1, []
            for chain in candidates:
                score = step(chain.match or _ANY, facts)
                if score is None:
                    continue
                if score > best:
                    best, kept = score, [chain]
                elif score == best:
                    kept.append(chain)
            if not kept:
                return None
            candidates = kept
        return candidates[0]
