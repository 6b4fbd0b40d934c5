"""The ``jwt_authn`` stream filter: JWT authentication as Envoy's
``envoy.filters.http.jwt_authn`` does it, verified with pyjwt.

Providers name an issuer, the audiences they accept, where a token is read from
(``Authorization: Bearer`` by default) and their keys: a JWKS inline, in a file, or
fetched over HTTP from a cluster of the config and cached for ``cache_duration``.
Rules (by path prefix, path, regex or headers) or a route's ``per_filter_config``
name the requirement a request must meet: a provider, any or all of several,
``allow_missing``, ``allow_missing_or_failed``.

A verified token's claims go to later filters (``rbac``'s ``metadata`` principals
read them under ``envoy.filters.http.jwt_authn``), into request headers
(``claim_to_headers``) and, base64url, into ``forward_payload_header``. A request
failing its requirement gets ``401`` with ``WWW-Authenticate`` (RFC 6750), or
``403`` when only the audience is wrong (Envoy's statuses); gRPC callers get
UNAUTHENTICATED or PERMISSION_DENIED.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import re
import time
from pathlib import Path
from typing import Any, Callable, ClassVar
from urllib.parse import parse_qs, urlsplit

import jwt
from pydantic import Field, model_validator

from mosn.config import Duration, Empty, Model, Unsupported
from mosn.filters.common import HeaderMatcher, PerRoute, ProtoModel, RegexMatcher, exactly_one
from mosn.plugins import BuildContext
from mosn.proxy import FilterStatus, Phase, StreamFilter
from mosn_policy.service import http_call

log = logging.getLogger("mosn.jwt_authn")

METADATA_NAMESPACE = "envoy.filters.http.jwt_authn"
"""Where verified claims go in the stream's dynamic metadata (Envoy's filter name)."""
DEFAULT_CACHE_DURATION = 300.0
"""Seconds a fetched JWKS is used before it is fetched again (Envoy's default, 5 min)."""
DEFAULT_FETCH_TIMEOUT = 1.0
"""Seconds a JWKS fetch may take (Envoy's ``http_uri.timeout`` is required; 1 s is
what its examples use)."""
MAX_JWKS_BYTES = 256 * 1024
"""A JWKS response larger than this is refused: key sets are a few KiB."""
RETRY_FAILED_FETCH = 5.0
"""Seconds before a failed JWKS fetch is tried again (requests meanwhile fail)."""
DEFAULT_CLOCK_SKEW = 60
"""Seconds of leeway on ``exp`` and ``nbf`` (Envoy's default)."""
UNAUTHORIZED = 401
FORBIDDEN = 403
ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512",
              "EdDSA", "HS256", "HS384", "HS512")
"""The algorithms a key may verify (JWKS keys name theirs; ``none`` never)."""


class DataSource(ProtoModel):
    filename: str = ""
    inline_string: str = ""

    @model_validator(mode="after")
    def _one(self) -> "DataSource":
        if bool(self.filename) == bool(self.inline_string):
            raise ValueError("a data source needs exactly one of filename, inline_string")
        if self.filename and not Path(self.filename).is_file():
            raise ValueError(f"no such file: {self.filename}")
        return self

    def read(self) -> str:
        return Path(self.filename).read_text() if self.filename else self.inline_string


class HttpUri(ProtoModel):
    uri: str = Field(min_length=1)
    cluster: str = Field(min_length=1)
    timeout: Duration = DEFAULT_FETCH_TIMEOUT


class RemoteJwks(ProtoModel):
    http_uri: HttpUri
    cache_duration: Duration = DEFAULT_CACHE_DURATION
    async_fetch: Unsupported = None
    retry_policy: Unsupported = None


class FromHeader(ProtoModel):
    name: str = Field(min_length=1)
    value_prefix: str = ""


class ClaimToHeader(ProtoModel):
    header_name: str = Field(min_length=1)
    claim_name: str = Field(min_length=1)


