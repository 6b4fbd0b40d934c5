"""MOSN's ``grpc_metric`` in a real mosn: grpcio calls through it to a real grpcio
server, counted per service and per method (with and without ``--workers``)."""

from __future__ import annotations

import grpc
import pytest

from grpc_echo import SERVICE, grpc_echo
from http_scripted import proxy_config
from mosn.testing import free_port

GRPC_TIMEOUT = 10


@pytest.mark.parametrize("workers", [(), ("--workers", "2")], ids=["one", "two-workers"])
def test_calls_are_counted_per_service_and_method(start_mosn, workers) -> None:
    with grpc_echo("Unary", "Other") as backend:
        port = free_port()
        mosn = start_mosn(proxy_config(port, backend, downstream="Http2", upstream="Http2",
                                       listener={"stream_filters": [
                                           {"type": "grpc_metric", "config": {}}]}), *workers)
        with grpc.insecure_channel(f"127.0.0.1:{port}",
                                   options=[("grpc.enable_http_proxy", 0)]) as channel:
            unary = channel.unary_unary(f"/{SERVICE}/Unary")
            other = channel.unary_unary(f"/{SERVICE}/Other")
            missing = channel.unary_unary(f"/{SERVICE}/Missing")
            for _ in range(5):
                assert unary(b"x", timeout=GRPC_TIMEOUT) == b"x"
            assert other(b"y", timeout=GRPC_TIMEOUT) == b"y"
            with pytest.raises(grpc.RpcError) as failed:
                missing(b"z", timeout=GRPC_TIMEOUT)
        assert failed.value.code() is grpc.StatusCode.UNIMPLEMENTED
        shown = mosn.wait_stat(f"grpc.{SERVICE}.request_total", 7)  # counted as streams end
        stats, histograms = shown, mosn.admin("/stats?format=json").json()["histograms"]
    service = f"grpc.{SERVICE}"
    assert stats[f"{service}.request_total"] == 7
    assert stats[f"{service}.response_succ_total"] == 6
    assert stats[f"{service}.response_fail_total"] == 1
    assert stats[f"{service}.Unary.request_total"] == 5
    assert stats[f"{service}.Unary.response_succ_total"] == 5
    assert stats[f"{service}.Missing.response_fail_total"] == 1
    assert stats[f"{service}.Other.response_succ_total"] == 1
    assert histograms[f"{service}.Unary.request_time"]["count"] == 5
    assert f"{service}.request_time" not in histograms  # latency is per method
