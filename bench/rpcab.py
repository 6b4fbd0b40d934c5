"""mosn's CPU per RPC request at two commits, side by side: what a change to the RPC
path costs.

    python bench/rpcab.py BEFORE [AFTER] [--protocol bolt|dubbo] [--runs N] [--seconds S]

BEFORE and AFTER are git revisions of this repository (AFTER: the work tree as it is,
uncommitted changes included); BEFORE is exported with `git archive` into a temporary
directory (so it runs pure Python: an export has no compiled modules), or is a
directory holding another checkout, run as it is (with its compiled modules, if built). Two mosn processes, one per tree (PYTHONPATH puts the tree's mosn and its
plugins ahead of the installed ones), run bench/peers/rpc-mosn.yaml on CPU 0
in front of bench/rpcgen.c's server on CPU 1; rpcgen's ping-pong clients (50
connections, a 1 KiB request each, as bench/rpc.py) run --seconds at a time against
each in turn, --runs times each, the order swapped every run. Printed: each tree's
proxy CPU us per request per run and their median, and the median req/s. Two builds
measured in the same minutes see the same noise from the rest of the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
from pathlib import Path

from common import BIN, ROOT, Processes, free_port, proxy_and_load_cpus, render, tree_pythonpath
from h2ab import export
from rpc import PROTOCOLS, Generator, load_codec, routed_service, templates, wait_ready


async def measure(args: argparse.Namespace, work: Path, procs: Processes) -> dict[str, list[dict]]:
    proxy_cpu, load_cpu = proxy_and_load_cpus()
    trees = {}
    for label, revision in (("before", args.before), ("after", args.after)):
        (work / label).mkdir()
        trees[f"{label} {revision or 'work tree'}"] = export(revision, work / label) if revision \
            else ROOT
    codec = load_codec(args.protocol)
    request, response, _, _ = templates(codec, work)
    gen = await Generator.start(Generator.build(work), load_cpu, args.protocol, request, response)
    try:
        peers = {}
        for n, (label, tree) in enumerate(trees.items()):
            listen = free_port()
            (work / f"mosn{n}").mkdir()
            config = render("rpc-mosn.yaml", work / f"mosn{n}", listen=listen,
                            server_port=gen.server_port, admin_port=free_port(),
                            protocol=codec.name, service=routed_service(codec))
            os.environ["PYTHONPATH"] = tree_pythonpath(tree)
            proxy = procs.start(f"mosn{n}", [str(BIN / "mosn"), "start", "-c", config,
                                             "--workers", "1"], proxy_cpu)
            peers[label] = (listen, proxy)
        os.environ.pop("PYTHONPATH")
        for listen, proxy in peers.values():
            await wait_ready(procs, proxy, codec, listen)
        runs: dict[str, list[dict]] = {label: [] for label in peers}
        for n in range(args.runs):
            for label in list(peers)[::1 if n % 2 == 0 else -1]:
                listen, proxy = peers[label]
                runs[label].append(await gen.pingpong(listen, args.seconds, proxy.pid))
        return runs
    finally:
        await gen.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before")
    parser.add_argument("after", nargs="?", help="default: the work tree")
    parser.add_argument("--protocol", choices=sorted(PROTOCOLS), default="bolt")
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mosn-rpcab-") as workdir:
        procs = Processes(Path(workdir))
        try:
            runs = asyncio.run(measure(args, Path(workdir), procs))
        finally:
            procs.stop_all()
    for label, results in runs.items():
        cpu = [r["cpu_us_per_req"] for r in results]
        errors = sum(r["errors"] for r in results)
        print(f"{label}: CPU us/req median {statistics.median(cpu):.1f} "
              f"(runs {' '.join(f'{c:.0f}' for c in cpu)}); req/s median "
              f"{statistics.median(r['req_per_s'] for r in results):.0f}; errors {errors}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
