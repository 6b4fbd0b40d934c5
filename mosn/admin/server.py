"""The admin API: a small HTTP/1.1 server (h11 over anyio) on 127.0.0.1:34901.

Endpoints (``/`` lists them): ``/ready``, ``/stats`` (text, ``?format=json``),
``/stats/prometheus``, ``/api/v1/stats`` and ``/api/v1/config_dump`` (MOSN's
shapes), ``/config_dump``, ``/clusters``, ``/listeners``, ``/plugins``, ``/logging``,
``/healthcheck/fail`` and ``/healthcheck/ok``, ``/dashboard``. It runs once per
process tree (in the parent when there are workers) and reads stats summed over
every worker; a log level set here is sent on to the workers.

What it shows of the config and of hosts' metadata has its secrets redacted
(:mod:`mosn.admin.redact`); every answer is bounded in size and built in pieces
between which the event loop runs, so the proxied traffic of the same process is
not held up by it. Requests that change state take POST, and a browser's
cross-site POST is refused (its ``Origin`` names another site): a page on the web
must not be able to fail ``/ready`` of a sidecar on 127.0.0.1.
"""

from __future__ import annotations

import inspect
import logging
import os
import re
import signal
import socket
import time
from dataclasses import dataclass
from importlib import resources
from typing import Any, Callable, Iterable, Sequence
from urllib.parse import parse_qs, urlsplit

import anyio
import h11
from anyio.abc import SocketListener, SocketStream

from mosn import __version__
from mosn.admin import mosn_api
from mosn.admin.prometheus import CONTENT_TYPE as PROMETHEUS_CONTENT_TYPE
from mosn.admin.metrics import StatsFilter, runtime_collectors
from mosn.admin.prometheus import exposition, quantile
from mosn.admin.redact import Redactor, json_pieces
from mosn.admin.stat_names import StatNames
from mosn.config import LoadedConfig, dump
from mosn.config.tls import contexts as tls_contexts
from mosn.extensions import build_description
from mosn.network.listener import ACCEPT_RETRY_DELAY
from mosn.observability.ratelimit import RateLimitedLog
from mosn.observability.stats import StatsStore
from mosn.tls import describe_certificates
from mosn.upstream.cluster import FAILED_ACTIVE_HC

log = logging.getLogger("mosn.admin")

MAX_REQUEST_BYTES = 64 * 1024
"""An admin request larger than this is refused (they are all small GETs)."""
REQUEST_TIMEOUT = 10.0
"""Seconds an admin client may take to send its request."""
MAX_RESPONSE_BYTES = 16 * 1024 * 1024
"""The largest admin answer: several times a full ``/stats`` of a mesh of a few
hundred clusters, and a bound on the memory and time one request can take. A larger
one is refused with 500 and a message saying so (as Envoy answers a response over
its buffer limit): cut JSON would not parse."""
YIELD_BYTES = 64 * 1024
"""JSON written between two turns of the event loop at the most (a bound that does
not depend on the machine's speed)."""
YIELD_SECONDS = 0.002
"""Time spent writing JSON between two turns of the event loop at the most (checked
every few pieces): connections in the same process wait about this long for it."""
QUANTILES = (0.5, 0.9, 0.99)
"""Quantiles ``/stats`` estimates from each histogram's buckets (Envoy shows P50..P100)."""
LOG_LEVELS = {"trace": logging.DEBUG, "debug": logging.DEBUG, "info": logging.INFO,
              "warning": logging.WARNING, "warn": logging.WARNING, "error": logging.ERROR,
              "critical": logging.CRITICAL, "off": logging.CRITICAL + 10}
"""Envoy's level names for ``/logging`` (Python has no trace: it is debug)."""
LOGGER_PREFIXES = ("mosn",)
"""Loggers ``/logging`` lists besides the root: mosn's and its plugins' (``mosn_*``)."""
STATIC = "mosn.admin.static"

