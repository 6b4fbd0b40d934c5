"""mosn's CPU per HTTP/2 request at two commits, side by side: is a change to the h2 path a gain?

    python bench/h2ab.py BEFORE [AFTER] [--runs N] [--seconds S]

BEFORE and AFTER are git revisions of this repository (AFTER: the work tree as it
is, uncommitted changes included); BEFORE is exported with `git archive` into a
temporary directory. Two mosn processes, one per tree (PYTHONPATH puts the tree's
mosn and its plugins ahead of the installed ones), run bench/peers/h2-mosn.yaml on
CPU 0 in front of one nghttpd on CPU 1; h2load (-c10 -m10, as bench/h2.py) runs
--seconds at a time against each in turn, --runs times each, the order swapped every
run. Printed: each tree's proxy CPU us per request per run and their median, and the
median req/s. Two builds measured in the same minutes see the same noise from the
rest of the machine, which a before/after pair of bench/h2.py runs does not.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from common import BIN, ROOT, Peer, Processes, free_port, render, tree_pythonpath
from h2 import BODY, PATH, run_h2load, wait_listening, wait_ready

WARMUP = 1  # seconds of h2load per mosn before the first run


def export(revision: str, into: Path) -> Path:
    """The tree of revision, exported under into; a revision that is a directory
    holding mosn/__init__.py (another checkout, with its compiled modules built or
    not) is that tree itself."""
    if (Path(revision) / "mosn" / "__init__.py").is_file():
        return Path(revision).resolve()
    tree = into / "tree"
    tree.mkdir()
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", revision], capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive.stdout, check=True)
    return tree


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before")
    parser.add_argument("after", nargs="?", help="default: the work tree")
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--seconds", type=int, default=3)
    args = parser.parse_args()
    cpus = sorted(os.sched_getaffinity(0))
    cpus = (cpus[0], cpus[-1])
    with tempfile.TemporaryDirectory(prefix="mosn-h2ab-") as workdir:
        work = Path(workdir)
        procs = Processes(work)
        try:
            trees = {}
            for label, revision in (("before", args.before), ("after", args.after)):
                (work / label).mkdir()
                trees[f"{label} {revision or 'work tree'}"] = export(revision, work / label) if revision else ROOT
            docroot = work / "htdocs"
            docroot.mkdir()
            (docroot / PATH.lstrip("/")).write_bytes(BODY)
            backend_port = free_port()
            backend = procs.start("backend", ["nghttpd", "--no-tls", "-a", "127.0.0.1", "-d", str(docroot),
                                              str(backend_port)], cpus[1])
            wait_listening(procs, backend, backend_port)
            peers = {}
            for n, (label, tree) in enumerate(trees.items()):
                listen = free_port()
                (work / f"mosn{n}").mkdir()
                config = render("h2-mosn.yaml", work / f"mosn{n}", listen=listen, backend_port=backend_port,
                                admin_port=free_port())
                os.environ["PYTHONPATH"] = tree_pythonpath(tree)
                proxy = procs.start(f"mosn{n}", [str(BIN / "mosn"), "start", "-c", config, "--workers", "1"],
                                    cpus[0])
                peers[label] = Peer(label, listen, proxy)
            os.environ.pop("PYTHONPATH")
            for peer in peers.values():
                wait_ready(procs, peer.proxy, peer.port, "h2")
                run_h2load(peer.port, WARMUP, cpus[1], None, [backend.pid], work)
            runs: dict[str, list[dict]] = {label: [] for label in peers}
            for n in range(args.runs):
                for peer in list(peers.values())[::1 if n % 2 == 0 else -1]:
                    runs[peer.name].append(run_h2load(peer.port, args.seconds, cpus[1], peer.proxy.pid,
                                                      [backend.pid], work))
        finally:
            procs.stop_all()
    for label, results in runs.items():
        cpu = [r["cpu_us_per_req"] for r in results]
        print(f"{label}: CPU us/req median {statistics.median(cpu):.1f} (runs {' '.join(f'{c:.0f}' for c in cpu)}); "
              f"req/s median {statistics.median(r['req_per_s'] for r in results):.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
