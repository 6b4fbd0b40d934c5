"""mosn driven by the tests' control plane, end to end: resources pushed over ADS
become listeners, routes and clusters serving real requests (httpx to uvicorn
upstreams), a bad push is NACKed while the last good config serves, and traffic
flows through the control plane going away and coming back."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import ssl
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest

from conftest import ROOT, free_port
from mosn.testing.peers import ensure_venv
from mosn.testing.process import MosnProcess, serving, stop_process, wait_for_port
from mosn.testing.certs import CertificateAuthority
from mosn.xds.resources import CLUSTERS, ENDPOINTS, LISTENERS, ROUTES, SECRETS
from mosn.testing.control_plane import ControlPlane
from xds_resources import (
    LOCAL_RATELIMIT,
    RBAC,
    ROUTER_FILTER,
    assignment,
    ca_secret,
    eds_cluster,
    http_filter,
    http_listener,
    message,
    outbound,
    route,
    route_configuration,
    sds,
    service,
    static_cluster,
    tls_secret,
)

HTTP_UPSTREAM = ROOT / "examples" / "http_upstream.py"
REVIEWS = service("reviews")
CLUSTER = outbound(9080, REVIEWS)
FOLLOW = 10.0  # seconds a test waits for traffic to follow a push


@pytest.fixture(scope="module")
def upstreams() -> Iterator[dict[str, int]]:
    with contextlib.ExitStack() as stack:
        yield {name: stack.enter_context(serving(
            lambda port, name=name: [sys.executable, str(HTTP_UPSTREAM), "--port", str(port),
                                     "--name", name]))
            for name in ("v1", "v2", "v3")}


@pytest.fixture
def plane() -> Iterator[ControlPlane]:
    cp = ControlPlane()
    cp.start()
    yield cp
    cp.stop()


def bootstrap(plane: ControlPlane, delta: bool = False) -> dict[str, Any]:
    return {
        "node": {"id": "sidecar~127.0.0.1~reviews.default~default.svc.cluster.local",
                 "cluster": "reviews.default"},
        "dynamic_resources": {
            "ads_config": {"api_type": "DELTA_GRPC" if delta else "GRPC",
                           "transport_api_version": "V3",
                           "grpc_services": [{"envoy_grpc": {"cluster_name": "xds-grpc"}}]},
            "cds_config": {"ads": {}, "resource_api_version": "V3"},
            "lds_config": {"ads": {}, "resource_api_version": "V3"},
        },
        "cluster_manager": {"clusters": [{"name": "xds-grpc", "type": "STATIC",
                                          "hosts": [{"address": f"127.0.0.1:{plane.port}"}]}]},
    }


def snapshot(port: int, upstreams: dict[str, int], *, names: tuple[str, ...] = ("v1",),
             regex: str = "/api/v[0-9]+", cluster: str = CLUSTER) -> list[Any]:
    return [
        message(LISTENERS, http_listener(port, "9080", address="127.0.0.1", bind=True)),
        message(CLUSTERS, eds_cluster(9080, REVIEWS, lb_policy="ROUND_ROBIN")),
        message(ENDPOINTS, assignment(CLUSTER, {"zone-a": [
            f"127.0.0.1:{upstreams[n]}" for n in names]})),
        message(ROUTES, route_configuration("9080", [{"name": "all", "domains": ["*"], "routes": [
            route({"safe_regex": {"regex": regex}}, cluster),
            route({"prefix": "/"}, cluster)]}])),
    ]


def get(port: int, path: str = "/") -> httpx.Response:
    return httpx.get(f"http://127.0.0.1:{port}{path}", timeout=5)


def wait_until(check: Any, timeout: float = FOLLOW) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = check()
        except httpx.HTTPError:
            result = None
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout}s")
        time.sleep(0.05)


@pytest.mark.parametrize("delta", [False, True], ids=["sotw", "delta"])
def test_pushed_resources_serve_and_endpoints_follow(start_mosn, plane, upstreams, delta):
    port = free_port()
    plane.set("1", snapshot(port, upstreams))
    mosn = start_mosn(bootstrap(plane, delta))
    wait_until(lambda: get(port, "/api/v1").status_code == 200)
    assert get(port).headers["x-upstream"] == "v1"
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
        assert client.get("/").status_code == 200  # a kept-alive connection ...
        plane.set("2", snapshot(port, upstreams, names=("v2", "v3")))
        wait_until(lambda: get(port).headers["x-upstream"] in ("v2", "v3"))
        seen = {get(port).headers["x-upstream"] for _ in range(10)}
        assert seen == {"v2", "v3"}
        assert client.get("/").headers["x-upstream"] in ("v2", "v3")  # ... still serves
    stats = mosn.stats()
    assert stats["control_plane.connected_state"] == 1
    assert stats["xds.eds.update_success"] >= 2
    assert stats["listener_manager.lds.update_success"] >= 1


def test_a_bad_push_is_nacked_and_the_last_good_config_serves(start_mosn, plane, upstreams):
    port = free_port()
    plane.set("1", snapshot(port, upstreams))
    mosn = start_mosn(bootstrap(plane))
    wait_until(lambda: get(port).status_code == 200)
    plane.set("2", snapshot(port, upstreams, names=("v2",), regex="/api/v[0-9+("))
    nack = plane.nacked(ROUTES.url)
    assert "RouteConfiguration '9080': virtual_hosts[0].routers[0].match.regex: invalid regex" in nack.error
    assert nack.version_info == "1"
    plane.acked(ENDPOINTS.url, "2")  # the endpoints of version 2 are fine and serve
    wait_until(lambda: get(port).headers["x-upstream"] == "v2")
    assert mosn.stats()["xds.rds.update_rejected"] >= 1
    dump = mosn.admin("/config_dump").json()
    routes = next(c for c in dump["configs"] if c["@type"].endswith("RoutesConfigDump"))
    assert routes["dynamic_route_configs"][0]["version_info"] == "1"
    assert routes["dynamic_route_configs"][0]["route_config"]["name"] == "9080"


def test_a_route_to_a_cluster_not_yet_known_answers_503_until_it_arrives(
        start_mosn, plane, upstreams):
    port = free_port()
    later = outbound(9080, service("ratings"))
    resources = snapshot(port, upstreams, cluster=later)
    plane.set("1", resources)
    start_mosn(bootstrap(plane))
    response = wait_until(lambda: get(port) if get(port).status_code == 503 else None)
    assert response.status_code == 503
    plane.set("2", [*resources, message(CLUSTERS, static_cluster(
        later, [f"127.0.0.1:{upstreams['v3']}"]))])
    wait_until(lambda: get(port).status_code == 200)
    assert get(port).headers["x-upstream"] == "v3"


def test_traffic_flows_while_the_control_plane_is_away(start_mosn, plane, upstreams):
    port = free_port()
    plane.set("1", snapshot(port, upstreams))
    mosn = start_mosn(bootstrap(plane))
    wait_until(lambda: get(port).status_code == 200)
    cp_port = plane.port
    plane.stop()
    wait_until(lambda: mosn.stats()["control_plane.connected_state"] == 0)
    assert all(get(port).status_code == 200 for _ in range(20))
    plane.requests.clear()
    plane.start(cp_port)
    plane.set("2", snapshot(port, upstreams, names=("v3",)))
    wait_until(lambda: get(port).headers["x-upstream"] == "v3", timeout=40)
    assert mosn.stats()["control_plane.connected_state"] == 1


@pytest.mark.parametrize("workers", ["1", pytest.param("2", marks=pytest.mark.long)])
def test_an_upgrade_hands_the_accepted_resources_to_the_new_process(plane, upstreams, tmp_path,
                                                                    workers):
    """With ``--workers 2`` in the new process (as long as the one-process case: not
    in CI), its parent serves them before the fork: the workers start with them."""
    port = free_port()
    plane.set("1", snapshot(port, upstreams, names=("v2",)))
    config = bootstrap(plane)
    old = MosnProcess(config, tmp_path)
    new = None
    try:
        wait_until(lambda: get(port).headers["x-upstream"] == "v2")
        cp_port = plane.port
        plane.stop()  # the new process can only have the resources from the old one
        new = MosnProcess(config, tmp_path, ["--workers", workers], wait=False)
        old.proc.wait(timeout=60)  # the old one exits once the new one serves
        new.wait_ready()
        assert "serving the control plane's resources handed over" in new.output()
        assert get(port).headers["x-upstream"] == "v2"  # at once, the control plane away
        dump = new.admin("/config_dump").json()
        routes = next(c for c in dump["configs"] if c["@type"].endswith("RoutesConfigDump"))
        assert routes["dynamic_route_configs"][0]["version_info"] == "1"
        # ... and then it subscribes itself
        plane.requests.clear()
        plane.start(cp_port)
        plane.set("2", snapshot(port, upstreams, names=("v3",)))
        wait_until(lambda: get(port).headers["x-upstream"] == "v3", timeout=40)
        assert new.stats()["control_plane.connected_state"] == 1
    finally:
        old.stop()
        if new is not None:
            new.stop()


def test_an_endpoint_update_keeps_the_connections_to_hosts_that_remain(
        start_mosn, plane, upstreams):
    port = free_port()
    plane.set("1", snapshot(port, upstreams, names=("v1",)))
    mosn = start_mosn(bootstrap(plane))
    wait_until(lambda: get(port).status_code == 200)
    opened = f"cluster.{CLUSTER}.upstream_cx_total"
    assert all(get(port).headers["x-upstream"] == "v1" for _ in range(3))
    assert mosn.stats()[opened] == 1  # one pooled connection to v1
    plane.set("2", snapshot(port, upstreams, names=("v1", "v2")))
    plane.acked(ENDPOINTS.url, "2")
    seen = [get(port).headers["x-upstream"] for _ in range(6)]
    assert set(seen) == {"v1", "v2"}
    assert mosn.stats()[opened] == 2  # v1's connection kept; one more, to v2


def test_rest_polling(start_mosn, plane, upstreams):
    rest = plane.start_rest()
    port = free_port()
    plane.set("1", snapshot(port, upstreams, names=("v1",)))
    source = {"api_config_source": {"api_type": "REST", "transport_api_version": "V3",
                                    "cluster_names": ["xds-rest"], "refresh_delay": "0.2s"}}
    config = {"node": {"id": "rest-node", "cluster": "c"},
              "dynamic_resources": {"lds_config": source, "cds_config": source},
              "cluster_manager": {"clusters": [{"name": "xds-rest", "type": "STATIC",
                                                "hosts": [{"address": f"127.0.0.1:{rest}"}]}]}}
    mosn = start_mosn(config)
    wait_until(lambda: get(port).headers.get("x-upstream") == "v1")
    plane.set("2", snapshot(port, upstreams, names=("v2",), regex="/v[0-9+("))
    nack = plane.nacked(ROUTES.url)
    assert "invalid regex" in nack.error and nack.version_info == "1"
    wait_until(lambda: get(port).headers.get("x-upstream") == "v2")  # the endpoints of 2 serve
    assert mosn.stats()["xds.rds.update_rejected"] >= 1


SOVEREIGN = Path(__file__).parent / "peers" / "sovereign"
REFRESH = 1  # seconds between sovereign's reads of its template context


@pytest.fixture(scope="module")
def sovereign_python() -> Path:
    return ensure_venv(SOVEREIGN / ".venv-sovereign", SOVEREIGN / "requirements.txt")


def sovereign_config(tmp_path: Path, port: int) -> Path:
    """sovereign's config: one template per resource type (its own Jinja-over-YAML
    format), the upstream's port read from a file it polls (``backend.port``)."""
    listener = http_listener(port, inline={"name": "inline", "virtual_hosts": [{
        "name": "all", "domains": ["*"], "routes": [route({"prefix": "/"}, "backend")]}]},
        address="127.0.0.1", bind=True)
    cluster = static_cluster("backend", ["127.0.0.1:1"])
    templates = {"listeners": [listener], "clusters": [cluster], "routes": [], "endpoints": []}
    specs = []
    for kind, resources in templates.items():
        text = json.dumps({"resources": resources}).replace(
            '"port_value": 1}', '"port_value": {{ backend.port }}}')
        (tmp_path / f"{kind}.yaml").write_text(text)
        specs.append({"type": kind, "spec": {"protocol": "file", "serialization": "jinja",
                                             "path": str(tmp_path / f"{kind}.yaml")}})
    config = {"templates": {"default": specs},
              "template_context": {"refresh": True, "refresh_rate": REFRESH, "context": {
                  "backend": {"protocol": "file", "serialization": "yaml",
                              "path": str(tmp_path / "backend.yaml")}}},
              "authentication": {"enabled": False}, "statsd": {"enabled": False}}
    path = tmp_path / "sovereign.yaml"
    path.write_text(json.dumps(config))
    return path


