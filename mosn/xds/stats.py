"""The control plane's stats, in Envoy's names where Envoy has them."""

from __future__ import annotations

import hashlib

from mosn.observability.stats import StatsStore

UPDATE_STATS = ("update_attempt", "update_success", "update_rejected", "update_failure",
                "version")
"""Per resource type: responses seen, accepted, refused (NACK), lost to a broken
stream; and a hash of the version last accepted (Envoy's ``version``)."""
PREFIXES = {"lds": "listener_manager.lds", "cds": "cluster_manager.cds", "rds": "xds.rds",
            "eds": "xds.eds", "sds": "xds.sds"}
"""Envoy counts LDS and CDS under these names; RDS, EDS and SDS per resource, which
mosn adds up per type."""
CONNECTED = "control_plane.connected_state"


def version_hash(version: str) -> int:
    """Envoy's ``version`` stat: a hash of ``version_info`` (63 bits: a signed stat)."""
    return int.from_bytes(hashlib.sha256(version.encode()).digest()[:8], "big") >> 1


class XdsStats:
    """Registered in ``store`` before it is allocated; written by the one process that
    talks to the control plane."""

    def __init__(self, store: StatsStore) -> None:
        self.store = store
        self.connected_index = store.register(CONNECTED)
        self.scopes = {short: store.scope(prefix, UPDATE_STATS)
                       for short, prefix in PREFIXES.items()}

    def _add(self, index: int, n: int) -> None:
        self.store.values[index] += n  # type: ignore[index]

    def connected(self, up: bool) -> None:
        self.store.values[self.connected_index] = int(up)  # type: ignore[index]

    def attempt(self, short: str) -> None:
        self._add(self.scopes[short].update_attempt, 1)

    def success(self, short: str, version: str) -> None:
        scope = self.scopes[short]
        self._add(scope.update_success, 1)
        self.store.values[scope.version] = version_hash(version)  # type: ignore[index]

    def rejected(self, short: str) -> None:
        self._add(self.scopes[short].update_rejected, 1)

    def failure(self, short: str) -> None:
        self._add(self.scopes[short].update_failure, 1)
