"""The admin HTTP API."""

from mosn.admin.server import Admin

__all__ = ["Admin"]
