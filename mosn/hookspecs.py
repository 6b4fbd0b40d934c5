"""Hook specifications: every way a plugin extends mosn.

A plugin is a module (or object) with functions named after these specs and marked
with ``mosn.hookimpl``. Each hook is called once, when the plugin host loads the
plugins, and returns a list of :class:`mosn.plugins.Extension` objects: a name, the
pydantic model of its ``config``, and a factory. The request path never calls a hook;
it calls the objects the factories built (a pluggy call costs microseconds).

The config refers to an extension as ``{type: NAME, config: {...}}`` (filters) or by
name in a field (``lb_type``, a cluster's ``type``). Two extensions of one kind with
the same name are refused, naming both plugins.

Kinds whose machinery is not built yet (routers) are declared here so plugins can be
written against one stable list; the core refuses a config that uses a kind it
cannot run yet.
"""

from __future__ import annotations

import pluggy

hookspec = pluggy.HookspecMarker("mosn")


# -- network (L4) -------------------------------------------------------------------


@hookspec
def mosn_network_filters():
    """Network filters for ``filter_chains[].filters[]``.

    Called once at load time. Returns a list of ``Extension``. The factory is called
    once per filter chain as ``factory(config, context)`` with the validated config
    and a :class:`mosn.plugins.BuildContext`; it returns a callable that is invoked
    for every new connection as ``install(connection)`` and adds read/write filters
    to it (see :mod:`mosn.network.filter`). Examples: ``tcp_proxy``, ``proxy``.
    """


@hookspec
def mosn_listener_filters():
    """Listener filters for ``listeners[].listener_filters[]``, run on accept.

    Returns a list of ``Extension``; the factory is called once per listener as
    ``factory(config, context)`` and returns a callable that makes, for each accepted
    connection, a :class:`mosn.network.ListenerFilter`. It runs before TLS and the
    filter chain: ``on_accept(conn)`` and then, while it answers STOP,
    ``on_data(conn, first_bytes)`` with every byte read so far (nothing is consumed
    unless the filter's ``consumed()`` says how many bytes at the front were its own:
    a PROXY protocol header; the chain gets the rest). It notes what it learns on the
    connection (``original_destination``, ``detected_transport``,
    ``requested_server_name``, ``requested_alpn``, ``restored_remote`` and
    ``restored_local``); the filter chain is chosen with those
    (``filter_chain_match``). Bytes that are wrong: raise
    :class:`mosn.network.ListenerFilterError` (the connection is closed and counted).
    Built in: ``tls_inspector`` (what a listener's ``inspector: true`` adds),
    ``http_inspector``, ``original_dst``, ``proxy_protocol``.
    """


# -- protocols and streams (L7) -----------------------------------------------------


@hookspec
def mosn_protocols():
    """Protocols the ``proxy`` network filter can speak (``downstream_protocol``).

    Returns a list of ``Extension`` whose factory returns a protocol object with a
    ``name``, a ``match(first_bytes)`` matcher (match / no match / need more bytes,
    used by ``downstream_protocol: Auto``) and server and client stream connection
    factories built on sans-IO codecs. Examples: ``Http1``, ``Http2``, ``bolt``.

    An exception a protocol's codec raises is counted (``protocol.<name>.codec_error``),
    logged with the plugin's name and answered in the protocol by the proxy
    (:mod:`mosn.proxy.guard`). A protocol object with an ``errors`` attribute answers
    its codec's exceptions itself (the RPC engine's do); the proxy sets ``errors`` to
    the :class:`mosn.stream.errors.ProtocolErrors` to report them to.
    """


@hookspec
def mosn_xprotocol_codecs():
    """Frame codecs for the multiplexed RPC engine (MOSN's X-protocol).

    Returns a list of ``Extension`` whose factory returns a sans-IO frame codec:
    decode, encode, request id get/set, request/response/oneway/heartbeat tests,
    heartbeat and error replies, routing headers. Examples: ``bolt``, ``dubbo``.
    """


@hookspec
def mosn_stream_filters():
    """Stream filters for ``listeners[].stream_filters[]``.

    Returns a list of ``Extension``; the factory gets ``(config, context)`` once per
    listener and returns a per-stream filter factory (a callable with no arguments
    making a :class:`mosn.proxy.StreamFilter`, or returning one shared filter). Each
    filter declares its ``phase`` (before route, after route, after choosing a host)
    and answers continue, stop (then resumes the stream or answers it later), or a
    direct reply; ``on_response`` sees every response, mosn's own replies included.
    A filter (or filter factory) that raises has its request answered 500 in the
    request's protocol, counted as ``downstream_rq_filter_error``. Examples:
    ``fault``; ``mosn plugin new --kind filter`` writes a rate limit.
    """


@hookspec
def mosn_route_handlers():
    """Route matchers and route actions for ``routers[]``.

    Returns a list of ``Extension``; each factory builds a matcher (request headers
    -> match or not) or an action (a matched route -> cluster choice). Examples:
    header and path matchers, subset selection by metadata.
    """


