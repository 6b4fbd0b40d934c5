"""The admin HTTP API, and the small HTTP/1.1 server it runs on (``HttpApi``), for a
plugin that serves an HTTP API of its own."""

from mosn.admin.server import MAX_REQUEST_BYTES, Admin, HttpApi

__all__ = ["MAX_REQUEST_BYTES", "Admin", "HttpApi"]
