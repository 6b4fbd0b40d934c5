"""Config loading: MOSN's shape loads unchanged; every kind of error is refused
with its path, all at once, before anything listens."""

from __future__ import annotations

import socket
import subprocess
import sys
from typing import Any

import pytest
import yaml

from conftest import ROOT, free_port, tcp_proxy_config
from mosn.config import ConfigError, load, parse_address, parse_duration, validate
from mosn.plugins import PluginHost

DATA = ROOT / "tests" / "data"


def errors_of(raw: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as info:
        validate(raw)
    return info.value.errors


def base() -> dict[str, Any]:
    return tcp_proxy_config(2045, ["127.0.0.1:8080"])


def listener(raw: dict[str, Any]) -> dict[str, Any]:
    return raw["servers"][0]["listeners"][0]


def test_real_mosn_json_config_loads_unchanged():
    loaded = load(DATA / "mosn_tcpproxy.json")
    cluster = loaded.config.cluster_manager.clusters[0]
    assert cluster.name == "serverCluster"  # written "Name", as Go accepts
    assert cluster.lb_type == "LB_RANDOM"
    assert cluster.connect_timeout == 2.0
    assert cluster.hosts[0].weight == 10
    assert cluster.hosts[0].lb_metadata == {"zone": "a"}
    tcp = loaded.config.servers[0].listeners[0].filter_chains[0].filters[0].parsed
    assert tcp.routes[1].source_addrs[0].address == "127.0.0.1"
    assert tcp.routes[1].destination_port == "2045"
    # Fields only MOSN's Go runtime uses are accepted, each with a warning.
    assert [w.split(":")[0] for w in loaded.warnings] == [
        "servers[0].processor", "servers[0].listeners[0].log_path"]
    assert all("accepted and not used" in w for w in loaded.warnings)


def test_yaml_and_json_give_the_same_config(tmp_path):
    raw = base()
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(raw))
    import json
    (tmp_path / "c.json").write_text(json.dumps(raw))
    assert load(tmp_path / "c.yaml").config == load(tmp_path / "c.json").config


@pytest.mark.parametrize("mutate, expected", [
    (lambda r: listener(r).update(address="127.0.0.1:70000"),
     "servers[0].listeners[0].address: '127.0.0.1:70000': port must be a number from 0 to 65535"),
    (lambda r: listener(r).update(address="nowhere"),
     "servers[0].listeners[0].address: 'nowhere' is not 'host:port'"),
    (lambda r: listener(r).pop("address"),
     "servers[0].listeners[0].address: Field required"),
    (lambda r: listener(r).update(filter_chains=[]),
     "servers[0].listeners[0].filter_chains: List should have at least 1 item"),
    (lambda r: listener(r).update(network="sctp"),
     "servers[0].listeners[0]: network 'sctp' is not supported; use one of tcp, unix, udp"),
    (lambda r: listener(r).update(network="udp"),
     "servers[0].listeners[0]: a udp listener's filter chain is one udp_proxy filter"),
    (lambda r: listener(r).update(connection_idle_timeout="5 minutes"),
     "servers[0].listeners[0].connection_idle_timeout: invalid duration '5 minutes'"),
    (lambda r: listener(r)["filter_chains"][0].update(tls_context={"status": True, "ticket": "k"}),
     "servers[0].listeners[0].filter_chains[0].tls_context.ticket: not supported: "
     "Python's ssl cannot set session ticket keys"),
    (lambda r: r["cluster_manager"]["clusters"][0]["hosts"][0].update(weight=500),
     "cluster_manager.clusters[0].hosts[0].weight: Input should be less than or equal to 128"),
    (lambda r: r["cluster_manager"]["clusters"][0].update(hosts="127.0.0.1:1"),
     "cluster_manager.clusters[0].hosts: Input should be a valid list"),
    (lambda r: r.update(servers={"listeners": []}),
     "servers: Input should be a valid list"),
])
def test_model_errors_name_their_path(mutate, expected):
    raw = base()
    mutate(raw)
    errors = errors_of(raw)
    assert any(e.startswith(expected) for e in errors), errors


