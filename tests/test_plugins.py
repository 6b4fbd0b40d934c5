"""Plugins installed as real distributions are found through their entry points,
enabled and disabled by config, and refused with a clear error when broken."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, free_port, tcp_proxy_config, wait_for_port
from mosn.testing import pip_install_target

PLUGINS = ROOT / "tests" / "plugins"


@pytest.fixture(scope="session")
def site(tmp_path_factory) -> dict[str, Path]:
    """Each test plugin pip-installed into a directory of its own."""
    dirs = {}
    for name in ("hello", "broken", "clash"):
        target = tmp_path_factory.mktemp(f"site-{name}")
        pip_install_target(PLUGINS / name, target)
        dirs[name] = target
    return dirs


def env_with(*paths: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "MOSN_DISABLE_PLUGIN_AUTOLOAD"}
    env["PYTHONPATH"] = os.pathsep.join(str(p) for p in paths)
    env.update(extra)
    return env


def mosn(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mosn", *args], capture_output=True,
                          text=True, env=env, timeout=60)


def plugin_list(env: dict[str, str], config: Path | None = None) -> dict[str, dict]:
    out = mosn("plugins", "list", "--json", *(["-c", str(config)] if config else []), env=env)
    return {p["name"]: p for p in json.loads(out.stdout)}


def hello_config(tmp_path: Path, port: int, **extra) -> Path:
    config = {
        "servers": [{"listeners": [{
            "name": "greeter", "address": f"127.0.0.1:{port}",
            "filter_chains": [{"filters": [{"type": "hello", "config": {"greeting": "hi there"}}]}],
        }]}],
        "admin": {"address": {"socket_address": {"address": "127.0.0.1",
                                                 "port_value": free_port()}}},
        **extra,
    }
    path = tmp_path / "hello.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_installed_plugin_is_discovered_and_listed(site):
    plugins = plugin_list(env_with(site["hello"]))
    assert plugins["hello"] == {
        "name": "hello", "distribution": "mosn-plugin-hello", "version": "1.0",
        "module": "mosn_hello.plugin", "builtin": False, "enabled": True,
        "registers": {"network_filter": ["hello"]}, "error": None,
    }
    assert plugins["tcp_proxy"]["builtin"] is True


def test_plugins_list_table(site):
    out = mosn("plugins", "list", env=env_with(site["hello"]))
    assert out.returncode == 0
    line = next(l for l in out.stdout.splitlines() if l.startswith("hello "))
    assert line.split()[:4] == ["hello", "mosn-plugin-hello", "1.0", "yes"]
    assert "network_filter: hello" in line


def test_installed_plugin_carries_traffic(site, tmp_path):
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "mosn", "start", "-c",
                             str(hello_config(tmp_path, port))], env=env_with(site["hello"]))
    try:
        wait_for_port(port)
        with socket.create_connection(("127.0.0.1", port)) as s:
            assert s.makefile("rb").read() == b"hi there\n"
    finally:
        proc.terminate()
        proc.wait(10)


def test_plugin_disabled_by_config(site, tmp_path):
    config = hello_config(tmp_path, free_port(), plugins={"disable": ["hello"]})
    env = env_with(site["hello"])
    assert plugin_list(env, config)["hello"]["enabled"] is False
    out = mosn("validate", "-c", str(config), env=env)
    assert out.returncode == 1
    assert ("servers[0].listeners[0].filter_chains[0].filters[0].type: "
            "unknown network filter 'hello'") in out.stderr


def test_autoload_off_then_enabled_by_config(site, tmp_path):
    env = env_with(site["hello"], MOSN_DISABLE_PLUGIN_AUTOLOAD="1")
    assert plugin_list(env)["hello"]["enabled"] is False
    assert plugin_list(env)["tcp_proxy"]["enabled"] is True  # built-ins always load
    config = hello_config(tmp_path, free_port(), plugins={"enable": ["hello"]})
    assert plugin_list(env, config)["hello"]["enabled"] is True
    assert mosn("validate", "-c", str(config), env=env).returncode == 0


def test_enabling_a_plugin_that_is_not_installed(tmp_path):
    config = hello_config(tmp_path, free_port(), plugins={"enable": ["nowhere"]})
    out = mosn("validate", "-c", str(config), env=env_with())
    assert out.returncode == 1
    assert "plugin 'nowhere' is enabled in the config but not installed" in out.stderr


def test_plugin_that_fails_to_import_is_refused(site, tmp_path):
    env = env_with(site["broken"])
    config = tmp_path / "tcp.yaml"
    config.write_text(yaml.safe_dump(tcp_proxy_config(free_port(), ["127.0.0.1:1"])))
    out = mosn("validate", "-c", str(config), env=env)
    assert out.returncode == 1
    assert ("plugins: plugin 'broken' (mosn_broken.plugin) failed to load: "
            "ModuleNotFoundError") in out.stderr
    listed = plugin_list(env)["broken"]
    assert listed["error"].startswith("failed to load")
    # Disabling it lets everything else run.
    data = yaml.safe_load(config.read_text()) | {"plugins": {"disable": ["broken"]}}
    config.write_text(yaml.safe_dump(data))
    assert mosn("validate", "-c", str(config), env=env).returncode == 0


def test_plugin_registering_a_taken_name_is_refused(site, tmp_path):
    config = tmp_path / "tcp.yaml"
    config.write_text(yaml.safe_dump(tcp_proxy_config(free_port(), ["127.0.0.1:1"])))
    out = mosn("validate", "-c", str(config), env=env_with(site["clash"]))
    assert out.returncode == 1
    assert ("plugin 'clash' registers network filter 'tcp_proxy', "
            "already registered by plugin 'tcp_proxy'") in out.stderr
