"""Stand-ins for codec unit tests (pure logic, no IO): a loop whose ``call_soon``
callbacks run when the test says, and a stream handler that records every call the
codec makes on it (the ``RequestHandler`` / ``ResponseHandler`` contracts)."""

from __future__ import annotations

from typing import Any

from mosn.stream.types import StreamResetReason


class FakeLoop:
    """``call_soon`` kept until the test runs the loop's next turn with ``run()``."""

    def __init__(self) -> None:
        self.soon: list[tuple[Any, tuple[Any, ...]]] = []

    def call_soon(self, callback: Any, *args: Any) -> None:
        self.soon.append((callback, args))

    def run(self) -> None:
        soon, self.soon = self.soon, []
        for callback, args in soon:
            callback(*args)


class Recorder:
    """A RequestHandler / ResponseHandler that keeps every call."""

    def __init__(self, stream: Any = None) -> None:
        self.stream = stream
        self.events: list[tuple[Any, ...]] = []

    def on_headers(self, head: Any, end_stream: bool) -> None:
        self.events.append(("headers", head, end_stream))

    def on_data(self, data: bytes, end_stream: bool) -> None:
        self.events.append(("data", data, end_stream))

    def on_trailers(self, trailers: Any) -> None:
        self.events.append(("trailers", trailers))

    def on_reset(self, reason: StreamResetReason) -> None:
        self.events.append(("reset", reason))

    def on_above_write_buffer_high_watermark(self) -> None:
        self.events.append(("above",))

    def on_below_write_buffer_low_watermark(self) -> None:
        self.events.append(("below",))

    @property
    def head(self) -> Any:
        return next(e[1] for e in self.events if e[0] == "headers")

    @property
    def body(self) -> bytes:
        return b"".join(e[1] for e in self.events if e[0] == "data")

    @property
    def ended(self) -> bool:
        last = self.events[-1] if self.events else ()
        return (last[:1] == ("trailers",)
                or (last[:1] in (("data",), ("headers",)) and last[2] is True))

    def kinds(self) -> list[str]:
        return [e[0] for e in self.events]
