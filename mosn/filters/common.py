"""What the policy filters (rate limits, RBAC, authentication) share: Envoy's
fractional percentages and status codes, request keys written as ``%variable%``
templates (the access log's variables), and per-route configs built once.
"""

from __future__ import annotations

import hashlib
import http
import json
import random
import re
from typing import Any, Callable, Generic, Literal, TypeVar

from pydantic import BaseModel, Field, model_validator

from mosn.config.base import Empty, Model
from mosn.variables import Template, check_template

T = TypeVar("T")

_DENOMINATORS = {"HUNDRED": 100, "TEN_THOUSAND": 10_000, "MILLION": 1_000_000}


_CAMEL = re.compile(r"(?<=[a-z0-9])([A-Z])")


class ProtoModel(Model):
    """A config model of an Envoy proto message: its keys also in the proto's JSON
    form (``localJwks``, ``inlineString``, ``requiresAny``), as MOSN's samples and
    Envoy's JSON configs write them."""

    @model_validator(mode="before")
    @classmethod
    def _snake_keys(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        fields = cls.model_fields
        out = {}
        for key, value in data.items():
            if isinstance(key, str) and key not in fields and not key.startswith("@"):
                snake = _CAMEL.sub(lambda m: "_" + m.group(1).lower(), key)
                if snake in fields and snake not in data:
                    key = snake
            out[key] = value
        return out


class FractionalPercent(ProtoModel):
    """Envoy's ``FractionalPercent``."""

    numerator: int = Field(default=0, ge=0)
    denominator: Literal["HUNDRED", "TEN_THOUSAND", "MILLION"] = "HUNDRED"

    def chosen(self) -> bool:
        scale = _DENOMINATORS[self.denominator]
        if self.numerator >= scale:
            return True
        return self.numerator > 0 and random.randrange(scale) < self.numerator


class RuntimeFractionalPercent(ProtoModel):
    """Envoy's ``RuntimeFractionalPercent``. mosn has no runtime layer: a
    ``runtime_key`` never has a value, so ``default_value`` applies (as in an Envoy
    whose runtime does not set the key)."""

    default_value: FractionalPercent = Field(default_factory=FractionalPercent)
    runtime_key: str = ""


ALWAYS = RuntimeFractionalPercent(default_value=FractionalPercent(numerator=100))


def status_code(value: Any) -> int:
    """An HTTP status from a number or Envoy's ``StatusCode`` name (``TooManyRequests``)."""
    if isinstance(value, dict):  # Envoy's HttpStatus message: {code: ...}
        unknown = set(value) - {"code"}
        if unknown:
            raise ValueError(f"unknown key(s) {', '.join(sorted(unknown))} (HttpStatus has code)")
        value = value.get("code")
    if isinstance(value, int) and not isinstance(value, bool):
        code = value
    elif isinstance(value, str):
        names = {s.name.replace("_", "").lower(): s.value for s in http.HTTPStatus}
        found = names.get(value.replace("_", "").lower())
        if found is None and not value.isdigit():
            raise ValueError(f"unknown status {value!r}")
        code = found if found is not None else int(value)
    else:
        raise ValueError("a status is a number or Envoy's StatusCode name")
    if not 200 <= code <= 599:
        raise ValueError(f"status {code} is not between 200 and 599")
    return code


class RegexMatcher(ProtoModel):
    """Envoy's ``RegexMatcher`` (RE2 there; Python's ``re`` here, full match)."""

    regex: str
    google_re2: Empty | None = None

    @model_validator(mode="after")
    def _compiles(self) -> "RegexMatcher":
        try:
            re.compile(self.regex)
        except re.error as exc:
            raise ValueError(f"bad regex {self.regex!r}: {exc}") from None
        return self


class StringMatcher(ProtoModel):
    """Envoy's ``StringMatcher``: one of ``exact``, ``prefix``, ``suffix``,
    ``contains``, ``safe_regex``; ``ignore_case`` for the first four."""

    exact: str | None = None
    prefix: str | None = None
    suffix: str | None = None
    contains: str | None = None
    safe_regex: RegexMatcher | None = None
    ignore_case: bool = False

    @model_validator(mode="after")
    def _one(self) -> "StringMatcher":
        given = [k for k in ("exact", "prefix", "suffix", "contains", "safe_regex")
                 if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("a string matcher needs exactly one of exact, prefix, suffix, "
                             f"contains, safe_regex (found {', '.join(given) or 'none'})")
        return self

    def compile(self) -> Callable[[str], bool]:
        if self.safe_regex is not None:
            pattern = re.compile(self.safe_regex.regex)
            return lambda v: pattern.fullmatch(v) is not None
        fold = self.ignore_case
        for kind in ("exact", "prefix", "suffix", "contains"):
            want = getattr(self, kind)
            if want is not None:
                break
        want = want.lower() if fold else want
        test = {"exact": str.__eq__, "prefix": str.startswith, "suffix": str.endswith,
                "contains": str.__contains__}[kind]
        if fold:
            return lambda v: test(v.lower(), want)
        return lambda v: test(v, want)


class HeaderMatcher(ProtoModel):
    """Envoy's ``HeaderMatcher`` (route and RBAC headers): ``name`` and one of its
    match kinds; ``invert_match`` turns it around. A header absent matches only
    ``present_match: false`` (or an inverted matcher)."""

    name: str = Field(min_length=1)
    exact_match: str | None = None
    prefix_match: str | None = None
    suffix_match: str | None = None
    contains_match: str | None = None
    safe_regex_match: RegexMatcher | None = None
    present_match: bool | None = None
    string_match: StringMatcher | None = None
    invert_match: bool = False

    def compile(self) -> Callable[[Any], bool]:
        """A test of a request's headers (any value of the name matching)."""
        name = self.name.lower()
        if self.string_match is not None:
            test = self.string_match.compile()
        elif self.safe_regex_match is not None:
            test = StringMatcher(safe_regex=self.safe_regex_match).compile()
        else:
            for kind in ("exact", "prefix", "suffix", "contains"):
                want = getattr(self, f"{kind}_match")
                if want is not None:
                    test = StringMatcher(**{kind: want}).compile()
                    break
            else:
                test = None
        present = self.present_match
        invert = self.invert_match

        def matches(headers: Any) -> bool:
            values = header_values(headers, name)
            if test is None:
                found = bool(values) if present is not False else not values
            else:
                found = any(test(v) for v in values)
            return found != invert
        return matches


def header_values(headers: Any, name: str) -> list[str]:
    """Every value of a header; an RPC header map keeps its keys' case, so the name
    as written is tried when the lower-case one is absent."""
    getter = getattr(headers, "get_all", None)
    if getter is not None:
        return getter(name)
    value = headers.get(name)
    return [] if value is None else [value]


class PseudoHeaders:
    """A request's headers that also answer HTTP/2's pseudo-headers (``:method``,
    ``:path``, ``:authority``, ``:scheme``) for any protocol, as Envoy's matchers do."""

    __slots__ = ("head",)

    def __init__(self, head: Any) -> None:
        self.head = head

    def get_all(self, name: str) -> list[str]:
        head = self.head
        if name[:1] == ":":
            value = {":method": head.method, ":path": head.path,
                     ":authority": head.authority, ":scheme": head.scheme}.get(name)
            return [value] if value else []
        return header_values(head.headers, name)


KeyTemplate = Template
"""A request key written with ``%variable%`` (the registry's variables, such as
``%request_header_x-user%`` or ``%downstream_remote_address_without_port%``)."""

key_template = check_template
"""Validate a key template (pydantic validator body): unknown variables are errors."""


def exactly_one(model: BaseModel, what: str) -> None:
    """Refuse a model (Envoy's ``oneof``) that sets none or several of its fields."""
    given = [k for k in type(model).model_fields if getattr(model, k) is not None]
    if len(given) != 1:
        raise ValueError(f"{what} needs exactly one kind (found {', '.join(given) or 'none'})")


class FilterStats:
    """A filter's counters in the stats store, under ``prefix``; nothing is counted
    where the filter was built without a store (a unit test, the kit's check)."""

    __slots__ = ("store", "scope")

    def __init__(self, store: Any, prefix: str, names: tuple[str, ...]) -> None:
        self.store = store
        self.scope = store.scope(prefix, names) if store is not None else None

    def count(self, stat: str) -> None:
        if self.scope is not None:
            self.store.values[getattr(self.scope, stat)] += 1


class PerRoute(Generic[T]):
    """A filter's per-route configs (``per_filter_config.<name>``), each validated by
    ``model`` and built by ``build(parsed, identity)`` the first time a request of its
    route comes; the listener's own when the route has none.

    ``shared``: what is built keys state shared between the workers (a rate limit's
    buckets), so ``identity`` is :func:`route_config_identity`, the same number in every
    worker for the same place of the config, whenever each worker took it (a route
    pushed after the fork is translated in each worker, into objects of its own).
    Otherwise ``identity`` is the raw config's ``id()``, this process's alone."""

    __slots__ = ("name", "model", "build", "default", "shared", "_built")

    def __init__(self, name: str, model: type[BaseModel], build: Callable[[Any, int], T],
                 default: T, shared: bool = False) -> None:
        self.name = name
        self.model = model
        self.build = build
        self.default = default
        self.shared = shared
        self._built: dict[Any, tuple[Any, T]] = {}

    def get(self, stream: Any) -> T:
        route = stream.route
        if route is None:
            return self.default
        raw = route.per_filter_config.get(self.name)
        if raw is None:
            return self.default
        # Shared: one raw config may sit in several virtual hosts (the xDS translation
        # reuses the translation of a route sent twice), each its own place.
        key = (id(raw), route.virtual_host.name) if self.shared else id(raw)
        found = self._built.get(key)
        if found is None or found[0] is not raw:
            identity = route_config_identity(self.name, route, raw) if self.shared else id(raw)
            found = self._built[key] = (raw, self.build(self.model.model_validate(raw),
                                                        identity))
        return found[1]


def route_config_identity(name: str, route: Any, raw: Any) -> int:
    """A signed 64-bit digest of where the ``per_filter_config.<name>`` entry ``raw`` of
    ``route`` sits and what it says: its virtual host (by name, else by domains) and,
    for a route's own entry, the whole route (its match tells two routes with equal
    settings apart: each has its own bucket, as each route's config has in Envoy). The
    same in every process for the same config, whichever route of a virtual host
    asked first; hashlib, since ``hash()`` of a string differs between processes not
    forked from one another."""
    host = route.virtual_host
    where: Any = host.name or host.config.domains
    if host.per_filter_config.get(name) is raw:
        place = ["virtual_host", where, raw]
    else:  # the first route of the virtual host holding it (a YAML alias may share it)
        own = next((r for r in host.config.routers if r.per_filter_config.get(name) is raw),
                   None)
        place = ["route", where, own.model_dump(mode="json") if own is not None else raw]
    text = json.dumps([name, place], sort_keys=True, separators=(",", ":"), default=str)
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big",
                          signed=True)


__all__ = ["ALWAYS", "FilterStats", "FractionalPercent", "HeaderMatcher", "KeyTemplate", "ProtoModel",
           "PseudoHeaders",
           "RegexMatcher",
           "StringMatcher", "header_values", "PerRoute", "RuntimeFractionalPercent",
           "route_config_identity",
           "exactly_one", "key_template", "status_code"]
