"""The Http2 protocol through mosn end to end: curl, httpx and h2load as clients,
hypercorn as the HTTP/2 upstream, real sockets on 127.0.0.1."""

from __future__ import annotations

import json
import shutil
import subprocess

import httpx
import pytest

TIMEOUT = 10.0  # seconds any one exchange may take on a loaded CI machine


def curl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["curl", "-sS", "--max-time", str(TIMEOUT), *args],
                          capture_output=True, text=True, timeout=TIMEOUT * 2)


def test_curl_prior_knowledge(h2_upstream, h2_proxy):
    port, _ = h2_proxy(h2_upstream)
    out = curl("--http2-prior-knowledge", "-w", "\n%{http_version}",
               "-H", "x-test: one", f"http://127.0.0.1:{port}/echo?a=1")
    assert out.returncode == 0, out.stderr
    body, version = out.stdout.rsplit("\n", 1)
    assert version == "2"
    info = json.loads(body)
    assert info["http_version"] == "2"  # the upstream hop is HTTP/2 as well
    assert info["path"] == "/echo" and info["query"] == "a=1"
    headers = dict(info["headers"])
    assert headers["x-test"] == "one"
    assert headers["host"] == f"127.0.0.1:{port}"
    assert "x-request-id" in headers
