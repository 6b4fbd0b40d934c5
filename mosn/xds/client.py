"""The ADS client: one gRPC stream to the control plane, state of the world or delta.

Each response is translated in full and offered, as a candidate :class:`Snapshot`, to
the function that serves it (compose, validate, apply through the managers). If any
resource is refused, or the config it makes is, the response is NACKed with every
reason in ``error_detail`` and the last accepted config keeps serving; else it is
ACKed. A broken stream is retried with jittered exponential backoff, and mosn serves
what it last accepted all the while.
"""

from __future__ import annotations

import asyncio
import logging
import random
from typing import Any, AsyncIterator, Callable, Iterable

import grpc
from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2
from google.rpc import status_pb2

from mosn import __version__
from mosn.config.bootstrap import NodeConfig
from mosn.xds.fields import Refused
from mosn.xds.resources import BY_URL, TYPES, ResourceType, resource_name, unpack
from mosn.xds.snapshot import Accepted, Snapshot
from mosn.xds.stats import XdsStats

log = logging.getLogger("mosn.xds")

INITIAL_BACKOFF = 0.5  # seconds before the first reconnect (Envoy's base interval)
MAX_BACKOFF = 30.0  # seconds between reconnects at most (Envoy's max interval)
INVALID_ARGUMENT = 3  # google.rpc.Code of a NACK's error_detail (Envoy's choice)
MAX_ERROR_DETAIL = 4096
"""Characters of reasons sent in one NACK: enough to name dozens of fields; a push of
thousands of bad resources is not echoed back whole."""
MAX_MESSAGE_BYTES = 64 * 1024 * 1024
"""Bytes of one xDS response mosn takes: a full push of thousands of clusters and
endpoints runs to tens of MiB (gRPC's default, 4 MiB, is too small)."""

Offer = Callable[[Snapshot], list[str]]
"""Serve a candidate snapshot: the reasons it is refused, or [] once it serves."""


def node_message(node: NodeConfig | None) -> base_pb2.Node:
    message = base_pb2.Node(user_agent_name="mosn", user_agent_version=__version__)
    if node is None:
        return message
    message.id, message.cluster = node.id, node.cluster
    if node.user_agent_name:
        message.user_agent_name = node.user_agent_name
    if node.user_agent_version:
        message.user_agent_version = node.user_agent_version
    if node.metadata:
        message.metadata.update(node.metadata)
    if node.locality is not None:
        message.locality.region = node.locality.region
        message.locality.zone = node.locality.zone
        message.locality.sub_zone = node.locality.sub_zone
    return message


def error_detail(errors: list[str]) -> status_pb2.Status:
    text = "\n".join(errors)
    if len(text) > MAX_ERROR_DETAIL:
        text = text[:MAX_ERROR_DETAIL] + f"\n... ({len(errors)} errors in all)"
    return status_pb2.Status(code=INVALID_ARGUMENT, message=text)


def backoff_delay(attempt: int, draw: Callable[[], float] = random.random) -> float:
    """Seconds before reconnect ``attempt`` (0 first): exponential, jittered so a
    fleet of proxies does not come back at once."""
    ceiling = min(MAX_BACKOFF, INITIAL_BACKOFF * (2 ** min(attempt, 16)))
    return ceiling * (0.5 + draw() / 2)


