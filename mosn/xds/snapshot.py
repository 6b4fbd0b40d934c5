"""The accepted xDS resources, and the MOSN config they make with the static one.

A :class:`Snapshot` holds each accepted resource translated (and its message, for
``/config_dump``). :meth:`Snapshot.compose` writes the whole config mosn is to serve:
the file's static sections plus every resource that is warm. A cluster warms until
its load assignment (EDS) and secrets (SDS) have arrived; a listener until its route
configurations (RDS) and secrets have. A route may name a cluster not yet known:
mosn answers it 503 until the cluster arrives, as Envoy does.
"""

from __future__ import annotations

import copy
import re
import time
from dataclasses import dataclass, field
from typing import Any

from google.protobuf.message import Message

from mosn.config.models import MAX_HOSTS_LIMIT
from mosn.xds.cluster import HTTP2, TranslatedCluster
from mosn.xds.listener import TranslatedListener
from mosn.xds.route import VALIDATE_CLUSTERS, cluster_names
from mosn.xds.fields import Refused
from mosn.xds.resources import BY_URL, CLUSTERS, ENDPOINTS, LISTENERS, ROUTES, SECRETS, ResourceType
from mosn.xds.tls import SDS_KEY, fill_secrets


@dataclass
class Accepted:
    """One accepted resource."""

    value: Any
    """Translated: TranslatedListener, TranslatedCluster, a router or hosts or secret dict."""
    message: Message
    version: str
    last_updated: float = field(default_factory=time.time)


@dataclass
class Composed:
    raw: dict[str, Any]
    """The config to validate: the static one with every warm resource."""
    origins: dict[str, str]
    """Config path (``cluster_manager.clusters[3]``) -> the resource it came from."""
    warming: list[str]
    """What waits, and for what."""
    errors: list[str]
    """Route configurations that must name known clusters and do not."""
    sources: dict[str, tuple[Any, ...]]
    """Config path -> what its entry was made from (accepted resources, by identity):
    an entry made from the same ones is the same config."""


@dataclass
class Snapshot:
    resources: dict[str, dict[str, Accepted]] = field(
        default_factory=lambda: {t.url: {} for t in (CLUSTERS, ENDPOINTS, LISTENERS,
                                                       ROUTES, SECRETS)})
    versions: dict[str, str] = field(default_factory=dict)
    """Type URL -> the version last accepted."""

    def copy(self) -> "Snapshot":
        return Snapshot({url: dict(items) for url, items in self.resources.items()},
                        dict(self.versions))

    def of(self, kind: ResourceType) -> dict[str, Accepted]:
        return self.resources[kind.url]

    # -- what to subscribe to ------------------------------------------------------------

    def wanted(self, kind: ResourceType) -> list[str]:
        """The names of a by-name type that the accepted resources refer to."""
        if kind is ENDPOINTS:
            names = {a.value.eds_name for a in self.of(CLUSTERS).values() if a.value.eds_name}
        elif kind is ROUTES:
            names = {n for a in self.of(LISTENERS).values() for n in a.value.route_names}
        elif kind is SECRETS:
            names = set()
            for a in self.of(CLUSTERS).values():
                names.update(_secret_names(a.value.cluster))
            for a in self.of(LISTENERS).values():
                names.update(_secret_names(a.value.listener))
        else:
            return []
        return sorted(names)

    # -- the config to serve -------------------------------------------------------------

    def compose(self, static: dict[str, Any]) -> Composed:
        """The static config with every warm resource added."""
        raw = copy.deepcopy(static)
        sources: dict[str, tuple[Any, ...]] = {}
        secrets = {name: a.value for name, a in self.of(SECRETS).items()}
        endpoints = self.of(ENDPOINTS)
        origins: dict[str, str] = {}
        warming: list[str] = []
        errors: list[str] = []
        clusters = raw.setdefault("cluster_manager", {}).setdefault("clusters", [])
        protocols: dict[str, str] = {}
        for name, accepted in sorted(self.of(CLUSTERS).items()):
            tc: TranslatedCluster = accepted.value
            cluster = dict(tc.cluster)  # the loader copies what it reads; only TLS is filled in
            waits = []
            if tc.eds_name:
                assignment = endpoints.get(tc.eds_name)
                if assignment is None:
                    waits.append(f"endpoints {tc.eds_name!r}")
                else:
                    cluster["hosts"] = assignment.value
                    cluster["max_hosts"] = host_slots(len(assignment.value))
            if "tls_context" in cluster:
                cluster["tls_context"] = copy.deepcopy(cluster["tls_context"])
                waits += [f"secret {s!r}" for s in fill_secrets(cluster["tls_context"], secrets)]
            if waits:
                warming.append(f"Cluster {name!r} waits for {', '.join(waits)}")
                continue
            path = f"cluster_manager.clusters[{len(clusters)}]"
            origins[path] = f"Cluster {name!r}"
            sources[path] = (accepted, endpoints.get(tc.eds_name), *self._secrets_of(tc.cluster))
            clusters.append(cluster)
            protocols[name] = tc.protocol
        routes = self.of(ROUTES)
        servers = raw.setdefault("servers", [])
        if not servers:
            servers.append({})
        server = servers[0]
        listeners = server.setdefault("listeners", [])
        routers = server.setdefault("routers", [])
        added_routers: set[str] = set()
        for name, accepted in sorted(self.of(LISTENERS).items()):
            tl: TranslatedListener = accepted.value
            listener = copy.deepcopy(tl.listener)
            waits = [f"routes {r!r}" for r in tl.route_names if r not in routes]
            for chain in listener.get("filter_chains", []):
                if "tls_context" in chain:
                    waits += [f"secret {s!r}" for s in fill_secrets(chain["tls_context"], secrets)]
            if waits:
                warming.append(f"Listener {name!r} waits for {', '.join(waits)}")
                continue
            wanted = [(r["router_config_name"], r, f"Listener {name!r}") for r in tl.routers]
            wanted += [(r, routes[r].value, f"RouteConfiguration {r!r}") for r in tl.route_names]
            for router_name, router, origin in wanted:
                if router_name in added_routers:
                    continue
                added_routers.add(router_name)
                if router.get(VALIDATE_CLUSTERS):
                    router = {k: v for k, v in router.items() if k != VALIDATE_CLUSTERS}
                    known = {c["name"] for c in clusters}
                    errors += [f"{origin}: route to unknown cluster {c!r} (validate_clusters)"
                               for c in dict.fromkeys(cluster_names(router)) if c not in known]
                path = f"servers[0].routers[{len(routers)}]"
                origins[path] = origin
                source = accepted if router_name in {r["router_config_name"]
                                                     for r in tl.routers} else routes[router_name]
                sources[path] = (source, router_name, frozenset(
                    n for n, p in protocols.items() if p == HTTP2))
                routers.append(_with_protocols(router, protocols))
            path = f"servers[0].listeners[{len(listeners)}]"
            origins[path] = f"Listener {name!r}"
            sources[path] = (accepted, *self._secrets_of(tl.listener))
            listeners.append(listener)
        return Composed(raw, origins, warming, errors, sources)

    def _secrets_of(self, config: dict[str, Any]) -> list[Accepted]:
        secrets = self.of(SECRETS)
        return [secrets[n] for n in sorted(_secret_names(config)) if n in secrets]