@pytest.mark.parametrize("mutate, expected", [
    (lambda r: listener(r)["filter_chains"][0]["filters"][0].update(type="nope"),
     "servers[0].listeners[0].filter_chains[0].filters[0].type: unknown network filter 'nope' "
     f"(known: {', '.join(PluginHost().load().names('network_filter'))})"),  # with installed plugins
    (lambda r: listener(r)["filter_chains"][0]["filters"][0].update(config={}),
     "servers[0].listeners[0].filter_chains[0].filters[0].config: "
     "set one of cluster, weighted_clusters or routes"),
    (lambda r: listener(r)["filter_chains"][0]["filters"][0].update(
        config={"cluster": "missing"}),
     "servers[0].listeners[0].filter_chains[0].filters[0].config.cluster: "
     "unknown cluster 'missing'"),
    (lambda r: listener(r)["filter_chains"][0]["filters"][0]["config"].update(
        idle_timeout="soon"),
     "servers[0].listeners[0].filter_chains[0].filters[0].config.idle_timeout: "
     "invalid duration 'soon'"),
    (lambda r: listener(r).update(stream_filters=[{"type": "nope"}]),
     "servers[0].listeners[0].stream_filters[0].type: unknown stream filter 'nope' "
     f"(known: {', '.join(PluginHost().load().names('stream_filter'))})"),
    (lambda r: listener(r).update(stream_filters=[{"type": "fault",
                                                   "config": {"abort": {"status": 99}}}]),
     "servers[0].listeners[0].stream_filters[0].config.abort.status: "
     "Input should be greater than or equal to 200"),
    (lambda r: r["cluster_manager"]["clusters"][0].update(lb_type="LB_MAGIC"),
     "cluster_manager.clusters[0].lb_type: unknown load balancer 'LB_MAGIC' (known: "
     "LB_LEAST_CONNECTION, LB_LEAST_REQUEST, LB_MAGLEV, LB_ORIGINAL_DST, LB_PEAK_EWMA, "
     "LB_RANDOM, LB_REQUEST_ROUNDROBIN, LB_RING_HASH, LB_ROUNDROBIN, LB_WEIGHTED_ROUNDROBIN)"),
    (lambda r: r["cluster_manager"]["clusters"][0].update(type="EDS"),
     "cluster_manager.clusters[0].type: unknown cluster type 'EDS'"),
    (lambda r: r["cluster_manager"]["clusters"][0].update(cluster_config={"path": "x"}),
     "cluster_manager.clusters[0].cluster_config: cluster type 'SIMPLE' takes no "
     "cluster_config"),
    (lambda r: r["cluster_manager"]["clusters"][0].update(
        type="zookeeper", cluster_config={"address": "127.0.0.1:2181"}),
     "cluster_manager.clusters[0].cluster_config.services: Field required"),
    (lambda r: r["cluster_manager"]["clusters"].append(
        dict(r["cluster_manager"]["clusters"][0])),
     "cluster_manager.clusters[1].name: duplicate cluster name 'backend'"),
    (lambda r: r["servers"][0]["listeners"].append(dict(listener(r))),
     "servers[0].listeners[1].name: duplicate listener name 'proxy'"),
    (lambda r: r["servers"][0]["listeners"].append(dict(listener(r), name="other")),
     "servers[0].listeners[1].address: 127.0.0.1:2045 is used by another listener"),
])
def test_reference_errors_name_their_path(mutate, expected):
    raw = base()
    mutate(raw)
    errors = errors_of(raw)
    assert any(e.startswith(expected) for e in errors), errors


