"""Bolt requests through mosn are counted like HTTP ones: per listener, per protocol
(``protocol.bolt``), per cluster and per host, by the class of the HTTP-like status
the proxy answered with (no route is the proxy's 404, sent as bolt's NO_PROCESSOR),
summed over two workers too. The backend is ``mosn mock server``."""

from __future__ import annotations

from collections import Counter

import pytest

from mosn.testing import call, free_port, rpc_proxy_config
from mosn_sofarpc import BoltCodec, ResponseStatus

SERVICE = "com.example.EchoService:1.0"
OK_CALLS = 12
NO_ROUTE_CALLS = 3


@pytest.mark.parametrize("workers", ["1", "2"])
def test_bolt_requests_counted(start_mosn, mock_rpc_server, workers):
    backend = mock_rpc_server(BoltCodec(), response_bytes=10)
    port = free_port()
    mosn = start_mosn(rpc_proxy_config(port, "bolt", [backend.address], service=f"^{SERVICE}$"),
                      "--workers", workers)
    results = []
    for _ in range(OK_CALLS):  # a connection each, so that both workers take some
        results += call(BoltCodec(), port, service=SERVICE)
    results += call(BoltCodec(), port, service="com.example.Nowhere:1.0", count=NO_ROUTE_CALLS)
    assert [r.ok for r in results] == [True] * OK_CALLS + [False] * NO_ROUTE_CALLS
    assert {r.frame.status for r in results[OK_CALLS:]} == {ResponseStatus.NO_PROCESSOR}
    seen = Counter({2: OK_CALLS, 4: NO_ROUTE_CALLS})
    n = len(results)
    stats = mosn.wait_stat("listener.rpc.downstream_cx_active", 0)
    body = mosn.admin("/stats?format=json").json()
    assert body["stats"] == stats | body["stats"]
    for prefix in ("listener.rpc", "protocol.bolt"):
        assert stats[f"{prefix}.downstream_rq_total"] == n
        assert stats[f"{prefix}.downstream_rq_active"] == 0
        for k in range(1, 6):
            assert stats[f"{prefix}.downstream_rq_{k}xx"] == seen[k], (prefix, k)
        assert body["histograms"][f"{prefix}.downstream_rq_time"]["count"] == n
    assert stats["protocol.Http1.downstream_rq_total"] == 0
    assert stats["cluster.backend.upstream_rq_total"] == OK_CALLS
    assert stats["cluster.backend.upstream_rq_2xx"] == OK_CALLS
    assert stats[f"cluster.backend.host.{backend.address}.rq_2xx"] == OK_CALLS
    assert body["histograms"]["cluster.backend.upstream_rq_time"]["count"] == OK_CALLS