class Provider(ProtoModel):
    issuer: str = ""
    audiences: list[str] = Field(default_factory=list)
    local_jwks: DataSource | None = None
    remote_jwks: RemoteJwks | None = None
    forward: bool = False
    from_headers: list[FromHeader] = Field(default_factory=list)
    from_params: list[str] = Field(default_factory=list)
    forward_payload_header: str = ""
    payload_in_metadata: str = ""
    claim_to_headers: list[ClaimToHeader] = Field(default_factory=list)
    clock_skew_seconds: int = Field(default=DEFAULT_CLOCK_SKEW, ge=0)
    require_expiration: bool = False
    from_cookies: Unsupported = None
    subjects: Unsupported = None
    max_lifetime: Unsupported = None
    jwt_cache_config: Unsupported = None
    header_in_metadata: Unsupported = None
    pad_forward_payload_header: bool = False

    @model_validator(mode="after")
    def _keys(self) -> "Provider":
        if (self.local_jwks is None) == (self.remote_jwks is None):
            raise ValueError("a provider needs exactly one of local_jwks, remote_jwks")
        if self.local_jwks is not None:
            try:
                jwt.PyJWKSet.from_json(self.local_jwks.read())
            except (jwt.PyJWTError, ValueError, KeyError) as exc:
                raise ValueError(f"local_jwks: not a usable JWKS: {exc}") from None
        return self


class ProviderAndAudiences(ProtoModel):
    provider_name: str
    audiences: list[str] = Field(default_factory=list)


class RequirementList(ProtoModel):
    requirements: list["Requirement"] = Field(min_length=1)


class Requirement(ProtoModel):
    """Envoy's ``JwtRequirement``: exactly one kind."""

    provider_name: str | None = None
    provider_and_audiences: ProviderAndAudiences | None = None
    requires_any: RequirementList | None = None
    requires_all: RequirementList | None = None
    allow_missing_or_failed: Empty | None = None
    allow_missing: Empty | None = None

    @model_validator(mode="after")
    def _one(self) -> "Requirement":
        exactly_one(self, "a requirement")
        return self

    def providers(self) -> list[str]:
        if self.provider_name is not None:
            return [self.provider_name]
        if self.provider_and_audiences is not None:
            return [self.provider_and_audiences.provider_name]
        inner = self.requires_any or self.requires_all
        return [p for r in inner.requirements for p in r.providers()] if inner else []


RequirementList.model_rebuild()


class RuleMatch(ProtoModel):
    prefix: str | None = None
    path: str | None = None
    safe_regex: RegexMatcher | None = None
    headers: list[HeaderMatcher] = Field(default_factory=list)


class Rule(ProtoModel):
    match: RuleMatch
    requires: Requirement | None = None
    requirement_name: str = ""


class JwtPerRoute(ProtoModel):
    """Envoy's ``PerRouteConfig``: ``disabled``, or the ``requirement_name`` (of
    ``requirement_map``) this route needs."""

    disabled: bool = False
    requirement_name: str = ""


class JwtAuthnConfig(ProtoModel):
    """Envoy's ``JwtAuthentication``."""

    per_route: ClassVar[type[Model]] = JwtPerRoute

    providers: dict[str, Provider] = Field(min_length=1)
    rules: list[Rule] = Field(default_factory=list)
    requirement_map: dict[str, Requirement] = Field(default_factory=dict)
    bypass_cors_preflight: bool = False
    filter_state_rules: Unsupported = None
    stat_prefix: str = ""
    strip_failure_response: bool = False

    @model_validator(mode="after")
    def _names(self) -> "JwtAuthnConfig":
        named = [r for r in self.requirement_map.values()]
        named += [rule.requires for rule in self.rules if rule.requires is not None]
        for req in named:
            for p in req.providers():
                if p not in self.providers:
                    raise ValueError(f"requirement names provider {p!r}, not in providers")
        for rule in self.rules:
            if rule.requirement_name and rule.requirement_name not in self.requirement_map:
                raise ValueError(f"rule names requirement {rule.requirement_name!r}, "
                                 "not in requirement_map")
        return self

    def cross_check(self, root: Any, plugins: Any) -> list[tuple[str, str]]:
        names = {c.name for c in root.cluster_manager.clusters}
        errors = []
        for name, p in self.providers.items():
            if p.remote_jwks is not None and p.remote_jwks.http_uri.cluster not in names:
                errors.append((f"providers.{name}.remote_jwks.http_uri.cluster",
                               f"no cluster named {p.remote_jwks.http_uri.cluster!r}"))
        for i, (rpath, router) in enumerate(root.routers()):
            for vh in router.virtual_hosts:
                for r in vh.routers:
                    per = r.per_filter_config.get("jwt_authn") or {}
                    name = per.get("requirement_name") if isinstance(per, dict) else None
                    if name and name not in self.requirement_map:
                        errors.append(("requirement_map", f"a route of {rpath} names "
                                       f"requirement {name!r}, not in requirement_map"))
        return errors