def test_rest_polling_from_sovereign(start_mosn, upstreams, sovereign_python, tmp_path):
    """A third-party control plane (sovereign, from PyPI) over REST: what its
    templates render serves, and a change of its data follows."""
    port = free_port()
    (tmp_path / "backend.yaml").write_text(f"port: {upstreams['v1']}\n")
    config = sovereign_config(tmp_path, port)
    cp = free_port()
    env = {**os.environ, "SOVEREIGN_CONFIG": f"file://{config}", "SOVEREIGN_HOST": "127.0.0.1",
           "SOVEREIGN_PORT": str(cp), "SOVEREIGN_WORKERS": "1"}
    log = open(tmp_path / "sovereign.log", "w")  # noqa: SIM115 (open while it runs)
    proc = subprocess.Popen([str(sovereign_python.parent / "sovereign")], env=env,
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for_port(cp)
        source = {"api_config_source": {"api_type": "REST", "transport_api_version": "V3",
                                        "cluster_names": ["sovereign"], "refresh_delay": "0.2s"}}
        start_mosn({"node": {"id": "rest-node", "cluster": "c",
                             "metadata": {"envoy_version": "1.40.0"}},
                    "dynamic_resources": {"lds_config": source, "cds_config": source},
                    "cluster_manager": {"clusters": [{"name": "sovereign", "type": "STATIC",
                                                      "hosts": [{"address": f"127.0.0.1:{cp}"}]}]}})
        wait_until(lambda: get(port).headers.get("x-upstream") == "v1", timeout=60)
        (tmp_path / "backend.yaml").write_text(f"port: {upstreams['v2']}\n")
        wait_until(lambda: get(port).headers.get("x-upstream") == "v2", timeout=60)
    finally:
        stop_process(proc)
        log.close()


def test_mtls_listener_from_sds_secrets(start_mosn, plane, upstreams, tmp_path):
    """Istio's inbound shape: the workload certificate (``default``) and the mesh's
    root (``ROOTCA``) by SDS; the listener warms until both arrive."""
    ca = CertificateAuthority("mesh CA")
    server = ca.issue(uris=["spiffe://cluster.local/ns/default/sa/reviews"], dns=["localhost"],
                      ips=["127.0.0.1"])
    client = ca.issue(uris=["spiffe://cluster.local/ns/default/sa/productpage"]).write(
        tmp_path / "client")
    port = free_port()
    resources = snapshot(port, upstreams)
    tls_listener = http_listener(port, "9080", address="127.0.0.1", bind=True)
    tls_listener["filter_chains"][0]["transport_socket"] = {
        "name": "envoy.transport_sockets.tls", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
            "require_client_certificate": True,
            "common_tls_context": {
                "tls_certificate_sds_secret_configs": [sds("default")],
                "combined_validation_context": {
                    "default_validation_context": {"match_subject_alt_names": [
                        {"prefix": "spiffe://cluster.local/ns/default/"}]},
                    "validation_context_sds_secret_config": sds("ROOTCA")}}}}
    resources[0] = message(LISTENERS, tls_listener)
    plane.set("1", resources)
    mosn = start_mosn(bootstrap(plane))
    seen = plane.wait_for(lambda s: s.type_url == SECRETS.url and s.names)
    assert seen.names == ["ROOTCA", "default"]
    plane.acked(LISTENERS.url, "1")
    with pytest.raises(httpx.HTTPError):  # warming: no listener yet
        httpx.get(f"https://127.0.0.1:{port}/", timeout=1, verify=False)
    plane.set("2", [*resources,
                    message(SECRETS, tls_secret("default", server.cert_pem.decode(),
                                                server.key_pem.decode())),
                    message(SECRETS, ca_secret("ROOTCA", server.ca_pem.decode()))])
    plane.acked(SECRETS.url, "2")
    context = ssl.create_default_context(cafile=client["ca"])
    context.load_cert_chain(client["cert"], client["key"])
    response = wait_until(lambda: httpx.get(f"https://127.0.0.1:{port}/", timeout=5,
                                            verify=context))
    assert response.status_code == 200 and response.headers["x-upstream"] == "v1"
    plain = ssl.create_default_context(cafile=client["ca"])  # no client certificate
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"https://127.0.0.1:{port}/", timeout=5, verify=plain)
    dump = mosn.admin("/config_dump")
    assert "SecretsConfigDump" in dump.text
    assert "PRIVATE KEY" not in dump.text  # the admin API redacts secrets


