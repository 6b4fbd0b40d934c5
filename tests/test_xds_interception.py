"""A sidecar the way Istio runs one, for real: network namespaces with iptables rules of
Istio's shape (tests/netns.py), mosn in the "pod" namespace driven over ADS by the
tests' control plane with Istio-shaped resources (tests/xds_resources.py), and the
services in the "peer" namespace. Outbound, the application calls a service by its name
and virtual IP; the kernel redirects the connection to ``virtualOutbound`` (15001),
which hands it to the listener of its original destination port; the route of the
service's virtual host picks the ``outbound|PORT||HOST`` cluster, whose endpoints came
by EDS. Inbound, a client in the peer namespace calls the workload; the kernel redirects
the connection to ``virtualInbound`` (15006), whose filter chain of that port routes it
to the workload on the loopback."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest

from conftest import ROOT
from mosn.testing.control_plane import ControlPlane
from mosn.testing.process import MosnProcess, stop_process
from mosn.xds.resources import CLUSTERS, ENDPOINTS, LISTENERS, ROUTES
from netns import PEER_IP, POD_IP, Namespace, Pair, pair, wait_for
from xds_resources import (
    assignment,
    eds_cluster,
    http_listener,
    inbound_http_chain,
    message,
    outbound,
    passthrough_cluster,
    route,
    route_configuration,
    service,
    static_cluster,
    virtual_host,
    virtual_inbound,
    virtual_outbound,
)

HTTP_UPSTREAM = ROOT / "examples" / "http_upstream.py"
REVIEWS = service("reviews")
REVIEWS_VIP = "10.70.0.99"
"""The service's virtual IP: on the pod's subnet, served by nobody (only the redirect
makes a connection to it work, as a ClusterIP works only through kube-proxy or a sidecar)."""
APP_UID = 65534
"""The application's user: its connections are redirected, root's (mosn's) are not, as
Istio exempts its proxy's uid 1337."""


@pytest.fixture
def net() -> Iterator[Pair]:
    with pair() as made:
        yield made


def sidecar_rules(ns: Namespace) -> None:
    """Istio's egress nat rules: every TCP connection the pod makes goes to 15001,
    except the proxy's own (by its uid) and those to the loopback."""
    ns.iptables("-t", "nat", "-A", "OUTPUT", "-p", "tcp", "-m", "owner", "--uid-owner", "0",
                "-j", "RETURN")
    ns.iptables("-t", "nat", "-A", "OUTPUT", "-p", "tcp", "-d", "127.0.0.0/8", "-j", "RETURN")
    ns.iptables("-t", "nat", "-A", "OUTPUT", "-p", "tcp", "-j", "REDIRECT", "--to-ports", "15001")


@contextlib.contextmanager
def http_service(ns: Namespace, port: int, name: str, host: str = "0.0.0.0") -> Iterator[None]:
    """examples/http_upstream.py answering as ``name`` at ``host`` in ``ns``."""
    with ns.entered():
        proc = subprocess.Popen([sys.executable, str(HTTP_UPSTREAM), "--host", host,
                                 "--port", str(port), "--name", name])
    try:
        wait_for(lambda: ns.sh("ss", "-Htln", f"sport = :{port}").strip(),
                 f"{name} listening on {port}")
        yield
    finally:
        stop_process(proc)


def app_get(ns: Namespace, url: str, *resolve: str, uid: int = APP_UID) -> dict[str, Any]:
    """GET ``url`` from ``ns`` with curl run as ``uid``; the upstream's JSON account of
    the request it received."""
    done = subprocess.run(
        ["ip", "netns", "exec", ns.name, "setpriv", f"--reuid={uid}", f"--regid={uid}",
         "--clear-groups", "curl", "-sS", "--fail", "--max-time", "10",
         *(arg for r in resolve for arg in ("--resolve", r)), url],
        capture_output=True, text=True, check=False, timeout=30)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def stop_in(ns: Namespace, mosn: MosnProcess) -> None:
    with ns.entered():
        mosn.stop()


def mesh_snapshot() -> list[Any]:
    """What istiod sends a sidecar that calls reviews:8080: virtualOutbound, the
    virtual listener of port 8080 on RDS, the route configuration "8080" with the
    service's virtual host, its EDS cluster and endpoints, and PassthroughCluster."""
    cluster = outbound(8080, REVIEWS)
    return [
        message(LISTENERS, virtual_outbound(15001)),
        message(LISTENERS, http_listener(8080)),
        message(ROUTES, route_configuration("8080", [
            virtual_host(REVIEWS, 8080, [route({"prefix": "/"}, cluster)])])),
        message(CLUSTERS, eds_cluster(8080, REVIEWS)),
        message(CLUSTERS, passthrough_cluster()),
        message(ENDPOINTS, assignment(cluster, {"zone-a": [f"{PEER_IP}:8080"]})),
    ]


def bootstrap(plane_port: int) -> dict[str, Any]:
    return {
        "node": {"id": "sidecar~10.70.0.1~productpage-v1.default~default.svc.cluster.local",
                 "cluster": "productpage.default"},
        "dynamic_resources": {
            "ads_config": {"api_type": "GRPC", "transport_api_version": "V3",
                           "grpc_services": [{"envoy_grpc": {"cluster_name": "xds-grpc"}}]},
            "cds_config": {"ads": {}, "resource_api_version": "V3"},
            "lds_config": {"ads": {}, "resource_api_version": "V3"},
        },
        "cluster_manager": {"clusters": [{"name": "xds-grpc", "type": "STATIC",
                                          "hosts": [{"address": f"127.0.0.1:{plane_port}"}]}]},
    }


def test_the_application_reaches_a_service_through_pushed_istio_listeners(
        net: Pair, tmp_path: Path) -> None:
    """curl (the application) calls http://reviews...:8080 at the service's virtual IP:
    REDIRECTed to virtualOutbound, handed to 0_0_0_0_8080 by its original port, routed by
    the Host header to the EDS cluster, answered by the endpoint in the peer namespace. A
    port no listener has (9090) is passed through to the address the application dialled."""
    sidecar_rules(net.pod)
    plane = ControlPlane()
    plane.set("1", mesh_snapshot())
    with contextlib.ExitStack() as stack:
        stack.enter_context(http_service(net.peer, 8080, "reviews-v1"))
        stack.enter_context(http_service(net.peer, 9090, "external"))
        with net.pod.entered():
            plane.start()  # its listening socket in the pod, as istiod's is reached
        stack.callback(plane.stop)
        with net.pod.entered():
            mosn = MosnProcess(bootstrap(plane.port), tmp_path)
        stack.callback(stop_in, net.pod, mosn)
        plane.acked(LISTENERS.url, "1")

        seen = app_get(net.pod, f"http://{REVIEWS}:8080/echo", f"{REVIEWS}:8080:{REVIEWS_VIP}")
        assert seen["server"] == "reviews-v1"
        assert ["host", f"{REVIEWS}:8080"] in seen["headers"]
        passed = app_get(net.pod, f"http://{PEER_IP}:9090/echo")
        assert passed["server"] == "external"

        with net.pod.entered():
            stats = mosn.stats()
        assert stats["listener.virtualOutbound.downstream_cx_handed_off"] == 1
        assert stats["listener.0.0.0.0_8080.downstream_rq_total"] == 1
        assert stats[f"cluster.{outbound(8080, REVIEWS)}.upstream_rq_total"] == 1
        assert stats["cluster.PassthroughCluster.upstream_cx_total"] == 1


def inbound_snapshot() -> list[Any]:
    """What istiod sends the workload's sidecar for its port 8080: virtualInbound with the
    port's chain, the inbound cluster to the workload on the loopback, and the inbound
    passthrough cluster."""
    return [
        message(LISTENERS, virtual_inbound(15006, [inbound_http_chain(8080)])),
        message(CLUSTERS, static_cluster("inbound|8080||", ["127.0.0.1:8080"])),
        message(CLUSTERS, {**passthrough_cluster(), "name": "InboundPassthroughClusterIpv4"}),
    ]


def test_a_client_reaches_the_workload_through_the_pushed_virtual_inbound(
        net: Pair, tmp_path: Path) -> None:
    """A client in the peer namespace calls the pod at 8080: REDIRECTed (PREROUTING) to
    virtualInbound, whose chain for destination port 8080 routes it to the workload on
    the loopback. A port without a chain (9090) is passed through to the pod's address."""
    net.pod.iptables("-t", "nat", "-A", "PREROUTING", "-p", "tcp", "-j", "REDIRECT",
                     "--to-ports", "15006")
    plane = ControlPlane()
    plane.set("1", inbound_snapshot())
    with contextlib.ExitStack() as stack:
        # On the loopback only: nothing but mosn can reach it from the peer.
        stack.enter_context(http_service(net.pod, 8080, "productpage-v1", "127.0.0.1"))
        stack.enter_context(http_service(net.pod, 9090, "productpage-admin"))
        with net.pod.entered():
            plane.start()
        stack.callback(plane.stop)
        with net.pod.entered():
            mosn = MosnProcess(bootstrap(plane.port), tmp_path)
        stack.callback(stop_in, net.pod, mosn)
        plane.acked(LISTENERS.url, "1")

        assert app_get(net.peer, f"http://{POD_IP}:8080/echo", uid=0)["server"] == "productpage-v1"
        assert app_get(net.peer, f"http://{POD_IP}:9090/echo", uid=0)["server"] == \
            "productpage-admin"

        with net.pod.entered():
            stats = mosn.stats()
        assert stats["listener.virtualInbound.downstream_cx_total"] == 2
        assert stats["cluster.inbound|8080||.upstream_rq_total"] == 1
        assert stats["cluster.InboundPassthroughClusterIpv4.upstream_cx_total"] == 1
