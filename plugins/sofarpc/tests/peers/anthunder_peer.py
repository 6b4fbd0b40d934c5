"""A SOFARPC peer on anthunder (sofa-bolt-python): protobuf calls, heartbeats, a server.

Run with the interpreter of peers/.venv-anthunder (see requirements-anthunder.txt):
  anthunder_peer.py call HOST:PORT SERVICE METHOD NAME   one protobuf call (sync Client)
  anthunder_peer.py heartbeat HOST:PORT                  anthunder's heartbeat frame, ack read back
  anthunder_peer.py server PORT                          EchoService:1.0 (echoObj, fail) until SIGTERM
Each prints JSON lines; the server prints "listening PORT" once it accepts connections.
The payloads are com.example.EchoRequest / EchoResponse (proto/com/example/EchoService.proto),
written by hand here: two string fields (1 name, 2 group) and (1 code varint, 2 message).
"""

from __future__ import annotations

import json
import logging
import signal
import socket
import sys
import threading

logging.basicConfig(level=logging.CRITICAL)  # anthunder logs its failed registry hello

TIMEOUT_MS = 5000  # one call on a loaded CI machine


def echo_request(name: str, group: str = "B") -> bytes:
    out = b""
    for field, text in ((1, name), (2, group)):
        raw = text.encode()
        out += bytes([field << 3 | 2, len(raw)]) + raw
    return out


def echo_response(message: str) -> bytes:
    raw = message.encode()
    return b"\x08\xc8\x01" + bytes([0x12, len(raw)]) + raw  # code 200, message


def main(argv: list[str]) -> int:
    mode = argv[0]
    if mode == "call":
        from anthunder import SERVICE_MAP, Client
        from mytracer import SpanContext

        host, port = argv[1].rsplit(":", 1)
        service, method, name = argv[2], argv[3], argv[4]
        SERVICE_MAP[service] = (host, int(port))
        try:
            content = Client("anthunder-peer").invoke_sync(
                service, method, echo_request(name), spanctx=SpanContext(), timeout_ms=TIMEOUT_MS)
            print(json.dumps({"ok": True, "content": content.hex()}), flush=True)
        except Exception as e:  # the peer's own error for a non-success status
            print(json.dumps({"ok": False, "error": f"{type(e).__name__}: {e}"}), flush=True)
        return 0
    if mode == "heartbeat":
        from anthunder.command.heartbeat import HeartbeatRequest
        from anthunder.protocol import BoltResponse

        host, port = argv[1].rsplit(":", 1)
        request = HeartbeatRequest.new_request()
        with socket.create_connection((host, int(port)), timeout=TIMEOUT_MS / 1000) as s:
            s.sendall(request.to_stream())
            data = b""
            size = BoltResponse.bolt_header_size()
            while len(data) < size:
                chunk = s.recv(size - len(data))
                if not chunk:
                    break
                data += chunk
        if len(data) < size:
            print(json.dumps({"ok": False, "error": "connection closed"}), flush=True)
            return 0
        header = BoltResponse.bolt_header_from_stream(data)
        print(json.dumps({"ok": header["request_id"] == request.request_id,
                          "status": header["respstatus"], "cmdcode": header["cmdcode"]}),
              flush=True)
        return 0
    if mode == "server":
        from anthunder.listener.aio_listener import AioListener

        class EchoService:
            def __init__(self, ctx):
                self.ctx = ctx

            def echoObj(self, body: bytes) -> bytes:  # noqa: N802 (the service's method name)
                return echo_response("hello from anthunder")

            def fail(self, body: bytes) -> bytes:
                raise RuntimeError("echo service failed on purpose")

        port = int(argv[1])
        listener = AioListener(("127.0.0.1", port), "anthunder-peer")
        listener.handler.register_interface("com.example.EchoService:1.0", EchoService)
        listener.run_threading()
        # run_threading returns before the socket listens; wait until it does
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                threading.Event().wait(0.05)
        print(f"listening {port}", flush=True)
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        stop.wait()
        listener.shutdown()
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