class Subscriber:
    """What the transports share: the last accepted snapshot, and taking a response."""

    def __init__(self, offer: Offer, *, node: NodeConfig | None = None,
                 types: Iterable[ResourceType] = TYPES, stats: XdsStats | None = None,
                 snapshot: Snapshot | None = None) -> None:
        self.offer = offer
        self.node = node_message(node)
        self.types = [t for t in TYPES if t in set(types)]
        self.stats = stats
        self.snapshot = snapshot or Snapshot()
        self.connected = asyncio.Event()
        self._served: dict[str, list[tuple[str, bytes]]] = {}
        """Type URL -> the resources (type and bytes) of the state-of-the-world
        response serving now: the same bytes again are the same resources."""

    def _set_connected(self, up: bool) -> None:
        if up == self.connected.is_set():
            return
        if up:
            self.connected.set()
        else:
            self.connected.clear()
        if self.stats is not None:
            self.stats.connected(up)

    def take_sotw(self, response: discovery_pb2.DiscoveryResponse) -> list[str]:
        """Take a state-of-the-world response; the reasons to NACK it, or []."""
        kind = BY_URL.get(response.type_url)
        updates: dict[str, Any] = {}
        errors: list[str] = []
        if kind is None or kind not in self.types:
            return [f"mosn did not subscribe to {response.type_url!r}"]
        served = [(packed.type_url, packed.value) for packed in response.resources]
        if served == self._served.get(kind.url):
            # A state-of-the-world push repeats every type: the resources serving,
            # byte for byte, are not decoded again (a route table of thousands of
            # routes is some 0.5 ms to decode and compare).
            self._same_again(kind, response.version_info)
            return []
        for packed in response.resources:
            try:
                message = unpack(kind, packed)
            except Refused as exc:
                errors += exc.errors
                continue
            name = resource_name(message)
            if name in updates:
                errors.append(f"{message.DESCRIPTOR.name} {name!r} is in the response twice")
            updates[name] = message
        if errors:
            self._refused(kind, response.version_info, errors)
            return errors
        errors = self._take(kind, updates, set(), kind.wildcard, response.version_info,
                            {name: response.version_info for name in updates})
        if not errors:
            self._served[kind.url] = served
        return errors

    def _refused(self, kind: ResourceType, version: str, errors: list[str]) -> None:
        if self.stats is not None:
            self.stats.attempt(kind.short)
            self.stats.rejected(kind.short)
        log.warning("xDS: %s version %s refused: %s", kind.short.upper(), version,
                    "; ".join(errors))

    def _same_again(self, kind: ResourceType, version: str) -> None:
        """The resources serving came again as ``version``: it is the version now."""
        self.snapshot = self.snapshot.copy()
        self.snapshot.versions[kind.url] = version
        if self.stats is not None:
            self.stats.attempt(kind.short)
            self.stats.success(kind.short, version)

    def _take(self, kind: ResourceType, updates: dict[str, Any], removed: set[str],
              replace: bool, version: str, versions: dict[str, str]) -> list[str]:
        """Translate ``updates``, offer the snapshot they make; the reasons it was
        refused, or [] when it serves (and is now the last accepted)."""
        errors: list[str] = []
        translated = {}
        current = self.snapshot.of(kind)
        if (not removed and all(name in current and current[name].message == message
                                for name, message in updates.items())
                and (not replace or set(updates) == set(current))):
            # The same resources again (a state-of-the-world push repeats every
            # type): nothing to translate or apply; the version moves on.
            self._same_again(kind, version)
            return []
        for name, message in updates.items():
            try:
                translated[name] = Accepted(kind.translate(message), message, versions[name])
            except Refused as exc:
                errors += exc.errors
        if not errors:
            candidate = self.snapshot.copy()
            table = candidate.of(kind)
            if replace:
                table.clear()
            for name in removed:
                table.pop(name, None)
            table.update(translated)
            candidate.versions[kind.url] = version
            errors = self.offer(candidate)
            if not errors:
                self.snapshot = candidate
                if self.stats is not None:
                    self.stats.attempt(kind.short)
                    self.stats.success(kind.short, version)
                log.info("xDS: %s version %s accepted (%d resources)", kind.short.upper(),
                         version, len(table))
                return []
        self._refused(kind, version, errors)
        return errors


