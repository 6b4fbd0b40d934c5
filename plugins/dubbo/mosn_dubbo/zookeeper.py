"""The ``zookeeper`` cluster type: a cluster's hosts are the Dubbo providers of its
services registered in ZooKeeper, kept up to date by a watch.

Config (a cluster's ``cluster_config``)::

    - name: echo
      type: zookeeper
      lb_subset_config: {subset_selectors: [[version], [group]]}   # optional
      cluster_config:
        address: 127.0.0.1:2181          # ZooKeeper's connect string
        services: [com.example.EchoService]

How it runs (the core's discovery contract, :func:`mosn.hookspecs.mosn_cluster_types`):
while the config is loaded the providers are read once (waiting up to
``initial_timeout``), so mosn starts with them; then ``run`` keeps a ZooKeeper
session and a children watch on ``/dubbo/<service>/providers`` for each service, and
hands each new set to the cluster (``Cluster.set_hosts``: hosts that stay keep their
connections, removed ones drain, requests in flight finish). It runs once per
process tree: in the parent when mosn has workers, which get the host sets from it.

During a ZooKeeper outage nothing changes: the last known providers stay and the
client reconnects (kazoo retries for ever); the watch is set again on the new
connection (or session) and the providers read then replace the old set.
Like a Dubbo consumer (``ZookeeperRegistry.doSubscribe``) it creates a missing
``providers`` path, so a service with no provider yet is watched all the same.

kazoo runs its own threads; its callbacks only post the children they saw to the
event loop, where the hosts are built and applied.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any, Callable

from pydantic import Field, ValidationError, field_validator

from mosn.config.base import Model
from mosn.config.models import ClusterConfig
from mosn.config.types import Duration
from mosn.plugins import BuildContext
from mosn.upstream.cluster import Host
from mosn_dubbo.registry import DEFAULT_ROOT, Provider, parse_provider, providers_path

log = logging.getLogger("mosn.dubbo.zookeeper")

CONFIG_KEY = "cluster_config"
"""The cluster's key holding this type's config (as ``health_check.check_config``)."""
DEFAULT_SESSION_TIMEOUT = 10.0
"""Seconds ZooKeeper keeps the session through a disconnection (kazoo's default)."""
DEFAULT_INITIAL_TIMEOUT = 3.0
"""Seconds the config load waits for the first provider list; past it mosn starts
with no host and the watch fills the cluster when ZooKeeper answers."""
MAX_RETRY_DELAY = 2.0
"""Seconds between reconnection attempts at most (kazoo backs off up to this)."""


class ZookeeperClusterConfig(Model):
    address: str = Field(min_length=1)
    """ZooKeeper's connect string: ``host:port[,host:port...][/chroot]``."""
    services: list[str] = Field(min_length=1)
    """Dubbo interfaces whose providers are the cluster's hosts (one host per address:
    a provider offering several of them counts once, with the metadata of the first)."""
    root: str = DEFAULT_ROOT
    """The registry root (Dubbo's registry ``group``)."""
    protocol: str = "dubbo"
    """Only provider URLs of this protocol are hosts."""
    session_timeout: Duration = DEFAULT_SESSION_TIMEOUT
    initial_timeout: Duration = DEFAULT_INITIAL_TIMEOUT

    @field_validator("root")
    @classmethod
    def _root(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError("root is a ZooKeeper path: it starts with '/'")
        return value


def cluster_config(config: ClusterConfig) -> ZookeeperClusterConfig:
    """The cluster's ``cluster_config``, validated (by the config loader, or here for
    a cluster built without it)."""
    parsed = config.parsed_cluster_config
    if isinstance(parsed, ZookeeperClusterConfig):
        return parsed
    raw = config.cluster_config
    if raw is None:
        raise ValueError(f"cluster {config.name}: type zookeeper needs {CONFIG_KEY}: "
                         "{address: HOST:PORT, services: [INTERFACE ...]}")
    try:
        return ZookeeperClusterConfig.model_validate(raw)
    except ValidationError as e:
        raise ValueError(f"cluster {config.name}: {CONFIG_KEY}: {e}") from None


def build_hosts(children: dict[str, list[str]], protocol: str) -> list[Host]:
    """Hosts from each service's provider znodes, one per address (first wins), in a
    stable order."""
    seen: dict[Any, Provider] = {}
    for service in sorted(children):
        for znode in sorted(children[service]):
            provider = parse_provider(znode, protocol)
            if provider is not None:
                seen.setdefault(provider.address, provider)
    return [Host(p.address, weight=p.weight, metadata=dict(p.metadata)) for p in seen.values()]


class ZookeeperDiscovery:
    """A cluster type's discovery object: ``hosts`` now, ``run`` to follow changes."""

    def __init__(self, name: str, config: ZookeeperClusterConfig,
                 client_factory: Callable[..., Any] | None = None) -> None:
        self.name = name
        self.config = config
        self.paths = {s: providers_path(config.root, s) for s in config.services}
        self._client_factory = client_factory or _kazoo_client
        self.children: dict[str, list[str]] | None = None
        """Each service's provider znodes as last seen (None: never read)."""
        self.hosts: list[Host] = []
        self._read_once()

    # -- the first read, while the config loads -----------------------------------------

    def _read_once(self) -> None:
        client = self._client_factory(self.config)
        try:
            client.start(timeout=self.config.initial_timeout)
            self.children = {s: sorted(client.get_children(p)) if client.exists(p) else []
                             for s, p in self.paths.items()}
            self.hosts = build_hosts(self.children, self.config.protocol)
            log.info("cluster %s: %d providers in ZooKeeper", self.name, len(self.hosts))
        except Exception as e:  # kazoo's timeouts and connection errors
            log.warning("cluster %s: ZooKeeper at %s not read (%s); starting with no host",
                        self.name, self.config.address, e or type(e).__name__)
        finally:
            _shutdown(client)  # no kazoo thread may live across the workers' fork

    # -- following changes ----------------------------------------------------------------

    async def run(self, update: Callable[[list[Host]], Any],
                  count_failure: Callable[[int], None]) -> None:
        loop = asyncio.get_running_loop()
        seen = dict(self.children or {})
        client = self._client_factory(self.config)

        def apply(service: str, children: list[str]) -> None:
            if seen.get(service) == children and self.children is not None:
                return
            seen[service] = children
            self.children = dict(seen)
            hosts = build_hosts(seen, self.config.protocol)
            log.info("cluster %s: providers now %s", self.name,
                     ", ".join(str(h.address) for h in hosts) or "none")
            self.hosts = hosts
            update(hosts)

        def on_state(state: str) -> None:
            if state != "CONNECTED":  # SUSPENDED or LOST: keep the hosts, count it
                loop.call_soon_threadsafe(count_failure, 1)
                log.warning("cluster %s: ZooKeeper connection %s; keeping %d hosts",
                            self.name, state.lower(), len(self.hosts))

        client.add_listener(on_state)
        stopped = threading.Event()
        try:
            await loop.run_in_executor(None, self._watch_all, client, loop, apply, stopped)
            await asyncio.Event().wait()  # until cancelled
        finally:
            stopped.set()
            _shutdown(client)

    def _watch_all(self, client: Any, loop: asyncio.AbstractEventLoop,
                   apply: Callable[[str, list[str]], None], stopped: threading.Event) -> None:
        """Connect (retrying for ever) and set a children watch per service; in a
        thread, since kazoo blocks."""
        from kazoo.recipe.watchers import ChildrenWatch

        connected = client.start_async()  # kazoo retries the connection for ever
        while not stopped.is_set() and not connected.wait(MAX_RETRY_DELAY):
            pass
        for service, path in self.paths.items():
            while not stopped.is_set():
                try:
                    client.ensure_path(path)
                    break
                except Exception as e:
                    log.warning("cluster %s: %s: %s", self.name, path, e or type(e).__name__)
                    stopped.wait(MAX_RETRY_DELAY)

            def watch(children: list[str], service: str = service) -> bool | None:
                if stopped.is_set():
                    return False  # ends the watch
                loop.call_soon_threadsafe(apply, service, sorted(children))
                return None

            if not stopped.is_set():
                ChildrenWatch(client, path, watch, allow_session_lost=True)


def _kazoo_client(config: ZookeeperClusterConfig) -> Any:
    from kazoo.client import KazooClient
    from kazoo.retry import KazooRetry

    retry = {"max_tries": -1, "max_delay": MAX_RETRY_DELAY}
    return KazooClient(hosts=config.address, timeout=config.session_timeout,
                       connection_retry=KazooRetry(**retry), command_retry=KazooRetry(**retry))


def _shutdown(client: Any) -> None:
    try:
        client.stop()
        client.close()
    except Exception:  # already stopped
        pass


def zookeeper_cluster(config: ClusterConfig, context: BuildContext | None = None
                      ) -> ZookeeperDiscovery:
    return ZookeeperDiscovery(config.name, cluster_config(config))
