"""Traffic policy filters that ask another service: global rate limits, external
authorization, JWT authentication."""

from mosn_policy.ratelimit import GlobalRateLimitConfig

__all__ = ["GlobalRateLimitConfig"]