# -- verification ------------------------------------------------------------------------------


class Failure(Exception):
    """A requirement not met: the status and the words for the client."""

    def __init__(self, status: int, message: str, missing: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.missing = missing


MISSING = Failure(UNAUTHORIZED, "Jwt is missing", missing=True)


class Keys:
    """A provider's JWKS: read once (local) or fetched and cached (remote)."""

    def __init__(self, provider: Provider, clusters: Any) -> None:
        self.remote = provider.remote_jwks
        self.clusters = clusters
        self.keys: jwt.PyJWKSet | None = None
        self.expires = 0.0
        self.fetching: asyncio.Future[None] | None = None
        self.failed_until = 0.0
        if provider.local_jwks is not None:
            self.keys = jwt.PyJWKSet.from_json(provider.local_jwks.read())
            self.expires = float("inf")

    def fresh(self) -> bool:
        return self.keys is not None and time.monotonic() < self.expires

    def fetch(self) -> "asyncio.Future[None]":
        """The fetch under way, or a new one."""
        if self.fetching is None or self.fetching.done():
            self.fetching = asyncio.ensure_future(self._fetch())
        return self.fetching

    async def _fetch(self) -> None:
        assert self.remote is not None
        if time.monotonic() < self.failed_until:
            return
        uri = self.remote.http_uri
        try:
            text = await asyncio.wait_for(_http_get(self.clusters, uri), uri.timeout)
            self.keys = jwt.PyJWKSet.from_json(text)
            self.expires = time.monotonic() + self.remote.cache_duration
        except Exception as exc:  # a fetch failing must fail the requests, not the worker
            log.warning("JWKS fetch from %s failed: %s", uri.uri, exc)
            self.failed_until = time.monotonic() + RETRY_FAILED_FETCH


async def _http_get(clusters: Any, uri: HttpUri) -> str:
    """GET ``uri`` from a host of its cluster."""
    parts = urlsplit(uri.uri)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    status, _, body = await http_call(clusters, uri.cluster, "GET", target, [
        ("host", parts.netloc), ("accept", "application/json")], b"", MAX_JWKS_BYTES)
    if status != 200:
        raise ValueError(f"JWKS fetch answered {status}")
    return body.decode()


class ProviderCheck:
    """One provider: finds its tokens in a request and verifies them."""

    def __init__(self, name: str, provider: Provider, clusters: Any) -> None:
        self.name = name
        self.provider = provider
        self.keys = Keys(provider, clusters)
        self.headers = [(h.name.lower(), h.value_prefix) for h in provider.from_headers] or [
            ("authorization", "Bearer ")]
        self.params = provider.from_params

    def tokens(self, head: Any) -> list[tuple[str, str | None]]:
        """(token, the header it came from or None for a query parameter)."""
        found = []
        for name, prefix in self.headers:
            for value in head.headers.get_all(name):
                if value.startswith(prefix) and value[len(prefix):].strip():
                    found.append((value[len(prefix):].strip(), name))
        if self.params:
            query = parse_qs(head.path.partition("?")[2])
            for p in self.params:
                found += [(v, None) for v in query.get(p, [])]
        return found

    def verify(self, token: str, audiences: list[str] | None) -> dict[str, Any]:
        provider = self.provider
        keys = self.keys.keys
        if keys is None:
            raise Failure(UNAUTHORIZED, "Jwks remote fetch is failed")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise Failure(UNAUTHORIZED, "Jwt is not in the form of Header.Payload.Signature "
                          "with two dots and 3 sections") from None
        alg, kid = header.get("alg"), header.get("kid")
        if alg not in ALGORITHMS:
            raise Failure(UNAUTHORIZED, "Jwt verification fails")
        candidates = [k for k in keys.keys if (kid is None or k.key_id == kid)
                      and (k.algorithm_name in (None, alg))]
        if not candidates:
            raise Failure(UNAUTHORIZED, "Jwks doesn't have key to match kid or alg from Jwt")
        wanted = audiences if audiences is not None else provider.audiences
        options = {"verify_aud": False, "require": ["exp"] if provider.require_expiration else []}
        last: Exception | None = None
        for key in candidates:
            try:
                claims = jwt.decode(token, key.key, algorithms=[alg], options=options,
                                    leeway=provider.clock_skew_seconds)
                break
            except jwt.ExpiredSignatureError:
                raise Failure(UNAUTHORIZED, "Jwt is expired") from None
            except jwt.ImmatureSignatureError:
                raise Failure(UNAUTHORIZED, "Jwt not yet valid") from None
            except jwt.PyJWTError as exc:
                last = exc
        else:
            log.debug("%s: token not verified: %s", self.name, last)
            raise Failure(UNAUTHORIZED, "Jwt verification fails")
        if provider.issuer and claims.get("iss") != provider.issuer:
            raise Failure(UNAUTHORIZED, "Jwt issuer is not configured")
        if wanted:
            aud = claims.get("aud")
            given = aud if isinstance(aud, list) else [aud] if aud else []
            if not set(given) & set(wanted):
                raise Failure(FORBIDDEN, "Audiences in Jwt are not allowed")
        return claims


Verdict = Callable[[Any, dict[str, dict[str, Any]]], None]


def _compile(req: Requirement, checks: dict[str, ProviderCheck]) -> Any:
    """A requirement as a function of (head, verified) raising :class:`Failure`;
    ``verified`` collects each provider's claims."""
    if req.provider_name is not None or req.provider_and_audiences is not None:
        pa = req.provider_and_audiences
        check = checks[req.provider_name or pa.provider_name]  # type: ignore[union-attr]
        audiences = pa.audiences if pa is not None and pa.audiences else None

        def one(head: Any, verified: dict[str, Any], found: list[Any]) -> None:
            tokens = check.tokens(head)
            if not tokens:
                raise MISSING
            token, where = tokens[0]
            verified[check.name] = (check.verify(token, audiences), where)
        return one
    if req.requires_any is not None or req.requires_all is not None:
        parts = [_compile(r, checks) for r in (req.requires_any or req.requires_all).requirements]
        need_all = req.requires_all is not None

        def several(head: Any, verified: dict[str, Any], found: list[Any]) -> None:
            errors: list[Failure] = []
            for part in parts:
                try:
                    part(head, verified, found)
                    if not need_all:
                        return
                except Failure as exc:
                    if need_all:
                        raise
                    errors.append(exc)
            if errors:
                raise next((e for e in errors if not e.missing), errors[0])
        return several
    tolerate_failure = req.allow_missing_or_failed is not None

    def allow(head: Any, verified: dict[str, Any], found: list[Any]) -> None:
        for check in checks.values():
            tokens = check.tokens(head)
            if not tokens:
                continue
            try:
                verified[check.name] = (check.verify(tokens[0][0], None), tokens[0][1])
            except Failure:
                if not tolerate_failure:
                    raise
    return allow


class JwtAuthn(StreamFilter):
    """Stateless per stream: one per listener."""

    phase = Phase.AFTER_ROUTE

    def __init__(self, config: JwtAuthnConfig, context: BuildContext) -> None:
        self.checks = {name: ProviderCheck(name, p, context.cluster_manager)
                       for name, p in config.providers.items()}
        self.by_name = {name: _compile(r, self.checks)
                        for name, r in config.requirement_map.items()}
        self.rules = []
        for rule in config.rules:
            requirement = (_compile(rule.requires, self.checks) if rule.requires is not None
                           else self.by_name.get(rule.requirement_name))
            self.rules.append((_rule_test(rule.match), requirement))
        self.bypass_cors = config.bypass_cors_preflight
        self.routes: PerRoute[Any] = PerRoute("jwt_authn", JwtPerRoute, self._per_route, None)

    def _per_route(self, per: JwtPerRoute, identity: int) -> Any:
        if per.disabled:
            return False
        return self.by_name[per.requirement_name] if per.requirement_name else None

    def requirement(self, stream: Any) -> Any:
        chosen = self.routes.get(stream)
        if chosen is False:
            return None
        if chosen is not None:
            return chosen
        head = stream.request
        for test, requirement in self.rules:
            if test(head):
                return requirement
        return None

    def on_request(self, stream: Any) -> FilterStatus:
        head = stream.request
        if self.bypass_cors and head.method == "OPTIONS" and "origin" in head.headers:
            return FilterStatus.CONTINUE
        requirement = self.requirement(stream)
        if requirement is None:
            return FilterStatus.CONTINUE
        stale = [c.keys for c in self.checks.values()
                 if c.keys.remote is not None and not c.keys.fresh()
                 and c.tokens(head)]
        if stale:
            fetches = asyncio.gather(*(k.fetch() for k in stale), return_exceptions=True)
            fetches.add_done_callback(lambda _: self._resume(stream, requirement))
            return FilterStatus.STOP
        return self._check(stream, requirement)

    def _resume(self, stream: Any, requirement: Any) -> None:
        if stream.done:
            return
        if self._check(stream, requirement) is FilterStatus.CONTINUE:
            stream.continue_request()

    def _check(self, stream: Any, requirement: Any) -> FilterStatus:
        head = stream.request
        verified: dict[str, Any] = {}
        try:
            requirement(head, verified, [])
        except Failure as exc:
            realm = f'Bearer realm="{head.scheme or "http"}://{head.authority}{head.path.partition("?")[0]}"'
            challenge = realm if exc.missing else f'{realm}, error="invalid_token"'
            stream.send_local_reply(exc.status, str(exc),
                                    [("www-authenticate", challenge)])
            return FilterStatus.STOP
        for name, (claims, where) in verified.items():
            self._forward(stream, self.checks[name].provider, claims, where)
        return FilterStatus.CONTINUE

    def _forward(self, stream: Any, provider: Provider, claims: dict[str, Any],
                 where: str | None) -> None:
        headers = stream.request.headers
        if provider.payload_in_metadata:
            metadata = stream.dynamic_metadata
            if metadata is None:
                metadata = stream.dynamic_metadata = {}
            metadata.setdefault(METADATA_NAMESPACE, {})[provider.payload_in_metadata] = claims
        for c in provider.claim_to_headers:
            value = claims.get(c.claim_name)
            if value is not None:
                headers.set(c.header_name.lower(), value if isinstance(value, str)
                            else json.dumps(value, separators=(",", ":")))
        if provider.forward_payload_header:
            payload = base64.urlsafe_b64encode(
                json.dumps(claims, separators=(",", ":")).encode()).decode()
            headers.set(provider.forward_payload_header.lower(),
                        payload if provider.pad_forward_payload_header else payload.rstrip("="))
        if not provider.forward and where is not None:
            headers.remove(where)


def _rule_test(match: RuleMatch) -> Callable[[Any], bool]:
    tests: list[Callable[[Any], bool]] = []
    if match.prefix is not None:
        prefix = match.prefix
        tests.append(lambda h: h.path.startswith(prefix))
    if match.path is not None:
        exact = match.path
        tests.append(lambda h: h.path.partition("?")[0] == exact)
    if match.safe_regex is not None:
        pattern = re.compile(match.safe_regex.regex)
        tests.append(lambda h: pattern.fullmatch(h.path.partition("?")[0]) is not None)
    for header in match.headers:
        test = header.compile()
        tests.append(lambda h, t=test: t(h.headers))
    return lambda head: all(t(head) for t in tests)


def build(config: JwtAuthnConfig, context: BuildContext) -> Callable[[], StreamFilter]:
    flt = JwtAuthn(config, context)
    return lambda: flt
