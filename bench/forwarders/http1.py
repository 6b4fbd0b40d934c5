"""The least an HTTP/1.1 proxy on mosn's stack can do: uvloop Protocols and httptools'
request and response parsers, one upstream keep-alive connection per client connection.

    python bench/forwarders/http1.py --mode pass|l7 LISTEN_PORT UPSTREAM_PORT [--decoys N]

pass  Both directions go through httptools (which checks the syntax and finds where each
      message ends, content-length and chunked bodies alike) and every chunk read is
      written on unchanged: the parse is what makes it HTTP, the bytes are the client's.
      A request that does not parse gets a 400 and the connection is closed (the 400
      goes out at once: a pipelining client with responses still due gets it first).
l7    The minimum of an L7 proxy on top: the request line and headers parsed into a dict
      (names lower-cased), a cluster picked by prefix over a route table of N decoy
      routes (/svc0/ ... /svcN-1/) and then / (the bench's requests match only the last,
      as in mosn's benchmark config; routes indexed by the path's first segment, as
      mosn's router does), one header added (x-forwarded-for), the request head written
      anew from the parsed parts, bodies re-framed (chunked ones re-chunked, trailers
      dropped), the response's status line and headers parsed and written anew too.
      A path no route matches gets a 404.

Each client connection gets its own upstream connection to 127.0.0.1:UPSTREAM_PORT, made
when the client connects (reading waits for it), so responses come back in request order
with no pool; every cluster of the route table is that one backend. What is not done:
HEAD responses (httptools' response parser cannot be told that a response has no body,
so a HEAD on a keep-alive connection loses framing), upgrades and CONNECT (answered 400),
timeouts, limits, stats. Flow control both ways and closes are passed on. The same file
compiled with Cython (bench/floor.py does that) runs the same code as C.
"""

from __future__ import annotations

import argparse
import asyncio

import httptools
import uvloop

BACKLOG = 4096  # the peers' listen backlog in bench/peers/ (a burst of 50 connects must not wait)
BAD_REQUEST = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
NOT_FOUND = b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
CRLF = b"\r\n"
LAST_CHUNK = b"0\r\n\r\n"


class RouteTable:
    """Prefix routes in order, indexed by the first path segment a prefix names whole
    (/svc3/ -> svc3); a prefix that names none (/) is a candidate for every path."""

    def __init__(self, routes: list[tuple[bytes, str]]):
        self.anywhere: list[tuple[bytes, str]] = []
        self.by_segment: dict[bytes, list[tuple[bytes, str]]] = {}
        for prefix, cluster in routes:
            segment, slash, _ = prefix[1:].partition(b"/")
            if slash and segment:
                self.by_segment.setdefault(segment, list(self.anywhere)).append((prefix, cluster))
            else:
                self.anywhere.append((prefix, cluster))
                for candidates in self.by_segment.values():
                    candidates.append((prefix, cluster))

    def cluster(self, path: bytes) -> str | None:
        for prefix, cluster in self.by_segment.get(path[1:].partition(b"/")[0], self.anywhere):
            if path.startswith(prefix):
                return cluster
        return None


