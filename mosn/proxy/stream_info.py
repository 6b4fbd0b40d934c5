"""What the access log, stats and tracing read of a stream (Envoy's ``StreamInfo``).

The facts themselves are attributes of :class:`mosn.proxy.stream.DownstreamStream`
(``start_time``, ``start_monotonic``, ``response_monotonic``, ``end_monotonic``,
``response_code``, ``response_headers``, ``response_trailers``, ``bytes_sent``,
``bytes_received``, ``response_flags``, ``ended_by_reset``, ``route``, ``cluster``,
``host``, ``upstream``) and of each try's :class:`mosn.proxy.upstream.UpstreamRequest`;
this module names the response flags, which say why a stream ended as it did.
"""

# Envoy's response flags.
NO_ROUTE = "NR"
NO_CLUSTER = "NC"
NO_HEALTHY_UPSTREAM = "UH"
UPSTREAM_CONNECTION_FAILURE = "UF"
UPSTREAM_OVERFLOW = "UO"
UPSTREAM_REQUEST_TIMEOUT = "UT"
UPSTREAM_CONNECTION_TERMINATION = "UC"
UPSTREAM_REMOTE_RESET = "UR"
RETRY_LIMIT_EXCEEDED = "URX"
DOWNSTREAM_CONNECTION_TERMINATION = "DC"
DOWNSTREAM_PROTOCOL_ERROR = "DPE"
STREAM_IDLE_TIMEOUT = "SI"
STREAM_FILTER_ERROR = "SFE"
"""mosn's own flag: a stream filter raised, and the request was answered 500."""

__all__ = [
    "DOWNSTREAM_CONNECTION_TERMINATION", "DOWNSTREAM_PROTOCOL_ERROR", "NO_CLUSTER",
    "NO_HEALTHY_UPSTREAM", "NO_ROUTE", "RETRY_LIMIT_EXCEEDED", "STREAM_FILTER_ERROR",
    "STREAM_IDLE_TIMEOUT", "UPSTREAM_CONNECTION_FAILURE", "UPSTREAM_CONNECTION_TERMINATION",
    "UPSTREAM_OVERFLOW", "UPSTREAM_REMOTE_RESET", "UPSTREAM_REQUEST_TIMEOUT",
]
