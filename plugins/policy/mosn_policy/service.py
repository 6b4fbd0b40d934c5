"""Calls to a policy service (a rate limit service, an authorization server) from a
stream filter: Envoy's ``grpc_service`` config, gRPC unary calls on grpcio
channels to a mosn cluster's hosts, their results handed back on the proxy's loop.

A channel is made in the worker on the first call (grpcio's channels do not survive
``fork``), one per host of the cluster, and chosen by the cluster's load balancer
for each call. A call never blocks the loop: grpcio runs it on its own threads and
its outcome is scheduled on the loop with ``call_soon_threadsafe``.
"""

from __future__ import annotations

import asyncio
from typing import Any, Callable

import grpc
import h11
from pydantic import Field, model_validator

from mosn.config import Duration, Unsupported
from mosn.filters.common import ProtoModel

CHANNEL_OPTIONS = (("grpc.enable_http_proxy", 0),)
"""A policy service is reached directly, never through a proxy from the environment."""


class EnvoyGrpc(ProtoModel):
    cluster_name: str = Field(min_length=1)
    authority: str = ""
    retry_policy: Unsupported = None


class GrpcService(ProtoModel):
    """Envoy's ``GrpcService`` with ``envoy_grpc`` (a cluster of this config)."""

    envoy_grpc: EnvoyGrpc | None = None
    timeout: Duration | None = None
    google_grpc: Unsupported = None
    initial_metadata: list[dict[str, str]] = Field(default_factory=list)

    @model_validator(mode="after")
    def _cluster(self) -> "GrpcService":
        if self.envoy_grpc is None:
            raise ValueError("grpc_service needs envoy_grpc (google_grpc is not supported)")
        return self

    def cross_check(self, root: Any, plugins: Any) -> list[tuple[str, str]]:
        names = {c.name for c in root.cluster_manager.clusters}
        assert self.envoy_grpc is not None
        if self.envoy_grpc.cluster_name not in names:
            return [("envoy_grpc.cluster_name",
                     f"no cluster named {self.envoy_grpc.cluster_name!r}")]
        return []


class Unary:
    """One unary method of a service, called on the hosts of a cluster."""

    __slots__ = ("clusters", "cluster_name", "method", "request_type", "response_type",
                 "metadata", "_channels")

    def __init__(self, clusters: Any, service: GrpcService, method: str,
                 request_type: Any, response_type: Any) -> None:
        assert service.envoy_grpc is not None
        self.clusters = clusters
        self.cluster_name = service.envoy_grpc.cluster_name
        self.method = method
        self.request_type = request_type
        self.response_type = response_type
        self.metadata = tuple((m["key"].lower(), m["value"]) for m in service.initial_metadata
                              if "key" in m and "value" in m)
        self._channels: dict[str, Any] = {}

    def _callable(self) -> Any:
        cluster = self.clusters.get(self.cluster_name) if self.clusters is not None else None
        host = cluster.choose_host() if cluster is not None else None
        if host is None:
            return None
        target = str(host.address)
        call = self._channels.get(target)
        if call is None:
            channel = grpc.insecure_channel(target, options=CHANNEL_OPTIONS)
            call = self._channels[target] = channel.unary_unary(
                self.method, request_serializer=self.request_type.SerializeToString,
                response_deserializer=self.response_type.FromString)
        return call

    def call(self, request: Any, timeout: float,
             done: Callable[[Any, BaseException | None], None]) -> None:
        """Start the call; ``done(response, None)`` or ``done(None, error)`` runs on the
        running loop once it ends (an error: no host, a timeout, a failed call)."""
        loop = asyncio.get_running_loop()
        call = self._callable()
        if call is None:
            loop.call_soon(done, None, LookupError(f"no healthy host in {self.cluster_name}"))
            return
        future = call.future(request, timeout=timeout, metadata=self.metadata or None)

        def finished(f: Any) -> None:
            try:
                result, error = f.result(), None
            except BaseException as exc:  # grpc.RpcError, cancelled: the call failed
                result, error = None, exc
            try:
                loop.call_soon_threadsafe(done, result, error)
            except RuntimeError:  # the loop closed meanwhile (shutdown): nobody waits
                pass

        future.add_done_callback(finished)

    def close(self) -> None:
        self._channels.clear()


async def http_call(clusters: Any, cluster_name: str, method: str, target: str,
                    headers: list[tuple[str, str]], body: bytes,
                    max_body: int) -> tuple[int, list[tuple[str, str]], bytes]:
    """One HTTP/1.1 request (h11) to a host of ``cluster_name`` on a new connection:
    (status, response headers with lower-case names, body). A body over ``max_body``
    bytes is an error."""
    cluster = clusters.get(cluster_name) if clusters is not None else None
    host = cluster.choose_host() if cluster is not None else None
    if host is None:
        raise LookupError(f"no healthy host in cluster {cluster_name}")
    fields = [(k, v) for k, v in headers if k != "host" or v]
    if not any(k == "host" for k, _ in fields):
        fields.insert(0, ("host", str(host.address)))
    fields += [("content-length", str(len(body))), ("connection", "close")]
    reader, writer = await asyncio.open_connection(host.address.host, host.address.port)
    try:
        conn = h11.Connection(h11.CLIENT, max_incomplete_event_size=max_body)
        writer.write(conn.send(h11.Request(method=method, target=target, headers=fields)))
        if body:
            writer.write(conn.send(h11.Data(data=body)))
        writer.write(conn.send(h11.EndOfMessage()))
        status, got, data = 0, [], bytearray()
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(await reader.read(65536))
                continue
            if isinstance(event, h11.Response):
                status = event.status_code
                got = [(k.decode().lower(), v.decode("latin-1")) for k, v in event.headers]
            elif isinstance(event, h11.Data):
                data += event.data
                if len(data) > max_body:
                    raise ValueError(f"a response body over {max_body} bytes")
            elif isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
                return status, got, bytes(data)
    finally:
        writer.close()


__all__ = ["GrpcService", "Unary", "http_call"]
