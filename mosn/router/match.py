"""Compiled matchers: built once from config, called per request with plain strings.

Header and query lookups go through ``Mapping.get`` with the lower-cased name, so the
caller's header mapping must be keyed in lower case (or be case-insensitive).
"""

from __future__ import annotations

import re
from typing import Callable, Mapping

from mosn.config.routers import (
    HeaderMatcherConfig,
    QueryParameterMatcherConfig,
    RouteMatchConfig,
    StringMatcherConfig,
)

StringTest = Callable[[str], bool]

# Header names that fall back to the request's method when absent from the headers:
# MOSN's HTTP routes read "method" from the method variable (configutility.go);
# Envoy and HTTP/2 write ":method".
_METHOD_NAMES = frozenset({"method", ":method"})

# MOSN's RPC routes: a single "service" matcher whose value is ".*" matches any
# non-empty service even without regex: true (rpc_rule.go, "compatible for old version").
_RPC_SERVICE_KEY = "service"
_RPC_ANY_SERVICE = ".*"


def path_test(match: RouteMatchConfig) -> StringTest | None:
    """The test of the request path (without its query), or None when any path matches."""
    if match.regex:
        search = re.compile(match.regex).search
        return lambda path: search(path) is not None
    expected = match.prefix or match.path
    if not expected:
        return None
    if not match.case_sensitive:
        expected = expected.lower()
        if match.prefix:
            return lambda path: path.lower().startswith(expected)
        return lambda path: path.lower() == expected
    if match.prefix:
        return lambda path: path.startswith(expected)
    return lambda path: path == expected


def string_test(config: StringMatcherConfig) -> StringTest:
    if config.safe_regex is not None:
        fullmatch = re.compile(config.safe_regex.regex).fullmatch
        return lambda value: fullmatch(value) is not None
    fold = (lambda value: value.lower()) if config.ignore_case else (lambda value: value)
    if config.exact is not None:
        exact = fold(config.exact)
        return lambda value: fold(value) == exact
    if config.prefix is not None:
        prefix = fold(config.prefix)
        return lambda value: fold(value).startswith(prefix)
    if config.suffix is not None:
        suffix = fold(config.suffix)
        return lambda value: fold(value).endswith(suffix)
    contains = fold(config.contains or "")
    return lambda value: contains in fold(value)


class HeaderMatcher:
    """One header condition; an absent header matches only a test for absence (Envoy)."""

    __slots__ = ("name", "test", "invert", "if_absent", "is_method")

    def __init__(self, config: HeaderMatcherConfig, rpc_any_service: bool = False) -> None:
        self.name = config.name.lower()
        self.invert = config.invert_match
        self.is_method = self.name in _METHOD_NAMES
        present = config.present_match
        if present is None and not config.value and not config.regex:
            present = True  # a name alone tests presence (Envoy)
        if rpc_any_service:
            self.test: StringTest = bool
        elif present is not None:
            self.test = lambda value: present
        elif config.regex:
            search = re.compile(config.value).search
            self.test = lambda value: search(value) is not None
        else:
            expected = config.value
            self.test = lambda value: value == expected
        self.if_absent = present is not None and present == self.invert

    def matches(self, headers: Mapping[str, str], method: str) -> bool:
        value = headers.get(self.name)
        if value is None and self.is_method and method:
            value = method
        if value is None:
            return self.if_absent
        return self.test(value) != self.invert


class QueryParameterMatcher:
    __slots__ = ("name", "test", "if_absent")

    def __init__(self, config: QueryParameterMatcherConfig) -> None:
        self.name = config.name
        present = config.present_match
        if config.string_match is not None:
            self.test = string_test(config.string_match)
            self.if_absent = False
        else:
            present = True if present is None else present
            self.test = lambda value: present
            self.if_absent = not present

    def matches(self, params: Mapping[str, str]) -> bool:
        value = params.get(self.name)
        if value is None:
            return self.if_absent
        return self.test(value)


def header_matchers(match: RouteMatchConfig) -> tuple[HeaderMatcher, ...]:
    headers = match.headers
    rpc_any_service = (
        not (match.prefix or match.path or match.regex) and len(headers) == 1
        and headers[0].name == _RPC_SERVICE_KEY and not headers[0].regex
        and headers[0].value == _RPC_ANY_SERVICE and not headers[0].invert_match)
    return tuple(HeaderMatcher(h, rpc_any_service) for h in headers)
