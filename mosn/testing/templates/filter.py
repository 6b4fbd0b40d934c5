"""``--kind filter``: a stream filter, a rate limit per key (a request header or RPC
routing key) that holds a request over the rate until its turn, or refuses it."""

DESCRIPTION = "The ${name} stream filter for mosn: a rate limit per key"
TEST_DEPENDENCIES = ("pytest>=8", "httpx[http2]>=0.27")

from mosn.testing.templates import INSTALL, INSTALLED_ONLY

FILES: dict[str, str] = {}

FILES["README.md"] = '''
# mosn-plugin-${name}

The `${name}` stream filter for [mosn](https://github.com/mosn/mosn)'s Python data
plane: a rate limit per key. Each request's key is a header (`key`, by default the
RPC routing key `service`; for HTTP, say, `x-tenant`); the first of `limits` whose
`match` (a regular expression) the key matches applies its token bucket (`rate`
requests per second, and `burst` more at once). A request over the rate is held (the filter
returns `STOP`) until its turn if that comes within `max_wait`, else answered
`status` (429) at once. Requests with no key or no matching limit go through.

Written by `mosn plugin new ${name} --kind filter` as a starting point: change it into
your filter; the conformance suite in `tests/` sends real traffic of every protocol
installed through a mosn with it, and tells you what a change broke.

## Layout

| file | what it holds |
|---|---|
| `mosn_${name}/config.py` | `${Name}Config`, what `stream_filters: [{type: ${name}, config: {...}}]` may set |
| `mosn_${name}/filter.py` | `Bucket` (the rate, pure logic) and `${Name}Filter` (the stream filter) |
| `mosn_${name}/plugin.py` | registers the filter with mosn |
| `tests/` | the bucket's own tests and the conformance suite (through a real mosn) |

''' + INSTALL + '''
```yaml
listeners:
  - name: http
    address: 127.0.0.1:2046
    stream_filters:
      - type: ${name}
        config:
          key: x-tenant
          limits:
            - {match: blocked, rate: 0}
            - {match: "free-.*", rate: 5, burst: 10}
          max_wait: 200ms
```
'''

FILES["mosn_${name}/__init__.py"] = '''
"""The ${name} stream filter for mosn: a rate limit per key."""

from mosn_${name}.config import DEFAULT_MAX_WAIT, Limit, ${Name}Config
from mosn_${name}.filter import Bucket, ${Name}Filter

__all__ = ["DEFAULT_MAX_WAIT", "Bucket", "Limit", "${Name}Config", "${Name}Filter"]
'''

FILES["mosn_${name}/config.py"] = '''
"""What ``stream_filters: [{type: ${name}, config: {...}}]`` may set."""

from __future__ import annotations

import re

from pydantic import ConfigDict, Field, field_validator

from mosn.config import Duration, Model

DEFAULT_MAX_WAIT = 0.1
"""Seconds a request over its rate may be held for its turn before it is refused."""
MAX_MAX_WAIT = 60.0
"""A request held a minute is one its client has given up on."""


class Limit(Model):
    model_config = ConfigDict(extra="forbid")  # a misspelt key is an error

    match: str = Field(min_length=1)
    """A regular expression the whole key must match."""
    rate: float = Field(ge=0)
    """Requests per second let through (0: none once the burst is spent)."""
    burst: int = Field(default=0, ge=0)
    """Requests let through at once beyond the rate (with no rate: the only ones)."""

    @field_validator("match")
    @classmethod
    def _regex(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"{value!r} is not a regular expression: {exc}") from None
        return value


class ${Name}Config(Model):
    model_config = ConfigDict(extra="forbid")

    key: str = Field(default="service", min_length=1)
    """The request header (lower case; an RPC routing key) whose value is limited."""
    limits: list[Limit] = Field(default_factory=list)
    """The first limit whose match the key matches applies; none: no limit."""
    max_wait: Duration = Field(default=DEFAULT_MAX_WAIT, ge=0, le=MAX_MAX_WAIT)
    status: int = Field(default=429, ge=400, le=599)
    """What a refused request is answered (an RPC client gets its protocol's status)."""
'''

