"""The plugin author's kit: a conformance suite for each kind of plugin (frame
codecs, stream filters, load balancers, health checkers, cluster types), pytest
fixtures that run mosn and mock peers for real on 127.0.0.1, real clients and
backends, helpers that run real peers (other implementations of a protocol) for
interop tests, and ``mosn plugin new``'s scaffolds. See docs/plugins.md.

The suites need pytest (the codec suite's fuzz tests hypothesis, the filter suite's
HTTP/2 requests httpx); the names are imported on first use, so ``mosn plugin new``
works without them.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "ClusterTypeConformance": "mosn.testing.upstream",
    "CodeBlock": "mosn.testing.docs",
    "CodecConformance": "mosn.testing.conformance",
    "code_blocks": "mosn.testing.docs",
    "check_decode": "mosn.testing.conformance",
    "decode_whole": "mosn.testing.conformance",
    "FakeLoop": "mosn.testing.streams",
    "FilterCase": "mosn.testing.filters",
    "HealthCheckerConformance": "mosn.testing.upstream",
    "HealthTarget": "mosn.testing.upstream",
    "HttpBackend": "mosn.testing.traffic",
    "LoadBalancerConformance": "mosn.testing.upstream",
    "NamedBackend": "mosn.testing.traffic",
    "StreamFilterConformance": "mosn.testing.filters",
    "MockServer": "mosn.testing.mock",
    "call": "mosn.testing.mock",
    "Peer": "mosn.testing.peers",
    "Recorder": "mosn.testing.streams",
    "Reply": "mosn.testing.traffic",
    "Recording": "mosn.testing.peers",
    "Relay": "mosn.testing.peers",
    "ensure_node_modules": "mosn.testing.peers",
    "ensure_venv": "mosn.testing.peers",
    "install_lock": "mosn.testing.peers",
    "json_lines": "mosn.testing.peers",
    "node_missing": "mosn.testing.peers",
    "node_package_version": "mosn.testing.peers",
    "node_version": "mosn.testing.peers",
    "MosnProcess": "mosn.testing.process",
    "assert_reported": "mosn.testing.process",
    "env_with_path": "mosn.testing.process",
    "filter_protocols": "mosn.testing.filters",
    "free_port": "mosn.testing.process",
    "http_request": "mosn.testing.traffic",
    "pip_install_target": "mosn.testing.peers",
    "plugin_site": "mosn.testing.process",
    "rpc_proxy_config": "mosn.testing.process",
    "rpc_request": "mosn.testing.traffic",
    "serving": "mosn.testing.process",
    "stop_process": "mosn.testing.process",
    "wait_for_port": "mosn.testing.process",
    "wait_until": "mosn.testing.upstream",
    "which_backend": "mosn.testing.traffic",
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
