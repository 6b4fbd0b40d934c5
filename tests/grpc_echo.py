"""A grpcio server whose unary methods of one service answer with the request, for
tests that put gRPC traffic through mosn (generic handlers, no generated code)."""

from __future__ import annotations

import contextlib
from concurrent import futures
from typing import Iterator

import grpc

SERVICE = "test.Echo"
WORKERS = 4


@contextlib.contextmanager
def grpc_echo(*methods: str) -> Iterator[int]:
    """An echo server for ``SERVICE``'s ``methods`` on 127.0.0.1; yields its port."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=WORKERS))
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, {
        m: grpc.unary_unary_rpc_method_handler(lambda request, context: request)
        for m in methods}),))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield port
    finally:
        server.stop(0)
