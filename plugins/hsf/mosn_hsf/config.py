"""``extend_config.hsf``: accepted, and refused whenever a proxy speaks hsf."""

from __future__ import annotations

from typing import Any, Iterable

from mosn.config.base import Model

NOT_PUBLIC = (
    "HSF's wire format is not publicly specified, so mosn-plugin-hsf cannot speak it "
    "(see docs/hsf.md); to route HSF services, use a protocol they also speak (dubbo, or "
    "a private protocol declared with xprotocol), or forward their connections unpacked "
    "with tcp_proxy or tunnel_entry/tunnel_exit"
)


class HsfConfig(Model):
    def cross_check(self, root: Any, plugins: Any) -> Iterable[tuple[str, str]]:
        """Called when a proxy names hsf as its downstream or upstream protocol."""
        yield "", NOT_PUBLIC