def test_every_error_is_reported_at_once():
    raw = base()
    listener(raw)["filter_chains"][0]["filters"][0]["config"] = {"cluster": "missing"}
    raw["cluster_manager"]["clusters"][0]["lb_type"] = "LB_MAGIC"
    raw["cluster_manager"]["clusters"][0]["type"] = "EDS"
    assert len(errors_of(raw)) == 3


def test_unreadable_and_malformed_files(tmp_path):
    for name, text, expected in [
        ("bad.yaml", "servers: [\n", "invalid YAML"),
        ("bad.json", '{"servers": [}', "bad.json:1:14: invalid JSON"),
        ("list.yaml", "- 1\n", "the top level must be a mapping"),
    ]:
        (tmp_path / name).write_text(text)
        with pytest.raises(ConfigError) as info:
            load(tmp_path / name)
        assert expected in info.value.errors[0]
    with pytest.raises(ConfigError) as info:
        load(tmp_path / "absent.yaml")
    assert "cannot read" in info.value.errors[0]


def test_validate_cli_prints_every_error_and_exits_non_zero(tmp_path):
    raw = base()
    listener(raw)["address"] = "127.0.0.1:99999"
    raw["cluster_manager"]["clusters"][0]["hosts"][0]["weight"] = 0
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(raw))
    out = subprocess.run([sys.executable, "-m", "mosn", "validate", "-c", str(path)],
                         capture_output=True, text=True)
    assert out.returncode == 1
    assert "invalid config (2 errors)" in out.stderr
    assert "  servers[0].listeners[0].address: " in out.stderr
    assert "  cluster_manager.clusters[0].hosts[0].weight: " in out.stderr


def test_validate_cli_ok_and_strict(tmp_path):
    out = subprocess.run([sys.executable, "-m", "mosn", "validate", "-c",
                          str(DATA / "mosn_tcpproxy.json")], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "warning: servers[0].listeners[0].log_path: accepted and not used" in out.stderr
    strict = subprocess.run([sys.executable, "-m", "mosn", "validate", "--strict", "-c",
                             str(DATA / "mosn_tcpproxy.json")], capture_output=True, text=True)
    assert strict.returncode == 1


def test_start_refuses_a_bad_config_before_binding(tmp_path):
    port = free_port()
    raw = tcp_proxy_config(port, ["127.0.0.1:8080"])
    raw["cluster_manager"]["clusters"][0]["lb_type"] = "LB_MAGIC"
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(raw))
    proc = subprocess.Popen([sys.executable, "-m", "mosn", "start", "-c", str(path)],
                            stderr=subprocess.PIPE, text=True)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 1
    assert "cluster_manager.clusters[0].lb_type: unknown load balancer" in err
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()


def test_example_config_is_valid():
    load(ROOT / "configs" / "example.yaml")


@pytest.mark.parametrize("text, seconds", [
    ("15s", 15), ("1m30s", 90), ("250ms", 0.25), ("1h", 3600), ("1.5s", 1.5),
    ("100us", 1e-4), (3, 3.0), (0.5, 0.5),
])
def test_durations(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("bad", ["", "10", "5 s", "1d", "-1s", True, None, "s"])
def test_bad_durations(bad):
    with pytest.raises(ValueError):
        parse_duration(bad)


def test_addresses():
    assert str(parse_address("127.0.0.1:80")) == "127.0.0.1:80"
    assert parse_address("[::1]:8080").host == "::1"
    assert str(parse_address("[::1]:8080")) == "[::1]:8080"
    assert parse_address("unix:/run/m.sock").path == "/run/m.sock"
    assert parse_address("/run/m.sock").is_unix
    for bad in ["", "80", ":80", "h:x", "[::1:80", "unix:"]:
        with pytest.raises(ValueError):
            parse_address(bad)


def test_unix_listener_in_mosn_form():
    raw = base()
    listener(raw).update(address="/tmp/mosn-test.sock", network="unix")
    config = validate(raw).config
    assert config.servers[0].listeners[0].address.path == "/tmp/mosn-test.sock"
