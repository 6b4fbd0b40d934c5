"""What the policy plugin's tests share: a backend answering with the headers it got,
HTTP servers on threads, and curl."""

from __future__ import annotations

import json
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterator

CURL_TIMEOUT = "10"
"""Seconds curl may take on a loaded machine."""


class HeadersEcho(BaseHTTPRequestHandler):
    """Answers every GET with the request's headers as a JSON object (lower-case names)."""

    def do_GET(self) -> None:
        body = json.dumps({k.lower(): v for k, v in self.headers.items()}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


def serve(server: ThreadingHTTPServer) -> Iterator[int]:
    """Run ``server`` on a thread; yields its port, then shuts it down."""
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def curl(port: int, path: str = "/", *headers: str) -> tuple[int, str, str]:
    """curl's status, its response head (lower case) and body."""
    args = ["curl", "-sS", "-m", CURL_TIMEOUT, "-D", "-", f"http://127.0.0.1:{port}{path}"]
    for h in headers:
        args += ["-H", h]
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    head, _, body = out.partition("\n\n")
    return int(head.split()[1]), head.lower(), body