# -- upstream -----------------------------------------------------------------------


@hookspec
def mosn_load_balancers():
    """Load balancers, named by MOSN's ``lb_type`` (``LB_ROUNDROBIN`` ...).

    Returns a list of ``Extension``; the factory is called as
    ``factory(hosts, cluster_config)`` whenever a cluster's host set is built or
    changes (and once per subset with ``lb_subset_config``), and returns an object
    with ``choose_host(exclude=(), context=None) -> Host | None``: a host whose
    ``healthy`` is true and that is not in ``exclude``. ``context`` is a
    :class:`mosn.upstream.lb.LbContext` (``hash_key``: the route's ``hash_policy``
    result or None; ``metadata_match``) or None. ``host.active_requests`` and
    ``host.weight`` are there to read. An optional ``on_health_change()`` is called
    when a host's health changes. A ``choose_host(exclude)`` without ``context``
    still works. This runs per request: keep it cheap.

    A balancer that makes hosts of its own (``LB_ORIGINAL_DST``) may define
    ``attach(cluster)``, called once it is built (before the workers start), with the
    :class:`mosn.upstream.cluster.Cluster` it serves (its ``store`` for stats, ``tls``,
    and ``on_hosts_removed`` to report the hosts it forgets); and
    ``uses_downstream = True`` to get the downstream connection and the request's
    headers in ``context`` (``downstream``, ``headers``) on every pick.
    """


@hookspec
def mosn_cluster_types():
    """Cluster types (host discovery), named by a cluster's ``type``.

    Returns a list of ``Extension`` whose ``config_model`` (or None: the type takes
    none) validates the cluster's ``cluster_config``. The factory is called as
    ``factory(cluster_config, context)`` with the cluster's
    :class:`mosn.config.ClusterConfig` (its own config validated in
    ``cluster_config.parsed_cluster_config``) while the config is loaded (before any
    worker starts) and returns either the cluster's list of
    :class:`mosn.upstream.Host` (fixed), or a discovery object with ``hosts`` (the
    initial list) and ``async run(update, count_failure)``: run once per process tree
    (in the parent when there are workers), it calls ``update(hosts)`` with each new
    host set (the cluster keeps hosts whose address stays, drains the removed ones
    and sends the set to the workers) and ``count_failure(n)`` for failed look-ups.
    Examples: ``SIMPLE``/``STATIC``, ``STRICT_DNS``, ``zookeeper``.
    """


@hookspec
def mosn_health_checkers():
    """Active health checkers, named by a cluster's ``health_check.protocol``.

    Returns a list of ``Extension`` whose ``config_model`` (or None) validates
    ``health_check.check_config``. The factory is called once per cluster as
    ``factory(check_config, cluster_config)`` with the validated model (or None)
    and returns an object with ``async check(host) -> bool``: one probe of
    ``host.address``, True when healthy. It runs in the process that runs the health
    checks (the parent when there are workers), bounded by ``health_check.timeout``;
    raising ``OSError`` or ``TimeoutError`` counts as a network failure, raising
    :class:`mosn.upstream.health.HealthCheckFailed` as a failed answer. The interval,
    jitter and thresholds are applied around it. Built in: ``tcp``, ``http`` (and
    MOSN's name ``Http1``); an RPC plugin adds its heartbeat (``bolt``).
    """


# -- the process ------------------------------------------------------------------------


@hookspec
def mosn_extends():
    """MOSN's top-level ``extends[]`` entries, named by an entry's ``type`` (MOSN's
    ``RegisterParseExtendConfig``).

    Returns a list of ``Extension`` whose ``config_model`` validates the entry's
    ``config``. The factory is called once per entry when mosn starts serving, in the
    process that runs discovery (mosn refuses ``extends`` with ``--workers`` for now),
    as ``factory(config, context)`` with the validated config and a
    :class:`mosn.plugins.BuildContext` (``cluster_manager`` and ``routers``: the
    managers it may add clusters and route tables to while mosn serves). It binds what
    it listens on then (raising ``OSError`` refuses the start) and returns an object
    with ``async run()``, run until mosn stops (cancelled then; it cleans up in its
    ``finally``); ``on_reload()``, called after a config reload was applied in place
    (the clusters and route tables it added are gone, the file has none of them: it
    adds them again); and ``close()``, which frees what the factory took if ``run``
    never started. A change to ``extends`` itself takes a restart. Example: the Dubbo
    plugin's ``dubbo_registry``.
    """


KINDS: dict[str, str] = {
    "network_filter": "mosn_network_filters",
    "listener_filter": "mosn_listener_filters",
    "protocol": "mosn_protocols",
    "xprotocol_codec": "mosn_xprotocol_codecs",
    "stream_filter": "mosn_stream_filters",
    "route_handler": "mosn_route_handlers",
    "load_balancer": "mosn_load_balancers",
    "cluster_type": "mosn_cluster_types",
    "health_checker": "mosn_health_checkers",
    "extends_type": "mosn_extends",
}
"""Extension kind -> the hook that registers it."""
