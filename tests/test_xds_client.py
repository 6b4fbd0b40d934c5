"""The ADS client against the tests' control plane over real gRPC: ACK, NACK with the
reasons, the last good config kept, warming, reconnects. The config each accepted
response makes is validated by the loader and recorded (the proxy serving it is
tested in test_xds_proxy.py)."""

from __future__ import annotations

import asyncio
from typing import Any, Awaitable, Callable

import pytest

from mosn.config.loader import LoadedConfig
from mosn.plugins import PluginHost
from mosn.xds.apply import Composer
from mosn.xds.client import AdsClient, backoff_delay
from mosn.xds.resources import CLUSTERS, ENDPOINTS, LISTENERS, ROUTES, SECRETS
from mosn.testing.control_plane import ControlPlane
from xds_resources import (
    assignment,
    eds_cluster,
    http_listener,
    message,
    outbound,
    route,
    route_configuration,
    service,
    static_cluster,
    virtual_host,
)

REVIEWS = service("reviews")
CLUSTER = outbound(9080, REVIEWS)


def resources(*, regex: str = "/v[0-9]+/.*", cluster: str = CLUSTER,
              endpoints: list[str] | None = None, with_routes: bool = True) -> list[Any]:
    out = [
        message(LISTENERS, http_listener(19080, "9080", address="127.0.0.1", bind=True)),
        message(CLUSTERS, eds_cluster(9080, REVIEWS)),
        message(ENDPOINTS, assignment(CLUSTER, {"a": endpoints or ["127.0.0.1:9081"]})),
    ]
    if with_routes:
        out.append(message(ROUTES, route_configuration("9080", [virtual_host(REVIEWS, 9080, [
            route({"safe_regex": {"regex": regex}}, cluster),
            route({"prefix": "/"}, cluster)])])))
    return out


class Recorder:
    """Serves nothing: keeps each config it is asked to serve."""

    def __init__(self) -> None:
        self.served: list[LoadedConfig] = []

    def __call__(self, loaded: LoadedConfig) -> None:
        self.served.append(loaded)

    def clusters(self) -> dict[str, Any]:
        return {c.name: c for c in self.served[-1].config.cluster_manager.clusters}

    def listeners(self) -> list[str]:
        return [lc.name for _, lc in self.served[-1].config.listeners()]


@pytest.fixture
def plane():
    cp = ControlPlane()
    cp.start()
    yield cp
    cp.stop()


def run(plane: ControlPlane, body: Callable[[AdsClient, Recorder], Awaitable[None]],
        delta: bool = False) -> None:
    async def main() -> None:
        recorder = Recorder()
        composer = Composer({}, PluginHost().load(), recorder)
        client = AdsClient(f"127.0.0.1:{plane.port}", composer.offer, delta=delta)
        task = asyncio.create_task(client.run())
        try:
            await body(client, recorder)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    asyncio.run(main())


def blocking(call: Callable[..., Any], *args: Any) -> Awaitable[Any]:
    return asyncio.to_thread(call, *args)


@pytest.mark.parametrize("delta", [False, True], ids=["sotw", "delta"])
def test_accepts_warms_and_nacks_a_bad_regex(plane, delta):
    plane.set("1", resources())

    async def body(client: AdsClient, served: Recorder) -> None:
        await blocking(plane.acked, ROUTES.url, "1")
        await blocking(plane.acked, ENDPOINTS.url, "1")
        assert served.listeners() == ["127.0.0.1_19080"]
        assert [h.address.port for h in served.clusters()[CLUSTER].hosts] == [9081]
        plane.set("2", resources(regex="/v[0-9+/("))
        nack = await blocking(plane.nacked, ROUTES.url)
        assert "RouteConfiguration '9080': virtual_hosts[0].routers[0].match.regex" in nack.error
        assert "invalid regex" in nack.error
        if not delta:
            assert nack.version_info == "1"  # the version still serving
        assert client.snapshot.versions[ROUTES.url] == "1"
        (_, router), = served.served[-1].config.routers()  # the other types of 2 serve,
        regex = router.virtual_hosts[0].routers[0].match.regex  # with the routes of 1
        assert regex == "^(?:/v[0-9]+/.*)$"

    run(plane, body, delta)


@pytest.mark.parametrize("delta", [False, True], ids=["sotw", "delta"])
def test_a_listener_warms_until_its_routes_arrive(plane, delta):
    plane.set("1", resources(with_routes=False))

    async def body(client: AdsClient, served: Recorder) -> None:
        await blocking(plane.acked, LISTENERS.url, "1")
        assert served.listeners() == []  # waits for route configuration 9080
        plane.set("2", resources())
        await blocking(plane.acked, ROUTES.url, "2")
        assert served.listeners() == ["127.0.0.1_19080"]

    run(plane, body, delta)