class Upstream(asyncio.Protocol):
    """The connection to the backend: responses are parsed, then passed to the client."""

    transport: asyncio.Transport

    def __init__(self, client: Client):
        self.client = client
        self.parser = httptools.HttpResponseParser(self)

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        # Passed on before it is parsed: the bytes go out unchanged whatever the parse
        # says, and a response that does not parse closes both connections after them.
        self.client.transport.write(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.broken()

    def on_message_complete(self):
        self.client.response_done()

    def broken(self):
        """A response that does not parse: both connections are closed."""
        self.client.transport.close()
        self.transport.close()

    def connection_lost(self, exc):
        self.client.transport.close()

    def pause_writing(self):
        self.client.transport.pause_reading()

    def resume_writing(self):
        self.client.transport.resume_reading()


class Client(asyncio.Protocol):
    """A client connection (pass mode): requests parsed, then written upstream unchanged."""

    transport: asyncio.Transport
    upstream: Upstream | None = None
    upstream_class = Upstream

    def __init__(self, upstream_port: int):
        self.upstream_port = upstream_port
        self.parser = httptools.HttpRequestParser(self)
        self.closing = []  # per request in flight: whether the connection ends after its response

    def connection_made(self, transport):
        self.transport = transport
        self.early: list[bytes] = []  # what the client sent before the upstream connection was up
        asyncio.get_running_loop().create_task(self.connect())

    async def connect(self):
        upstream = self.upstream_class(self)
        try:
            await asyncio.get_running_loop().create_connection(lambda: upstream, "127.0.0.1", self.upstream_port)
        except OSError:
            self.transport.close()
            return
        self.upstream = upstream
        if self.transport.is_closing():
            upstream.transport.close()
            return
        for data in self.early:
            self.data_received(data)
        self.early = []
        self.transport.resume_reading()

    def wait_for_upstream(self, data: bytes):
        self.early.append(data)
        self.transport.pause_reading()

    def data_received(self, data):
        if self.upstream is None:
            self.wait_for_upstream(data)
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:  # HttpParserUpgrade included: upgrades are not done
            self.refuse(BAD_REQUEST)
            return
        self.pass_on(data)

    def pass_on(self, data: bytes):
        """After a read parsed: what it brought goes upstream, as it came."""
        self.upstream.transport.write(data)

    def on_message_complete(self):
        self.closing.append(not self.parser.should_keep_alive())

    def response_done(self):
        if self.closing and self.closing.pop(0):
            # Called from inside the response parser: the response's last bytes are
            # written after it returns, and close() still sends what is written before it.
            asyncio.get_running_loop().call_soon(self.transport.close)

    def refuse(self, reply: bytes):
        self.transport.write(reply)
        self.transport.close()

    def connection_lost(self, exc):
        if self.upstream is not None:
            self.upstream.transport.close()

    def pause_writing(self):
        self.upstream.transport.pause_reading()

    def resume_writing(self):
        self.upstream.transport.resume_reading()


class Reframe:
    """What both sides of l7 mode share: a message's headers collected, its head written
    anew from them, its body framed again, all into `out`, written once per read."""

    def __init__(self):
        self.headers: list[tuple[bytes, bytes]] = []
        self.out: list[bytes] = []
        self.chunked = False

    def on_header(self, name, value):
        self.headers.append((name, value))

    def head(self, first_line: bytes, *added: bytes) -> dict[bytes, bytes]:
        """Write first_line, the headers and the added header lines; the headers as a dict."""
        fields = {name.lower(): value for name, value in self.headers}
        self.chunked = b"chunked" in fields.get(b"transfer-encoding", b"").lower()
        out = self.out
        out.append(first_line)
        for name, value in self.headers:
            out += (name, b": ", value, CRLF)
        out += added
        out.append(CRLF)
        self.headers = []
        return fields

    def on_body(self, body):
        if self.chunked:
            self.out += (b"%x\r\n" % len(body), body, CRLF)
        else:
            self.out.append(body)

    def end(self):
        if self.chunked:
            self.out.append(LAST_CHUNK)

    def flush(self, transport: asyncio.Transport):
        if self.out:
            transport.write(b"".join(self.out))
            self.out.clear()


class L7Upstream(Reframe, Upstream):
    """The backend connection of l7 mode: status line and headers parsed and written anew."""

    def __init__(self, client: Client):
        Upstream.__init__(self, client)
        Reframe.__init__(self)
        self.reason = b""

    def data_received(self, data):
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.broken()
            return
        self.flush(self.client.transport)

    def on_status(self, reason):
        self.reason += reason

    def on_headers_complete(self):
        parser = self.parser
        self.head(b"HTTP/%s %d %s\r\n" % (parser.get_http_version().encode(), parser.get_status_code(), self.reason))
        self.reason = b""

    def on_message_complete(self):
        self.end()
        self.client.response_done()


class L7Client(Reframe, Client):
    """A client connection in l7 mode (see the module docstring)."""

    upstream_class = L7Upstream

    def __init__(self, upstream_port: int, routes: RouteTable):
        Client.__init__(self, upstream_port)
        Reframe.__init__(self)
        self.routes = routes
        self.url = b""
        self.refused = False

    def connection_made(self, transport):
        super().connection_made(transport)
        self.forwarded_for = b"x-forwarded-for: %s\r\n" % transport.get_extra_info("peername")[0].encode()

    def pass_on(self, data: bytes):
        self.flush(self.upstream.transport)

    def on_url(self, url):
        self.url += url

    def on_headers_complete(self):
        parser, url = self.parser, self.url
        path = httptools.parse_url(url).path if url[:1] != b"/" else url.partition(b"?")[0]
        if self.routes.cluster(path) is None:
            self.refused = True
            return
        self.head(b"%s %s HTTP/%s\r\n" % (parser.get_method(), url, parser.get_http_version().encode()),
                  self.forwarded_for)
        self.url = b""

    def on_body(self, body):
        if not self.refused:
            super().on_body(body)

    def on_message_complete(self):
        if self.refused:
            # A 404 can go straight out only when no response is still due ahead of it;
            # otherwise the connection is closed without one.
            if self.closing:
                self.transport.close()
            else:
                self.refuse(NOT_FOUND)
            return
        self.end()
        Client.on_message_complete(self)


def decoy_routes(decoys: int) -> RouteTable:
    return RouteTable([(b"/svc%d/" % n, "decoy") for n in range(decoys)] + [(b"/", "backend")])


async def serve(mode: str, listen: int, upstream: int, decoys: int) -> None:
    routes = decoy_routes(decoys)
    factory = (lambda: Client(upstream)) if mode == "pass" else (lambda: L7Client(upstream, routes))
    await asyncio.get_running_loop().create_server(factory, "127.0.0.1", listen, backlog=BACKLOG)
    await asyncio.Event().wait()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=("pass", "l7"), default="pass")
    parser.add_argument("--decoys", type=int, default=99, help="decoy routes ahead of / (default 99)")
    parser.add_argument("listen", type=int)
    parser.add_argument("upstream", type=int)
    args = parser.parse_args(argv)
    uvloop.run(serve(args.mode, args.listen, args.upstream, args.decoys))


if __name__ == "__main__":
    main()