SAME_ORIGIN_FETCHES = frozenset({"same-origin", "none"})
"""``Sec-Fetch-Site`` values of a browser request a state change may come from: the
admin's own pages, or an address typed in (any other site is refused)."""

MOSN_STATE_RUNNING = 6
MOSN_STATE_STOPPING = 8
"""MOSN's stage numbers (``stagemanager.Running``, ``GracefulStopping``) for
``/api/v1/states``."""


@dataclass(frozen=True, slots=True)
class JsonBody:
    """An answer's JSON, written out (secrets redacted) as it is sent."""

    data: Any
    redactor: Redactor | None = None


Body = bytes | JsonBody
Response = tuple[int, str, Body]
Handler = Callable[[dict[str, list[str]]], Response]
GET, POST = ("GET", "HEAD"), ("POST",)


class HttpApi:
    """A small HTTP/1.1 server (h11 over anyio): one request a connection, answered
    by ``respond`` (a plugin's HTTP API subclasses it, as the Dubbo registry's does).
    A request's head and its body are each at most ``MAX_REQUEST_BYTES``."""

    name = "HTTP API"
    """What the logs call it."""

    def respond(self, method: str, target: str,
                headers: Iterable[tuple[bytes, bytes]] = (), body: bytes = b"") -> Response:
        """The answer: ``(status, content type, body)``, or an awaitable of it (an
        API that waits on another service must not hold up the event loop)."""
        raise NotImplementedError

    async def serve(self, sock: socket.socket) -> None:
        listener = await SocketListener.from_socket(sock)
        failed = RateLimitedLog(log)
        async with anyio.create_task_group() as tg:
            while True:
                try:
                    stream = await listener.accept()
                except OSError as exc:  # out of descriptors: the proxy must not stop
                    failed.log(logging.ERROR, f"{self.name}: cannot accept a connection: %s; "
                               "trying again in %gs", exc, ACCEPT_RETRY_DELAY)
                    await anyio.sleep(ACCEPT_RETRY_DELAY)
                    continue
                tg.start_soon(self._handle, stream)

    # -- HTTP ---------------------------------------------------------------------------

    async def _handle(self, stream: SocketStream) -> None:
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_REQUEST_BYTES)
        async with stream:
            try:
                with anyio.fail_after(REQUEST_TIMEOUT):
                    request = await self._read_request(conn, stream)
                    content = await self._read_body(conn, stream)
            except (TimeoutError, h11.RemoteProtocolError, anyio.EndOfStream,
                    anyio.BrokenResourceError):
                return
            method = request.method.decode()
            if content is None:
                status, ctype, body = _text(413, f"the request body is larger than "
                                                 f"{MAX_REQUEST_BYTES} bytes\n")
            else:
                answer = self.respond(method, request.target.decode(), request.headers, content)
                if inspect.isawaitable(answer):  # an API that waits on another service
                    answer = await answer
                status, ctype, body = answer
            data = await render(body)
            if data is None:
                status, ctype, data = _text(500, f"the answer is larger than the admin API's "
                                                 f"limit of {MAX_RESPONSE_BYTES} bytes "
                                                 "(MAX_RESPONSE_BYTES); ask for a part of it\n")
            headers = [("content-type", ctype), ("content-length", str(len(data))),
                       ("connection", "close"), ("server", f"mosn/{__version__}"),
                       ("cache-control", "no-store")]
            try:
                await stream.send(conn.send(h11.Response(status_code=status, headers=headers)))
                if method != "HEAD":
                    await stream.send(conn.send(h11.Data(data=data)))
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

    async def _read_body(self, conn: h11.Connection, stream: SocketStream) -> bytes | None:
        """The request's body, or None when it passes ``MAX_REQUEST_BYTES``."""
        parts, size = [], 0
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(await stream.receive())
            elif isinstance(event, h11.Data):
                size += len(event.data)
                if size > MAX_REQUEST_BYTES:
                    return None
                parts.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                return b"".join(parts)
            else:
                raise h11.RemoteProtocolError("a request without an end")



