"""How a connection should run TLS: ``ssl.SSLObject`` over memory BIOs inside an
asyncio Protocol (what mosn/network/tls.py does) against uvloop's own TLS transport
(``create_server(ssl=...)``), and plaintext for the floor.

    .venv/bin/python bench/tls_io.py [plain|uvtls|bio|layer ...] [--requests 20000]

An echo server in a child process on uvloop; 10 keep-alive connections send 200-byte
messages one at a time (ping-pong). Printed: the server's CPU per request, and its RSS
growth per idle TLS connection (500 connections opened, one exchange each).

``layer`` times mosn's own TLS layer (mosn/network/tls.py) alone, in this process:
``receive`` of one request record (a 200-byte HTTP/1.1 request) and ``send`` of one
response (a 120-byte HTTP/1.1 response), the work TLS adds to a keep-alive request;
beside it the floor, OpenSSL's part of the same work (``SSLObject.read`` and
``write`` with nothing around them); the best of several runs of each, interleaved,
so other work on the machine shows as little as it can.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import ssl
import sys
import tempfile
import time
from pathlib import Path

import uvloop

from mosn.config.tls import TlsContextConfig
from mosn.network.tls import TlsStats, server_layer, stat_names
from mosn.observability.stats import StatsStore
from mosn.testing.certs import CertificateAuthority
from mosn.tls import ServerTls

MESSAGE = b"x" * 200
CONNECTIONS = 10
IDLE = 500
SETTLE = 0.5  # seconds before RSS is read


class Plain(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.transport.write(data)


def bio_protocol(ctx: ssl.SSLContext):
    class BioTls(asyncio.Protocol):
        def connection_made(self, transport):
            self.transport = transport
            self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
            self.obj = ctx.wrap_bio(self.incoming, self.outgoing, server_side=True)
            self.done = False

        def data_received(self, data):
            self.incoming.write(data)
            if not self.done:
                try:
                    self.obj.do_handshake()
                    self.done = True
                except ssl.SSLWantReadError:
                    pass
                if self.outgoing.pending:
                    self.transport.write(self.outgoing.read())
                if not self.done:
                    return
            while True:
                try:
                    plain = self.obj.read(65536)
                except ssl.SSLWantReadError:
                    break
                self.obj.write(plain)
                self.transport.write(self.outgoing.read())
                if not self.incoming.pending and not self.obj.pending():
                    break

    return BioTls


def serve(mode: str, ctx: ssl.SSLContext, port_pipe: int) -> None:
    uvloop.install()

    async def main() -> None:
        loop = asyncio.get_running_loop()
        if mode == "plain":
            server = await loop.create_server(Plain, "127.0.0.1", 0)
        elif mode == "uvtls":
            server = await loop.create_server(Plain, "127.0.0.1", 0, ssl=ctx)
        else:
            server = await loop.create_server(bio_protocol(ctx), "127.0.0.1", 0)
        os.write(port_pipe, str(server.sockets[0].getsockname()[1]).encode())
        os.close(port_pipe)
        await asyncio.Event().wait()

    asyncio.run(main())


def cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().split(")")[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS"):
            return int(line.split()[1])
    return 0


async def client(mode: str, port: int, pid: int, requests: int, ca: str) -> None:
    ctx = ssl.create_default_context(cafile=ca) if mode != "plain" else None
    name = "localhost" if ctx else None

    async def connect():
        return await asyncio.open_connection("127.0.0.1", port, ssl=ctx, server_hostname=name)

    async def exchange(conn, n):
        reader, writer = conn
        for _ in range(n):
            writer.write(MESSAGE)
            got = 0
            while got < len(MESSAGE):
                got += len(await reader.read(65536))

    conns = [await connect() for _ in range(CONNECTIONS)]
    await asyncio.gather(*(exchange(c, 200) for c in conns))  # warm up
    before, start = cpu(pid), time.perf_counter()
    await asyncio.gather(*(exchange(c, requests // CONNECTIONS) for c in conns))
    used, elapsed = cpu(pid) - before, time.perf_counter() - start
    print(f"{mode}: server CPU per request {1e6 * used / requests:.1f} us "
          f"({requests / elapsed:.0f} requests/s, client-bound)")
    for _, writer in conns:
        writer.close()
    await asyncio.sleep(SETTLE)
    base = rss(pid)
    idle = [await connect() for _ in range(IDLE)]
    await asyncio.gather(*(exchange(c, 1) for c in idle))
    await asyncio.sleep(SETTLE)
    print(f"{mode}: server RSS per idle connection {(rss(pid) - base) / IDLE:.1f} KiB")
    for _, writer in idle:
        writer.close()


class _Connection:
    """What a TlsLayer uses of its connection."""

    loop = None
    remote_address = ("127.0.0.1", 1)
    closed = False

    def write_raw(self, data: bytes) -> None:
        pass

    def close(self) -> None:
        self.closed = True


LAYER_RUNS = 7
REQUEST = (b"GET /api/v1/items?page=2 HTTP/1.1\r\nHost: api.example.com\r\n"
           b"User-Agent: bench\r\nAccept: */*\r\n" + b"X-Pad: " + b"p" * 92 + b"\r\n\r\n")
RESPONSE = (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 6\r\n"
            b"Date: Sun, 06 Dec 2026 21:00:00 GMT\r\nServer: mosn\r\n\r\nhello\n")


def layer(issued: dict[str, str], requests: int) -> None:
    tls = ServerTls([TlsContextConfig(status=True, cert_chain=issued["cert"],
                                      private_key=issued["key"])])
    store = StatsStore()
    stats = TlsStats(store, store.scope("listener.bench", stat_names(tls.cipher_names())))
    store.allocate(1)
    best = floor = float("inf")
    for _ in range(LAYER_RUNS):
        floor = min(floor, _bare(issued, requests))
        conn = _Connection()
        server = server_layer(conn, tls, stats, lambda c: None)
        c_in, c_out = ssl.MemoryBIO(), ssl.MemoryBIO()
        client = ssl.create_default_context(cafile=issued["ca"]).wrap_bio(
            c_in, c_out, server_hostname="localhost")
        sent: list[bytes] = []
        conn.write_raw = sent.append  # type: ignore[method-assign]
        while not server.established:
            try:
                client.do_handshake()
            except ssl.SSLWantReadError:
                pass
            server.receive(c_out.read())
            c_in.write(b"".join(sent))
            sent.clear()
        records = []
        for _ in range(requests):
            client.write(REQUEST)
            records.append(c_out.read())
        receive, send = server.receive, server.send
        start = time.perf_counter()
        for record in records:
            assert receive(record)
            send(RESPONSE)
        best = min(best, (time.perf_counter() - start) / requests)
    print(f"layer: TLS adds {best * 1e6:.2f} us per keep-alive request "
          f"(receive {len(REQUEST)} B + send {len(RESPONSE)} B, best of {LAYER_RUNS}); "
          f"OpenSSL's read + write alone: {floor * 1e6:.2f} us")


def _bare(issued: dict[str, str], requests: int) -> float:
    """Seconds per request of SSLObject.read + write + the BIO reads, nothing else."""
    sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    sctx.load_cert_chain(issued["cert"], issued["key"])
    s_in, s_out, c_in, c_out = (ssl.MemoryBIO() for _ in range(4))
    server = sctx.wrap_bio(s_in, s_out, server_side=True)
    client = ssl.create_default_context(cafile=issued["ca"]).wrap_bio(
        c_in, c_out, server_hostname="localhost")
    for _ in range(4):
        for side in (client, server):
            try:
                side.do_handshake()
            except ssl.SSLWantReadError:
                pass
        s_in.write(c_out.read())
        c_in.write(s_out.read())
    records = []
    for _ in range(requests):
        client.write(REQUEST)
        records.append(c_out.read())
    start = time.perf_counter()
    for record in records:
        s_in.write(record)
        server.read(16384)
        server.write(RESPONSE)
        s_out.read()
    return (time.perf_counter() - start) / requests


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("modes", nargs="*", default=["plain", "uvtls", "bio", "layer"])
    parser.add_argument("--requests", type=int, default=20000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        issued = CertificateAuthority().issue(dns=["localhost"]).write(Path(tmp) / "server")
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(issued["cert"], issued["key"])
        for mode in args.modes:
            if mode == "layer":
                layer(issued, args.requests)
                continue
            read_end, write_end = os.pipe()
            pid = os.fork()
            if pid == 0:
                os.close(read_end)
                serve(mode, ctx, write_end)
                os._exit(0)
            os.close(write_end)
            port = int(os.read(read_end, 16))
            os.close(read_end)
            try:
                uvloop.run(client(mode, port, pid, args.requests, issued["ca"]))
            finally:
                os.kill(pid, 9)
                os.waitpid(pid, 0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
