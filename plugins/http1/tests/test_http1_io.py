"""The codecs on mosn's Connection over real sockets on 127.0.0.1, against real
clients (httpx, raw sockets) and a real server (the standard library's http.server)."""

from __future__ import annotations

import asyncio
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Awaitable, Callable, Iterator

import httpx
import httptools
import pytest

from mosn.network.connection import Connection
from mosn.stream.types import Headers, RequestHead, ResponseHead, StreamResetReason
from mosn_http1 import ClientConnection, ServerConnection

TIMEOUT = 5.0  # seconds any one exchange may take on a loaded CI machine


def run(coro: Awaitable[Any]) -> Any:
    return asyncio.run(asyncio.wait_for(coro, TIMEOUT * 2))


async def listen(new_stream: Callable[[Any], Any]) -> tuple[asyncio.Server, int, list[Any]]:
    """A server codec on every accepted connection; returns the server, its port and
    the accepted connections."""
    loop = asyncio.get_running_loop()
    accepted: list[Any] = []

    def accept() -> Connection:
        conn = Connection(loop)
        ServerConnection(conn, new_stream)
        accepted.append(conn)
        return conn

    server = await loop.create_server(accept, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1], accepted


def parse_responses(wire: bytes) -> list[tuple[int, bytes]]:
    """(status, body) of each response in ``wire``, by another parser than the codec's
    own use of it: httptools' callbacks straight."""
    responses: list[tuple[int, bytes]] = []

    class Collect:
        body = b""

        def on_body(self, body: bytes) -> None:
            self.body += body

        def on_message_complete(self) -> None:
            responses.append((parser.get_status_code(), self.body))
            self.body = b""

    parser = httptools.HttpResponseParser(Collect())
    parser.feed_data(wire)
    return responses


class Echo:
    """A RequestHandler answering with the request's body (chunked), or its path."""

    def __init__(self, stream: Any, delay: float = 0.0) -> None:
        self.stream = stream
        self.delay = delay
        self.head: RequestHead | None = None
        self.body: list[bytes] = []

    def on_headers(self, head: RequestHead, end_stream: bool) -> None:
        self.head = head
        if end_stream:
            self.respond()

    def on_data(self, data: bytes, end_stream: bool) -> None:
        self.body.append(data)
        if end_stream:
            self.respond()

    def on_trailers(self, trailers: Headers) -> None:
        self.respond()

    def on_reset(self, reason: StreamResetReason) -> None:
        pass

    def on_above_write_buffer_high_watermark(self) -> None:
        pass

    def on_below_write_buffer_low_watermark(self) -> None:
        pass

    def respond(self) -> None:
        if self.delay:
            asyncio.get_running_loop().call_later(self.delay, self._respond)
        else:
            self._respond()

    def _respond(self) -> None:
        body = b"".join(self.body) or self.head.path.encode()
        self.stream.send_headers(ResponseHead(200, Headers([("x-authority",
                                                             self.head.authority)])), False)
        self.stream.send_data(body, True)


# -- server codec --------------------------------------------------------------------


def test_httpx_client_keep_alive_and_bodies():
    async def main() -> None:
        server, port, accepted = await listen(Echo)
        async with server, httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            r = await client.get("/hello?x=1")
            assert (r.status_code, r.text) == (200, "/hello?x=1")
            assert r.headers["x-authority"] == f"127.0.0.1:{port}"
            assert r.headers["transfer-encoding"] == "chunked"
            r = await client.post("/echo", content=b"body bytes")
            assert r.content == b"body bytes"

            async def upload() -> Any:
                for piece in (b"one ", b"two ", b"three"):
                    yield piece
            r = await client.post("/chunked", content=upload())
            assert r.content == b"one two three"
        assert len(accepted) == 1  # all three on one kept-alive connection

    run(main())


def test_pipelined_requests_answered_in_order_over_a_socket():
    async def main() -> None:
        delays = iter([0.2, 0.1, 0.0])  # the first request is answered last
        server, port, _ = await listen(lambda stream: Echo(stream, next(delays)))
        async with server:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"".join(b"GET /%d HTTP/1.1\r\nHost: h\r\n\r\n" % i for i in range(2))
                         + b"GET /2 HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
            wire = await reader.read()  # to EOF: the last request said close
            writer.close()
        assert [body for _, body in parse_responses(wire)] == [b"/0", b"/1", b"/2"]

    run(main())


def test_malformed_request_over_a_socket_gets_400_and_eof():
    async def main() -> None:
        server, port, _ = await listen(Echo)
        async with server:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET / HTTP/1.1\r\nBad Header\r\n\r\n")
            assert (await reader.read()).startswith(b"HTTP/1.1 400 Bad Request\r\n")
            writer.close()

    run(main())


# -- client codec --------------------------------------------------------------------


class Backend(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        body = b"hello " + self.path.encode()
        self.send_response(200)
        if self.path == "/until-close":
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body)  # no length: the body ends with the connection
            self.close_connection = True
            return
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_HEAD = do_GET

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(201)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def backend() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Backend)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


class Response:
    """A ResponseHandler gathering one response; ``await done`` for it."""

    def __init__(self) -> None:
        self.head: ResponseHead | None = None
        self.body = b""
        self.done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

    def on_headers(self, head: ResponseHead, end_stream: bool) -> None:
        self.head = head
        if end_stream:
            self.done.set_result(None)

    def on_data(self, data: bytes, end_stream: bool) -> None:
        self.body += data
        if end_stream:
            self.done.set_result(None)

    def on_trailers(self, trailers: Headers) -> None:
        self.done.set_result(None)

    def on_reset(self, reason: StreamResetReason) -> None:
        self.done.set_exception(ConnectionError(reason))

    def on_above_write_buffer_high_watermark(self) -> None:
        pass

    def on_below_write_buffer_low_watermark(self) -> None:
        pass


