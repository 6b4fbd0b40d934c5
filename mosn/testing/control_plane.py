"""A control plane for tests and benchmarks: Envoy's ADS service (xds-protos + grpcio) serving
snapshots, state of the world and delta, to mosn and to Envoy alike.

``set(version, resources)`` replaces the snapshot and pushes it to every open
stream; every request a proxy sends (ACKs and NACKs with their ``error_detail``) is
kept in ``requests`` for the tests to read.
"""

from __future__ import annotations

import hashlib
import queue
import threading
import time
from concurrent import futures
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Iterator

import grpc
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2
from google.protobuf import json_format
from google.protobuf.any_pb2 import Any as AnyMessage
from google.protobuf.message import Message

from mosn.xds.resources import BY_URL, resource_name

WAIT = 10.0  # seconds a test waits for a proxy to ask, ACK or NACK
REST_PREFIX = "/v3/discovery:"


@dataclass
class Seen:
    """One request a proxy sent."""

    stream: int
    delta: bool
    type_url: str
    version_info: str
    nonce: str
    names: list[str]
    error: str
    node_id: str


@dataclass
class _Stream:
    id: int
    delta: bool
    out: "queue.Queue[Any]" = field(default_factory=queue.Queue)
    names: dict[str, list[str] | None] = field(default_factory=dict)
    """Type URL -> names subscribed (None: all)."""
    sent: dict[str, str] = field(default_factory=dict)
    """SotW: type URL -> version last sent."""
    sent_versions: dict[str, dict[str, str]] = field(default_factory=dict)
    """Delta: type URL -> resource name -> version last sent."""
    nonce: int = 0