def test_bolt_through_mosns_proxy_filter_from_xds(start_mosn, plane, tmp_path):
    """mosn's own protocols by xDS: a TypedStruct names mosn's proxy filter (bolt), its
    routes come by RDS matching on the RPC service."""
    backend = free_port()
    server = subprocess.Popen([sys.executable, "-m", "mosn", "mock", "server", "--protocol",
                               "bolt", "--listen", f"127.0.0.1:{backend}"],
                              stdout=subprocess.DEVNULL)
    try:
        wait_for_port(backend, timeout=60)
        port = free_port()
        rpc = http_listener(port, address="127.0.0.1", bind=True)
        rpc["filter_chains"][0]["filters"] = [{"name": "mosn.proxy", "typed_config": {
            "@type": "type.googleapis.com/xds.type.v3.TypedStruct",
            "type_url": "type.googleapis.com/mosn.proxy",
            "value": {"downstream_protocol": "bolt", "router_config_name": "bolt_routes"}}}]
        plane.set("1", [
            message(LISTENERS, rpc),
            message(CLUSTERS, static_cluster("echo-service", [f"127.0.0.1:{backend}"])),
            message(ROUTES, route_configuration("bolt_routes", [{
                "name": "rpc", "domains": ["*"], "routes": [{
                    "match": {"headers": [{"name": "service", "string_match": {
                        "prefix": "com.example."}}]},
                    "route": {"cluster": "echo-service", "timeout": "3s"}}]}]))])
        start_mosn(bootstrap(plane))
        plane.acked(ROUTES.url, "1")
        wait_for_port(port, timeout=60)
        done = subprocess.run([sys.executable, "-m", "mosn", "mock", "client", "--protocol",
                               "bolt", "--target", f"127.0.0.1:{port}", "--service",
                               "com.example.EchoService:1.0", "--count", "3"],
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "3 requests: 3 succeeded, 0 failed" in done.stdout
        other = subprocess.run([sys.executable, "-m", "mosn", "mock", "client", "--protocol",
                                "bolt", "--target", f"127.0.0.1:{port}", "--service",
                                "org.other.Service:1.0"], capture_output=True, text=True,
                               timeout=120)
        assert "status 6 (http 500)" in other.stdout  # no route: bolt's NO_PROCESSOR
    finally:
        server.terminate()
        server.wait(30)


def test_holds_hundreds_of_eds_clusters(start_mosn, plane, upstreams):
    """300 clusters of 20 endpoints (6,000 hosts, their stats registered as they come):
    all taken, and traffic to the first still flows."""
    port = free_port()
    many = [x for c in range(300) for x in (
        message(CLUSTERS, eds_cluster(c, f"svc-{c}.default.svc.cluster.local")),
        message(ENDPOINTS, assignment(outbound(c, f"svc-{c}.default.svc.cluster.local"), {
            "": [f"127.2.{c // 10}.{(c % 10) * 20 + i + 1}:{upstreams['v1']}" for i in range(20)]})))]
    plane.set("1", [*snapshot(port, upstreams), *many])
    mosn = start_mosn(bootstrap(plane))
    plane.took(ENDPOINTS.url, 301, timeout=180)
    assert get(port).headers["x-upstream"] == "v1"
    stats = mosn.admin("/stats?format=json", timeout=120).json()["stats"]  # 100,000 of them
    assert stats["xds.eds.update_rejected"] == 0
    assert sum(1 for name in stats if name.endswith(".upstream_cx_total")) >= 301


RATINGS = service("ratings")


def _worker_of(mosn_pid: int, listen_port: int, client_port: int) -> int | None:
    """The worker of the mosn ``mosn_pid`` that holds the server end of the connection
    from ``client_port`` to ``listen_port`` (read from /proc), or None."""
    inodes = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote = fields[1], fields[2]
        if int(local.split(":")[1], 16) == listen_port and \
                int(remote.split(":")[1], 16) == client_port:
            inodes.add(f"socket:[{fields[9]}]")
    children = Path(f"/proc/{mosn_pid}/task/{mosn_pid}/children").read_text().split()
    for pid in map(int, children):
        with contextlib.suppress(OSError):
            if any(os.readlink(fd) in inodes for fd in Path(f"/proc/{pid}/fd").iterdir()):
                return pid
    return None


def _one_per_worker(mosn: MosnProcess, port: int, stack: contextlib.ExitStack,
                    ) -> dict[int, httpx.Client]:
    """A kept-alive connection to ``port`` held by each of mosn's two workers (fresh
    ones until both have one), by worker pid."""
    by_worker: dict[int, httpx.Client] = {}
    deadline = time.monotonic() + FOLLOW
    while len(by_worker) < 2:
        assert time.monotonic() < deadline, f"one worker took every connection: {by_worker}"
        client = stack.enter_context(httpx.Client(base_url=f"http://127.0.0.1:{port}",
                                                  timeout=5))
        # httpx's documented "network_stream" response extension: the connection's socket.
        stream = client.get("/").extensions["network_stream"]
        sock = stream.get_extra_info("socket")
        worker = _worker_of(mosn.proc.pid, port, sock.getsockname()[1])
        if worker is not None and worker not in by_worker:
            by_worker[worker] = client
    return by_worker


def _upstreams_seen(clients: Any) -> set[str]:
    return {client.get("/").headers["x-upstream"] for client in clients}


def test_workers_follow_the_parent_subscription(start_mosn, plane, upstreams):
    """``--workers 2`` under a control plane: the parent subscribes; each worker serves
    the first snapshot, follows a push of a new cluster, route, endpoints and listener
    (its socket bound by the parent), stays on it when the next push is NACKed; the new
    cluster's stats are the sum of both workers' (registered after the fork, at the
    same index in every process); a reload's new workers start from the snapshot
    accepted last, with the control plane away."""
    port, port2 = free_port(), free_port()
    plane.set("1", snapshot(port, upstreams))
    mosn = start_mosn(bootstrap(plane), "--workers", "2")
    wait_until(lambda: get(port).status_code == 200)
    with contextlib.ExitStack() as stack:
        clients = list(_one_per_worker(mosn, port, stack).values())
        assert _upstreams_seen(clients) == {"v1"}

        ratings = outbound(9080, RATINGS)
        new = snapshot(port, upstreams, cluster=ratings)
        new += [message(CLUSTERS, eds_cluster(9080, RATINGS, lb_policy="ROUND_ROBIN")),
                message(ENDPOINTS, assignment(ratings, {"zone-a": [
                    f"127.0.0.1:{upstreams['v2']}"]})),
                message(LISTENERS, http_listener(port2, "9080", address="127.0.0.1",
                                                 bind=True))]
        plane.set("2", new)
        plane.acked(ROUTES.url, "2")
        plane.acked(ENDPOINTS.url, "2")
        # The parent ACKs once it serves the push; each worker follows right after
        # (meanwhile a worker may answer 503: the control plane sends the route before
        # the new cluster's endpoints, and a route to a warming cluster answers 503).
        for client in clients:
            wait_until(lambda client=client: client.get("/").headers.get("x-upstream") == "v2")
        sent = len(clients)
        for _ in range(5):  # from then on, only the new answer
            assert _upstreams_seen(clients) == {"v2"}
            sent += len(clients)
        on_port2 = _one_per_worker(mosn, port2, stack)  # the listener added: both serve it
        assert _upstreams_seen(on_port2.values()) == {"v2"}
        sent += 2 + len(on_port2)
        stats = mosn.stats()
        assert stats[f"cluster.{ratings}.upstream_rq_total"] >= sent
        assert stats["server.worker_stats_diverged"] == 0
        assert stats["server.worker_xds_apply_failed"] == 0

        bad = snapshot(port, upstreams, regex="/api/v[0-9+(")  # back to reviews, refused
        bad += new[4:]
        plane.set("3", bad)
        assert "invalid regex" in plane.nacked(ROUTES.url).error
        assert _upstreams_seen(clients) == {"v2"}
        after = mosn.stats()
        assert after["xds.rds.update_rejected"] >= 1
        assert after[f"cluster.{ratings}.upstream_rq_total"] == \
            stats[f"cluster.{ratings}.upstream_rq_total"] + len(clients)
        workers = set(on_port2)

    plane.stop()  # what the next workers serve can only come from the parent
    for reloads in (1, 2):  # the second reads the file the first one left in place
        os.kill(mosn.proc.pid, signal.SIGHUP)
        assert mosn.wait_stat("server.reload_success", reloads,
                              timeout=FOLLOW)["server.reload_success"] == reloads
        with contextlib.ExitStack() as stack:
            reloaded = _one_per_worker(mosn, port2, stack)
            assert not set(reloaded) & workers
            assert _upstreams_seen(reloaded.values()) == {"v2"}
            workers = set(reloaded)


DENY_ADMIN = http_filter("rbac", RBAC, rules={"action": "DENY", "policies": {"admin": {
    "permissions": [{"url_path": {"path": {"prefix": "/admin"}}}],
    "principals": [{"any": True}]}}})
LIMIT = http_filter("local_ratelimit", LOCAL_RATELIMIT, stat_prefix="rl",
                    token_bucket={"max_tokens": 1, "fill_interval": "60s"},
                    filter_enabled={"default_value": {"numerator": 100}},
                    filter_enforced={"default_value": {"numerator": 100}})


def with_http_filters(resources: list[Any], port: int, *filters: dict[str, Any]) -> list[Any]:
    """``resources`` with their listener's HTTP filters before the router."""
    return [message(LISTENERS, http_listener(port, "9080", address="127.0.0.1", bind=True,
                                             http_filters=[*filters, ROUTER_FILTER])),
            *resources[1:]]


def test_workers_take_pushed_http_filters_but_not_a_local_rate_limit(start_mosn, plane,
                                                                     upstreams):
    """Under ``--workers 2`` a pushed RBAC filter serves in every worker; a local rate
    limit is NACKed (its buckets are shared cells made before the fork), and the
    listener the workers serve stays the one before."""
    port = free_port()
    plane.set("1", snapshot(port, upstreams))
    mosn = start_mosn(bootstrap(plane), "--workers", "2")
    wait_until(lambda: get(port).status_code == 200)
    plane.set("2", with_http_filters(snapshot(port, upstreams), port, DENY_ADMIN))
    plane.acked(LISTENERS.url, "2")
    with contextlib.ExitStack() as stack:
        clients = list(_one_per_worker(mosn, port, stack).values())
        for client in clients:
            wait_until(lambda client=client: client.get("/admin").status_code == 403)
        plane.set("3", with_http_filters(snapshot(port, upstreams), port, DENY_ADMIN, LIMIT))
        nack = plane.nacked(LISTENERS.url)
        assert "mosn could not apply it" in nack.error, nack.error
        for client in clients:
            assert [client.get("/").status_code for _ in range(3)] == [200] * 3  # no limit
            assert client.get("/admin").status_code == 403


def _limited(prefix: str) -> dict[str, Any]:
    """A route to reviews with its own local rate limit: 2 requests a minute."""
    limited = route({"prefix": prefix}, CLUSTER)
    limited["name"] = prefix
    limited["typed_per_filter_config"] = {"envoy.filters.http.local_ratelimit": {
        "@type": LOCAL_RATELIMIT, "stat_prefix": "route",
        "token_bucket": {"max_tokens": 2, "fill_interval": "60s"},
        "filter_enabled": {"default_value": {"numerator": 100}},
        "filter_enforced": {"default_value": {"numerator": 100}}}}
    return limited


def test_workers_count_a_pushed_routes_own_rate_limit_once(plane, upstreams, tmp_path):
    """A listener with a local rate limit filter served before the fork (handed over
    by an upgrade to a mosn with ``--workers 2``), then a push of two routes with
    equal limits of their own (2 a minute): across both workers each route lets 2
    requests through, not 2 per worker, and neither takes the other's tokens."""
    port = free_port()
    # The listener's own limit is off (Envoy's 0% filter_enabled): only the routes' count.
    quiet = http_filter("local_ratelimit", LOCAL_RATELIMIT, stat_prefix="rl",
                        token_bucket={"max_tokens": 1, "fill_interval": "60s"})
    first = with_http_filters(snapshot(port, upstreams), port, quiet)
    plane.set("1", first)
    config = bootstrap(plane)
    old = MosnProcess(config, tmp_path)
    new = None
    try:
        wait_until(lambda: get(port).status_code == 200)
        new = MosnProcess(config, tmp_path, ["--workers", "2"], wait=False)
        old.proc.wait(timeout=60)  # the old one exits once the new one serves
        new.wait_ready()
        ready = {"name": "ready", "match": {"prefix": "/ready"},
                 "direct_response": {"status": 204}}
        with contextlib.ExitStack() as stack:
            clients = list(_one_per_worker(new, port, stack).values())
            # Forked workers doing the same work allocate at the same addresses: one
            # serves more first, so that each translates the push into objects of
            # its own (as it would under real traffic).
            for i in range(30):
                clients[0].get(f"/{i}", headers={f"x-{i}": "v" * i})
            plane.set("2", [*first[:3], message(ROUTES, route_configuration("9080", [
                {"name": "all", "domains": ["*"], "routes": [
                    ready, _limited("/a"), _limited("/b"), route({"prefix": "/"}, CLUSTER)]}]))])
            for client in clients:  # the push reached this worker
                wait_until(lambda client=client: client.get("/ready").status_code == 204)
            for path in ("/a", "/b"):
                codes = [client.get(path).status_code for _ in range(3) for client in clients]
                assert sorted(codes) == [200, 200, 429, 429, 429, 429], (path, codes)
    finally:
        old.stop()
        if new is not None:
            new.stop()


class _CheckedUpstream(BaseHTTPRequestHandler):
    """Answers every path 200 with ``x-upstream: NAME``, but its health check path
    ``/healthz`` 503 while the server is ``sick``: a host that fails its check and
    would still serve a request sent to it."""

    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        server: Any = self.server
        status = 503 if self.path == "/healthz" and server.sick else 200
        self.send_response(status)
        self.send_header("x-upstream", server.name)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def _checked_upstream(name: str) -> Iterator[Any]:
    server: Any = ThreadingHTTPServer(("127.0.0.1", 0), _CheckedUpstream)
    server.daemon_threads = True
    server.name, server.sick, server.port = name, False, server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def _only(clients: Any, names: set[str]) -> None:
    """Each client (one per worker) reaches only the upstreams ``names``: six answers in
    a row from them (a worker balancing round robin over a host it should not would
    answer from it every other time), then six more."""
    for client in clients:
        wait_until(lambda client=client: all(
            client.get("/").headers.get("x-upstream") in names for _ in range(6)))
    for client in clients:
        assert {client.get("/").headers.get("x-upstream") for _ in range(6)} <= names


def test_workers_follow_the_health_checks_of_a_pushed_cluster(start_mosn, plane, upstreams):
    """``--workers 2``: a push adds a cluster with an HTTP health check over two hosts,
    one of which fails it (and would still answer): through each worker, requests
    reach only the other (the parent runs the check; each worker reads its verdicts
    from the shared health, where the cluster took a range after the fork). When the
    hosts swap, both workers follow; an endpoint update keeps the health of the hosts
    that stay; a reload's new workers follow too."""
    port = free_port()
    plane.set("1", snapshot(port, upstreams))
    mosn = start_mosn(bootstrap(plane), "--workers", "2")
    wait_until(lambda: get(port).status_code == 200)
    with contextlib.ExitStack() as upstream_stack:
        a, b = (upstream_stack.enter_context(_checked_upstream(name)) for name in ("a", "b"))
        b.sick = True
        ratings = outbound(9080, RATINGS)
        check = {"timeout": "1s", "interval": "0.2s", "unhealthy_threshold": 1,
                 "healthy_threshold": 1, "http_health_check": {"path": "/healthz"}}
        pushed = snapshot(port, upstreams, cluster=ratings) + [
            message(CLUSTERS, eds_cluster(9080, RATINGS, lb_policy="ROUND_ROBIN",
                                          health_checks=[check]))]
        hosts = [f"127.0.0.1:{a.port}", f"127.0.0.1:{b.port}"]
        plane.set("2", [*pushed, message(ENDPOINTS, assignment(ratings, {"zone-a": hosts}))])
        plane.acked(ENDPOINTS.url, "2")
        with contextlib.ExitStack() as stack:
            held = _one_per_worker(mosn, port, stack)
            clients = list(held.values())
            _only(clients, {"a"})
            a.sick, b.sick = True, False
            _only(clients, {"b"})

            # A third host joins (a uvicorn upstream: healthy); a stays failed meanwhile.
            hosts.append(f"127.0.0.1:{upstreams['v3']}")
            plane.set("3", [*pushed, message(ENDPOINTS, assignment(ratings,
                                                                    {"zone-a": hosts}))])
            plane.acked(ENDPOINTS.url, "3")
            for client in clients:
                wait_until(lambda client=client: client.get("/").headers["x-upstream"] == "v3")
            _only(clients, {"b", "v3"})
            assert mosn.stats()["server.worker_health_diverged"] == 0

        plane.stop()  # the new workers' clusters can only come from the parent
        os.kill(mosn.proc.pid, signal.SIGHUP)
        assert mosn.wait_stat("server.reload_success", 1,
                              timeout=FOLLOW)["server.reload_success"] == 1
        with contextlib.ExitStack() as stack:
            reloaded = _one_per_worker(mosn, port, stack)
            assert not set(reloaded) & set(held)
            a.sick, b.sick = False, True
            _only(reloaded.values(), {"a", "v3"})


def test_reloads_with_the_control_plane_connected_keep_every_worker(start_mosn, plane,
                                                                     upstreams):
    """``--workers 2``: reloads fork new workers while the parent's gRPC stream to the
    control plane is open. gRPC's fork handlers, skipped then ("Other threads are
    currently calling into gRPC"), crashed about one new worker in three; mosn runs
    without them, and every reload's workers serve."""
    port = free_port()
    plane.set("1", snapshot(port, upstreams))
    mosn = start_mosn(bootstrap(plane), "--workers", "2")
    wait_until(lambda: get(port).status_code == 200)
    for reloads in range(1, 4):
        os.kill(mosn.proc.pid, signal.SIGHUP)
        mosn.wait_stat("server.reload_success", reloads, timeout=FOLLOW)
        assert get(port).status_code == 200
    time.sleep(0.5)  # a crashing worker died within 0.1 s of its fork
    assert "exited unexpectedly" not in mosn.output()
    assert "skipping fork() handlers" not in mosn.output()
    assert mosn.stats()["control_plane.connected_state"] == 1