class Admin(HttpApi):
    name = "admin API"

    def __init__(self, loaded: LoadedConfig, store: StatsStore, clusters: Any,
                 metrics_socks: Sequence[socket.socket] = ()) -> None:
        self.metrics_socks = tuple(metrics_socks)
        """The listening sockets of the ``metrics`` block's Prometheus sinks, in order."""
        self.loaded = loaded
        self.store = store
        self.clusters = clusters
        self.draining = False
        """SIGTERM arrived: the listeners are closing."""
        self.health_failed = False
        """``/healthcheck/fail`` was called (and not ``/healthcheck/ok`` since)."""
        self.started = time.time()
        self.publishers: list[Callable[[dict[str, Any]], None]] = []
        """The workers' channels (with ``--workers``): log levels set here go there too."""
        self.reloader: Callable[[], tuple[int, str]] | None = None
        """Re-reads and applies the config file (``POST /reload``, like SIGHUP): the
        server sets it; it returns the status and text to answer with."""
        self.control_plane: Any = None
        """The xDS client's owner when a control plane drives mosn (its ``dump()``
        makes ``/config_dump`` Envoy's shape with the dynamic resources)."""
        self.switch(loaded, store, clusters)
        html, js = "text/html; charset=utf-8", "text/javascript; charset=utf-8"
        self.routes: dict[str, dict[str, Handler]] = {
            "/": _on(GET, self.index),
            "/ready": _on(GET, self.ready),
            "/stats": _on(GET, self.stats),
            "/stats/prometheus": _on(GET, self.prometheus),
            "/api/v1/stats": _on(GET, self.mosn_stats),
            "/api/v1/config_dump": _on(GET, self.mosn_config_dump),
            "/config_dump": _on(GET, self.config_dump),
            "/clusters": _on(GET, self.cluster_list),
            "/listeners": _on(GET, self.listener_list),
            "/plugins": _on(GET, self.plugin_list),
            "/certs": _on(GET, self.certs),
            "/logging": {**_on(GET, self.loggers), **_on(POST, self.set_log_levels)},
            "/api/v1/version": _on(GET, self.mosn_version),
            "/api/v1/states": _on(GET, self.mosn_state),
            "/api/v1/features": _on(GET, self.mosn_features),
            "/api/v1/env": _on(GET, self.mosn_env),
            "/server_info": _on(GET, self.server_info),
            "/runtime": _on(GET, self.runtime),
            "/quitquitquit": _on(POST, self.quit),
            "/healthcheck/fail": _on(POST, self.healthcheck_fail),
            "/healthcheck/ok": _on(POST, self.healthcheck_ok),
            "/reload": _on(POST, self.reload),
            "/dashboard": _on(GET, _static("dashboard.html", html)),
            "/dashboard.js": _on(GET, _static("dashboard.js", js)),
        }

    def switch(self, loaded: LoadedConfig, store: StatsStore, clusters: Any) -> None:
        """Show ``loaded`` (the config now served, after a reload too)."""
        self.loaded, self.store, self.clusters = loaded, store, clusters
        config = loaded.config
        self.redactor = Redactor(config.admin.redact_keys)
        self._dumped: dict[str, Any] | None = None
        self.names = StatNames((lc.name or str(lc.address) for _, lc in config.listeners()),
                               loaded.plugins.names("protocol"),
                               (cc.name for cc in config.cluster_manager.clusters))
        metrics = config.metrics
        self.filter = StatsFilter(metrics.stats_matcher if metrics else None, self.names)
        self.sinks = [(s.config, runtime_collectors(s.config))
                      for s in (metrics.sinks if metrics else [])]
        """Each Prometheus sink's config and its runtime collectors, in order."""

    async def serve(self, sock: socket.socket) -> None:
        """The admin API on ``sock``, and each Prometheus sink on its own socket (a
        sink a reload drops answers 404; a new one needs a restart)."""
        async with anyio.create_task_group() as tg:
            for i, msock in enumerate(self.metrics_socks):
                tg.start_soon(self._serve_sink, i, msock)
            await super().serve(sock)

    async def _serve_sink(self, index: int, sock: socket.socket) -> None:
        await PrometheusSink(self, index).serve(sock)

    def respond(self, method: str, target: str,
                headers: Iterable[tuple[bytes, bytes]] = (), body: bytes = b"") -> Response:
        url = urlsplit(target)
        route = self.routes.get(url.path.rstrip("/") or "/")
        if route is None:
            return _text(404, "not found; try: " + " ".join(sorted(self.routes)) + "\n")
        handler = route.get(method)
        if handler is None:
            return _text(405, f"method not allowed; use {' or '.join(route)}\n")
        if method in POST and (refused := cross_site(headers)):
            log.warning("admin: refused %s %s from a browser on another site (%s)",
                        method, url.path, refused)
            return _text(403, f"refused: a change cannot come from another site ({refused})\n")
        try:
            return handler(parse_qs(url.query, keep_blank_values=True))
        except Exception:  # an admin bug must not take the proxy down
            log.exception("admin %s failed", url.path)
            return _text(500, "internal error\n")

    # -- endpoints ------------------------------------------------------------------------

    def index(self, query: dict[str, list[str]]) -> Response:
        links = "".join(f'<li><a href="{path}">{path}</a> {" ".join(methods)}</li>'
                        for path, methods in sorted(self.routes.items()) if path != "/")
        page = (f"<!doctype html><title>mosn admin</title><h1>mosn {__version__} admin</h1>"
                f'<p><a href="/dashboard">dashboard</a></p><ul>{links}</ul>\n')
        return 200, "text/html; charset=utf-8", page.encode()

    def ready(self, query: dict[str, list[str]]) -> Response:
        if self.draining or self.health_failed:
            return _text(503, "DRAINING\n")
        return _text(200, "LIVE\n")

    # MOSN's /api/v1/ answers (pkg/admin/server/apis.go), in MOSN's shapes.

    def mosn_version(self, query: dict[str, list[str]]) -> Response:
        return _text(200, f"mosn version: {__version__}")

    def mosn_state(self, query: dict[str, list[str]]) -> Response:
        """MOSN's ``pid=P&state=S`` with its stage numbers: Running, or
        GracefulStopping once SIGTERM came."""
        state = MOSN_STATE_STOPPING if self.draining else MOSN_STATE_RUNNING
        return _text(200, f"pid={os.getpid()}&state={state}\n")

    def mosn_features(self, query: dict[str, list[str]]) -> Response:
        """MOSN's feature gates are its plugins here: each plugin, on or off;
        ``?key=NAME``: ``true`` or ``false``."""
        features = {p.name: p.enabled and p.error is None for p in self.loaded.plugins.plugins}
        if "key" in query:
            return _text(200, "true" if features.get(query["key"][0]) else "false")
        return _json(features)

    def mosn_env(self, query: dict[str, list[str]]) -> Response:
        """MOSN's ``?key=NAME`` (repeated): the values of environment variables; a
        variable named like a secret (``*_TOKEN``, ``*PASSWORD*`` ...) is redacted."""
        keys = query.get("key")
        if not keys:
            return _text(400, '{"error": "no env key"}\n')
        found = {k: os.environ[k] for k in keys if k in os.environ}
        missing = [k for k in keys if k not in os.environ]
        return _json({"env": found, "not_found": missing} if missing else {"env": found},
                     redactor=self.redactor)

    # Envoy's

    def server_info(self, query: dict[str, list[str]]) -> Response:
        """Envoy's ``/server_info`` (its fields that mosn has)."""
        state = "DRAINING" if self.draining else "LIVE"
        uptime = int(time.time() - self.started)
        return _json({"version": __version__, "build": build_description(), "state": state,
                      "uptime_current_epoch": f"{uptime}s",
                      "uptime_all_epochs": f"{uptime}s",
                      "command_line_options": {"config_path": self.loaded.source}})

    def runtime(self, query: dict[str, list[str]]) -> Response:
        """Envoy's ``/runtime``: mosn has no runtime layers, so there are none."""
        return _json({"layers": [], "entries": {}})

    def quit(self, query: dict[str, list[str]]) -> Response:
        """Envoy's ``/quitquitquit``: shut down as on SIGTERM (drain, then exit)."""
        log.warning("admin: /quitquitquit: shutting down")
        os.kill(os.getpid(), signal.SIGTERM)
        return _text(200, "OK\n")

    def healthcheck_fail(self, query: dict[str, list[str]]) -> Response:
        self.health_failed = True
        log.warning("admin: /healthcheck/fail: /ready answers 503 until /healthcheck/ok")
        return _text(200, "OK\n")

    def healthcheck_ok(self, query: dict[str, list[str]]) -> Response:
        self.health_failed = False
        log.warning("admin: /healthcheck/ok: /ready answers 200 again")
        return _text(200, "OK\n")

    def reload(self, query: dict[str, list[str]]) -> Response:
        """Re-read the config file and apply it, as SIGHUP does (docs/upgrade.md)."""
        if self.reloader is None:
            return _text(409, "reload: with workers, send SIGHUP to the parent\n")
        if self.draining:
            return _text(409, "reload: mosn is stopping\n")
        status, text = self.reloader()
        return _text(status, text)

    def stats(self, query: dict[str, list[str]]) -> Response:
        """Envoy's ``/stats``: ``?format=json``, ``?filter=REGEX``, ``?usedonly``."""
        values = self.filter.values(self.store.snapshot())
        histograms = self.filter.values(self.store.histogram_totals())
        if "filter" in query:
            try:
                pattern = re.compile(query["filter"][0])
            except re.error as exc:
                return _text(400, f"filter: {exc}\n")
            values = {k: v for k, v in values.items() if pattern.search(k)}
            histograms = {k: h for k, h in histograms.items() if pattern.search(k)}
        if "usedonly" in query:
            values = {k: v for k, v in values.items() if v}
            histograms = {k: h for k, h in histograms.items() if h["count"]}
        for h in histograms.values():
            h["quantiles"] = {f"p{q * 100:g}": quantile(h["buckets"], q) for q in QUANTILES}
        if query.get("format") == ["json"]:
            return _json({"stats": values, "histograms": histograms})
        lines = [f"{k}: {v}\n" for k, v in values.items()]
        for name, h in histograms.items():
            shown = " ".join(f"{q}={v:g}" if v is not None else f"{q}=nan"
                             for q, v in h["quantiles"].items())
            lines.append(f"{name}: count={h['count']} sum_ms={h['sum_ms']:g} {shown}\n")
        return _text(200, "".join(sorted(lines)))

    def prometheus(self, query: dict[str, list[str]]) -> Response:
        return 200, PROMETHEUS_CONTENT_TYPE, exposition(self.store, self.names,
                                                        self.filter.keep)

    def mosn_stats(self, query: dict[str, list[str]]) -> Response:
        if len(query) > 1 or (query and "key" not in query):
            return _text(400, "only one parameter: key=<type>.<namespace>\n")
        key = query["key"][0] if query else None
        shown = mosn_api.stats(self.filter.values(self.store.snapshot()), self.names, key)
        if key is not None and not shown:
            return _text(200, f"no metrics key: {key}\n")
        return _json(shown)

    def dumped(self) -> dict[str, Any]:
        """The effective config as data (made once per config: it does not change)."""
        if self._dumped is None:
            self._dumped = dump(self.loaded.config)
        return self._dumped

    def mosn_config_dump(self, query: dict[str, list[str]]) -> Response:
        if len(query) > 1:
            return _text(400, "only one parameter\n")
        part = mosn_api.config_dump(self.dumped(), query)
        if part is None:
            return _json({"error": "unknown part or name"}, 404)
        return _json(part, redactor=self.redactor)

    def config_dump(self, query: dict[str, list[str]]) -> Response:
        if self.control_plane is not None:
            return _json({"configs": [{"@type": "mosn.config", **self.dumped()},
                                      *self.control_plane.dump()]}, redactor=self.redactor)
        return _json(self.dumped(), redactor=self.redactor)

    def loggers(self, query: dict[str, list[str]]) -> Response:
        levels = {name: _level_name(logger.getEffectiveLevel())
                  for name, logger in _loggers().items()}
        if query.get("format") == ["json"]:
            return _json({"loggers": levels})
        return _text(200, "active loggers:\n" + "".join(
            f"  {name}: {level}\n" for name, level in sorted(levels.items())))

    def set_log_levels(self, query: dict[str, list[str]]) -> Response:
        """Envoy's ``POST /logging?level=L`` (every logger) or ``?<logger>=L``."""
        if not query:
            return _text(400, "say which: ?level=<level> or ?<logger>=<level>\n")
        known = _loggers()
        levels: dict[str, int] = {}
        for name, values in query.items():
            level = LOG_LEVELS.get(values[0].lower())
            if level is None:
                return _text(400, f"unknown level {values[0]!r}; one of {', '.join(LOG_LEVELS)}\n")
            if name == "level":
                levels.update(dict.fromkeys(known, level))
            elif name in known:
                levels[name] = level
            else:
                return _text(404, f"unknown logger {name!r}\n")
        set_log_levels(levels)
        for publish in self.publishers:
            publish({"log_levels": levels})
        return self.loggers({})

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
        return _json({"clusters": out}, redactor=self.redactor)  # hosts' metadata

    def listener_list(self, query: dict[str, list[str]]) -> Response:
        out = [{"name": lc.name, "address": str(lc.address),
                "filters": [f.type for fc in lc.filter_chains for f in fc.filters]}
               for _, lc in self.loaded.config.listeners()]
        return _json({"listeners": out})

    def certs(self, query: dict[str, list[str]]) -> Response:
        """Envoy's ``/certs``: every certificate and CA of the TLS contexts, read from
        their files now (so a rotated certificate shows as soon as it is on disk)."""
        out = []
        for path, tls, _ in tls_contexts(self.loaded.config):
            if tls.status:
                for entry in describe_certificates([tls]):
                    out.append({"config_path": path, **entry})
        return _json({"certificates": out})

    def plugin_list(self, query: dict[str, list[str]]) -> Response:
        return _json({"plugins": [p.as_dict() for p in self.loaded.plugins.plugins]})


