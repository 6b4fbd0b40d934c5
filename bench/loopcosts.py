"""What the loop machinery a request used to take costs, against what replaced it.

    python -P bench/loopcosts.py [--n N] [--rounds R]

(``-P``: bench/http.py would otherwise shadow the standard library's ``http``.)

Thread CPU time per operation on uvloop, best of R rounds (run it pinned, e.g.
``taskset -c 0``, on a machine as quiet as can be had; figures vary with the load):

  timer        ``loop.call_later(15, f)`` then ``cancel()`` (the route timer a request
               armed and its response cancelled), the loop turning once per 100 so
               libuv closes the cancelled timers as it would under load
  deadlines    ``Deadlines.add`` then ``discard`` (mosn/proxy/deadlines.py: the route
               timeouts on one loop timer)
  call_soon    one ``call_soon`` and its run per loop turn, less a loop turn alone
               (the flush an HTTP/1 response's held head schedules)
  reads        what a flush at the end of the read being handled instead would cost:
               a per-loop count of the reads being handled, kept on every read (one
               here), and a list of the streams that held a head back (tried, and not
               kept: it costs about what the ``call_soon`` does)
"""

from __future__ import annotations

import argparse
import asyncio
import time

import uvloop

from mosn.proxy.deadlines import Deadlines


class _Reads:
    """The bookkeeping of the flush at a read's end that was tried."""

    __slots__ = ("depth", "corked")

    def __init__(self) -> None:
        self.depth = 0
        self.corked: list[_Stream] = []

    def flush(self) -> None:
        corked, self.corked = self.corked, []
        for stream in corked:
            stream._uncork()


class _Stream:
    corked = None

    def _uncork(self) -> None:
        self.corked = None

    def on_deadline(self) -> None:
        pass


def timer(loop: asyncio.AbstractEventLoop, n: int) -> float:
    stream = _Stream()

    async def run() -> float:
        t = time.thread_time()
        for i in range(n):
            loop.call_later(15.0, stream.on_deadline).cancel()
            if i % 100 == 0:
                await asyncio.sleep(0)
        return time.thread_time() - t

    return loop.run_until_complete(run())


def deadlines(loop: asyncio.AbstractEventLoop, n: int) -> float:
    d, stream = Deadlines(), _Stream()
    t = time.thread_time()
    for _ in range(n):
        d.add(loop, stream, 15.0)
        d.discard(stream)
    return time.thread_time() - t


def call_soon(loop: asyncio.AbstractEventLoop, n: int) -> float:
    stream = _Stream()

    async def turns(schedule: bool) -> float:
        t = time.thread_time()
        for _ in range(n):
            if schedule:
                loop.call_soon(stream._uncork)
            await asyncio.sleep(0)
        return time.thread_time() - t

    return loop.run_until_complete(turns(True)) - loop.run_until_complete(turns(False))


def reads(loop: asyncio.AbstractEventLoop, n: int) -> float:
    r, stream = _Reads(), _Stream()
    t = time.thread_time()
    for _ in range(n):
        r.depth += 1
        r.corked.append(stream)
        r.depth -= 1
        if not r.depth and r.corked:
            r.flush()
    return time.thread_time() - t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=100_000, help="operations per round")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    loop = uvloop.new_event_loop()
    for name, measure in (("timer", timer), ("deadlines", deadlines),
                          ("call_soon", call_soon), ("reads", reads)):
        best = min(measure(loop, args.n) for _ in range(args.rounds))
        print(f"{name:10s} {best / args.n * 1e6:6.3f} us")
    loop.close()


if __name__ == "__main__":
    main()