FILES["mosn_${name}/filter.py"] = '''
"""The ``${name}`` stream filter: a token bucket per key, before routing.

``on_request`` returns CONTINUE (no limit, or a token now), STOP after
``send_local_reply`` (no token within ``max_wait``), or STOP with a timer that calls
``stream.continue_request()`` when the request's turn comes (mosn then runs the
next filters and routes it). One filter serves every stream of a listener (in each
worker): the buckets are shared by its streams.
"""

from __future__ import annotations

import asyncio
import math
import re
import time
from typing import Any

from mosn.proxy import FilterStatus, Phase, StreamFilter
from mosn_${name}.config import Limit, ${Name}Config

MAX_KEYS = 10_000
"""Keys with a bucket at once; past it the oldest bucket is dropped (a key seen again
starts with a full burst), so many distinct keys cannot grow memory without end."""


class Bucket:
    """A token bucket kept as a schedule (GCRA): ``take(now, max_wait)`` says how long
    the caller waits for its turn, or None if longer than ``max_wait`` (then nothing
    is taken). Turns are given in the order they are asked for."""

    __slots__ = ("interval", "tolerance", "due", "left")

    def __init__(self, rate: float, burst: int, now: float) -> None:
        self.interval = 1.0 / rate if rate > 0 else 0.0
        self.tolerance = burst * self.interval
        """How far ahead of the rate a burst may run."""
        self.due = now
        """When the next request is due at the rate."""
        self.left = burst if rate == 0 else -1
        """With no rate: the requests still let through (-1: a rate applies)."""

    def take(self, now: float, max_wait: float) -> float | None:
        if self.left >= 0:
            if self.left == 0:
                return None
            self.left -= 1
            return 0.0
        due = max(self.due, now)
        wait = due - self.tolerance - now
        if wait > max_wait:
            return None
        self.due = due + self.interval
        return max(wait, 0.0)


class ${Name}Filter(StreamFilter):
    phase = Phase.BEFORE_ROUTE

    def __init__(self, config: ${Name}Config) -> None:
        self.key = config.key.lower()
        self.limits = [(re.compile(limit.match), limit) for limit in config.limits]
        self.max_wait = config.max_wait
        self.status = config.status
        self.buckets: dict[str, Bucket] = {}

    def on_request(self, stream: Any) -> FilterStatus:
        value = stream.request.headers.get(self.key)
        limit = self._limit(value) if value is not None else None
        if limit is None:
            return FilterStatus.CONTINUE
        now = time.monotonic()
        wait = self._bucket(value, limit, now).take(now, self.max_wait)
        if wait is None:
            stream.send_local_reply(self.status, "rate limited\\n")
            return FilterStatus.STOP
        if wait == 0:
            return FilterStatus.CONTINUE
        asyncio.get_running_loop().call_later(wait, self._resume, stream)
        return FilterStatus.STOP

    @staticmethod
    def _resume(stream: Any) -> None:
        if not stream.done:  # the client may have gone meanwhile
            stream.continue_request()

    def _limit(self, value: str) -> Limit | None:
        for pattern, limit in self.limits:
            if pattern.fullmatch(value):
                return limit
        return None

    def _bucket(self, value: str, limit: Limit, now: float) -> Bucket:
        bucket = self.buckets.get(value)
        if bucket is None:
            if len(self.buckets) >= MAX_KEYS:
                del self.buckets[next(iter(self.buckets))]
            bucket = self.buckets[value] = Bucket(limit.rate, limit.burst, now)
        return bucket
'''

FILES["mosn_${name}/plugin.py"] = '''
"""Registers the ``${name}`` stream filter with mosn."""

from __future__ import annotations

from typing import Any, Callable

from mosn.plugins import BuildContext, Extension, hookimpl
from mosn_${name}.config import ${Name}Config
from mosn_${name}.filter import ${Name}Filter


def build(config: ${Name}Config, context: BuildContext) -> Callable[[], Any]:
    """Once per listener: one filter for all its streams (it holds the buckets)."""
    shared = ${Name}Filter(config)
    return lambda: shared


@hookimpl
def mosn_stream_filters() -> list[Extension]:
    return [Extension("${name}", build, ${Name}Config,
                      description="a rate limit per key: hold or refuse requests over it")]
'''

FILES["tests/test_${name}_bucket.py"] = '''
"""The rate, as pure logic: times are given, not waited for."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from mosn_${name} import Bucket, ${Name}Config


def test_the_burst_goes_at_once_then_the_rate() -> None:
    bucket = Bucket(rate=10, burst=2, now=100.0)
    assert [bucket.take(100.0, 1.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.take(100.0, 1.0) == pytest.approx(0.1)  # its turn, a tenth of a second on
    assert bucket.take(100.0, 1.0) == pytest.approx(0.2)


def test_a_wait_over_the_limit_takes_nothing() -> None:
    bucket = Bucket(rate=1, burst=0, now=0.0)
    assert bucket.take(0.0, 0.5) == 0.0
    assert bucket.take(0.0, 0.5) is None  # 1 s away
    assert bucket.take(1.0, 0.5) == 0.0  # nothing was taken by the refused one


def test_no_rate_is_the_burst_and_nothing_more() -> None:
    bucket = Bucket(rate=0, burst=1, now=0.0)
    assert bucket.take(0.0, 10.0) == 0.0
    assert bucket.take(1000.0, 10.0) is None


def test_the_config_refuses_what_it_does_not_know() -> None:
    with pytest.raises(ValidationError, match="not a regular expression"):
        ${Name}Config(limits=[{"match": "(", "rate": 1}])
    with pytest.raises(ValidationError, match="Extra inputs"):
        ${Name}Config.model_validate({"limit": []})
'''

FILES["tests/test_${name}_conformance.py"] = '''
"""The filter in a real mosn, with real traffic of every protocol installed
(mosn.testing's stream filter conformance suite)."""

from __future__ import annotations

import importlib.metadata

import pytest

from mosn.testing import FilterCase, StreamFilterConformance
''' + INSTALLED_ONLY + '''

class Test${Name}Conformance(StreamFilterConformance):
    filter_type = "${name}"
    filter_config = {"limits": [{"match": "com[.]example[.]Queued", "rate": 20},
                                {"match": "com[.]example[.]Closed", "rate": 0}],
                     "max_wait": "1s"}
    cases = (
        FilterCase("a service with no limit goes through"),
        FilterCase("a service over its rate waits its turn", service="com.example.Queued"),
        FilterCase("a service with no rate is refused", service="com.example.Closed",
                   status=429),
    )
'''
