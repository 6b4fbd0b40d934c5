"""The soak (bench/soak.py), short: mixed HTTP/1.1, HTTP/2, gRPC, bolt and Dubbo traffic
from real clients through one mosn while upstreams are killed and restarted, with every
answer checked. The half-hour run and its record are in docs/benchmarks.md; this one
runs in CI so that a wrong answer, or a request failed while another host could serve
it, is caught on every change."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from mosn.testing import ensure_node_modules

ROOT = Path(__file__).resolve().parent.parent
SOAK = ROOT / "bench" / "soak.py"
DURATION = 50
"""Seconds of traffic: each kind of upstream loses one host, then one kind all of them
(an event every EVENT_EVERY + DOWN_FOR seconds, up to 9 s where the upstreams restart
slowly beside other tests), then traffic runs on recovered hosts."""
EVENT_EVERY = 3
"""Seconds between the end of an event and the next (an event takes DOWN_FOR)."""
DOWN_FOR = 2
"""Seconds a killed upstream stays down."""
RUN_TIMEOUT = 300
"""Seconds for the whole run: upstreams, node clients and mosn start slowly on a busy CI."""


@pytest.mark.parametrize("events", ["kill-one,outage"])
def test_soak_no_wrong_answer_and_no_failure_outside_an_outage(tmp_path, events):
    for peers in ("sofarpc", "dubbo"):  # the bolt and Dubbo clients and providers
        ensure_node_modules(ROOT / "plugins" / peers / "tests" / "peers")
    out = tmp_path / "soak.json"
    run = subprocess.run(
        [sys.executable, "-P", str(SOAK), "--duration", str(DURATION),
         "--event-every", str(EVENT_EVERY), "--down-for", str(DOWN_FOR), "--events", events,
         "--json", str(out)],
        capture_output=True, text=True, timeout=RUN_TIMEOUT, cwd=ROOT)
    assert out.exists(), run.stdout + run.stderr
    result = json.loads(out.read_text())
    report = run.stdout
    assert {e["event"] for e in result["events"]} == set(events.split(",")), report
    for name, p in result["protocols"].items():
        assert p["ok"] > 0, (name, report)  # every client's traffic went through
        assert p["wrong"] == 0, (name, report)
        assert not p["failed_otherwise"], (name, report)
    assert run.returncode == 0, report + run.stderr
