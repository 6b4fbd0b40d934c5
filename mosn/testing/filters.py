"""The stream filter conformance suite: a filter in a real mosn, with real traffic of
every installed protocol.

Subclass :class:`StreamFilterConformance`, name the filter and say what it does to
some requests::

    from mosn.testing import FilterCase, StreamFilterConformance


    class TestGuardConformance(StreamFilterConformance):
        filter_type = "guard"
        filter_config = {"header": "x-token", "tokens": ["s3cret"]}
        cases = [
            FilterCase("a request with a good token goes through", headers={"x-token": "s3cret"}),
            FilterCase("a request without one is refused", status=403),
        ]

Once per class, the suite starts backends for every protocol it can speak (HTTP/1.1,
HTTP/2, and every installed RPC codec: bolt, boltv2, Dubbo, a declared protocol,
yours), and one mosn with a listener per protocol and arrangement of filters. Every
request of a case carries the case's ``service`` and ``method`` (as routing keys; in
HTTP as headers of those names, the path being ``/service/method``) and its
``headers`` (an RPC protocol whose codec cannot add header fields skips such cases).
Services under ``com.example.`` are routed to the protocol's backend. A case's
``status`` is what the client gets: 200 means the filter lets the request through
and the backend answers; any other is the filter's own reply (an RPC client gets
the status its protocol maps it to); ``raises`` means the filter raises on it.

The tests, for each protocol:

- ``test_cases``: each case, the filter alone;
- ``test_cases_when_held_at_every_phase``: the same, with the kit's probe filter
  holding the request (``STOP``, then resuming on the next loop turn) at every phase,
  before the filter and after it;
- ``test_a_reply_at_each_phase_passes_the_filter``: the probe answers at each phase
  (before route, after route, after choosing a host); the filter's ``on_response``
  sees the reply and lets it through;
- ``test_mosn_own_replies_pass_the_filter``: no route (404) and a host that refuses
  connections (503);
- ``test_an_exception_is_the_protocols_error_reply``: the probe raises at the
  filter's phase and in ``on_response``: the client gets a 500 in its protocol,
  counted in ``downstream_rq_filter_error`` of the listener and the protocol;

and once: ``test_registered`` (the extension, its config and a filter made by its
factory) and ``test_an_unknown_config_key_is_reported``. No case may make the filter
raise unless it says ``raises``: each test checks the count of filter errors.
"""

from __future__ import annotations

import copy
import functools
import importlib.util
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Iterator, Mapping, Sequence

import pytest

from mosn.plugins import BuildContext, PluginHost
from mosn.proxy import Phase
from mosn.rpc.codec import FrameCodec
from mosn.rpc.tools import codec_named
from mosn.testing.mock import MockServer
from mosn.testing.probes import PROBES
from mosn.testing.process import (
    MosnProcess,
    assert_reported,
    env_with_path,
    free_port,
    plugin_site,
)
from mosn.testing.traffic import HttpBackend, Reply, http_request, rpc_request

__all__ = ["FilterCase", "StreamFilterConformance", "filter_protocols"]

SERVICE = "com.example.EchoService"
ROUTED = "^com[.]example[.]"
"""Services routed to the protocol's backend."""
DEAD_SERVICE = "com.example.Dead"
"""Routed to a host nothing listens on."""
UNROUTED_SERVICE = "org.example.Unrouted"
PROBE_STATUS = 418
"""What the probe's own replies answer."""
ROUTE_TIMEOUT = "5s"
"""Of every route: a held request that is never resumed fails the test in time."""
STAT_WAIT = 5.0
"""Seconds to wait for a counter to reach its value."""
HTTP_VERSIONS = {"Http1": "1.1", "Http2": "2"}
"""HTTP protocols the suite speaks, and the version its client sends."""
DECLARED = {"codec": {
    "name": "kit", "header_size": 12, "magic": {"text": "KT"},
    "kind": {"offset": 2, "request": "Q", "response": "A"},
    "status": {"offset": 3, "size": 1, "success": 0, "error": 1, "no_route": 2,
               "no_healthy_upstream": 3, "timeout": 4, "upstream_lost": 5, "bad_frame": 6,
               "forbidden": 7, "overflow": 8},
    "request_id": {"offset": 4, "size": 4},
    "length": {"offset": 8, "size": 4},
    "routing": {"service": {"body": {"key": "service"}},
                "method": {"body": {"key": "method"}}},
}}
"""The declared protocol (``xprotocol``) the suite speaks: routing keys in
``key=value`` lines of the body."""
PHASES = ("BEFORE_ROUTE", "AFTER_ROUTE", "AFTER_CHOOSE_HOST")
LOG_TAIL = 3000
"""Characters of mosn's log shown with a failure (a filter's traceback fits)."""


