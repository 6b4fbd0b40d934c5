"""A SkyWalking OAP's trace receiver for tests: a gRPC server on 127.0.0.1 serving
``TraceSegmentReportService`` (SkyWalking's own generated service, from the
``apache-skywalking`` package) that keeps each ``SegmentObject`` it is sent, and the
metadata of each ``collect`` stream."""

from __future__ import annotations

import threading
import time
from concurrent import futures
from typing import Any

import grpc
from skywalking.protocol.common.Command_pb2 import Commands
from skywalking.protocol.language_agent.Tracing_pb2_grpc import (
    TraceSegmentReportServiceServicer,
    add_TraceSegmentReportServiceServicer_to_server,
)

WAIT = 10.0
"""Seconds a test waits for segments to arrive."""


class SkyWalkingReceiver(TraceSegmentReportServiceServicer):
    """``tls``: the receiver's (certificate, key) in PEM; plaintext without."""

    def __init__(self, tls: tuple[bytes, bytes] | None = None) -> None:
        self.segments: list[Any] = []
        self.metadata: list[dict[str, str]] = []
        self.changed = threading.Condition()
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        add_TraceSegmentReportServiceServicer_to_server(self, self.server)
        if tls is None:
            self.port = self.server.add_insecure_port("127.0.0.1:0")
        else:
            credentials = grpc.ssl_server_credentials([(tls[1], tls[0])])
            self.port = self.server.add_secure_port("127.0.0.1:0", credentials)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def collect(self, request_iterator: Any, context: Any) -> Commands:
        got = list(request_iterator)
        with self.changed:
            self.metadata.append(dict(context.invocation_metadata()))
            self.segments += got
            self.changed.notify_all()
        return Commands()

    def wait(self, count: int, timeout: float = WAIT) -> list[Any]:
        """The segments once ``count`` have come (or what came by ``timeout``)."""
        deadline = time.monotonic() + timeout
        with self.changed:
            while len(self.segments) < count and time.monotonic() < deadline:
                self.changed.wait(deadline - time.monotonic())
            return list(self.segments)

    def __enter__(self) -> "SkyWalkingReceiver":
        self.server.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.stop(0)
