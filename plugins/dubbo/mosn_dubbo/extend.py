"""The ``dubbo_registry`` extends entry: MOSN's Dubbo service registry
(``pkg/upstream/servicediscovery/dubbod``), publishing and subscribing on ZooKeeper.

Config (a top-level ``extends`` entry, MOSN's shape)::

    extends:
      - type: dubbo_registry
        config:
          enable: true
          server_port: 20880    # the port of mosn's listener in front of the providers
          api_port: 22222       # where /pub /unpub /sub /unsub are served (MOSN's default)

An application asks mosn, over HTTP on ``api_port`` (POST, MOSN's JSON bodies):

- ``/pub``: publish the service it provides. mosn registers an ephemeral znode under
  ``/dubbo/<interface>/providers`` named by a ``dubbo://`` URL pointing at mosn's
  listener on ``server_port`` (as MOSN does: consumers reach the provider through
  mosn); ``/unpub`` removes it.
- ``/sub``: subscribe to a service it consumes. mosn registers a ``consumer://`` node
  under ``/dubbo/<interface>/consumers`` (as a Dubbo consumer does), adds a cluster
  named by the interface whose hosts follow ``/dubbo/<interface>/providers`` (the
  ``zookeeper`` cluster type's watch), and a route in the router configuration
  ``dubbo`` sending the interface's calls (header ``service``) to it; ``/unsub``
  removes the three.

Body: ``{"registry": {"type": "zookeeper", "addr": "HOST:PORT", "username": "",
"password": ""}, "service": {"interface": "...", "methods": [...], "group": "",
"version": ""}}``. Success: 200 ``{"err_no": 0, "err_msg": "publish success"}`` (MOSN's
answer); a bad body: 400 with ``err_no`` 1 and every error with its path; ZooKeeper
not answering: 503.

The nodes live in one ZooKeeper session per registry (address and credentials): when
a session ends (expired, or ZooKeeper lost its state) the nodes are created again in
the next one; when mosn stops the sessions close and ZooKeeper removes the nodes.
"""

from __future__ import annotations

import json
import logging
import re
import socket
import threading
from dataclasses import dataclass
from typing import Any, Iterable

import anyio
from pydantic import Field, PrivateAttr, ValidationError, field_validator

from mosn.admin import HttpApi
from mosn.config import (
    Address,
    ClusterConfig,
    Duration,
    ExtraKey,
    Model,
    MosnConfig,
    RouterConfiguration,
)
from mosn.network import bind
from mosn.plugins import BuildContext
from mosn_dubbo.registry import (
    DEFAULT_ROOT,
    consumer_url,
    node_path,
    provider_url,
)
from mosn_dubbo.zookeeper import MAX_RETRY_DELAY, ZookeeperClusterConfig

log = logging.getLogger("mosn.dubbo.registry")

DEFAULT_API_PORT = 22222
"""MOSN's port of the registry API when the config names none (dubbod's ``apiPort``)."""
API_HOST = "127.0.0.1"
"""The API changes what the registry says about this machine: only the applications
beside mosn may call it (MOSN listens on every address)."""
ROUTER_CONFIG_NAME = "dubbo"
"""The router configuration subscriptions add routes to (MOSN's
``dubboRouterConfigName``)."""
REGISTRY_TIMEOUT = 5.0
"""Seconds a registry operation may take (MOSN's ``registry.timeout`` of 5s)."""
SESSION_TIMEOUT = 10.0
"""Seconds ZooKeeper keeps a session (and its nodes) through a disconnection, unless
the config says (kazoo's default; ZooKeeper bounds it between 2 and 20 ticks)."""
SUBSCRIBE_READ_TIMEOUT = 1.0
"""Seconds a subscription waits for the first provider list (ZooKeeper answered the
consumer node just before; past it the watch fills the cluster)."""
INTERFACE = re.compile(r"[A-Za-z_$][\w$.-]*")
"""A Java interface name (it is a path segment of the registry's nodes)."""
URL_VALUE = re.compile(r"[\w$.:*-]*")
"""A group, version or method as it may stand in a registry URL's query unencoded."""
SUCCESS, FAILURE = 0, 1
"""MOSN's ``err_no`` values."""


# -- the config -------------------------------------------------------------------------


