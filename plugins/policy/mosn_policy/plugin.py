"""The plugin's extensions: the ``ratelimit``, ``ext_authz`` and ``jwt_authn`` stream filters."""

from __future__ import annotations

from mosn.plugins import Extension, hookimpl
from mosn_policy import ext_authz, jwt_authn, ratelimit


@hookimpl
def mosn_stream_filters() -> list[Extension]:
    return [
        Extension("ratelimit", ratelimit.build, ratelimit.GlobalRateLimitConfig,
                  description="global rate limits through Envoy's rate limit service (gRPC)"),
        Extension("ext_authz", ext_authz.build, ext_authz.ExtAuthzConfig,
                  description="external authorization over gRPC or HTTP (Envoy's ext_authz)"),
        Extension("jwt_authn", jwt_authn.build, jwt_authn.JwtAuthnConfig,
                  description="JWT authentication (Envoy's jwt_authn)"),
    ]