def test_a_route_to_an_unknown_cluster_is_accepted(plane):
    plane.set("1", resources(cluster="outbound|9080||ratings.default.svc.cluster.local"))

    async def body(client: AdsClient, served: Recorder) -> None:
        await blocking(plane.acked, ROUTES.url, "1")
        assert served.listeners() == ["127.0.0.1_19080"]

    run(plane, body)


def test_endpoint_updates_and_removed_clusters(plane):
    plane.set("1", resources(endpoints=["127.0.0.1:9081", "127.0.0.1:9082"]))

    async def body(client: AdsClient, served: Recorder) -> None:
        await blocking(plane.acked, ENDPOINTS.url, "1")
        assert len(served.clusters()[CLUSTER].hosts) == 2
        plane.set("2", resources(endpoints=["127.0.0.1:9083"]))
        await blocking(plane.acked, ENDPOINTS.url, "2")
        assert [h.address.port for h in served.clusters()[CLUSTER].hosts] == [9083]
        plane.set("3", [message(CLUSTERS, static_cluster("other", ["127.0.0.1:9084"]))])
        await blocking(plane.acked, CLUSTERS.url, "3")
        assert list(served.clusters()) == ["other"]

    run(plane, body)


def test_unsupported_field_nacked_with_resource_and_field(plane):
    bad = eds_cluster(9080, REVIEWS, alt_stat_name="reviews")
    plane.set("1", [message(CLUSTERS, bad)])

    async def body(client: AdsClient, served: Recorder) -> None:
        nack = await blocking(plane.nacked, CLUSTERS.url)
        assert nack.error == (f"Cluster {CLUSTER!r}: alt_stat_name: field not supported by mosn")
        assert served.served == []

    run(plane, body)


def test_reconnects_and_keeps_serving_while_the_control_plane_is_away(plane):
    plane.set("1", resources())

    async def body(client: AdsClient, served: Recorder) -> None:
        await blocking(plane.acked, ROUTES.url, "1")
        port = plane.port
        plane.stop()
        await asyncio.sleep(0)  # the stream breaks; nothing is taken back
        count = len(served.served)
        plane.requests.clear()
        plane.start(port)
        plane.set("2", resources(endpoints=["127.0.0.1:9085"]))
        first = await blocking(plane.wait_for, lambda s: s.type_url == CLUSTERS.url)
        assert first.version_info == "1"  # it says what it serves when it comes back
        await blocking(plane.acked, ENDPOINTS.url, "2")
        assert len(served.served) > count
        assert [h.address.port for h in served.clusters()[CLUSTER].hosts] == [9085]

    run(plane, body)


def test_backoff_is_jittered_and_bounded():
    assert 0.25 <= backoff_delay(0, lambda: 0.0) <= backoff_delay(0, lambda: 1.0) == 0.5
    assert backoff_delay(40, lambda: 1.0) == 30.0
    assert backoff_delay(3, lambda: 0.0) == 2.0


def test_secrets_warm_a_cluster(plane):
    data = eds_cluster(9080, REVIEWS, mtls="bookinfo-reviews")
    plane.set("1", [message(CLUSTERS, data),
                    message(ENDPOINTS, assignment(CLUSTER, {"": ["127.0.0.1:9081"]}))])

    async def body(client: AdsClient, served: Recorder) -> None:
        seen = await blocking(plane.wait_for, lambda s: s.type_url == SECRETS.url)
        assert seen.names == ["ROOTCA", "default"]
        assert CLUSTER not in served.clusters()

    run(plane, body)


def test_an_inline_route_to_an_unknown_cluster_is_nacked_as_envoy_does(plane):
    inline = {"name": "local", "virtual_hosts": [{"name": "all", "domains": ["*"], "routes": [
        {"match": {"prefix": "/"}, "route": {"cluster": "nowhere"}}]}]}
    plane.set("1", [message(LISTENERS, http_listener(19081, inline=inline, address="127.0.0.1",
                                                     bind=True))])

    async def body(client: AdsClient, served: Recorder) -> None:
        nack = await blocking(plane.nacked, LISTENERS.url)
        assert nack.error == ("Listener '127.0.0.1_19081': route to unknown cluster 'nowhere' "
                              "(validate_clusters)")
        assert served.served == []

    run(plane, body)
