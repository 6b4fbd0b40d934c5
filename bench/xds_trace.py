"""Where an endpoint push's wall time goes, end to end: ``bench/control_plane.py`` run as
it is (mosn and Envoy, the same snapshots), with mosn's steps timed inside its process
(``bench/xds_trace_site``) and the bench's on the same clock (``time.monotonic``).

    .venv/bin/python bench/xds_trace.py [control_plane.py's options: --fresh --pushes 40 ...]

Printed after control_plane.py's table, the median over mosn's endpoint pushes of each
step, in ms: from the control plane's ``set`` returning to mosn taking the assignment
(the bench control plane's gRPC send, mosn's receive, the cluster and listener
responses before it), taking it (translate, validate, apply: wall and CPU), the route
response after it, the first request picking a host after it, and that request's
answer reaching the bench; with the collector's passes in the push; then each full
pass (generation 2) between a push and its answer.
"""

from __future__ import annotations

import glob
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.argv[0] = str(HERE / "control_plane.py")
import control_plane  # noqa: E402  (its module-level set-up, as when run itself)

EVENTS: list[tuple] = []


def _traced_bench() -> None:
    original_set = control_plane.ControlPlane.set
    original_poll = control_plane.upstream_of
    original_measure = control_plane.measure

    def set_(self, version, resources):
        original_set(self, version, resources)
        EVENTS.append((time.monotonic(), "set", version))

    def poll(port):
        answer = original_poll(port)
        EVENTS.append((time.monotonic(), "answer", answer))
        return answer

    def measure(name, *args, **kwargs):
        EVENTS.append((time.monotonic(), "proxy", name))
        return original_measure(name, *args, **kwargs)

    control_plane.ControlPlane.set = set_
    control_plane.upstream_of = poll
    control_plane.measure = measure


FULL_PASSES: list[tuple[str, str, float]] = []
"""(push, where, ms) of each full pass (generation 2) from a push to its answer: in
taking the assignment, or after it."""


def breakdown(mosn: list[tuple]) -> dict[str, float]:
    until = next((t for t, kind, *what in EVENTS if kind == "proxy" and what[0] != "mosn"),
                 float("inf"))
    pushes = [(t, what[0]) for t, kind, *what in EVENTS
              if kind == "set" and what[0][:1] == "e" and what[0][1:].isdigit() and t < until]
    sets = [t for t, kind, *what in EVENTS if kind == "set"]
    steps: dict[str, list[float]] = {}
    for start, version in pushes:
        end = min(next((t for t in sets if t > start), until), until)  # the next push of any kind
        mine = [e for e in mosn if start <= e[0] < end]

        def at(kind: str, *what: str) -> tuple | None:
            return next((e for e in mine if e[2] == kind and tuple(e[3:3 + len(what)]) == what), None)

        taken = at("recv", "ClusterLoadAssignment", version)
        done = at("done", "ClusterLoadAssignment", version)
        routes = at("done", "RouteConfiguration", version)
        answered = [t for t, kind, *what in EVENTS if kind == "answer" and start <= t < end]
        if not (taken and done and answered):
            continue
        after = routes[0] if routes else done[0]
        pick = next((e for e in mine if e[2] == "pick" and e[0] >= after), None)
        passes, began = [], {}
        for e in mine:
            if e[2] == "gc_start":
                began = e
            elif e[2] == "gc_stop" and began and taken[0] <= began[0] <= done[0]:
                passes.append((e[3], e[0] - began[0]))
            if e[2] == "gc_stop" and began and e[3] == 2 and began[0] <= answered[-1]:
                where = "taking it" if taken[0] <= began[0] <= done[0] else "around it"
                FULL_PASSES.append((version, where, (e[0] - began[0]) * 1000))
        row = {"to mosn taking the assignment": taken[0] - start,
               "taking it (wall)": done[0] - taken[0],
               "taking it (CPU)": done[1] - taken[1],
               "  of it: collector passes": sum(s for _, s in passes),
               "  of it: full passes": sum(s for g, s in passes if g == 2),
               "the route response after it": after - done[0],
               "to the first request's pick": (pick[0] - after) if pick else float("nan"),
               "to its answer at the bench": answered[-1] - (pick[0] if pick else after),
               "push to traffic": answered[-1] - start}
        for name, value in row.items():
            steps.setdefault(name, []).append(value * 1000)
    return {name: statistics.median(values) for name, values in steps.items()}


def main() -> int:
    _traced_bench()
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["MOSN_XDS_TRACE"] = str(Path(tmp) / "mosn")
        os.environ["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(HERE / "xds_trace_site"), os.environ.get("PYTHONPATH")) if p)
        code = control_plane.main()
        mosn = sorted(json.loads(line) for path in glob.glob(f"{tmp}/mosn.*")
                      for line in open(path))
    print("mosn's endpoint pushes, median ms of each step:")
    for name, value in breakdown([tuple(e) for e in mosn]).items():
        print(f"  {name:34} {value:8.2f}")
    print(f"full collector passes from a push to its answer: {len(FULL_PASSES)}"
          + "".join(f"; {v} {where} {ms:.1f} ms" for v, where, ms in FULL_PASSES))
    return code


if __name__ == "__main__":
    sys.exit(main())
