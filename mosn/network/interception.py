"""The socket options of a transparent sidecar (Linux): where a REDIRECTed connection
was going (``SO_ORIGINAL_DST``), a listening socket that takes TPROXYed connections
for any address (``IP_TRANSPARENT``), and the mark that keeps mosn's own connections
out of the interception rules (``SO_MARK``).

The numbers are the kernel's (``linux/netfilter_ipv4.h``, ``linux/in.h``,
``linux/in6.h``, ``asm-generic/socket.h``); Python does not name them all.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
from typing import Any

SOL_IP = 0
SOL_IPV6 = 41
SO_ORIGINAL_DST = 80
"""``getsockopt(SOL_IP, SO_ORIGINAL_DST)``: the destination before the nat table's
REDIRECT or DNAT, as a ``sockaddr_in``."""
IP6T_SO_ORIGINAL_DST = 80
"""The same for IPv6 (``SOL_IPV6``), as a ``sockaddr_in6``."""
IP_TRANSPARENT = 19
IPV6_TRANSPARENT = 75
SO_MARK = 36
_SOCKADDR_IN = struct.Struct("!2xH4s8x")
_SOCKADDR_IN6 = struct.Struct("!2xH4x16s4x")

Address = tuple[str, int]


def plain_ip(host: str) -> str:
    """``host`` without the IPv4-mapped IPv6 form (``::ffff:10.0.0.1`` is ``10.0.0.1``),
    as a dual-stack socket reports IPv4 peers."""
    if host.startswith("::ffff:") and "." in host:
        return host[len("::ffff:"):]
    return host


def redirected_destination(sock: Any) -> Address | None:
    """Where the connection on ``sock`` was going before an iptables REDIRECT (or
    DNAT) sent it here; None when it was not redirected (or conntrack has no entry)."""
    try:
        peer = sock.getpeername()
        if sock.family == socket.AF_INET6 and plain_ip(peer[0]) != peer[0]:
            raw = sock.getsockopt(SOL_IP, SO_ORIGINAL_DST, _SOCKADDR_IN.size)
            port, packed = _SOCKADDR_IN.unpack(raw)
        elif sock.family == socket.AF_INET6:
            raw = sock.getsockopt(SOL_IPV6, IP6T_SO_ORIGINAL_DST, _SOCKADDR_IN6.size)
            port, packed = _SOCKADDR_IN6.unpack(raw)
        elif sock.family == socket.AF_INET:
            raw = sock.getsockopt(SOL_IP, SO_ORIGINAL_DST, _SOCKADDR_IN.size)
            port, packed = _SOCKADDR_IN.unpack(raw)
        else:
            return None
    except (OSError, struct.error):
        return None
    return str(ipaddress.ip_address(packed)), port


def set_transparent(sock: socket.socket) -> None:
    """Let ``sock`` accept connections (TPROXY) or bind to addresses that are not
    this host's; needs CAP_NET_ADMIN. Raises OSError."""
    if sock.family == socket.AF_INET6:
        sock.setsockopt(SOL_IPV6, IPV6_TRANSPARENT, 1)
        sock.setsockopt(SOL_IP, IP_TRANSPARENT, 1)  # IPv4 peers of a dual-stack socket
    else:
        sock.setsockopt(SOL_IP, IP_TRANSPARENT, 1)


def set_mark(sock: socket.socket, mark: int) -> None:
    """Mark the packets of ``sock`` (iptables ``-m mark --mark``); needs CAP_NET_ADMIN.
    Raises OSError."""
    sock.setsockopt(socket.SOL_SOCKET, SO_MARK, mark)
