"""Compiled extensions and their pure-Python twins: one switch for all of them.

A compiled hot path (a protocol engine bound with cffi, a Cython module) ships
beside a pure-Python twin that does the same and passes the same tests. The
compiled one runs where it was built; ``MOSN_NO_EXTENSIONS=1`` in the environment
forces every pure-Python twin, in the core and in every plugin (as aiohttp's
``AIOHTTP_NO_EXTENSIONS`` and yarl's ``YARL_NO_EXTENSIONS`` do), to compare them or
to rule a compiled one out when chasing a bug.
"""

from __future__ import annotations

import os

__all__ = ["NO_EXTENSIONS_VARIABLE", "extensions_enabled"]

NO_EXTENSIONS_VARIABLE = "MOSN_NO_EXTENSIONS"


def extensions_enabled() -> bool:
    """False when ``MOSN_NO_EXTENSIONS`` is set to anything but empty or ``0``."""
    return os.environ.get(NO_EXTENSIONS_VARIABLE, "") in ("", "0")
