"""mosn's Dubbo plugin: a frame codec for the multiplexed RPC engine and Dubbo's
ZooKeeper registry as a cluster type."""

# First: under MOSN_NO_EXTENSIONS=1 this package's compiled modules load as .py.
import mosn.extensions  # noqa: F401, I001
from mosn_dubbo.codec import DubboCodec
from mosn_dubbo.config import DEFAULT_MAX_BODY_SIZE, DubboConfig
from mosn_dubbo.frames import MAX_REQUEST_ID, ResultFlag, Serialization, Status
from mosn_dubbo.mapping import error_status, http_status
from mosn_dubbo.matcher import match

__all__ = [
    "DEFAULT_MAX_BODY_SIZE",
    "MAX_REQUEST_ID",
    "DubboCodec",
    "DubboConfig",
    "ResultFlag",
    "Serialization",
    "Status",
    "error_status",
    "http_status",
    "match",
]
