"""Loaded by the mosn process that ``bench/xds_trace.py`` starts (this folder first on its
``PYTHONPATH``): the steps of each xDS push, timed on the clock every process shares
(``time.monotonic``), written to ``$MOSN_XDS_TRACE.<pid>``. Only a ``mosn start``
process with that variable set is traced."""

import gc
import json
import os
import sys
import threading
import time

FLUSH = 0.3  # seconds between writes of the events recorded (off the event loop's thread)


def _install(path: str) -> None:
    import mosn.upstream.cluster as upstream
    import mosn.xds.apply as apply
    import mosn.xds.client as client

    events: list[tuple] = []
    out = open(f"{path}.{os.getpid()}", "w")

    def event(*what) -> None:
        events.append((time.monotonic(), time.thread_time(), *what))

    def flush() -> None:
        while True:
            time.sleep(FLUSH)
            n = len(events)
            if n:
                batch, events[:n] = events[:n], []
                out.write("".join(json.dumps(e) + "\n" for e in batch))
                out.flush()

    threading.Thread(target=flush, daemon=True).start()
    gc.callbacks.append(lambda phase, info: event("gc_" + phase, info["generation"]))

    def wrap(owner, name, before, after=None):
        original = getattr(owner, name)

        def timed(self, *args):
            before(self, *args)
            try:
                result = original(self, *args)
            finally:
                if after is not None:
                    after(self, *args)
            return result

        setattr(owner, name, timed)

    short = lambda response: response.type_url.rpartition(".")[2]  # noqa: E731
    wrap(client.Subscriber, "take_sotw",
         lambda self, r: event("recv", short(r), r.version_info),
         lambda self, r: event("done", short(r), r.version_info))
    wrap(apply.Composer, "offer", lambda self, c: event("offer"), lambda self, c: event("offered"))
    original_choose = upstream.Cluster.choose_host

    def choose_host(self, exclude=(), context=None):
        host = original_choose(self, exclude, context)
        event("pick", self.name)
        return host

    upstream.Cluster.choose_host = choose_host


_argv = getattr(sys, "orig_argv", sys.argv)
if os.environ.get("MOSN_XDS_TRACE") and "mosn" in _argv and "start" in _argv:
    _install(os.environ["MOSN_XDS_TRACE"])