class PrometheusSink(HttpApi):
    """MOSN's Prometheus sink: the admin's stats (as ``/stats/prometheus``, through
    ``stats_matcher``) at the sink's ``endpoint`` on a port of its own, with the
    sink's percentiles and runtime collectors."""

    name = "metrics sink"

    def __init__(self, admin: Admin, index: int) -> None:
        self.admin = admin
        self.index = index

    def respond(self, method: str, target: str,
                headers: Iterable[tuple[bytes, bytes]] = (), body: bytes = b"") -> Response:
        admin = self.admin
        if self.index >= len(admin.sinks):
            return _text(404, "this sink is no longer in the config\n")
        sink, collectors = admin.sinks[self.index]
        if urlsplit(target).path != sink.endpoint:
            return _text(404, f"not found; the metrics are at {sink.endpoint}\n")
        if method not in GET:
            return _text(405, "method not allowed; use GET\n")
        try:
            body = exposition(admin.store, admin.names, admin.filter.keep,
                              sink.percentiles, collectors)
        except Exception:  # a bug here must not take the proxy down
            log.exception("metrics sink %s failed", sink.endpoint)
            return _text(500, "internal error\n")
        return 200, PROMETHEUS_CONTENT_TYPE, body


def _on(methods: tuple[str, ...], handler: Handler) -> dict[str, Handler]:
    return dict.fromkeys(methods, handler)