class ControlPlane(ads_pb2_grpc.AggregatedDiscoveryServiceServicer):
    def __init__(self) -> None:
        self.version = ""
        self.resources: dict[str, dict[str, Message]] = {}
        self.requests: list[Seen] = []
        self.sent: dict[tuple[int, str], int] = {}
        """(stream, nonce) -> resources in the response sent with it."""
        self.lock = threading.Condition()
        self.streams: dict[int, _Stream] = {}
        self._next = 0
        self.server: grpc.Server | None = None
        self.rest: ThreadingHTTPServer | None = None
        self.port = 0

    # -- the snapshot ---------------------------------------------------------------

    def set(self, version: str, resources: list[Message]) -> None:
        """Serve ``resources`` (every type at once) as ``version``; push them."""
        by_type: dict[str, dict[str, Message]] = {url: {} for url in BY_URL}
        for message in resources:
            url = f"type.googleapis.com/{message.DESCRIPTOR.full_name}"
            by_type[url][resource_name(message)] = message
        with self.lock:
            self.version, self.resources = version, by_type
            for stream in self.streams.values():
                for url in list(stream.names):
                    self._respond(stream, url)

    # -- serving ------------------------------------------------------------------------

    def start(self, port: int = 0) -> int:
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
        ads_pb2_grpc.add_AggregatedDiscoveryServiceServicer_to_server(self, self.server)
        self.port = self.server.add_insecure_port(f"127.0.0.1:{port}")
        self.server.start()
        return self.port

    def start_rest(self, port: int = 0) -> int:
        """Serve the snapshot by REST-JSON as well (``POST /v3/discovery:<type>``)."""
        plane = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                status, data = plane._rest(self.path, body)
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.rest = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        threading.Thread(target=self.rest.serve_forever, daemon=True).start()
        return self.rest.server_address[1]

    def _rest(self, path: str, body: bytes) -> tuple[int, bytes]:
        request = json_format.Parse(body, discovery_pb2.DiscoveryRequest())
        with self.lock:
            self.requests.append(Seen(0, False, request.type_url, request.version_info,
                                      request.response_nonce, list(request.resource_names),
                                      request.error_detail.message, request.node.id))
            self.lock.notify_all()
            if not path.startswith(REST_PREFIX) or request.type_url not in BY_URL:
                return 404, b"{}"
            if request.version_info == self.version:
                return 304, b""
            names = set(request.resource_names)
            response = discovery_pb2.DiscoveryResponse(
                type_url=request.type_url, version_info=self.version, nonce=self.version)
            for name, message in sorted(self.resources.get(request.type_url, {}).items()):
                if not names or name in names:
                    response.resources.add().Pack(message)
        return 200, json_format.MessageToJson(response).encode()

    def stop(self) -> None:
        if self.rest is not None:
            self.rest.shutdown()
            self.rest.server_close()
            self.rest = None
        if self.server is not None:
            self.server.stop(grace=0).wait()
            self.server = None
        with self.lock:
            for stream in self.streams.values():
                stream.out.put(None)

    def StreamAggregatedResources(self, requests: Iterator[Any], context: Any) -> Iterator[Any]:
        return self._serve(requests, context, delta=False)

    def DeltaAggregatedResources(self, requests: Iterator[Any], context: Any) -> Iterator[Any]:
        return self._serve(requests, context, delta=True)

    def _serve(self, requests: Iterator[Any], context: Any, delta: bool) -> Iterator[Any]:
        with self.lock:
            self._next += 1
            stream = self.streams[self._next] = _Stream(self._next, delta)
        reader = threading.Thread(target=self._read, args=(stream, requests), daemon=True)
        reader.start()
        try:
            while context.is_active():
                try:
                    item = stream.out.get(timeout=0.5)
                except queue.Empty:
                    continue
                if item is None:
                    return
                yield item
        finally:
            with self.lock:
                self.streams.pop(stream.id, None)

    def _read(self, stream: _Stream, requests: Iterator[Any]) -> None:
        node = ""
        try:
            for request in requests:
                node = request.node.id or node
                with self.lock:
                    self._seen(stream, request, node)
                    self.lock.notify_all()
        except grpc.RpcError:
            pass
        finally:
            stream.out.put(None)

    def _seen(self, stream: _Stream, request: Any, node: str) -> None:
        url = request.type_url
        if stream.delta:
            names = stream.names.get(url, [])
            first = url not in stream.names
            subscribe = list(request.resource_names_subscribe)
            if first and (not subscribe or "*" in subscribe):
                stream.names[url] = None
                stream.sent_versions[url] = dict(request.initial_resource_versions)
            elif names is not None:
                stream.names[url] = sorted((set(names) | set(subscribe))
                                           - set(request.resource_names_unsubscribe))
                stream.sent_versions.setdefault(url, dict(request.initial_resource_versions))
            self.requests.append(Seen(stream.id, True, url, "", request.response_nonce,
                                      subscribe, request.error_detail.message, node))
        else:
            names = list(request.resource_names)
            changed = stream.names.get(url, "unset") != (names or None)
            stream.names[url] = names or None
            self.requests.append(Seen(stream.id, False, url, request.version_info,
                                      request.response_nonce, names,
                                      request.error_detail.message, node))
            if not changed and request.response_nonce:
                return  # an ACK or a NACK of what was sent: nothing new to say
            if changed:
                stream.sent.pop(url, None)
        self._respond(stream, url)

    def _respond(self, stream: _Stream, url: str) -> None:
        names = stream.names.get(url)
        current = self.resources.get(url, {})
        chosen = {n: m for n, m in current.items() if names is None or n in names}
        stream.nonce += 1
        if stream.delta:
            sent = stream.sent_versions.setdefault(url, {})
            response = discovery_pb2.DeltaDiscoveryResponse(
                type_url=url, nonce=str(stream.nonce), system_version_info=self.version)
            for name, message in sorted(chosen.items()):
                version = _version(message)
                if sent.get(name) != version:
                    packed = AnyMessage()
                    packed.Pack(message)
                    response.resources.add(name=name, version=version, resource=packed)
                    sent[name] = version
            for name in sorted(set(sent) - set(chosen)):
                if names is None or name in names:
                    response.removed_resources.append(name)
                del sent[name]
            if not response.resources and not response.removed_resources:
                return
        else:
            if stream.sent.get(url) == self.version or (names is not None and not chosen
                                                         and url not in stream.sent):
                return
            stream.sent[url] = self.version
            response = discovery_pb2.DiscoveryResponse(
                type_url=url, version_info=self.version, nonce=str(stream.nonce))
            for _, message in sorted(chosen.items()):
                response.resources.add().Pack(message)
        self.sent[(stream.id, response.nonce)] = len(chosen)
        stream.out.put(response)

    # -- what the tests read ----------------------------------------------------------------

    def wait_for(self, test: Callable[[Seen], bool], timeout: float = WAIT) -> Seen:
        """The first request that passes ``test``, waiting for it up to ``timeout``."""
        deadline = time.monotonic() + timeout
        with self.lock:
            while True:
                for seen in self.requests:
                    if test(seen):
                        return seen
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no such request within {timeout}s; seen: "
                                         f"{[(s.type_url.rpartition('.')[2], s.version_info, s.error[:60]) for s in self.requests]}")
                self.lock.wait(left)

    def acked(self, type_url: str, version: str, timeout: float = WAIT) -> Seen:
        """The proxy's ACK of ``version`` of ``type_url`` (delta: of the nonce that
        carried it)."""
        return self.wait_for(lambda s: s.type_url == type_url and not s.error and (
            s.version_info == version if not s.delta else bool(s.nonce)), timeout)

    def took(self, type_url: str, at_least: int, timeout: float = WAIT) -> Seen:
        """The ACK of a response of ``type_url`` that carried ``at_least`` resources."""
        return self.wait_for(lambda s: s.type_url == type_url and not s.error and
                             self.sent.get((s.stream, s.nonce), 0) >= at_least, timeout)

    def nacked(self, type_url: str, timeout: float = WAIT) -> Seen:
        return self.wait_for(lambda s: s.type_url == type_url and bool(s.error), timeout)


def _version(message: Message) -> str:
    return hashlib.sha256(message.SerializeToString(deterministic=True)).hexdigest()[:16]
