"""The plugin author's kit: a conformance suite for frame codecs, pytest fixtures
that run mosn and mock peers for real on 127.0.0.1, helpers that run real peers
(other implementations of a protocol) for interop tests, and ``mosn plugin new``'s
scaffold. See docs/plugins.md.

``CodecConformance`` (from :mod:`mosn.testing.conformance`) needs pytest, and its
fuzz tests hypothesis; the names are imported on first use, so ``mosn plugin new``
works without either.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "CodeBlock": "mosn.testing.docs",
    "CodecConformance": "mosn.testing.conformance",
    "code_blocks": "mosn.testing.docs",
    "check_decode": "mosn.testing.conformance",
    "decode_whole": "mosn.testing.conformance",
    "FakeLoop": "mosn.testing.streams",
    "FilterCase": "mosn.testing.filters",
    "StreamFilterConformance": "mosn.testing.filters",
    "MockServer": "mosn.testing.mock",
    "call": "mosn.testing.mock",
    "Peer": "mosn.testing.peers",
    "Recorder": "mosn.testing.streams",
    "Recording": "mosn.testing.peers",
    "Relay": "mosn.testing.peers",
    "ensure_node_modules": "mosn.testing.peers",
    "ensure_venv": "mosn.testing.peers",
    "json_lines": "mosn.testing.peers",
    "node_missing": "mosn.testing.peers",
    "node_package_version": "mosn.testing.peers",
    "node_version": "mosn.testing.peers",
    "MosnProcess": "mosn.testing.process",
    "env_with_path": "mosn.testing.process",
    "free_port": "mosn.testing.process",
    "plugin_site": "mosn.testing.process",
    "rpc_proxy_config": "mosn.testing.process",
    "serving": "mosn.testing.process",
    "stop_process": "mosn.testing.process",
    "wait_for_port": "mosn.testing.process",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'mosn.testing' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
