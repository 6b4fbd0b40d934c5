"""The admin API: a small HTTP/1.1 server (h11 over anyio) on 127.0.0.1:34901.

Endpoints: ``/ready``, ``/stats`` (text, or ``?format=json``), ``/config_dump``,
``/clusters``, ``/listeners``, ``/plugins``. It runs once per process tree (in the
parent when there are workers) and reads stats summed over every worker.
"""

from __future__ import annotations

import json
import logging
import socket
from typing import Any, Callable
from urllib.parse import parse_qs, urlsplit

import anyio
import h11
from anyio.abc import SocketListener, SocketStream

from mosn import __version__
from mosn.config import LoadedConfig, dump
from mosn.observability.stats import StatsStore
from mosn.upstream.cluster import FAILED_ACTIVE_HC

log = logging.getLogger("mosn.admin")

MAX_REQUEST_BYTES = 64 * 1024
"""An admin request larger than this is refused (they are all small GETs)."""
REQUEST_TIMEOUT = 10.0
"""Seconds an admin client may take to send its request."""
SECRET_KEYS = ("private_key", "password", "secret", "token")
"""Keys whose values ``/config_dump`` replaces with ``[redacted]``."""

Response = tuple[int, str, bytes]


class Admin:
    def __init__(self, loaded: LoadedConfig, store: StatsStore, clusters: Any) -> None:
        self.loaded = loaded
        self.store = store
        self.clusters = clusters
        self.draining = False
        self.routes: dict[str, Callable[[dict[str, list[str]]], Response]] = {
            "/ready": self.ready,
            "/stats": self.stats,
            "/config_dump": self.config_dump,
            "/clusters": self.cluster_list,
            "/listeners": self.listener_list,
            "/plugins": self.plugin_list,
        }

    async def serve(self, sock: socket.socket) -> None:
        listener = await SocketListener.from_socket(sock)
        await listener.serve(self._handle)

    # -- HTTP ---------------------------------------------------------------------------

    async def _handle(self, stream: SocketStream) -> None:
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_REQUEST_BYTES)
        async with stream:
            try:
                with anyio.fail_after(REQUEST_TIMEOUT):
                    request = await self._read_request(conn, stream)
            except (TimeoutError, h11.RemoteProtocolError, anyio.EndOfStream,
                    anyio.BrokenResourceError):
                return
            status, ctype, body = self.respond(request.method.decode(), request.target.decode())
            headers = [("content-type", ctype), ("content-length", str(len(body))),
                       ("connection", "close"), ("server", f"mosn/{__version__}")]
            try:
                await stream.send(conn.send(h11.Response(status_code=status, headers=headers)))
                await stream.send(conn.send(h11.Data(data=body)))
                await stream.send(conn.send(h11.EndOfMessage()))
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                pass

    async def _read_request(self, conn: h11.Connection, stream: SocketStream) -> h11.Request:
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(await stream.receive())
            elif isinstance(event, h11.Request):
                return event
            else:
                raise h11.RemoteProtocolError("no request")

    def respond(self, method: str, target: str) -> Response:
        url = urlsplit(target)
        handler = self.routes.get(url.path.rstrip("/") or "/")
        if handler is None:
            return _text(404, "not found; try: " + " ".join(sorted(self.routes)) + "\n")
        if method not in ("GET", "HEAD"):
            return _text(405, "method not allowed\n")
        try:
            return handler(parse_qs(url.query))
        except Exception:  # an admin bug must not take the proxy down
            log.exception("admin %s failed", url.path)
            return _text(500, "internal error\n")

    # -- endpoints ------------------------------------------------------------------------

    def ready(self, query: dict[str, list[str]]) -> Response:
        return _text(503, "DRAINING\n") if self.draining else _text(200, "LIVE\n")

    def stats(self, query: dict[str, list[str]]) -> Response:
        values = self.store.snapshot()
        if query.get("format") == ["json"]:
            return _json({"stats": values})
        return _text(200, "".join(f"{k}: {v}\n" for k, v in sorted(values.items())))

    def config_dump(self, query: dict[str, list[str]]) -> Response:
        return _json(_redact(dump(self.loaded.config)))

    def cluster_list(self, query: dict[str, list[str]]) -> Response:
        values = self.store.snapshot()
        out = []
        for cluster in self.clusters.clusters.values():
            prefix = f"cluster.{cluster.name}."
            hosts = []
            for host in cluster.hosts:
                hp = f"{prefix}host.{host.address}."
                failed_hc = bool(host.health_flags & FAILED_ACTIVE_HC)
                ejected = values.get(hp + "outlier_ejected", 0)
                hosts.append({
                    "address": str(host.address),
                    "hostname": host.hostname,
                    "weight": host.weight,
                    "metadata": host.metadata,
                    "healthy": not failed_hc and not ejected,
                    "health_flags": (["failed_active_hc"] if failed_hc else [])
                    + (["failed_outlier_check"] if ejected else []),
                    "active_requests": values.get(hp + "rq_active", 0),
                    "rq_total": values.get(hp + "rq_total", 0),
                    "rq_error": values.get(hp + "rq_error", 0),
                    "ejections": values.get(hp + "outlier_ejections", 0),
                    "ejected_in_workers": ejected,
                    "cx_active": values.get(hp + "cx_active", 0),
                    "cx_total": values.get(hp + "cx_total", 0),
                    "cx_connect_fail": values.get(hp + "cx_connect_fail", 0),
                })
            config = cluster.config
            limits = config.circuit_breakers.limits
            out.append({
                "name": cluster.name,
                "type": config.type,
                "lb_type": config.lb_type,
                "connect_timeout": f"{cluster.connect_timeout:g}s",
                "max_hosts": cluster.slots,
                "circuit_breakers": limits.model_dump(),
                "health_check": config.health_check.protocol if config.health_check else None,
                "outlier_detection": config.outlier_detection is not None,
                "hosts": hosts,
            })
        return _json({"clusters": out})

    def listener_list(self, query: dict[str, list[str]]) -> Response:
        out = [{"name": lc.name, "address": str(lc.address),
                "filters": [f.type for fc in lc.filter_chains for f in fc.filters]}
               for _, lc in self.loaded.config.listeners()]
        return _json({"listeners": out})

    def plugin_list(self, query: dict[str, list[str]]) -> Response:
        return _json({"plugins": [p.as_dict() for p in self.loaded.plugins.plugins]})


def _text(status: int, body: str) -> Response:
    return status, "text/plain; charset=utf-8", body.encode()


def _json(data: Any) -> Response:
    return 200, "application/json", (json.dumps(data, indent=2, sort_keys=True) + "\n").encode()


def _redact(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: "[redacted]" if any(s in str(k).lower() for s in SECRET_KEYS) and v
                else _redact(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_redact(v) for v in value]
    return value
