"""``mosn mock server`` for tests: the same server (:func:`mosn.rpc.tools.serve_mock`)
run on its own event loop in a thread, for any codec object (installed or not), and a
blocking wrapper of the mock client (:func:`mosn.rpc.tools.call`)."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from mosn.config.types import Address, parse_address
from mosn.rpc import tools
from mosn.rpc.codec import Frame, FrameCodec
from mosn.testing.process import START_TIMEOUT


class MockServer:
    """A mock RPC server on ``127.0.0.1`` (a free port unless given) answering every
    request with a success response of ``response_bytes`` bytes after ``delay``
    seconds, and every heartbeat with its reply; ``requests`` holds every request
    frame it got, in order. ``stop()`` closes it."""

    def __init__(self, codec: FrameCodec, *, port: int = 0, delay: float = 0.0,
                 response_bytes: int = 0) -> None:
        self.codec = codec
        self.port = port
        self._args = (delay, response_bytes)
        self.requests: list[Frame] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[Any] | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=f"mock-{codec.name}", daemon=True)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> "MockServer":
        self._thread.start()
        if not self._ready.wait(START_TIMEOUT):
            raise TimeoutError(f"mock {self.codec.name} server did not start")
        if self._error is not None:
            raise RuntimeError(f"mock {self.codec.name} server failed") from self._error
        return self

    def stop(self) -> None:
        if self._loop is not None and self._task is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._task.cancel)
        self._thread.join(START_TIMEOUT)

    def __enter__(self) -> "MockServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def _run(self) -> None:
        loop = self._loop = asyncio.new_event_loop()

        def ready(server: Any) -> None:
            self.port = server.sockets[0].getsockname()[1]
            self._ready.set()

        async def serve() -> None:
            self._task = asyncio.current_task()
            await tools.serve_mock(self.codec, Address("127.0.0.1", self.port), *self._args,
                                   ready=ready, received=self.requests)

        try:
            loop.run_until_complete(serve())
        except asyncio.CancelledError:
            pass
        except BaseException as exc:  # reported by start()
            self._error = exc
        finally:
            self._ready.set()
            loop.close()


def call(codec: FrameCodec, target: str | int, *, service: str, method: str = "echo",
         body: bytes = b"", count: int = 1, concurrency: int = 1, timeout: float = 5.0,
         wait: float = 0.0) -> list[tools.CallResult]:
    """Blocking :func:`mosn.rpc.tools.call`: ``target`` is ``host:port`` or a port
    on 127.0.0.1."""
    address = parse_address(f"127.0.0.1:{target}" if isinstance(target, int) else target)
    return asyncio.run(tools.call(codec, address, service=service, method=method, body=body,
                                  count=count, concurrency=concurrency, timeout=timeout,
                                  wait=wait))
