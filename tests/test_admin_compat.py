"""MOSN's /api/v1/ admin answers (version, states, features, env) and Envoy's
(/server_info, /runtime, /quitquitquit), from a real mosn process."""

from __future__ import annotations

import os
import time

import httpx
import pytest

from conftest import free_port, tcp_proxy_config
from mosn import __version__
from mosn.extensions import build_description


@pytest.fixture
def mosn(start_mosn, echo_server):
    env = {**os.environ, "MOSN_TEST_REGION": "east", "MOSN_TEST_API_TOKEN": "s3cret"}
    return start_mosn(tcp_proxy_config(free_port(), [f"127.0.0.1:{echo_server}"]), env=env)


def test_mosn_version_and_state(mosn):
    assert mosn.admin("/api/v1/version").text == f"mosn version: {__version__}"
    assert mosn.admin("/api/v1/states").text == f"pid={mosn.proc.pid}&state=6\n"


def test_mosn_features_are_the_plugins(mosn):
    features = mosn.admin("/api/v1/features").json()
    assert features["tcp_proxy"] is True and features["sofarpc"] is True
    assert mosn.admin("/api/v1/features?key=sofarpc").text == "true"
    assert mosn.admin("/api/v1/features?key=nothing").text == "false"


def test_mosn_env_answers_asked_keys_and_hides_secrets(mosn):
    url = mosn.url("/api/v1/env?key=MOSN_TEST_REGION&key=MOSN_TEST_API_TOKEN&key=NOPE")
    assert httpx.get(url).json() == {
        "env": {"MOSN_TEST_REGION": "east", "MOSN_TEST_API_TOKEN": "[redacted]"},
        "not_found": ["NOPE"]}
    assert mosn.admin("/api/v1/env").status_code == 400


def test_envoy_server_info_and_runtime(mosn):
    info = mosn.admin("/server_info").json()
    assert (info["version"], info["state"]) == (__version__, "LIVE")
    assert info["build"] == build_description()  # compiled or pure Python, and why
    assert info["command_line_options"]["config_path"] == str(mosn.config_path)
    assert mosn.admin("/runtime").json() == {"layers": [], "entries": {}}


def test_quitquitquit_shuts_mosn_down(mosn):
    assert httpx.post(mosn.url("/quitquitquit")).text == "OK\n"
    deadline = time.monotonic() + 30
    while mosn.proc.poll() is None:
        assert time.monotonic() < deadline, "mosn still running"
        time.sleep(0.05)
    assert mosn.proc.returncode == 0
    assert "/quitquitquit: shutting down" in mosn.output()
