"""The stream layer: requests and responses as streams, and upstream connection pools."""

from mosn.stream.pool import ConnectionPool, PendingRequest, PoolClient
from mosn.stream.types import (
    ClientCodec,
    ClientStream,
    CodecError,
    Headers,
    MatchResult,
    NewStream,
    Protocol,
    RequestHandler,
    RequestHead,
    ResponseHandler,
    ResponseHead,
    ServerCodec,
    ServerStream,
    StreamResetReason,
)

__all__ = [
    "ClientCodec",
    "ClientStream",
    "CodecError",
    "ConnectionPool",
    "Headers",
    "MatchResult",
    "NewStream",
    "PendingRequest",
    "PoolClient",
    "Protocol",
    "RequestHandler",
    "RequestHead",
    "ResponseHandler",
    "ResponseHead",
    "ServerCodec",
    "ServerStream",
    "StreamResetReason",
]