async def upstream(port: int, on_idle: Callable[[], None] = lambda: None,
                   ) -> tuple[Connection, ClientConnection]:
    loop = asyncio.get_running_loop()
    conn = Connection(loop)
    await loop.create_connection(lambda: conn, "127.0.0.1", port)
    return conn, ClientConnection(conn, on_idle)


async def exchange(codec: ClientConnection, head: RequestHead, body: bytes = b"") -> Response:
    response = Response()
    stream = codec.new_stream(response)
    stream.send_headers(head, not body)
    if body:
        stream.send_data(body, True)
    await response.done
    return response


def test_client_against_http_server_keep_alive_head_and_post(backend):
    async def main() -> None:
        idle = []
        conn, codec = await upstream(backend, lambda: idle.append(1))
        authority = f"127.0.0.1:{backend}"
        r = await exchange(codec, RequestHead("GET", "/a", authority))
        assert (r.head.status, r.body) == (200, b"hello /a")
        assert idle == [1] and codec.reusable()
        r = await exchange(codec, RequestHead("HEAD", "/b", authority))
        assert r.head.headers["content-length"] == "8" and r.body == b""
        r = await exchange(codec, RequestHead("GET", "/c", authority))  # same connection
        assert r.body == b"hello /c"
        r = await exchange(codec, RequestHead("POST", "/d", authority,
                                              headers=Headers([("content-length", "4")])),
                           b"data")
        assert (r.head.status, r.body) == (201, b"data")
        assert len(idle) == 4 and not conn.closed
        conn.close()

    run(main())


def test_client_close_delimited_response(backend):
    async def main() -> None:
        conn, codec = await upstream(backend)
        r = await exchange(codec, RequestHead("GET", "/until-close", "b"))
        assert r.body == b"hello /until-close"
        assert not codec.reusable()

    run(main())


# -- both codecs: a relay in between -------------------------------------------------


class Relay:
    """The least a proxy does: each downstream request on a new upstream connection,
    each call passed across."""

    def __init__(self, stream: Any, port: int) -> None:
        self.downstream = stream
        self.upstream: Any = None
        self.waiting: list[tuple[str, tuple[Any, ...]]] = []
        self.response = _RelayResponse(stream)
        asyncio.get_running_loop().create_task(self._connect(port))

    async def _connect(self, port: int) -> None:
        conn, codec = await upstream(port, lambda: conn.close())
        self.upstream = codec.new_stream(self.response)
        for name, args in self.waiting:
            getattr(self.upstream, name)(*args)

    def _forward(self, name: str, *args: Any) -> None:
        if self.upstream is None:
            self.waiting.append((name, args))
        else:
            getattr(self.upstream, name)(*args)

    def on_headers(self, head: RequestHead, end_stream: bool) -> None:
        self._forward("send_headers", head, end_stream)

    def on_data(self, data: bytes, end_stream: bool) -> None:
        self._forward("send_data", data, end_stream)

    def on_trailers(self, trailers: Headers) -> None:
        self._forward("send_trailers", trailers)

    def on_reset(self, reason: StreamResetReason) -> None:
        self._forward("reset", reason)

    def on_above_write_buffer_high_watermark(self) -> None:
        self._forward("read_disable", True)

    def on_below_write_buffer_low_watermark(self) -> None:
        self._forward("read_disable", False)


class _RelayResponse:
    def __init__(self, downstream: Any) -> None:
        self.downstream = downstream

    def on_headers(self, head: ResponseHead, end_stream: bool) -> None:
        self.downstream.send_headers(head, end_stream)

    def on_data(self, data: bytes, end_stream: bool) -> None:
        self.downstream.send_data(data, end_stream)

    def on_trailers(self, trailers: Headers) -> None:
        self.downstream.send_trailers(trailers)

    def on_reset(self, reason: StreamResetReason) -> None:
        self.downstream.reset(reason)

    def on_above_write_buffer_high_watermark(self) -> None:
        self.downstream.read_disable(True)

    def on_below_write_buffer_low_watermark(self) -> None:
        self.downstream.read_disable(False)


def test_relay_httpx_to_http_server(backend):
    async def main() -> None:
        server, port, _ = await listen(lambda stream: Relay(stream, backend))
        async with server, httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            r = await client.get("/through")
            assert (r.status_code, r.text) == (200, "hello /through")
            r = await client.post("/up", content=b"x" * 100_000)
            assert (r.status_code, len(r.content)) == (201, 100_000)

    run(main())


async def websocket_like_upstream() -> tuple[asyncio.Server, int]:
    """Answers any request with 101, then echoes bytes upper-cased until EOF."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\n"
                     b"Connection: Upgrade\r\n\r\n")
        while data := await reader.read(65536):
            writer.write(data.upper())
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


def test_upgrade_tunnel_through_both_codecs():
    async def main() -> None:
        up_server, up_port = await websocket_like_upstream()
        server, port, _ = await listen(lambda stream: Relay(stream, up_port))
        async with up_server, server:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: echo\r\n"
                         b"Connection: Upgrade\r\n\r\nfirst ")
            head = await reader.readuntil(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 101 Switching Protocols\r\n")
            writer.write(b"second")
            got = b""
            while got != b"FIRST SECOND":
                got += await reader.read(100)
            writer.write_eof()  # the client's EOF travels up; the upstream's comes back
            assert await reader.read() == b""
            writer.close()

    run(main())
