"""h2load through upgrades, outside CI: what h2load counts and what mosn counted.

    .venv/bin/python -P bench/h2_upgrade.py --runs 10
    .venv/bin/python -P bench/h2_upgrade.py --runs 3 --capture   # root: tcpdump on lo

Each run: mosn (an ``Http2`` listener, HTTP/1.1 to the example upstream), h2load
(``-D SECONDS -c 4 -m 8``, h2c) through it, and once mosn has answered 100 requests a
second ``mosn start`` that takes over; h2load's first run is followed by more until
the old process is gone. Reported per run: h2load's ``requests:`` line of each run,
the requests its ``--log-file`` shows failed and how many of those it never sent (no
request time: nghttp2 did not start the stream), and mosn's counters (received,
answered, reset, refused after a GOAWAY, connections drained). With ``--capture``
(tcpdump on the loopback), per connection: the streams h2load opened on the wire, the
responses mosn ended, and the GOAWAYs' last stream ids.

Exit status 1 if h2load counted a failed request or mosn answered fewer streams than
it received.
"""

from __future__ import annotations

import argparse
import collections
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mosn.testing.process import MosnProcess, wait_for_port  # before bench/ is on the path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # (its http.py would shadow http)
from common import ROOT, free_port  # noqa: E402

HTTP_UPSTREAM = ROOT / "examples" / "http_upstream.py"
HANDOVER_TIMEOUT = 120.0
"""Seconds for the new process to start and the old one to hand over and exit."""
POLL_INTERVAL = 0.05
CAPTURE_SETTLE = 0.5
"""Seconds tcpdump gets to write the last packets before it is stopped."""
FRAME_HEADER = struct.Struct(">HBBBL")
"""An HTTP/2 frame header: length (16 + 8 bits), type, flags, stream id (RFC 9113 4.1)."""
PREFACE_SIZE = 24
DATA, HEADERS, GOAWAY = 0x0, 0x1, 0x7
END_STREAM = 0x1


def config(port: int, upstream: int) -> dict:
    return {
        "servers": [{
            "default_log_level": "WARN",
            "graceful_timeout": "10s",
            "routers": [{"router_config_name": "main", "virtual_hosts": [{
                "name": "all", "domains": ["*"], "routers": [{
                    "match": {"prefix": "/"}, "route": {"cluster_name": "backend"}}]}]}],
            "listeners": [{"name": "http", "address": f"127.0.0.1:{port}", "filter_chains": [{
                "filters": [{"type": "proxy", "config": {
                    "downstream_protocol": "Http2", "upstream_protocol": "Http1",
                    "router_config_name": "main"}}]}]}],
        }],
        "cluster_manager": {"clusters": [{
            "name": "backend", "lb_type": "LB_ROUNDROBIN",
            "hosts": [{"address": f"127.0.0.1:{upstream}"}]}]},
    }


def tcp_payloads(pcap: Path, port: int) -> dict[tuple[int, int], bytes]:
    """The bytes each direction of each connection to ``port`` carried (a loopback
    capture: in order; a segment seen again is skipped)."""
    data = pcap.read_bytes()
    link = struct.unpack_from("<I", data, 20)[0]
    offset = {1: 14, 113: 16}.get(link, 4)  # Ethernet, Linux cooked, loopback
    flows: dict[tuple[int, int], list] = collections.defaultdict(lambda: [None, bytearray()])
    i = 24
    while i + 16 <= len(data):
        size = struct.unpack_from("<I", data, i + 8)[0]
        packet = data[i + 16 + offset:i + 16 + size]
        i += 16 + size
        if not packet or packet[0] >> 4 != 4:
            continue
        ihl, total = (packet[0] & 15) * 4, struct.unpack_from(">H", packet, 2)[0]
        tcp = packet[ihl:total]
        sport, dport, seq = struct.unpack_from(">HHI", tcp)
        payload = tcp[(tcp[12] >> 4) * 4:]
        if port not in (sport, dport) or not payload:
            continue
        flow = flows[(sport, dport)]
        if flow[0] is None:
            flow[0] = seq
        if (seq - flow[0]) % 2**32 >= len(flow[1]):
            flow[1] += payload
    return {key: bytes(flow[1]) for key, flow in flows.items()}


def frames(data: bytes, skip: int = 0):
    """(type, flags, stream id, payload) of each whole frame in ``data``."""
    i = skip
    while i + 9 <= len(data):
        high, low, kind, flags, sid = FRAME_HEADER.unpack_from(data, i)
        length = (high << 8) | low
        yield kind, flags, sid & 0x7FFFFFFF, data[i + 9:i + 9 + length]
        i += 9 + length


