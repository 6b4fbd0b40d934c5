"""The ``header_to_metadata`` stream filter: request header values (or their
absence) become dynamic metadata, which subset load balancing reads.

MOSN's (``pkg/filter/stream/headertometadata``): ``request_rules`` of ``header``,
``on_header_present`` / ``on_header_missing`` (``{key, value}``; an empty ``value``
on present takes the header's) and ``remove``; the pairs become MOSN's router meta,
the subset criteria of the request. Here they go to the dynamic metadata namespace
``envoy.lb``, which the proxy joins to the route's ``metadata_match`` when it chooses
a host (Envoy's router does the same with that namespace).

Envoy's (``envoy.filters.http.header_to_metadata``): the same rules with
``metadata_namespace`` (default: the filter's name, so set ``envoy.lb`` for load
balancing), ``type`` (``STRING``), ``regex_value_rewrite`` and ``cookie``. Both run
after routing (MOSN's phase), before a host is chosen, for every protocol (an RPC
call's header map is its headers).
"""

from __future__ import annotations

import functools
import re
from typing import Any, Callable, ClassVar

from pydantic import Field, model_validator

from mosn.config.base import Model, Unsupported
from mosn.filters.common import PerRoute, ProtoModel, RegexMatcher, header_values
from mosn.network.filter import FilterStatus
from mosn.plugins import BuildContext, Extension, hookimpl
from mosn.proxy.stream_filter import LB_METADATA_NAMESPACE, Phase, StreamFilter
from mosn.variables import cookie_value

ENVOY_NAME = "envoy.filters.http.header_to_metadata"
MAX_VALUE_LENGTH = 1024
"""Envoy's limit on a header value turned into metadata (``MAX_HEADER_VALUE_LEN``):
longer values are skipped, so one request cannot put a huge value in the metadata."""


class RegexRewrite(ProtoModel):
    """Envoy's ``RegexMatchAndSubstitute``: ``\\1`` in ``substitution`` names a group."""

    pattern: RegexMatcher
    substitution: str = ""


class KeyValuePair(ProtoModel):
    """What to write: ``key`` in ``metadata_namespace`` with ``value`` (or the header's
    value, rewritten by ``regex_value_rewrite``)."""

    metadata_namespace: str = ""
    key: str = Field(min_length=1)
    value: str = ""
    regex_value_rewrite: RegexRewrite | None = None
    type: str = "STRING"
    encode: str = "NONE"

    @model_validator(mode="after")
    def _string(self) -> "KeyValuePair":
        if self.type != "STRING":
            raise ValueError(f"type {self.type}: mosn writes STRING values only")
        if self.encode != "NONE":
            raise ValueError(f"encode {self.encode}: not supported")
        if self.value and self.regex_value_rewrite is not None:
            raise ValueError("set value or regex_value_rewrite, not both")
        return self


class Rule(ProtoModel):
    header: str = ""
    cookie: str = ""
    on_header_present: KeyValuePair | None = None
    on_header_missing: KeyValuePair | None = None
    on_present: KeyValuePair | None = None
    on_missing: KeyValuePair | None = None
    remove: bool = False

    @model_validator(mode="after")
    def _check(self) -> "Rule":
        if bool(self.header) == bool(self.cookie):
            raise ValueError("set one of header or cookie")
        present = self.on_header_present or self.on_present
        missing = self.on_header_missing or self.on_missing
        if present is None and missing is None:
            raise ValueError("one of on_header_present or on_header_missing needs to be "
                             "specified")
        if missing is not None and not missing.value:
            raise ValueError("on_header_missing needs a value")
        if self.cookie and self.remove:
            raise ValueError("remove works on a header, not a cookie")
        return self


class HeaderToMetadataConfig(ProtoModel):
    """MOSN's and Envoy's config (Envoy's ``response_rules`` are refused: mosn
    chooses the host before the response, and nothing later reads metadata)."""

    request_rules: list[Rule] = Field(default_factory=list)
    response_rules: Unsupported = None
    per_route: ClassVar[type[Model]]


HeaderToMetadataConfig.per_route = HeaderToMetadataConfig


class _Compiled:
    """A rule, ready: where the value comes from and the two outcomes."""

    __slots__ = ("header", "cookie", "present", "missing", "remove")

    def __init__(self, rule: Rule, default_namespace: str) -> None:
        self.header = rule.header.lower()
        self.cookie = rule.cookie
        self.present = _outcome(rule.on_header_present or rule.on_present, default_namespace)
        self.missing = _outcome(rule.on_header_missing or rule.on_missing, default_namespace)
        self.remove = rule.remove


def _outcome(pair: KeyValuePair | None, default_namespace: str) -> tuple[Any, ...] | None:
    if pair is None:
        return None
    rewrite = pair.regex_value_rewrite
    pattern = re.compile(rewrite.pattern.regex) if rewrite is not None else None
    return (pair.metadata_namespace or default_namespace, pair.key, pair.value, pattern,
            rewrite.substitution if rewrite is not None else "")


class Rules:
    __slots__ = ("rules",)

    def __init__(self, config: HeaderToMetadataConfig, default_namespace: str) -> None:
        self.rules = tuple(_Compiled(r, default_namespace) for r in config.request_rules)

    def apply(self, stream: Any) -> None:
        headers = stream.request.headers
        metadata = stream.dynamic_metadata
        for rule in self.rules:
            if rule.cookie:
                found = None
                for header in header_values(headers, "cookie"):
                    found = cookie_value(header, rule.cookie)
                    if found is not None:
                        break
            else:
                values = header_values(headers, rule.header)
                found = values[0] if values else None
            if found is not None and rule.present is not None:
                namespace, key, value, pattern, substitution = rule.present
                if not value:
                    value = pattern.sub(substitution, found) if pattern is not None else found
                if value and len(value) <= MAX_VALUE_LENGTH:
                    if metadata is None:
                        metadata = stream.dynamic_metadata = {}
                    metadata.setdefault(namespace, {})[key] = value
            elif found is None and rule.missing is not None:
                namespace, key, value = rule.missing[:3]
                if metadata is None:
                    metadata = stream.dynamic_metadata = {}
                metadata.setdefault(namespace, {})[key] = value
            if rule.remove and found is not None:
                headers.pop(rule.header, None)


class HeaderToMetadata(StreamFilter):
    phase = Phase.AFTER_ROUTE

    def __init__(self, routes: PerRoute[Rules]) -> None:
        self.routes = routes

    def on_request(self, stream: Any) -> FilterStatus:
        self.routes.get(stream).apply(stream)
        return FilterStatus.CONTINUE


def build(name: str, default_namespace: str, config: HeaderToMetadataConfig,
          context: BuildContext) -> Callable[[], StreamFilter]:
    rules = Rules(config, default_namespace)
    flt = HeaderToMetadata(PerRoute(name, HeaderToMetadataConfig,
                                    lambda per, _: Rules(per, default_namespace), rules))
    return lambda: flt


@hookimpl
def mosn_stream_filters() -> list[Extension]:
    return [
        Extension("header_to_metadata",
                  functools.partial(build, "header_to_metadata", LB_METADATA_NAMESPACE),
                  HeaderToMetadataConfig,
                  description="MOSN's request headers to subset load balancing metadata"),
        Extension(ENVOY_NAME, functools.partial(build, ENVOY_NAME, ENVOY_NAME),
                  HeaderToMetadataConfig, description="Envoy's request headers to metadata"),
    ]
