"""mosn's X-protocol plugin: private RPC protocols declared in config (the
declarative codec), and no-unpack forwarding of any protocol through a tunnel."""

# First: under MOSN_NO_EXTENSIONS=1 this package's compiled modules load as .py.
import mosn.extensions  # noqa: F401, I001
from mosn_xprotocol.codec import PROTOCOL_NAME, DeclarativeCodec
from mosn_xprotocol.config import CodecConfig, XProtocolConfig
from mosn_xprotocol.frames import Layout, LayoutError
from mosn_xprotocol.mapping import StatusMapping
from mosn_xprotocol.matcher import match

__all__ = [
    "PROTOCOL_NAME",
    "CodecConfig",
    "DeclarativeCodec",
    "Layout",
    "LayoutError",
    "StatusMapping",
    "XProtocolConfig",
    "match",
]