@dataclass(frozen=True)
class FilterCase:
    """A request and what the filter makes of it (see the module's docstring)."""

    name: str
    headers: Mapping[str, str] = field(default_factory=dict)
    service: str = SERVICE
    method: str = "echo"
    status: int = 200
    """200: the filter lets it through (the backend answers); else the filter's reply."""
    raises: bool = False
    """The filter raises on it: the client gets a 500, counted as a filter error."""

    @property
    def forwarded(self) -> bool:
        return self.status == 200 and not self.raises


def protocol_config(name: str) -> dict[str, Any]:
    """What the proxy's ``extend_config.<name>`` holds for the suite's ``name``."""
    return DECLARED if name == "xprotocol" else {}


@functools.lru_cache(maxsize=1)
def filter_protocols() -> tuple[str, ...]:
    """The installed protocols the suite can send requests of: HTTP/1.1 and HTTP/2
    (with httpx and h2 importable) and every protocol whose RPC codec builds."""
    host = PluginHost().load()
    found = []
    for name in host.names("protocol"):
        if name in HTTP_VERSIONS:
            if name == "Http2" and not _importable("httpx", "h2"):
                continue
            found.append(name)
        elif name in host.names("xprotocol_codec"):
            try:
                codec_named(name, host, protocol_config(name))
            except Exception:  # a stub (hsf) or a codec needing config: not spoken here
                continue
            found.append(name)
    return tuple(found)


def _importable(*modules: str) -> bool:
    return all(importlib.util.find_spec(m) is not None for m in modules)


class FilterMesh:
    """One mosn with a listener per (protocol, arrangement), each protocol's backend,
    and the clients to reach them."""

    def __init__(self, workdir: Path, filter_entry: dict[str, Any], phase: Phase) -> None:
        self.protocols = filter_protocols()
        self.codecs: dict[str, FrameCodec] = {
            p: codec_named(p, config=protocol_config(p))
            for p in self.protocols if p not in HTTP_VERSIONS}
        self.http = HttpBackend() if set(self.protocols) & set(HTTP_VERSIONS) else None
        self.rpc = {p: MockServer(codec).start() for p, codec in self.codecs.items()}
        self.arrangements = arrangements(filter_entry, phase)
        self.ports = {(p, a): free_port() for p in self.protocols for a in self.arrangements}
        site = plugin_site(workdir / "site", [PROBES])
        try:
            self.mosn = MosnProcess(self.config(), workdir, env=env_with_path(site))
        except BaseException:
            self.stop()
            raise

    def config(self) -> dict[str, Any]:
        routers, listeners, clusters = [], [], []
        dead = f"127.0.0.1:{free_port()}"
        for p in self.protocols:
            backend = self.http.address if p in HTTP_VERSIONS else self.rpc[p].address
            upstream = {"upstream_protocol": "Http1"} if p == "Http2" else {}
            routers.append({"router_config_name": p, "virtual_hosts": [{
                "name": p, "domains": ["*"], "routers": [
                    {"match": {"headers": [{"name": "service", "value": f"^{DEAD_SERVICE}$",
                                            "regex": True}]},
                     "route": {"cluster_name": f"{p}_dead", "timeout": ROUTE_TIMEOUT,
                               **upstream}},
                    {"match": {"headers": [{"name": "service", "value": ROUTED, "regex": True}]},
                     "route": {"cluster_name": p, "timeout": ROUTE_TIMEOUT, **upstream}}]}]})
            clusters += [{"name": p, "hosts": [{"address": backend}]},
                         {"name": f"{p}_dead", "hosts": [{"address": dead}]}]
            for a, filters in self.arrangements.items():
                proxy = {"downstream_protocol": p, "router_config_name": p}
                if protocol_config(p):
                    proxy["extend_config"] = {p: protocol_config(p)}
                listeners.append({
                    "name": listener_name(p, a), "address": f"127.0.0.1:{self.ports[p, a]}",
                    "stream_filters": copy.deepcopy(filters),
                    "filter_chains": [{"filters": [{"type": "proxy", "config": proxy}]}]})
        return {"servers": [{"graceful_timeout": "1s", "routers": routers,
                             "listeners": listeners}],
                "cluster_manager": {"clusters": clusters}}

    def send(self, protocol: str, arrangement: str, service: str, method: str = "echo",
             headers: Mapping[str, str] = {}) -> Reply:
        port = self.ports[protocol, arrangement]
        if protocol in HTTP_VERSIONS:
            fields = {"service": service, "method": method, **headers}
            return http_request(HTTP_VERSIONS[protocol], port, f"/{service}/{method}", fields)
        return rpc_request(self.codecs[protocol], port, service, method, headers)

    def forwarded(self, protocol: str) -> int:
        """Requests the protocol's backend has received."""
        if protocol in HTTP_VERSIONS:
            return self.http.requests  # type: ignore[union-attr]
        return len(self.rpc[protocol].requests)

    def filter_errors(self, protocol: str, arrangement: str) -> tuple[int, int]:
        """``downstream_rq_filter_error`` of the listener and of the protocol."""
        stats = self.mosn.stats()
        return (stats.get(f"listener.{listener_name(protocol, arrangement)}."
                          "downstream_rq_filter_error", 0),
                stats.get(f"protocol.{protocol}.downstream_rq_filter_error", 0))

    def wait_filter_errors(self, protocol: str, arrangement: str,
                           wanted: tuple[int, int]) -> tuple[int, int]:
        deadline = time.monotonic() + STAT_WAIT
        while True:
            got = self.filter_errors(protocol, arrangement)
            if got == wanted or time.monotonic() > deadline:
                return got
            time.sleep(0.05)

    def expected_status(self, protocol: str, status: int) -> int:
        """What a client of ``protocol`` reads for mosn's own reply ``status``."""
        if protocol in HTTP_VERSIONS:
            return status
        return self.codecs[protocol].error_status(status, ())

    def stop(self) -> None:
        if getattr(self, "mosn", None) is not None:
            self.mosn.stop()
        for server in self.rpc.values():
            server.stop()
        if self.http is not None:
            self.http.stop()


