"""Where TLS's cost per keep-alive request goes inside mosn, by library.

    .venv/bin/python bench/tls_profile.py [--seconds 5] [--connections 1]

One mosn process with a plaintext and a TLS listener (the config of bench/tls.py's
keep-alive run) in front of an nginx backend; wrk (one connection by default) on the
other CPU, first on the plaintext listener, then on the TLS one. ``perf record -e
cpu-clock`` samples mosn through each run; the samples are split by the library
they fell in (libpython, the kernel, libcrypto, libssl ...) and turned into µs per
request. Beside bench/tls.py's CPU-time difference, which moves by ±20 µs from run
to run on this machine, the split shows which code the TLS requests spend more in.
Needs ``perf`` (linux-perf) and root.
"""

from __future__ import annotations

import argparse
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import tls  # noqa: E402
from common import Processes, free_port, install_mosn, nginx_command, proxy_and_load_cpus  # noqa: E402

from mosn.testing.certs import CertificateAuthority  # noqa: E402

SAMPLE_HZ = 2000
"""perf's sampling rate: one sample is 500 µs of CPU."""
SETTLE = 0.5  # seconds for perf to attach before the load starts
ROW = re.compile(r"^\s*[\d.]+%\s+(\d+)\s+(\S+)")


def profile(pid: int, url: str, seconds: int, cpu: int, connections: int,
            out: Path) -> tuple[int, dict[str, int]]:
    """Requests served and samples per library while wrk loads ``url``."""
    perf = subprocess.Popen(["perf", "record", "-q", "-e", "cpu-clock", "-F", str(SAMPLE_HZ),
                             "-p", str(pid), "-o", str(out)], stderr=subprocess.DEVNULL)
    time.sleep(SETTLE)
    count = tls.wrk(url, seconds, cpu, connections)
    perf.send_signal(signal.SIGINT)
    perf.wait()
    report = subprocess.run(["perf", "report", "-i", str(out), "--sort", "dso", "--stdio", "-n"],
                            capture_output=True, text=True, check=True).stdout
    samples = {m.group(2): int(m.group(1)) for line in report.splitlines()
               if (m := ROW.match(line))}
    return count, samples


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=1)
    args = parser.parse_args()
    if reason := install_mosn(("http1",)):
        print(reason)
        return 1
    cpus = proxy_and_load_cpus()
    with tempfile.TemporaryDirectory(prefix="mosn-bench-tls-profile-") as workdir:
        procs = Processes(Path(workdir))
        try:
            cert = CertificateAuthority().issue(dns=["localhost"], ips=["127.0.0.1"]).write(
                Path(workdir) / "ecdsa")
            backend_port = free_port()
            backend = procs.start("backend", nginx_command("backend", procs.logs,
                                                           "http-backend.conf",
                                                           backend_port=backend_port), cpus[1])
            tls.wait_port(backend_port, backend, "backend")
            plain, secure = free_port(), free_port()
            mosn = tls.start_mosn(procs, cpus[0], [tls.mosn_listener("plain", plain, None),
                                                   tls.mosn_listener("tls", secure,
                                                                     tls.mosn_tls(cert))],
                                  backend_port, "mosn-profile")
            tls.wait_port(secure, mosn, "mosn")
            urls = {"plaintext": f"http://127.0.0.1:{plain}/", "tls": f"https://127.0.0.1:{secure}/"}
            for url in urls.values():
                tls.wrk(url, 1, cpus[1], args.connections)  # warm up
            per_request: dict[str, dict[str, float]] = {}
            for mode, url in urls.items():
                count, samples = profile(mosn.pid, url, args.seconds, cpus[1], args.connections,
                                         Path(workdir) / f"{mode}.data")
                per_request[mode] = {lib: n * 1e6 / SAMPLE_HZ / count for lib, n in samples.items()}
                print(f"{mode}: {count} requests", flush=True)
        finally:
            procs.stop_all()
    libraries = sorted(set().union(*per_request.values()),
                       key=lambda lib: -per_request["tls"].get(lib, 0.0))
    print(f"{'library':<44} {'plaintext':>10} {'tls':>10} {'tls adds':>10}  (µs per request)")
    for lib in libraries:
        a, b = per_request["plaintext"].get(lib, 0.0), per_request["tls"].get(lib, 0.0)
        if a or b:
            print(f"{lib:<44} {a:>10.1f} {b:>10.1f} {b - a:>10.1f}")
    total = [sum(per_request[m].values()) for m in ("plaintext", "tls")]
    print(f"{'all':<44} {total[0]:>10.1f} {total[1]:>10.1f} {total[1] - total[0]:>10.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