def per_connection(pcap: Path, port: int) -> list[str]:
    flows = tcp_payloads(pcap, port)
    lines = []
    for (client_port, server_port), sent in sorted(flows.items()):
        if server_port != port:
            continue
        opened = {sid for kind, _, sid, _ in frames(sent, PREFACE_SIZE) if kind == HEADERS}
        got = list(frames(flows.get((port, client_port), b"")))
        ended = {sid for kind, flags, sid, _ in got
                 if kind in (DATA, HEADERS) and flags & END_STREAM}
        goaways = [hex(struct.unpack_from(">I", p)[0]) for kind, _, _, p in got if kind == GOAWAY]
        lines.append(f"  connection :{client_port}: {len(opened)} streams opened, "
                     f"{len(opened & ended)} answered, {len(opened - ended)} not; "
                     f"GOAWAY last stream ids {goaways}")
    return lines


def one_run(workdir: Path, upstream: int, seconds: int, capture: bool) -> bool:
    port = free_port()
    cfg = config(port, upstream)
    tcpdump = None
    if capture:
        tcpdump = subprocess.Popen(["tcpdump", "-i", "lo", "-s", "0", "-w",
                                    str(workdir / "h2.pcap"), f"tcp port {port}"],
                                   stderr=subprocess.DEVNULL)
    old = MosnProcess(cfg, workdir)
    new = None
    url = f"http://127.0.0.1:{port}/status/200"
    logs: list[Path] = []

    def h2load() -> subprocess.Popen:
        logs.append(workdir / f"h2load-{len(logs)}.log")
        return subprocess.Popen(["h2load", "-D", str(seconds), "-c", "4", "-m", "8",
                                 "--log-file", str(logs[-1]), url],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    runs = [h2load()]
    try:
        while old.stats()["listener.http.downstream_rq_total"] < 100:
            time.sleep(POLL_INTERVAL)
        new = MosnProcess(cfg, workdir, wait=False)
        deadline = time.monotonic() + HANDOVER_TIMEOUT
        while old.proc.poll() is None and time.monotonic() < deadline:
            if runs[-1].poll() is not None:
                runs.append(h2load())
            time.sleep(POLL_INTERVAL)
        new.wait_ready()
        outputs = [run.communicate(timeout=HANDOVER_TIMEOUT)[0] for run in runs]
        stats = new.stats()
    finally:
        for run in runs:
            if run.poll() is None:
                run.kill()
        for process in (old, new):
            if process is not None and process.proc.poll() is None:
                process.stop()
        if tcpdump is not None:
            time.sleep(CAPTURE_SETTLE)
            tcpdump.send_signal(signal.SIGINT)
            tcpdump.wait()
    ok = True
    for out, log in zip(outputs, logs):
        summary = next((line for line in out.splitlines() if line.startswith("requests:")), out)
        failed = [line.split("\t") for line in log.read_text().splitlines()
                  if line.split("\t")[1] == "-1"]
        unsent = sum(1 for start, _, _ in failed if start == "0")
        print(f"  h2load {summary}; --log-file: {len(failed)} failed, {unsent} never sent")
        ok = ok and " 0 failed, 0 errored" in summary
    rq = {name: stats[f"listener.http.downstream_rq_{name}"]
          for name in ("total", "2xx", "rx_reset", "tx_reset", "refused_after_goaway")}
    print(f"  mosn received {rq['total']}, answered {rq['2xx']}, client reset "
          f"{rq['rx_reset']}, mosn reset {rq['tx_reset']}, refused after GOAWAY "
          f"{rq['refused_after_goaway']}; connections drained "
          f"{stats['server.connections_drained']}")
    if capture:
        print("\n".join(per_connection(workdir / "h2.pcap", port)))
    return ok and rq["tx_reset"] == rq["refused_after_goaway"] == 0 \
        and rq["total"] == rq["2xx"] + rq["rx_reset"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--seconds", type=int, default=15, help="h2load -D")
    parser.add_argument("--capture", action="store_true", help="tcpdump on lo (root)")
    args = parser.parse_args()
    if shutil.which("h2load") is None or (args.capture and shutil.which("tcpdump") is None):
        print("needs h2load (nghttp2-client) and, with --capture, tcpdump")
        return 2
    upstream = free_port()
    server = subprocess.Popen([sys.executable, str(HTTP_UPSTREAM), "--port", str(upstream)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    failures = 0
    try:
        wait_for_port(upstream)
        for i in range(1, args.runs + 1):
            with tempfile.TemporaryDirectory(prefix="mosn-h2-upgrade-") as tmp:
                print(f"run {i}:", flush=True)
                failures += not one_run(Path(tmp), upstream, args.seconds, args.capture)
    finally:
        server.terminate()
        server.wait()
    print(f"{args.runs - failures} of {args.runs} runs without a failed request")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