def _static(name: str, content_type: str) -> Handler:
    """A file of the package's ``static`` folder, read once."""
    body = resources.files(STATIC).joinpath(name).read_bytes()
    return lambda query: (200, content_type, body)


def _text(status: int, body: str) -> Response:
    return status, "text/plain; charset=utf-8", body.encode()


def _json(data: Any, status: int = 200, redactor: Redactor | None = None) -> Response:
    return status, "application/json", JsonBody(data, redactor)


async def render(body: Body) -> bytes | None:
    """The bytes of an answer, or None if they would pass ``MAX_RESPONSE_BYTES``.
    JSON is written a piece at a time with a turn of the event loop every
    ``YIELD_SECONDS`` or ``YIELD_BYTES``, whichever comes first, and given up as soon
    as it passes the bound."""
    if isinstance(body, bytes):
        return body if len(body) <= MAX_RESPONSE_BYTES else None
    written: list[bytes] = []  # joined at each turn, so the last join is one copy
    pieces: list[str] = []
    size = since_yield = 0
    turn_ends = time.perf_counter() + YIELD_SECONDS
    for n, piece in enumerate(json_pieces(body.data, body.redactor)):
        pieces.append(piece)
        size += len(piece)
        since_yield += len(piece)
        if size > MAX_RESPONSE_BYTES:
            return None
        if since_yield >= YIELD_BYTES or (n % 16 == 0 and time.perf_counter() > turn_ends):
            written.append("".join(pieces).encode("ascii"))
            pieces.clear()
            since_yield = 0
            await anyio.sleep(0)
            turn_ends = time.perf_counter() + YIELD_SECONDS
    pieces.append("\n")
    written.append("".join(pieces).encode("ascii"))
    return b"".join(written)


