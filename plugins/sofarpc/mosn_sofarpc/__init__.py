"""mosn's SOFARPC plugin: bolt v1 and v2 frame codecs for the multiplexed RPC engine."""

# First: under MOSN_NO_EXTENSIONS=1 this package's compiled modules load as .py.
import mosn.extensions  # noqa: F401, I001
from mosn_sofarpc.codec import BoltCodec, BoltV2Codec
from mosn_sofarpc.config import DEFAULT_MAX_FRAME_SIZE, SofaRpcConfig
from mosn_sofarpc.frames import CmdCode, CmdType, ResponseStatus, Serialization
from mosn_sofarpc.mapping import error_status, http_status
from mosn_sofarpc.matcher import match_v1, match_v2

__all__ = [
    "DEFAULT_MAX_FRAME_SIZE",
    "BoltCodec",
    "BoltV2Codec",
    "CmdCode",
    "CmdType",
    "ResponseStatus",
    "Serialization",
    "SofaRpcConfig",
    "error_status",
    "http_status",
    "match_v1",
    "match_v2",
]