# -- an upgrade hands the accepted resources to the new process ------------------------

def pack(snapshot: Snapshot) -> tuple[dict[str, Any], bytes]:
    """The accepted resources as a JSON-able header (type, name, version and length of
    each) and their messages' bytes one after another."""
    entries, blobs = [], []
    for url, items in snapshot.resources.items():
        for name, accepted in items.items():
            data = accepted.message.SerializeToString()
            entries.append([url, name, accepted.version, len(data)])
            blobs.append(data)
    return {"resources": entries, "versions": snapshot.versions}, b"".join(blobs)


def restore(header: dict[str, Any], blob: bytes) -> Snapshot:
    """What :func:`pack` made, each resource translated again; :class:`Refused` with
    every error when one does not translate here (then nothing is taken)."""
    snapshot = Snapshot()
    errors: list[str] = []
    offset = 0
    for url, name, version, length in header["resources"]:
        kind = BY_URL[url]
        message = kind.message.FromString(blob[offset:offset + length])
        offset += length
        try:
            snapshot.of(kind)[name] = Accepted(kind.translate(message), message, version)
        except Refused as exc:
            errors += exc.errors
    if errors:
        raise Refused(errors)
    snapshot.versions = dict(header["versions"])
    return snapshot


def host_slots(endpoints: int) -> int:
    """Host slots for an EDS cluster: room to grow by half before the cluster must be
    built again (a change of ``max_hosts`` replaces the cluster; a change of endpoints
    within it keeps every remaining host's connections). Each slot's stats are
    registered whether used or not, so the room is kept small."""
    slots = MIN_EDS_HOST_SLOTS
    while slots < endpoints + endpoints // 2 and slots < MAX_HOSTS_LIMIT:
        slots *= 2
    return slots


MIN_EDS_HOST_SLOTS = 8  # a power of two: an EDS cluster of one endpoint has room for 8


def _with_protocols(router: dict[str, Any], protocols: dict[str, str]) -> dict[str, Any]:
    """A route to an HTTP/2 cluster speaks HTTP/2 upstream (Envoy's choice is the
    cluster's; mosn's is the route's or the proxy's)."""
    if HTTP2 not in protocols.values():
        return router
    router = copy.deepcopy(router)
    for host in router.get("virtual_hosts", []):
        for route in host.get("routers", []):
            action = route.get("route")
            if not action:
                continue
            names = [action["cluster_name"]] if action.get("cluster_name") else [
                w["cluster"]["name"] for w in action.get("weighted_clusters", [])]
            if names and all(protocols.get(n) == HTTP2 for n in names):
                action["upstream_protocol"] = HTTP2
    return router


def _secret_names(config: dict[str, Any]) -> set[str]:
    """The SDS names a translated cluster or listener refers to."""
    names: set[str] = set()
    contexts = [config.get("tls_context")] + [c.get("tls_context")
                                              for c in config.get("filter_chains", [])]
    for tls in contexts:
        if tls and SDS_KEY in tls:
            names.update(tls[SDS_KEY].values())
    return names


_PATH = re.compile(r"^((?:servers\[0\]\.(?:listeners|routers)|cluster_manager\.clusters)\[\d+\])(.*)$")


def name_errors(errors: list[str], origins: dict[str, str]) -> list[str]:
    """Loader errors with the resource each came from in place of its config path."""
    out = []
    for line in errors:
        match = _PATH.match(line)
        if match and match.group(1) in origins:
            rest = match.group(2).lstrip(".")
            out.append(f"{origins[match.group(1)]}: {rest}")
        else:
            out.append(line)
    return out
