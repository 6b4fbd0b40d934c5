"""The HTTP/1 codec alone, per request: Python opcodes executed (a count that does not
depend on how busy the machine is) and CPU time, on in-memory connections.

    python bench/h1codec.py [--tree DIR ...] [--requests N] [--functions N]

For each source tree (default: this one), imports its HTTP/1 plugin and test fakes
(``plugins/http1``, ``plugins/http1/tests/http1_fakes.py``) in a fresh interpreter and
runs two loops: ``server`` (a GET with three fields read by ``ServerConnection``, a
200 with a 5-byte body written back through ``ServerStream``) and ``client`` (the
same exchange from ``ClientConnection``'s side). Opcodes are counted with
``sys.settrace`` over 200 requests after 200 of warm-up; CPU time is the best of 7
rounds of ``--requests`` with ``time.process_time`` (noisy on a shared machine:
compare trees by opcodes first). httptools' parsing (C) is in the CPU time, not in
the opcode count. ``--functions N`` also lists, per loop, the N functions that
execute the most opcodes per request (where the count goes). Compiled modules run no
opcodes: count the pure build (``MOSN_NO_EXTENSIONS=1``) to compare trees.
"""

from __future__ import annotations

import argparse
import collections
import json
import subprocess
import sys
import time
from pathlib import Path

REQUEST = (b"GET /foo/bar?x=1 HTTP/1.1\r\nHost: example.com\r\nUser-Agent: h2load\r\n"
           b"Accept: */*\r\n\r\n")
RESPONSE = (b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\ncontent-type: text/plain\r\n\r\n"
            b"hello")
TRACED_REQUESTS = 200
"""Requests counted opcode by opcode (the count is the same for every request)."""
ROUNDS = 7
"""CPU time rounds per loop; the best is kept (the least disturbed)."""


def measure(tree: Path, requests: int, functions: int) -> dict:
    """Runs in the child: the figures of one tree."""
    here = Path(__file__).resolve().parent
    # bench/http.py would shadow the standard library's http package.
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != here]
    sys.path[:0] = [str(tree / "plugins/http1"), str(tree / "plugins/http1/tests")]
    import mosn_http1
    from http1_fakes import FakeConnection
    from mosn.stream.types import Headers, RequestHead, ResponseHead

    assert Path(mosn_http1.__file__).resolve().is_relative_to(tree.resolve())

    class Answer:
        """A RequestHandler that answers at once, as the proxy does with a response
        already read."""

        def __init__(self, stream) -> None:
            self.stream = stream

        def on_headers(self, head, end_stream) -> None:
            self.stream.send_headers(ResponseHead(200, Headers(
                [("content-length", "5"), ("content-type", "text/plain")])), False)
            self.stream.send_data(b"hello", True)

    class Ignore:
        def on_headers(self, head, end_stream) -> None:
            pass

        def on_data(self, data, end_stream) -> None:
            pass

    down = FakeConnection()
    mosn_http1.ServerConnection(down, Answer)
    up = FakeConnection()
    client = mosn_http1.ClientConnection(up, lambda: None)
    head = RequestHead("GET", "/foo/bar?x=1", "example.com", "http",
                       Headers([("user-agent", "h2load"), ("accept", "*/*")]))

    def server() -> None:
        down.receive(REQUEST)
        down.loop.soon.clear()
        down.writes.clear()

    def client_side() -> None:
        client.new_stream(Ignore()).send_headers(head, True)
        up.receive(RESPONSE)
        up.loop.soon.clear()
        up.writes.clear()

    out = {}
    for name, run in (("server", server), ("client", client_side)):
        for _ in range(TRACED_REQUESTS):
            run()
        counts: collections.Counter = collections.Counter()

        def tracer(frame, event, arg):
            frame.f_trace_opcodes = True
            frame.f_trace_lines = False
            if event == "opcode":
                code = frame.f_code
                counts[code.co_filename, code.co_firstlineno, code.co_name] += 1
            return tracer

        sys.settrace(tracer)
        for _ in range(TRACED_REQUESTS):
            run()
        sys.settrace(None)
        codec = sum(n for f, n in counts.items() if "mosn_http1" in f[0])
        best = float("inf")
        for _ in range(ROUNDS):
            start = time.process_time()
            for _ in range(requests):
                run()
            best = min(best, time.process_time() - start)
        out[name] = {"opcodes_per_request": sum(counts.values()) / TRACED_REQUESTS,
                     "codec_opcodes_per_request": codec / TRACED_REQUESTS,
                     "cpu_us_per_request": round(best / requests * 1e6, 2),
                     "functions": [(f"{Path(f).name}:{line} {name}", n / TRACED_REQUESTS)
                                   for (f, line, name), n in counts.most_common(functions)]}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tree", action="append", default=[], metavar="DIR")
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--functions", type=int, default=0, metavar="N")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(Path(args.child), args.requests, args.functions)))
        return
    trees = args.tree or [str(Path(__file__).resolve().parent.parent)]
    print(f"{'tree':40} {'loop':7} {'opcodes/req':>11} {'codec':>7} {'CPU us/req':>10}")
    for tree in trees:
        result = json.loads(subprocess.run(
            [sys.executable, __file__, "--child", tree, "--requests", str(args.requests),
             "--functions", str(args.functions)],
            check=True, capture_output=True, text=True).stdout)
        for name, r in result.items():
            print(f"{tree:40} {name:7} {r['opcodes_per_request']:11.0f} "
                  f"{r['codec_opcodes_per_request']:7.0f} {r['cpu_us_per_request']:10.2f}")
            for where, n in r["functions"]:
                print(f"    {n:7.1f}  {where}")


if __name__ == "__main__":
    main()