class DubboRegistryConfig(Model):
    mosn_runtime_fields = {
        "log_path": "the folder of dubbo-go's own log in MOSN; mosn's registry logs "
                    "with mosn (logger mosn.dubbo.registry)",
    }

    enable: bool = False
    """MOSN's: off, the entry is checked and nothing runs."""
    server_port: int = Field(default=0, ge=0, le=65535)
    """The port of mosn's listener a published provider URL points at."""
    api_port: int = Field(default=DEFAULT_API_PORT, ge=1, le=65535)
    session_timeout: Duration = SESSION_TIMEOUT
    """mosn's own: how long ZooKeeper keeps mosn's session, and the nodes it
    registered, while mosn does not answer."""
    _listener_host: str = PrivateAttr(default="")

    @property
    def listener_host(self) -> str:
        """The host the listener on ``server_port`` binds (set by the config check)."""
        return self._listener_host

    def cross_check(self, root: MosnConfig, plugins: Any) -> list[tuple[str, str]]:
        if not self.enable:
            return []
        ports = {lc.address.port: lc.address.host for _, lc in root.listeners()
                 if not lc.address.is_unix}
        self._listener_host = ports.get(self.server_port, "")
        if self.server_port not in ports:
            return [("server_port", f"no listener on port {self.server_port}: a published "
                                    "provider points consumers at mosn's listener there")]
        if self.api_port in ports:
            return [("api_port", f"port {self.api_port} is a listener's")]
        return []


# -- the API's bodies -------------------------------------------------------------------


class RegistryRef(Model):
    type: str
    addr: str = Field(min_length=1)
    """ZooKeeper's ``host:port``."""
    username: str = ""
    password: str = ""

    @field_validator("type")
    @classmethod
    def _zookeeper(cls, value: str) -> str:
        if value != "zookeeper":
            raise ValueError(f"registry type {value!r}: only 'zookeeper' is supported "
                             "(as in MOSN)")
        return value

    @field_validator("addr")
    @classmethod
    def _host_port(cls, value: str) -> str:
        host, colon, port = value.rpartition(":")
        if not (colon and host and port.isdigit() and 0 < int(port) < 65536):
            raise ValueError(f"{value!r} is not host:port")
        return value


class ServiceRef(Model):
    interface: str
    methods: list[str] = Field(min_length=1)
    group: str = ""
    version: str = ""
    name: str = ""
    """MOSN's bodies carry it (the service's name); not part of the registry's URL."""
    port: str | int = ""
    """MOSN's bodies carry it (the application's own port); consumers are pointed at
    mosn's ``server_port`` instead."""

    @field_validator("interface")
    @classmethod
    def _interface(cls, value: str) -> str:
        if not INTERFACE.fullmatch(value):
            raise ValueError(f"{value!r} is not a Java interface name")
        return value

    @field_validator("group", "version")
    @classmethod
    def _url_value(cls, value: str) -> str:
        if not URL_VALUE.fullmatch(value):
            raise ValueError(f"{value!r}: letters, digits and . : * - _ $ only")
        return value

    @field_validator("methods")
    @classmethod
    def _methods(cls, value: list[str]) -> list[str]:
        for method in value:
            if not method or not URL_VALUE.fullmatch(method):
                raise ValueError(f"{method!r} is not a method name")
        return value


class RegistryRequest(Model):
    registry: RegistryRef
    service: ServiceRef


class BadRequest(ValueError):
    """A body the API refuses; the message lists each error with its path."""


