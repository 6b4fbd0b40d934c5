"""The ``STRICT_DNS`` cluster type: hosts are the addresses the configured names
resolve to, resolved again every ``dns_refresh_rate``.

Each configured host ``name:port`` becomes one host per address the name resolves to
(its weight and metadata copied). The whole set is updated in place through
:meth:`mosn.upstream.cluster.Cluster.set_hosts`, so requests in flight to an address
that went away finish on their connections. A name that fails to resolve keeps its
last addresses (``dns_resolution_failure`` is counted).

Names are resolved by the system resolver (``getaddrinfo``), or, with MOSN's
``dns_resolvers: {servers, port, timeout, attempts}`` or ``dns_resolver_file`` (a
resolv.conf), by asking those DNS servers directly over UDP. Resolution runs once per
process tree (in the parent when there are workers, which get the host sets from it).
The first resolution happens while the config is loaded, before anything serves.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import logging
import random
import socket
import struct
from typing import Any, Awaitable, Callable

from mosn.config.models import ClusterConfig
from mosn.config.types import Address
from mosn.plugins import BuildContext, Extension, hookimpl
from mosn.upstream.cluster import Host

log = logging.getLogger("mosn.upstream.dns")

DNS_PORT = 53
MAX_DNS_MESSAGE = 4096
"""Bytes of a DNS answer over UDP that are read (EDNS0's usual size; more is truncated)."""
TYPE_A, TYPE_AAAA, TYPE_CNAME = 1, 28, 5
CLASS_IN = 1
TTL_MARGIN = 1.0
"""Seconds added to the smallest TTL when ``respect_dns_ttl`` sets the refresh (MOSN's)."""


class DnsError(Exception):
    pass


# -- sans-IO codec ----------------------------------------------------------------------


def encode_query(name: str, qtype: int, query_id: int) -> bytes:
    """A recursive query for one name (RFC 1035 section 4.1)."""
    header = struct.pack("!HHHHHH", query_id, 0x0100, 1, 0, 0, 0)
    qname = b"".join(bytes([len(label)]) + label
                     for label in name.rstrip(".").encode("idna").split(b".") if label) + b"\0"
    return header + qname + struct.pack("!HH", qtype, CLASS_IN)


def _skip_name(data: bytes, pos: int) -> int:
    while True:
        if pos >= len(data):
            raise DnsError("truncated name")
        length = data[pos]
        if length & 0xC0 == 0xC0:  # a compression pointer ends the name
            return pos + 2
        if length == 0:
            return pos + 1
        pos += 1 + length


def decode_answer(data: bytes, query_id: int) -> tuple[list[str], int]:
    """The A and AAAA addresses of an answer, and its smallest TTL."""
    if len(data) < 12:
        raise DnsError("short answer")
    rid, flags, qd, an, _, _ = struct.unpack_from("!HHHHHH", data)
    if rid != query_id or not flags & 0x8000:
        raise DnsError("not the answer to our query")
    rcode = flags & 0xF
    if rcode == 3:
        return [], 0  # no such name
    if rcode:
        raise DnsError(f"server answered rcode {rcode}")
    pos = 12
    for _ in range(qd):
        pos = _skip_name(data, pos) + 4
    addresses, ttl = [], 0
    for _ in range(an):
        pos = _skip_name(data, pos)
        if pos + 10 > len(data):
            raise DnsError("truncated record")
        rtype, rclass, rttl, length = struct.unpack_from("!HHIH", data, pos)
        pos += 10
        rdata = data[pos:pos + length]
        pos += length
        if rclass != CLASS_IN:
            continue
        if rtype == TYPE_A and length == 4:
            addresses.append(socket.inet_ntop(socket.AF_INET, rdata))
        elif rtype == TYPE_AAAA and length == 16:
            addresses.append(socket.inet_ntop(socket.AF_INET6, rdata))
        else:
            continue
        ttl = rttl if not ttl else min(ttl, rttl)
    return addresses, ttl


# -- resolvers ------------------------------------------------------------------------------


class _Datagram(asyncio.DatagramProtocol):
    def __init__(self, query_id: int) -> None:
        self.query_id = query_id
        self.answer: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if not self.answer.done() and data[:2] == struct.pack("!H", self.query_id):
            self.answer.set_result(data[:MAX_DNS_MESSAGE])

    def error_received(self, exc: Exception) -> None:
        if not self.answer.done():
            self.answer.set_exception(exc)


class Resolver:
    """Names to addresses with their TTL (0 when unknown)."""

    def __init__(self, config: ClusterConfig) -> None:
        servers = list(config.dns_resolvers.servers)
        port = int(config.dns_resolver_port or config.dns_resolvers.port or DNS_PORT)
        if config.dns_resolver_file:
            servers += _nameservers(config.dns_resolver_file)
        self.servers = [(s, port) for s in servers]
        self.timeout = float(config.dns_resolvers.timeout or 5)
        self.attempts = max(1, config.dns_resolvers.attempts)
        family = config.dns_lookup_family or "V4_ONLY"
        self.qtypes = {"V4_ONLY": [TYPE_A], "V6_ONLY": [TYPE_AAAA]}.get(family, [TYPE_A, TYPE_AAAA])
        self.family = {"V4_ONLY": socket.AF_INET, "V6_ONLY": socket.AF_INET6}.get(
            family, socket.AF_UNSPEC)

    def _literal(self, name: str) -> list[str] | None:
        try:
            return [str(ipaddress.ip_address(name))]
        except ValueError:
            return None

    async def resolve(self, name: str) -> tuple[list[str], int]:
        literal = self._literal(name)
        if literal is not None:
            return literal, 0
        if not self.servers:
            return await self._system(name), 0
        addresses: list[str] = []
        ttls = []
        for qtype in self.qtypes:
            found, ttl = await self._ask(name, qtype)
            addresses += found
            if found:
                ttls.append(ttl)
        return addresses, min(ttls) if ttls else 0

    async def _system(self, name: str) -> list[str]:
        infos = await asyncio.get_running_loop().getaddrinfo(
            name, None, family=self.family, type=socket.SOCK_STREAM)
        return list(dict.fromkeys(info[4][0] for info in infos))

    async def _ask(self, name: str, qtype: int) -> tuple[list[str], int]:
        loop = asyncio.get_running_loop()
        last: Exception = DnsError("no DNS server")
        for _ in range(self.attempts):
            for server in self.servers:
                query_id = random.getrandbits(16)
                transport, protocol = await loop.create_datagram_endpoint(
                    functools.partial(_Datagram, query_id), remote_addr=server)
                try:
                    transport.sendto(encode_query(name, qtype, query_id))
                    data = await asyncio.wait_for(protocol.answer, self.timeout)
                    return decode_answer(data, query_id)
                except (OSError, TimeoutError, DnsError) as exc:
                    last = exc
                finally:
                    transport.close()
        raise last


def _nameservers(path: str) -> list[str]:
    servers = []
    try:
        with open(path) as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 2 and parts[0] == "nameserver":
                    servers.append(parts[1])
    except OSError as exc:
        log.error("dns_resolver_file %s: %s", path, exc)
    return servers


# -- the cluster type -------------------------------------------------------------------------


class StrictDns:
    """A ``STRICT_DNS`` cluster's host discovery (run where discovery runs)."""

    def __init__(self, config: ClusterConfig, resolver: Resolver | None = None) -> None:
        self.config = config
        self.resolver = resolver or Resolver(config)
        self.last: dict[int, list[str]] = {}
        """Config host index -> its addresses at the last good resolution."""
        self.hosts: list[Host] = self._initial()
        self.ttl = 0

    def _initial(self) -> list[Host]:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            try:
                asyncio.run(self.resolve_all())
            except Exception as exc:  # resolution retries later; the cluster starts empty
                log.warning("cluster %s: first DNS resolution failed: %s", self.config.name, exc)
        return self.build()

    def build(self) -> list[Host]:
        hosts = []
        for i, hc in enumerate(self.config.hosts):
            for ip in self.last.get(i, []):
                hosts.append(Host(Address(ip, hc.address.port), weight=hc.weight,
                                  hostname=hc.address.host, metadata=hc.lb_metadata,
                                  tls_disable=hc.tls_disable))
        return hosts

    async def resolve_all(self) -> int:
        """Resolve every name; returns how many failed."""
        failures = 0
        ttls = []
        for i, hc in enumerate(self.config.hosts):
            try:
                addresses, ttl = await self.resolver.resolve(hc.address.host)
            except (OSError, TimeoutError, DnsError) as exc:
                log.warning("cluster %s: resolving %s failed: %s", self.config.name,
                            hc.address.host, exc)
                failures += 1
                continue
            self.last[i] = sorted(set(addresses))
            if ttl:
                ttls.append(ttl)
        self.ttl = min(ttls) if ttls else 0
        return failures

    def next_refresh(self) -> float:
        if self.config.respect_dns_ttl and self.ttl:
            return self.ttl + TTL_MARGIN
        return self.config.dns_refresh_rate

    async def run(self, update: Callable[[list[Host]], Any], count_failure: Callable[[int], None],
                  sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep) -> None:
        """Resolve forever, calling ``update(hosts)`` when the addresses change."""
        before = {i: list(a) for i, a in self.last.items()}
        while True:
            await sleep(self.next_refresh())
            failures = await self.resolve_all()
            if failures:
                count_failure(failures)
            if self.last != before:
                before = {i: list(a) for i, a in self.last.items()}
                log.info("cluster %s: DNS now gives %s", self.config.name,
                         ", ".join(str(h.address) for h in self.build()) or "no address")
                update(self.build())


def strict_dns(config: ClusterConfig, context: BuildContext) -> StrictDns:
    return StrictDns(config)


@hookimpl
def mosn_cluster_types() -> list[Extension]:
    return [Extension("STRICT_DNS", strict_dns,
                      description="hosts resolved from DNS names, again every dns_refresh_rate")]