def listener_name(protocol: str, arrangement: str) -> str:
    return f"{protocol.lower()}_{arrangement}"


def probe(action: str, phase: str, status: int = PROBE_STATUS) -> dict[str, Any]:
    return {"type": "kit_probe", "config": {"action": action, "phase": phase, "status": status}}


def arrangements(under_test: dict[str, Any], phase: Phase) -> dict[str, list[dict[str, Any]]]:
    """Listener arrangement -> its ``stream_filters``, the filter under test among
    the kit's probes."""
    holds = [probe("stop", p) for p in PHASES]
    return {
        "alone": [under_test],
        "held_before": [*holds, under_test],
        "held_after": [under_test, *holds],
        **{f"reply_{p.lower()}": [probe("reply", p), under_test] for p in PHASES},
        "raise": [probe("raise", phase.name), under_test],
        "raise_on_response": [under_test, probe("raise_on_response", phase.name)],
    }


class StreamFilterConformance:
    """The suite; a subclass sets ``filter_type`` (and ``filter_config``, ``cases``)."""

    filter_type: ClassVar[str] = ""
    """The name the plugin registers with ``mosn_stream_filters``."""
    filter_config: ClassVar[dict[str, Any]] = {}
    """The filter's ``config`` in the listener's ``stream_filters``."""
    cases: ClassVar[Sequence[FilterCase]] = (FilterCase("a request goes through"),)

    def pytest_generate_tests(self, metafunc: Any) -> None:
        if "protocol" in metafunc.fixturenames:
            protocols = filter_protocols()
            metafunc.parametrize("protocol", protocols or [None], ids=list(protocols) or ["none"])
        if "case" in metafunc.fixturenames:
            metafunc.parametrize("case", list(self.cases), ids=[c.name for c in self.cases])
        if "arrangement" in metafunc.fixturenames:
            metafunc.parametrize("arrangement", ["held_before", "held_after"])
        if "reply_phase" in metafunc.fixturenames:
            metafunc.parametrize("reply_phase", PHASES)

    # -- fixtures -------------------------------------------------------------------------

    @pytest.fixture(scope="class")
    @classmethod
    def built_filter(cls) -> Any:
        """A filter made as mosn makes them: the extension's factory on the validated
        config, then one filter for one stream."""
        if not cls.filter_type:
            pytest.fail(f"{cls.__name__}: set filter_type to the filter's name")
        host = PluginHost().load()
        ext = host.get("stream_filter", cls.filter_type)
        if ext is None:
            pytest.fail(f"no stream filter {cls.filter_type!r} is installed (known: "
                        f"{', '.join(host.names('stream_filter'))}); pip install -e it")
        config = (ext.config_model.model_validate(cls.filter_config)
                  if ext.config_model is not None else None)
        return ext.factory(config, BuildContext(host=host))()

    @pytest.fixture(scope="class")
    @classmethod
    def filter_mesh(cls, built_filter: Any,
                    tmp_path_factory: pytest.TempPathFactory) -> Iterator[FilterMesh]:
        if not filter_protocols():
            pytest.skip("no protocol plugin the suite can speak is installed")
        entry = {"type": cls.filter_type, "config": cls.filter_config}
        mesh = FilterMesh(tmp_path_factory.mktemp("filter-mesh"), entry, built_filter.phase)
        yield mesh
        mesh.stop()

    # -- once ---------------------------------------------------------------------------------

    def test_registered(self, built_filter: Any) -> None:
        assert isinstance(built_filter.phase, Phase), (
            "phase: Phase.BEFORE_ROUTE, AFTER_ROUTE or AFTER_CHOOSE_HOST")
        assert callable(getattr(built_filter, "on_request", None)), "on_request(stream)"
        assert callable(getattr(built_filter, "on_response", None)), "on_response(stream, head)"

    def test_an_unknown_config_key_is_reported(self) -> None:
        config = _one_listener({"type": self.filter_type,
                                "config": {**self.filter_config, "kit_unknown_key": 1}})
        assert_reported(config, "servers[0].listeners[0].stream_filters[0].config.kit_unknown_key")

    # -- per protocol ---------------------------------------------------------------------------

    def check(self, mesh: FilterMesh, protocol: str, arrangement: str, case: FilterCase,
              status: int | None = None, forwarded: bool | None = None,
              filter_errors: int = 0) -> None:
        """Send ``case`` and check the reply's status, whether the backend got it, and
        the filter errors counted on the way."""
        if protocol is None:
            pytest.skip("no protocol plugin the suite can speak is installed")
        status = (500 if case.raises else case.status) if status is None else status
        forwarded = case.forwarded if forwarded is None else forwarded
        filter_errors = filter_errors or int(case.raises)
        before = mesh.forwarded(protocol)
        errors = mesh.filter_errors(protocol, arrangement)
        try:
            reply = mesh.send(protocol, arrangement, case.service, case.method, case.headers)
        except LookupError as exc:
            pytest.skip(str(exc))
        where = f"{case.name!r} over {protocol} ({listener_name(protocol, arrangement)})"
        if status == 200:
            assert reply.http_status == 200, (
                f"{where}: not a success: status {reply.status}; mosn's log:\n"
                f"{mesh.mosn.output()[-LOG_TAIL:]}")
        else:
            wanted = mesh.expected_status(protocol, status)
            assert reply.status == wanted, (
                f"{where}: status {reply.status}, not {wanted} ({status}); mosn's log:\n"
                f"{mesh.mosn.output()[-LOG_TAIL:]}")
        got = mesh.wait_filter_errors(protocol, arrangement,
                                      (errors[0] + filter_errors, errors[1] + filter_errors))
        assert got == (errors[0] + filter_errors, errors[1] + filter_errors), (
            f"{where}: filter errors (listener, protocol) went from {errors} to {got}; "
            f"mosn's log:\n{mesh.mosn.output()[-LOG_TAIL:]}")
        assert mesh.forwarded(protocol) - before == int(forwarded), (
            f"{where}: the backend got {mesh.forwarded(protocol) - before} request(s), "
            f"expected {int(forwarded)}")

    def through_case(self) -> FilterCase:
        """A case the filter lets through, to see what happens around it."""
        for case in self.cases:
            if case.forwarded:
                return case
        pytest.skip("no case the filter lets through (status 200)")

    def test_cases(self, filter_mesh: FilterMesh, protocol: str, case: FilterCase) -> None:
        self.check(filter_mesh, protocol, "alone", case)

    def test_cases_when_held_at_every_phase(self, filter_mesh: FilterMesh, protocol: str,
                                            case: FilterCase, arrangement: str) -> None:
        self.check(filter_mesh, protocol, arrangement, case)

    def test_a_reply_at_each_phase_passes_the_filter(self, filter_mesh: FilterMesh,
                                                     protocol: str, reply_phase: str) -> None:
        self.check(filter_mesh, protocol, f"reply_{reply_phase.lower()}", self.through_case(),
                   status=PROBE_STATUS, forwarded=False)

    def test_mosn_own_replies_pass_the_filter(self, filter_mesh: FilterMesh,
                                              protocol: str) -> None:
        case = self.through_case()
        self.check(filter_mesh, protocol, "alone",
                   FilterCase("no route", case.headers, UNROUTED_SERVICE, case.method),
                   status=404, forwarded=False)
        self.check(filter_mesh, protocol, "alone",
                   FilterCase("a host that refuses", case.headers, DEAD_SERVICE, case.method),
                   status=503, forwarded=False)

    def test_an_exception_is_the_protocols_error_reply(self, filter_mesh: FilterMesh,
                                                       protocol: str) -> None:
        case = self.through_case()
        self.check(filter_mesh, protocol, "raise", case, status=500, forwarded=False,
                   filter_errors=1)
        self.check(filter_mesh, protocol, "raise_on_response", case, status=500,
                   forwarded=True, filter_errors=1)


def _one_listener(stream_filter: dict[str, Any]) -> dict[str, Any]:
    return {"servers": [{"listeners": [{
        "name": "kit", "address": "127.0.0.1:1", "stream_filters": [stream_filter],
        "filter_chains": [{"filters": [{"type": "tcp_proxy", "config": {"cluster": "kit"}}]}]}]}],
        "cluster_manager": {"clusters": [{"name": "kit", "hosts": [{"address": "127.0.0.1:2"}]}]}}