def parse_request(body: bytes) -> RegistryRequest:
    """The body, validated: :class:`BadRequest` lists every error (unknown keys too,
    with a "did you mean")."""
    try:
        raw = json.loads(body or b"null")
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(f"the body is not JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise BadRequest('the body is a JSON object: {"registry": {...}, "service": {...}}')
    errors = _unknown_keys(raw, RegistryRequest, "")
    for name, model in (("registry", RegistryRef), ("service", ServiceRef)):
        if isinstance(raw.get(name), dict):
            errors += _unknown_keys(raw[name], model, f"{name}.")
    try:
        request = RegistryRequest.model_validate(raw)
    except ValidationError as exc:
        errors = [f"{'.'.join(str(p) for p in e['loc'])}: "
                  f"{e['msg'].removeprefix('Value error, ')}" for e in exc.errors()] + errors
    if errors:
        raise BadRequest("; ".join(errors))
    return request


def _unknown_keys(raw: dict[str, Any], model: type[Model], path: str) -> list[str]:
    """The keys of ``raw`` that ``model`` does not take, each as the config loader
    words it (a "did you mean", else the keys it takes)."""
    names = model.key_names()
    return [f"{path}{key}: {ExtraKey(f'{path}{key}', str(key), value, model).error()}"
            for key, value in raw.items() if str(key).lower() not in names]


# -- ZooKeeper --------------------------------------------------------------------------


class Unavailable(Exception):
    """ZooKeeper did not answer in time."""


class Session:
    """One ZooKeeper session and the ephemeral nodes mosn keeps in it. kazoo runs the
    session (reconnecting for ever); each time it connects, the nodes missing are
    created again (a new session after an expiry has none of the old one's)."""

    def __init__(self, registry: RegistryRef, timeout: float) -> None:
        from kazoo.client import KazooClient
        from kazoo.retry import KazooRetry

        auth = ([("digest", f"{registry.username}:{registry.password}")]
                if registry.username else None)
        self.address = registry.addr
        self.nodes: set[str] = set()
        self._lock = threading.Lock()
        self.client = KazooClient(
            hosts=registry.addr, timeout=timeout, auth_data=auth,
            connection_retry=KazooRetry(max_tries=-1, max_delay=MAX_RETRY_DELAY))
        self.client.add_listener(self._on_state)
        try:
            self.client.start(timeout=REGISTRY_TIMEOUT)
        except Exception as exc:  # kazoo's timeout
            self.close()
            raise Unavailable(f"ZooKeeper at {registry.addr} did not answer in "
                              f"{REGISTRY_TIMEOUT:g}s ({exc or type(exc).__name__})") from None

    def _on_state(self, state: str) -> None:
        if state == "CONNECTED":  # kazoo's listeners must not block: a thread of its own
            self.client.handler.spawn(self._restore)

    def _restore(self) -> None:
        with self._lock:
            nodes = sorted(self.nodes)
        for path in nodes:
            try:
                self._create(path)
            except Exception as exc:  # the next connection tries again
                log.warning("registry %s: %s not created again: %s", self.address, path,
                            exc or type(exc).__name__)
                return
        if nodes:
            log.info("registry %s: %d nodes registered in this session", self.address,
                     len(nodes))

    def _create(self, path: str) -> None:
        from kazoo.exceptions import NodeExistsError

        try:
            self.client.create_async(path, b"", ephemeral=True, makepath=True).get(
                timeout=REGISTRY_TIMEOUT)
        except NodeExistsError:
            pass  # still there: the session lived through the disconnection

    def register(self, path: str) -> None:
        with self._lock:
            self.nodes.add(path)
        try:
            self._create(path)
        except Exception as exc:
            with self._lock:
                self.nodes.discard(path)
            raise Unavailable(f"ZooKeeper at {self.address}: {exc or type(exc).__name__}"
                              ) from None

    def ensure(self, path: str) -> None:
        """A persistent node, made if missing."""
        try:
            self.client.ensure_path_async(path).get(timeout=REGISTRY_TIMEOUT)
        except Exception as exc:
            raise Unavailable(f"ZooKeeper at {self.address}: {exc or type(exc).__name__}"
                              ) from None

    def unregister(self, path: str) -> None:
        from kazoo.exceptions import NoNodeError

        with self._lock:
            self.nodes.discard(path)
        try:
            self.client.delete_async(path).get(timeout=REGISTRY_TIMEOUT)
        except NoNodeError:
            pass
        except Exception as exc:
            raise Unavailable(f"ZooKeeper at {self.address}: {exc or type(exc).__name__}"
                              ) from None

    def close(self) -> None:
        """End the session: ZooKeeper removes its ephemeral nodes at once."""
        try:
            self.client.stop()
            self.client.close()
        except Exception:  # already stopped
            pass


# -- the registry -----------------------------------------------------------------------


@dataclass
class Subscription:
    session: Session
    consumer_node: str
    cluster: ClusterConfig


class DubboRegistry(HttpApi):
    """The registry MOSN's ``dubbo_registry`` runs: its HTTP API and what it keeps."""

    name = "dubbo registry API"

    def __init__(self, config: DubboRegistryConfig, context: BuildContext) -> None:
        self.config = config
        self.clusters = context.cluster_manager
        self.routers = context.routers
        self.ip = _publish_ip(config.listener_host)
        self.sessions: dict[tuple[str, str, str], Session] = {}
        self.published: dict[str, Session] = {}
        """Provider node path -> the session it lives in."""
        self.subscribed: dict[str, Subscription] = {}
        """Interface -> its subscription."""
        self.base_routes = self._configured_routes()
        """The router configuration ``dubbo`` as configured (MOSN's empty one if the
        config has none); subscriptions' routes are added to its ``*`` virtual host."""
        # SO_REUSEPORT: the process a hot upgrade starts binds it while this one serves.
        self.sock = bind(Address(API_HOST, config.api_port), reuseport=True)
        self._lock = anyio.Lock()

    def _configured_routes(self) -> dict[str, Any]:
        base = self.routers.config(ROUTER_CONFIG_NAME)
        if base is None:
            return {"router_config_name": ROUTER_CONFIG_NAME, "virtual_hosts": [
                {"name": ROUTER_CONFIG_NAME, "domains": ["*"]}]}
        return base.model_dump(mode="json", by_alias=True, exclude_unset=True)

    def on_reload(self) -> None:
        """A config reload applied in place removed the subscriptions' clusters and
        routes (the file has none of them): add them again to what the file says."""
        self.base_routes = self._configured_routes()
        for subscription in self.subscribed.values():
            self.clusters.add_or_update(subscription.cluster)
        if self.subscribed:
            self._apply_routes()
            log.info("config reloaded: subscriptions %s kept", ", ".join(sorted(self.subscribed)))

    async def run(self) -> None:
        log.info("dubbo registry API on %s:%d; providers published at %s:%d", API_HOST,
                 self.config.api_port, self.ip, self.config.server_port)
        try:
            await self.serve(self.sock)
        finally:
            self.close()

    def close(self) -> None:
        """Close the API and every session (their nodes go with them)."""
        self.sock.close()
        for session in self.sessions.values():
            session.close()
        self.sessions.clear()

    # -- HTTP -------------------------------------------------------------------------

    async def respond(self, method: str, target: str,
                      headers: Iterable[tuple[bytes, bytes]] = (), body: bytes = b""
                      ) -> tuple[int, str, bytes]:
        operation = target.partition("?")[0]
        handler = {"/pub": self.publish, "/unpub": self.unpublish,
                   "/sub": self.subscribe, "/unsub": self.unsubscribe}.get(operation)
        if handler is None:
            return _answer(404, FAILURE, f"no {operation}: POST /pub, /unpub, /sub or /unsub")
        if method != "POST":
            return _answer(405, FAILURE, f"{operation} takes POST")
        word = operation.strip("/")
        try:
            request = parse_request(body)
            async with self._lock:  # one change at a time: the routes are rebuilt whole
                await handler(request)
        except BadRequest as exc:
            return _answer(400, FAILURE, f"{word} fail, err: {exc}")
        except Unavailable as exc:
            return _answer(503, FAILURE, f"{word} fail, err: {exc}")
        except Conflict as exc:
            return _answer(409, FAILURE, f"{word} fail, err: {exc}")
        except Exception as exc:  # a failure here must not take the API (or mosn) down
            log.exception("dubbo registry API: %s failed", operation)
            return _answer(500, FAILURE, f"{word} fail, err: {type(exc).__name__}: {exc}")
        return _answer(200, SUCCESS, f"{_NOUNS[word]} success")

    # -- operations ---------------------------------------------------------------------

    async def _session(self, registry: RegistryRef) -> Session:
        key = (registry.addr, registry.username, registry.password)
        session = self.sessions.get(key)
        if session is None:
            session = await anyio.to_thread.run_sync(Session, registry,
                                                     self.config.session_timeout)
            self.sessions[key] = session
        return session

    def _provider_node(self, service: ServiceRef) -> str:
        url = provider_url(self.ip, self.config.server_port, service.interface,
                           **_provider_params(service))
        return node_path(DEFAULT_ROOT, service.interface, "providers", url)

    async def publish(self, request: RegistryRequest) -> None:
        session = await self._session(request.registry)
        path = self._provider_node(request.service)
        # As a Dubbo provider subscribing to its overrides, make the service's
        # configurators node: Dubbo consumers read it beside the providers.
        await anyio.to_thread.run_sync(session.ensure, node_path(
            DEFAULT_ROOT, request.service.interface, "configurators", "").rstrip("/"))
        await anyio.to_thread.run_sync(session.register, path)
        self.published[path] = session
        log.info("published %s at %s:%d in %s", request.service.interface, self.ip,
                 self.config.server_port, request.registry.addr)

    async def unpublish(self, request: RegistryRequest) -> None:
        path = self._provider_node(request.service)
        session = self.published.pop(path, None) or await self._session(request.registry)
        await anyio.to_thread.run_sync(session.unregister, path)
        log.info("unpublished %s from %s", request.service.interface, request.registry.addr)

    async def subscribe(self, request: RegistryRequest) -> None:
        service = request.service
        name = service.interface
        known = self.clusters.get(name)
        if known is not None and name not in self.subscribed:
            raise Conflict(f"the config has a cluster named {name!r}; a subscription's "
                           "cluster is named by its interface")
        session = await self._session(request.registry)
        url = consumer_url(self.ip, name, **_consumer_params(service))
        node = node_path(DEFAULT_ROOT, name, "consumers", url)
        await anyio.to_thread.run_sync(session.register, node)
        old = self.subscribed.get(name)
        if old is not None and old.consumer_node != node:
            await anyio.to_thread.run_sync(old.session.unregister, old.consumer_node)
        cluster = ClusterConfig.model_validate({
            "name": name, "type": "zookeeper", "lb_type": "LB_RANDOM",
            "cluster_config": {"address": request.registry.addr, "services": [name],
                               "initial_timeout": f"{SUBSCRIBE_READ_TIMEOUT}s"}})
        cluster.set_parsed_cluster_config(
            ZookeeperClusterConfig.model_validate(cluster.cluster_config))
        self.subscribed[name] = Subscription(session, node, cluster)
        self.clusters.add_or_update(cluster)
        self._apply_routes()
        log.info("subscribed to %s in %s", name, request.registry.addr)

    async def unsubscribe(self, request: RegistryRequest) -> None:
        name = request.service.interface
        subscription = self.subscribed.pop(name, None)
        if subscription is None:
            raise Conflict(f"{name} is not subscribed to")
        self._apply_routes()
        self.clusters.remove(name)
        await anyio.to_thread.run_sync(subscription.session.unregister,
                                       subscription.consumer_node)
        log.info("unsubscribed from %s", name)

    def _apply_routes(self) -> None:
        """The ``dubbo`` router configuration: as configured, plus a route per
        subscribed interface in its ``*`` virtual host (MOSN's ``AddRoute``)."""
        raw = json.loads(json.dumps(self.base_routes))
        hosts = raw.setdefault("virtual_hosts", [])
        star = next((h for h in hosts if "*" in h.get("domains", [])), None)
        if star is None:
            star = {"name": ROUTER_CONFIG_NAME, "domains": ["*"]}
            hosts.append(star)
        star["routers"] = [*star.get("routers", []), *(
            {"match": {"headers": [{"name": "service", "value": name}]},
             "route": {"cluster_name": name}} for name in sorted(self.subscribed))]
        self.routers.add_or_update(RouterConfiguration.model_validate(raw))


class Conflict(Exception):
    """The request contradicts what mosn serves."""


_NOUNS = {"pub": "publish", "unpub": "unpub", "sub": "subscribe", "unsub": "unsubscribe"}
"""MOSN's words in its answers (``"publish success"``, ``"unpub success"`` ...)."""


def _answer(status: int, errno: int, message: str) -> tuple[int, str, bytes]:
    return status, "application/json", json.dumps({"err_no": errno, "err_msg": message}
                                                  ).encode()


def _provider_params(service: ServiceRef) -> dict[str, str]:
    params = {"application": "mosn", "category": "providers", "dubbo": "2.0.2",
              "methods": ",".join(service.methods), "side": "provider"}
    if service.group:
        params["group"] = service.group
    if service.version:  # Dubbo's consumers read the revision with the version
        params["version"] = params["revision"] = service.version
    return params


def _consumer_params(service: ServiceRef) -> dict[str, str]:
    params = {"application": "mosn", "category": "consumers", "check": "false",
              "dubbo": "2.0.2", "methods": ",".join(service.methods), "side": "consumer"}
    if service.group:
        params["group"] = service.group
    if service.version:
        params["version"] = service.version
    return params


def _publish_ip(listener_host: str) -> str:
    """The address consumers reach mosn's listener at: the one it binds, when it binds
    one, else this host's (MOSN's ``trace.GetIp``)."""
    if listener_host not in ("", "0.0.0.0", "::"):
        return listener_host
    try:
        return socket.gethostbyname(socket.gethostname())
    except OSError:
        return "127.0.0.1"


def build(config: DubboRegistryConfig, context: BuildContext) -> Any:
    """The factory of the ``dubbo_registry`` extends type (nothing runs when it is not
    enabled)."""
    if not config.enable:
        return Disabled()
    return DubboRegistry(config, context)


class Disabled:
    """An entry with ``enable: false``."""

    async def run(self) -> None:
        return None

    def on_reload(self) -> None:
        return None

    def close(self) -> None:
        return None