class AdsClient(Subscriber):
    """Subscribes to ``types`` over one ADS stream to ``target`` (``host:port``)."""

    def __init__(self, target: str, offer: Offer, *, delta: bool = False,
                 metadata: Iterable[tuple[str, str]] = (), **kwargs: Any) -> None:
        super().__init__(offer, **kwargs)
        self.target = target
        self.delta = delta
        self.metadata = tuple(metadata)
        self._nonces: dict[str, str] = {}
        self._sent: dict[str, list[str]] = {}
        self._outbox: asyncio.Queue[Any] = asyncio.Queue()

    # -- the connection ------------------------------------------------------------------

    async def run(self) -> None:
        """Keep a stream to the control plane until cancelled."""
        attempt = 0
        options = [("grpc.max_receive_message_length", MAX_MESSAGE_BYTES)]
        while True:
            received = False
            try:
                async with grpc.aio.insecure_channel(self.target, options=options) as channel:
                    stub = ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel)
                    async for _ in self._stream(stub):
                        received = True
                log.warning("xDS: the control plane at %s ended the stream", self.target)
            except grpc.aio.AioRpcError as exc:
                log.warning("xDS: the stream to %s failed: %s %s", self.target,
                            exc.code().name, exc.details())
            self._lost()
            attempt = 0 if received else attempt + 1
            await asyncio.sleep(backoff_delay(attempt))

    def _lost(self) -> None:
        self._set_connected(False)
        if self.stats is not None:
            for kind in self.types:
                if self._sent.get(kind.url) is not None:
                    self.stats.failure(kind.short)

    async def _stream(self, stub: Any) -> AsyncIterator[None]:
        self._outbox = asyncio.Queue()
        self._sent = {}
        self._nonces = {}
        if self.delta:
            call = stub.DeltaAggregatedResources(self._requests(), metadata=self.metadata)
        else:
            call = stub.StreamAggregatedResources(self._requests(), metadata=self.metadata)
        for kind in self.types:
            self._subscribe(kind, first=True)
        async for response in call:
            if not self.connected.is_set():
                self._set_connected(True)
                log.info("xDS: connected to %s", self.target)
            if self.delta:
                self._delta_response(response)
            else:
                self._sotw_response(response)
            for kind in self.types:
                if not kind.wildcard:
                    self._subscribe(kind)
            yield None

    async def _requests(self) -> AsyncIterator[Any]:
        outbox = self._outbox
        first = True
        while True:
            request = await outbox.get()
            if first:
                request.node.CopyFrom(self.node)
                first = False
            yield request

    # -- subscriptions ----------------------------------------------------------------

    def _subscribe(self, kind: ResourceType, first: bool = False) -> None:
        """Ask for ``kind``: all of it (LDS, CDS), or the names the accepted resources
        refer to, when those changed (by-name types are asked for once named)."""
        names = [] if kind.wildcard else self.snapshot.wanted(kind)
        before = self._sent.get(kind.url)
        if not kind.wildcard and (names == (before or [])):
            return
        if kind.wildcard and not first:
            return
        self._sent[kind.url] = names
        if self.delta:
            request = discovery_pb2.DeltaDiscoveryRequest(type_url=kind.url)
            if first:
                known = self.snapshot.of(kind)
                request.initial_resource_versions.update(
                    {name: a.version for name, a in known.items()})
                request.resource_names_subscribe.extend(names)
            else:
                request.resource_names_subscribe.extend(sorted(set(names) - set(before or [])))
                request.resource_names_unsubscribe.extend(sorted(set(before or []) - set(names)))
        else:
            request = discovery_pb2.DiscoveryRequest(
                type_url=kind.url, resource_names=names,
                version_info=self.snapshot.versions.get(kind.url, ""),
                response_nonce=self._nonces.get(kind.url, ""))
        self._outbox.put_nowait(request)

    # -- responses ------------------------------------------------------------------------

    def _sotw_response(self, response: discovery_pb2.DiscoveryResponse) -> None:
        url = response.type_url
        self._nonces[url] = response.nonce
        errors = self.take_sotw(response)
        request = discovery_pb2.DiscoveryRequest(
            type_url=url, response_nonce=response.nonce,
            resource_names=self._sent.get(url, []),
            version_info=self.snapshot.versions.get(url, ""))
        if errors:
            request.error_detail.CopyFrom(error_detail(errors))
        self._outbox.put_nowait(request)

    def _delta_response(self, response: discovery_pb2.DeltaDiscoveryResponse) -> None:
        url = response.type_url
        kind = BY_URL.get(url)
        updates: dict[str, Any] = {}
        versions: dict[str, str] = {}
        errors: list[str] = []
        if kind is None or kind not in self.types:
            errors.append(f"mosn did not subscribe to {url!r}")
        else:
            for resource in response.resources:
                try:
                    message = unpack(kind, resource.resource)
                except Refused as exc:
                    errors += exc.errors
                    continue
                name = resource.name or resource_name(message)
                updates[name] = message
                versions[name] = resource.version
        if kind is not None and not errors:
            version = response.system_version_info or response.nonce
            errors = self._take(kind, updates, set(response.removed_resources), False,
                                version, versions)
        elif kind is not None:
            self._refused(kind, response.system_version_info, errors)
        request = discovery_pb2.DeltaDiscoveryRequest(type_url=url, response_nonce=response.nonce)
        if errors:
            request.error_detail.CopyFrom(error_detail(errors))
        self._outbox.put_nowait(request)
