"""An example HTTP upstream (ASGI on uvicorn) to stand behind mosn's L7 proxy.

    python examples/http_upstream.py --port 8081 [--name blue]

Endpoints:
  /echo, anything else   200, JSON of the request: method, path, query, headers, body size, server name
  /status/CODE           that status
  /delay/SECONDS         200 after SECONDS
  /bytes/N               N bytes streamed in 64 KiB chunks (chunked transfer)
  /upload                200, JSON with the size and sha256 of the request body, read as it streams
  /fail-then-ok/KEY      503 the first time KEY is seen, 200 after
  /ws                    WebSocket echo
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
from typing import Any

CHUNK = 64 * 1024
_seen: set[str] = set()


def app_for(name: str) -> Any:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] == "websocket":
            await websocket_echo(receive, send)
            return
        path: str = scope["path"]
        headers = [(b"x-upstream", name.encode())]
        if path.startswith("/status/"):
            await drain(receive)
            await respond(send, int(path.rsplit("/", 1)[1]), b"status\n", headers)
        elif path.startswith("/delay/"):
            await drain(receive)
            await asyncio.sleep(float(path.rsplit("/", 1)[1]))
            await respond(send, 200, b"late\n", headers)
        elif path.startswith("/bytes/"):
            await drain(receive)
            await stream_bytes(send, int(path.rsplit("/", 1)[1]), headers)
        elif path == "/upload":
            size, digest = await drain(receive)
            body = json.dumps({"size": size, "sha256": digest}).encode()
            await respond(send, 200, body, headers + [(b"content-type", b"application/json")])
        elif path.startswith("/fail-then-ok/"):
            await drain(receive)
            key = path.rsplit("/", 1)[1]
            first = key not in _seen
            _seen.add(key)
            await respond(send, 503 if first else 200, b"first\n" if first else b"ok\n", headers)
        else:
            size, _ = await drain(receive)
            info = {
                "server": name,
                "method": scope["method"],
                "path": path,
                "query": scope["query_string"].decode(),
                "http_version": scope["http_version"],
                "headers": [[k.decode(), v.decode()] for k, v in scope["headers"]],
                "body_size": size,
            }
            body = json.dumps(info).encode()
            await respond(send, 200, body, headers + [(b"content-type", b"application/json")])

    return app


async def drain(receive: Any) -> tuple[int, str]:
    """Read the whole request body as it streams; its size and sha256."""
    size, digest = 0, hashlib.sha256()
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        digest.update(chunk)
        if not message.get("more_body"):
            break
    return size, digest.hexdigest()


async def respond(send: Any, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": headers + [(b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


async def stream_bytes(send: Any, n: int, headers: list[tuple[bytes, bytes]]) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    block = bytes(range(256)) * (CHUNK // 256)
    while n > 0:
        part = block[:min(n, CHUNK)]
        n -= len(part)
        await send({"type": "http.response.body", "body": part, "more_body": n > 0})


async def websocket_echo(receive: Any, send: Any) -> None:
    while True:
        message = await receive()
        if message["type"] == "websocket.connect":
            await send({"type": "websocket.accept"})
        elif message["type"] == "websocket.receive":
            if message.get("text") is not None:
                await send({"type": "websocket.send", "text": message["text"]})
            else:
                await send({"type": "websocket.send", "bytes": message["bytes"]})
        else:
            return


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8081)
    parser.add_argument("--name", default="upstream")
    args = parser.parse_args()
    uvicorn.run(app_for(args.name), host=args.host, port=args.port, log_level="warning",
                lifespan="on", ws="websockets-sansio")


if __name__ == "__main__":
    main()