def cross_site(headers: Iterable[tuple[bytes, bytes]]) -> str | None:
    """Why a request looks like a browser's from another site, or None.

    Tools (curl, a pilot-agent, scripts) send no ``Origin``; a browser sends one
    with every POST, and ``Sec-Fetch-Site`` too. The request is refused when
    ``Sec-Fetch-Site`` says it came from another site, or ``Origin`` (without it,
    ``Referer``) names a host and port other than the ``Host`` it was sent to, or is
    ``null`` (a sandboxed page, a file)."""
    fields = {name.lower(): value.decode("latin-1").strip() for name, value in headers}
    fetch_site = fields.get(b"sec-fetch-site", "").lower()
    if fetch_site and fetch_site not in SAME_ORIGIN_FETCHES:
        return f"Sec-Fetch-Site: {fetch_site}"
    for name in (b"origin", b"referer"):
        origin = fields.get(name)
        if origin is None:
            continue
        header = name.decode().capitalize()
        if origin.lower() == "null":
            return f"{header}: null"
        try:
            netloc = urlsplit(origin).netloc.lower()
        except ValueError:
            return f"{header}: not a URL"
        if not netloc or netloc != fields.get(b"host", "").lower():
            return f"{header}: {origin}"
        return None
    return None


def _level_name(level: int) -> str:
    return "off" if level > logging.CRITICAL else logging.getLevelName(level).lower()


def _loggers() -> dict[str, logging.Logger]:
    """The root logger and mosn's (and its plugins') loggers, by name."""
    found = {"root": logging.getLogger()}
    for name, logger in list(logging.root.manager.loggerDict.items()):
        if isinstance(logger, logging.Logger) and name.startswith(LOGGER_PREFIXES):
            found[name] = logger
    return found


def set_log_levels(levels: dict[str, int]) -> None:
    """Set loggers' levels by name (``root`` is the root logger); in the admin's
    process and, sent by it, in each worker."""
    for name, level in levels.items():
        logging.getLogger(None if name == "root" else name).setLevel(level)
    shown = ", ".join(f"{name}={_level_name(level)}"
                      for name, level in sorted(levels.items()))
    log.warning("log levels set (pid %d): %s", os.getpid(), shown)
