"""Stats, the stats observer, access logs and tracing."""

from mosn.observability.stats import Scope, StatsStore

__all__ = ["Scope", "StatsStore"]
