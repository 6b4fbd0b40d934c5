"""Small HTTP/2 peers on h2 for the cases a real server cannot be told to produce: an
upstream that resets a stream mid-body or sends GOAWAY with streams in flight, and a
raw client that controls its own flow-control window and resets."""

from __future__ import annotations

import asyncio
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import h2.config
import h2.connection
import h2.events
import h2.settings
from hyperframe.frame import GoAwayFrame

BODY_CHUNK = 16384  # one DATA frame's worth at the default SETTINGS_MAX_FRAME_SIZE


class ScriptedUpstream:
    """An h2c server in a thread. Paths:
    ``/ok``                 200 "ok"
    ``/slow``               200 "slow" after 0.3 s
    ``/reset-mid-body``     headers and 64 KiB of body, then RST_STREAM (INTERNAL_ERROR)
    ``/close-mid-body``     headers and 64 KiB of body, then the connection closed with
                            the stream still open (no END_STREAM)
    ``/goaway``             headers, GOAWAY naming this stream, then the 64 KiB body
                            and the connection closed once the stream is done
    ``/trailers``           once the request's trailers came: 200 "t" and those trailers
                            back as the response's trailers
    ``/bytes/N``            N bytes, sent only as the peer's flow-control windows allow;
                            ``sent`` counts what went out
    ``/refused``            RST_STREAM REFUSED_STREAM the first time; then, once the
                            request is complete, 200 "ok:<bytes of its body>"
    ``/goaway-refused``     the first time, GOAWAY naming the stream before it (so this
                            one was never processed, RFC 9113 6.8), the connection left
                            open; then as ``/refused``
    ``/goaway-close``       once the peer acknowledged the SETTINGS (so the close is a
                            FIN, not a reset for a frame left unread): headers, GOAWAY
                            naming this stream, a body of BODY_CHUNK bytes that ends
                            it, and the connection closed, all in one write, so a peer
                            reads them at once, then the end of input
    ``/held``               not answered the first time (an application still at work on
                            it); 200 "held" the next times
    ``/reset-connection``   the first time, the connection reset (RST) with no answer and
                            no GOAWAY; 200 "again" the next times
    ``/goaway-cut``         what hypercorn does when a connection reaches its
                            ``keep_alive_max_requests``: headers, then GOAWAY naming the
                            highest stream received, and nothing more on any stream (its
                            h2 state machine, closed by its own GOAWAY, refuses to send
                            the body); the next frame received is answered with GOAWAY
                            PROTOCOL_ERROR and the connection closed
    """

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.connections = 0
        self.resets_received: list[int] = []
        self.requests_received: list[str] = []
        self.sent = 0
        self.refused: list[str] = []
        """Paths refused once already."""
        self.bodies: dict[str, list[int]] = {}
        """Bytes of the request bodies served on ``/refused`` and ``/goaway-refused``."""
        self._server: asyncio.AbstractServer | None = None
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        self._sock = sock
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "ScriptedUpstream":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self._server = self.loop.run_until_complete(
            asyncio.start_server(self._serve, sock=self._sock))
        self.loop.run_forever()
        # Ended here, in this thread: nothing of this loop is left for the garbage
        # collector to finalize later, in the middle of another thread's work.
        self._server.close()
        pending = asyncio.all_tasks(self.loop)
        for task in pending:
            task.cancel()
        self.loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        self.loop.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
        conn.initiate_connection()
        writer.write(conn.data_to_send())
        tasks = []
        window_opened = asyncio.Event()
        request_trailers: dict[int, asyncio.Future[list[Any]]] = {}
        request_bodies: dict[int, bytearray] = {}
        request_ended: dict[int, asyncio.Event] = {}
        cut = False
        """``/goaway-cut`` ended the connection: nothing more is answered."""
        settings_acknowledged = asyncio.Event()

        def flush() -> None:
            data = conn.data_to_send()
            if data:
                writer.write(data)

        async def respond(stream_id: int, path: str) -> None:
            nonlocal cut
            body = b"z" * (4 * BODY_CHUNK)
            if path == "/slow":
                await asyncio.sleep(0.3)
            if cut:
                return
            if path == "/reset-connection":
                if self.requests_received.count(path) == 1:
                    writer.get_extra_info("socket").setsockopt(
                        socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    writer.transport.abort()
                    return
                path = "/again"
            if path == "/goaway-close":
                await settings_acknowledged.wait()
                conn.send_headers(stream_id, [(":status", "200")])
                head = conn.data_to_send()
                conn.send_data(stream_id, b"c" * BODY_CHUNK, end_stream=True)
                writer.write(head + GoAwayFrame(0, last_stream_id=stream_id).serialize()
                             + conn.data_to_send())
                writer.close()
                return
            if path == "/goaway-cut":
                conn.send_headers(stream_id, [(":status", "200")])
                flush()  # raw bytes: see /goaway below
                writer.write(GoAwayFrame(
                    0, last_stream_id=conn.highest_inbound_stream_id).serialize())
                cut = True
                return
            if path == "/held" and self.requests_received.count(path) == 1:
                return
            if path in ("/ok", "/slow", "/held", "/again"):
                text = path[1:].encode()
                conn.send_headers(stream_id, [(":status", "200"),
                                              ("content-length", str(len(text)))])
                conn.send_data(stream_id, text, end_stream=True)
                flush()
                return
            if path in ("/refused", "/goaway-refused"):
                if path not in self.refused:
                    self.refused.append(path)
                    if path == "/refused":
                        conn.reset_stream(stream_id, error_code=7)  # REFUSED_STREAM
                    else:
                        flush()  # raw bytes: see /goaway below
                        writer.write(GoAwayFrame(0, last_stream_id=max(stream_id - 2, 0)).serialize())
                    flush()
                    return
                await request_ended.setdefault(stream_id, asyncio.Event()).wait()
                size = len(request_bodies.get(stream_id, b""))
                self.bodies.setdefault(path, []).append(size)
                text = b"ok:%d" % size
                conn.send_headers(stream_id, [(":status", "200"),
                                              ("content-length", str(len(text)))])
                conn.send_data(stream_id, text, end_stream=True)
                flush()
                return
            if path == "/trailers":
                trailers = await request_trailers.setdefault(
                    stream_id, asyncio.get_running_loop().create_future())
                conn.send_headers(stream_id, [(":status", "200")])
                conn.send_data(stream_id, b"t")
                conn.send_headers(stream_id, trailers, end_stream=True)
                flush()
                return
            conn.send_headers(stream_id, [(":status", "200")])
            if path.startswith("/bytes/"):
                remaining = int(path.rsplit("/", 1)[1])
                while remaining:
                    n = min(remaining, conn.local_flow_control_window(stream_id),
                            conn.max_outbound_frame_size)
                    if n <= 0:
                        window_opened.clear()
                        await window_opened.wait()
                        continue
                    remaining -= n
                    conn.send_data(stream_id, b"b" * n, end_stream=not remaining)
                    self.sent += n
                    flush()
                    await writer.drain()
                return
            if path == "/goaway":
                # Written as raw bytes: h2 would close its state machine on its own
                # GOAWAY and neither send the rest of this stream nor read anything.
                flush()
                writer.write(GoAwayFrame(0, last_stream_id=stream_id).serialize())
                for i in range(0, len(body), BODY_CHUNK):
                    last = i + BODY_CHUNK >= len(body)
                    conn.send_data(stream_id, body[i:i + BODY_CHUNK], end_stream=last)
                    flush()
                    await asyncio.sleep(0.01)
                await asyncio.sleep(0.2)
                writer.close()
                return
            for i in range(0, len(body), BODY_CHUNK):
                conn.send_data(stream_id, body[i:i + BODY_CHUNK])
            if path == "/close-mid-body":
                flush()
                await writer.drain()
                writer.close()
                return
            conn.reset_stream(stream_id, error_code=2)
            flush()

        try:
            while data := await reader.read(65536):
                if cut:
                    writer.write(GoAwayFrame(0, last_stream_id=conn.highest_inbound_stream_id,
                                             error_code=1).serialize())  # PROTOCOL_ERROR
                    break
                try:
                    events = conn.receive_data(data)
                except Exception:
                    break
                for event in events:
                    if isinstance(event, h2.events.RequestReceived):
                        path = dict(event.headers)[b":path"].decode()
                        self.requests_received.append(path)
                        tasks.append(asyncio.ensure_future(respond(event.stream_id, path)))
                    elif isinstance(event, (h2.events.WindowUpdated,
                                            h2.events.RemoteSettingsChanged)):
                        window_opened.set()
                    elif isinstance(event, h2.events.TrailersReceived):
                        request_trailers.setdefault(
                            event.stream_id, asyncio.get_running_loop().create_future(),
                        ).set_result(event.headers)
                    elif isinstance(event, h2.events.SettingsAcknowledged):
                        settings_acknowledged.set()
                    elif isinstance(event, h2.events.StreamReset):
                        self.resets_received.append(event.stream_id)
                    elif isinstance(event, h2.events.DataReceived):
                        request_bodies.setdefault(event.stream_id, bytearray()).extend(event.data)
                        conn.acknowledge_received_data(event.flow_controlled_length,
                                                       event.stream_id)
                    if getattr(event, "stream_ended", None) is not None:
                        request_ended.setdefault(event.stream_id, asyncio.Event()).set()
                flush()
                await writer.drain()
        finally:
            writer.close()


@dataclass
class StreamResult:
    status: int = 0
    body: bytearray = field(default_factory=bytearray)
    ended: bool = False
    reset: int | None = None
    trailers: dict[bytes, bytes] = field(default_factory=dict)


class _TolerantConnection(h2.connection.H2Connection):
    """h2 refuses every frame after a GOAWAY; a client must still read the streams
    the GOAWAY let finish (RFC 9113 6.8)."""

    def _receive_goaway_frame(self, frame: Any) -> Any:
        state = self.state_machine.state
        result = super()._receive_goaway_frame(frame)
        self.state_machine.state = state
        return result


class RawClient:
    """A blocking h2c client on a socket: opens streams, reads events, and acknowledges
    received data only when told (``auto_ack``), so a test controls the windows."""

    def __init__(self, port: int, auto_ack: bool = True, window: int = 65535) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        config = h2.config.H2Configuration(client_side=True, header_encoding=None)
        self.conn = _TolerantConnection(config)
        self.conn.local_settings = h2.settings.Settings(
            client=True, initial_values={h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: window})
        self.conn.initiate_connection()
        self.auto_ack = auto_ack
        self.results: dict[int, StreamResult] = {}
        self.goaway: h2.events.ConnectionTerminated | None = None
        self.closed = False
        self._send()

    def _send(self) -> None:
        data = self.conn.data_to_send()
        if data:
            self.sock.sendall(data)

    def request(self, path: str, headers: list[tuple[str, str]] = (), body: bytes | None = None,
                end: bool = True) -> int:
        sid = self.conn.get_next_available_stream_id()
        fields = [(":method", "POST" if body is not None else "GET"), (":scheme", "http"),
                  (":authority", "test"), (":path", path), *headers]
        self.conn.send_headers(sid, fields, end_stream=body is None and end)
        if body is not None:
            self.conn.send_data(sid, body, end_stream=end)
        self.results[sid] = StreamResult()
        self._send()
        return sid

    def connect(self, path: str, protocol: str, headers: list[tuple[str, str]] = ()) -> int:
        """An extended CONNECT (RFC 8441): the stream stays open both ways."""
        sid = self.conn.get_next_available_stream_id()
        self.conn.send_headers(sid, [(":method", "CONNECT"), (":protocol", protocol),
                                     (":scheme", "http"), (":authority", "test"),
                                     (":path", path), *headers])
        self.results[sid] = StreamResult()
        self._send()
        return sid

    def send(self, sid: int, data: bytes, end: bool = False) -> None:
        self.conn.send_data(sid, data, end_stream=end)
        self._send()

    def trailers(self, sid: int, fields: list[tuple[str, str]]) -> None:
        self.conn.send_headers(sid, fields, end_stream=True)
        self._send()

    def reset(self, sid: int) -> None:
        self.conn.reset_stream(sid, error_code=8)  # CANCEL
        self._send()

    def ack(self, sid: int, size: int) -> None:
        self.conn.acknowledge_received_data(size, sid)
        self._send()

    def pump(self, until: Any, timeout: float = 10.0) -> None:
        """Read and handle events until ``until()`` is true (or the connection ends)."""
        deadline = time.monotonic() + timeout
        while not until() and not self.closed:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("no progress")
            self.sock.settimeout(remaining)
            data = self.sock.recv(65536)
            if not data:
                self.closed = True
                break
            for event in self.conn.receive_data(data):
                self._handle(event)
            self._send()

    def _handle(self, event: Any) -> None:
        r = self.results.get(getattr(event, "stream_id", 0))
        if isinstance(event, h2.events.ResponseReceived) and r is not None:
            r.status = int(dict(event.headers)[b":status"])
        elif isinstance(event, h2.events.DataReceived) and r is not None:
            r.body += event.data
            if self.auto_ack:
                self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        elif isinstance(event, h2.events.TrailersReceived) and r is not None:
            r.trailers = dict(event.headers)
        elif isinstance(event, h2.events.StreamEnded) and r is not None:
            r.ended = True
        elif isinstance(event, h2.events.StreamReset) and r is not None:
            r.reset = event.error_code
        elif isinstance(event, h2.events.ConnectionTerminated):
            self.goaway = event

    def done(self, *sids: int) -> bool:
        return all(self.results[s].ended or self.results[s].reset is not None for s in sids)

    def close(self) -> None:
        self.sock.close()
