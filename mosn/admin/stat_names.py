"""Stat names split into their scope and labels, for the admin API's other views
(Prometheus, MOSN's ``/api/v1/stats``, the dashboard).

A stat name is ``<scope prefix>.<stat>``: ``listener.<name>.``, ``protocol.<name>.``,
``cluster.<name>.`` or ``cluster.<name>.host.<address>.``. Listener and cluster names
and host addresses may hold dots, so the split goes by the names the config declares
(longest first), not by counting dots.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

LISTENER, PROTOCOL, CLUSTER, HOST, OTHER = "listener", "protocol", "cluster", "host", ""


@dataclass(frozen=True, slots=True)
class StatName:
    kind: str
    """``listener``, ``protocol``, ``cluster``, ``host``, or empty for any other."""
    labels: tuple[tuple[str, str], ...]
    """``(("cluster", "backend"), ("host", "127.0.0.1:8080"))`` ..."""
    stat: str
    """The name within the scope: ``upstream_rq_total``, ``health_check.attempt`` ..."""

    @property
    def namespace(self) -> str:
        """MOSN's namespace of the scope: its labels joined, ``cluster.backend.host.ADDR``."""
        return ".".join(f"{k}.{v}" for k, v in self.labels)


class StatNames:
    def __init__(self, listeners: Iterable[str], protocols: Iterable[str],
                 clusters: Iterable[str]) -> None:
        by_length = lambda names: sorted(set(names), key=len, reverse=True)  # noqa: E731
        self.prefixes = [(f"listener.{n}.", LISTENER, n) for n in by_length(listeners)]
        self.prefixes += [(f"protocol.{n}.", PROTOCOL, n) for n in by_length(protocols)]
        self.prefixes += [(f"cluster.{n}.", CLUSTER, n) for n in by_length(clusters)]

    def split(self, name: str) -> StatName:
        for prefix, kind, owner in self.prefixes:
            if not name.startswith(prefix):
                continue
            rest = name[len(prefix):]
            if kind == CLUSTER and rest.startswith("host."):
                # host stat names hold no dot; the address before the last one may
                address, _, stat = rest[len("host."):].rpartition(".")
                return StatName(HOST, (("cluster", owner), ("host", address)), stat)
            return StatName(kind, ((kind, owner),), rest)
        return StatName(OTHER, (), name)
