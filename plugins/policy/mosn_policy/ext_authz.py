"""The ``ext_authz`` stream filter: external authorization as Envoy's
``envoy.filters.http.ext_authz`` does it, over gRPC (``envoy.service.auth.v3.
Authorization/Check``) or plain HTTP.

Each request is described to the authorization server (method, path, host, headers,
the peer's address and its TLS principal); an allowed request goes on with the
headers the server adds (and without those it removes), a denied one gets the
server's status, headers and body (gRPC callers: the status's gRPC code). A server
that fails or does not answer within the timeout refuses the request with
``status_on_error`` (403 by default) unless ``failure_mode_allow``.
"""

from __future__ import annotations

import asyncio
from typing import Any, Callable, ClassVar, Literal

from envoy.config.core.v3 import address_pb2
from envoy.service.auth.v3 import attribute_context_pb2, external_auth_pb2
from pydantic import Field, model_validator

from mosn.config import Duration, Model, Unsupported
from mosn.filters.common import FilterStats, PerRoute, ProtoModel, StringMatcher, status_code
from mosn.plugins import BuildContext
from mosn.proxy import FilterStatus, Phase, StreamFilter
from mosn_policy.service import GrpcService, Unary, http_call

METHOD = "/envoy.service.auth.v3.Authorization/Check"
DEFAULT_TIMEOUT = 0.2
"""Seconds to wait for the authorization server (Envoy's default, 200 ms)."""
MAX_DENIAL_BYTES = 64 * 1024
"""An HTTP authorization server's answer over this is a failure: a denial page, not a download."""
FORBIDDEN = 403
UNAUTHORIZED_EXTERNAL = "UAEX"
"""Envoy's response flag for a request the external authorization service refused."""
STATS = ("ok", "denied", "error", "failure_mode_allowed")
"""Envoy's ext_authz stats, under ``<stat_prefix>.ext_authz.``."""
GRPC_OK = 0
ALWAYS_SENT = ("authorization", "method", "path", "host")
"""Headers an HTTP authorization server always gets (Envoy's defaults), besides
``allowed_headers``."""


class ServerUri(ProtoModel):
    uri: str = Field(min_length=1)
    cluster: str = Field(min_length=1)
    timeout: Duration = DEFAULT_TIMEOUT


class ListMatcher(ProtoModel):
    patterns: list[StringMatcher] = Field(default_factory=list)

    def compile(self) -> Callable[[str], bool]:
        tests = [p.compile() for p in self.patterns]
        return lambda name: any(t(name) for t in tests)


class HeaderToAdd(ProtoModel):
    key: str = Field(min_length=1)
    value: str = ""


class AuthorizationRequest(ProtoModel):
    allowed_headers: ListMatcher = Field(default_factory=ListMatcher)
    headers_to_add: list[HeaderToAdd] = Field(default_factory=list)


class AuthorizationResponse(ProtoModel):
    allowed_upstream_headers: ListMatcher = Field(default_factory=ListMatcher)
    allowed_client_headers: ListMatcher = Field(default_factory=ListMatcher)
    allowed_upstream_headers_to_append: Unsupported = None
    allowed_client_headers_on_success: Unsupported = None
    dynamic_metadata_from_headers: Unsupported = None


class HttpService(ProtoModel):
    server_uri: ServerUri
    path_prefix: str = ""
    authorization_request: AuthorizationRequest = Field(default_factory=AuthorizationRequest)
    authorization_response: AuthorizationResponse = Field(default_factory=AuthorizationResponse)


class CheckSettings(ProtoModel):
    context_extensions: dict[str, str] = Field(default_factory=dict)
    disable_request_body_buffering: Unsupported = None


class ExtAuthzPerRoute(ProtoModel):
    """Envoy's ``ExtAuthzPerRoute``: ``disabled``, or ``check_settings``."""

    disabled: bool = False
    check_settings: CheckSettings = Field(default_factory=CheckSettings)


class ExtAuthzConfig(ProtoModel):
    per_route: ClassVar[type[Model]] = ExtAuthzPerRoute

    grpc_service: GrpcService | None = None
    http_service: HttpService | None = None
    transport_api_version: Literal["V3", "AUTO"] = "V3"
    failure_mode_allow: bool = False
    failure_mode_allow_header_add: bool = False
    status_on_error: Any = FORBIDDEN
    include_peer_certificate: bool = False
    stat_prefix: str = ""
    with_request_body: Unsupported = None
    clear_route_cache: Unsupported = None
    filter_enabled: Unsupported = None
    deny_at_disable: Unsupported = None
    metadata_context_namespaces: Unsupported = None

    @model_validator(mode="after")
    def _one(self) -> "ExtAuthzConfig":
        if (self.grpc_service is None) == (self.http_service is None):
            raise ValueError("ext_authz needs exactly one of grpc_service, http_service")
        self.status_on_error = status_code(self.status_on_error)
        return self

    def cross_check(self, root: Any, plugins: Any) -> list[tuple[str, str]]:
        if self.grpc_service is not None:
            return [(f"grpc_service.{loc}", msg)
                    for loc, msg in self.grpc_service.cross_check(root, plugins)]
        assert self.http_service is not None
        names = {c.name for c in root.cluster_manager.clusters}
        cluster = self.http_service.server_uri.cluster
        return [] if cluster in names else [("http_service.server_uri.cluster",
                                             f"no cluster named {cluster!r}")]


def _socket_address(address: Any) -> Any:
    if not isinstance(address, tuple):
        return address_pb2.Address()
    return address_pb2.Address(socket_address=address_pb2.SocketAddress(
        address=address[0], port_value=address[1]))


def check_request(stream: Any, context: dict[str, str]) -> Any:
    """Envoy's ``CheckRequest`` for a stream."""
    head = stream.request
    conn = stream.conn
    tls = conn.tls
    principal = tls.peer_uri_san or tls.peer_subject if tls is not None else ""
    http = attribute_context_pb2.AttributeContext.HttpRequest(
        id=head.headers.get("x-request-id") or "", method=head.method or "",
        headers={k: v for k, v in head.headers.items()}, path=head.path, host=head.authority,
        scheme=head.scheme, protocol=stream.protocol)
    return external_auth_pb2.CheckRequest(attributes=attribute_context_pb2.AttributeContext(
        source=attribute_context_pb2.AttributeContext.Peer(
            address=_socket_address(conn.remote_address), principal=principal),
        destination=attribute_context_pb2.AttributeContext.Peer(
            address=_socket_address(conn.local_address)),
        request=attribute_context_pb2.AttributeContext.Request(http=http),
        context_extensions=context))


class ExtAuthz(StreamFilter):
    """Stateless per stream: one per listener."""

    phase = Phase.AFTER_ROUTE

    def __init__(self, config: ExtAuthzConfig, context: BuildContext) -> None:
        self.failure_allows = config.failure_mode_allow
        self.failure_header = config.failure_mode_allow_header_add
        self.status_on_error = config.status_on_error
        self.clusters = context.cluster_manager
        self.grpc = None
        self.http = config.http_service
        if config.grpc_service is not None:
            self.timeout = config.grpc_service.timeout or DEFAULT_TIMEOUT
            self.grpc = Unary(context.cluster_manager, config.grpc_service, METHOD,
                              external_auth_pb2.CheckRequest, external_auth_pb2.CheckResponse)
        else:
            assert self.http is not None
            self.timeout = self.http.server_uri.timeout
            request = self.http.authorization_request
            self.allowed_headers = request.allowed_headers.compile()
            self.headers_to_add = [(h.key.lower(), h.value) for h in request.headers_to_add]
            response = self.http.authorization_response
            self.upstream_headers = response.allowed_upstream_headers.compile()
            self.client_headers = response.allowed_client_headers.compile()
        self.routes: PerRoute[ExtAuthzPerRoute] = PerRoute(
            "ext_authz", ExtAuthzPerRoute, lambda per, _: per, ExtAuthzPerRoute())
        prefix = f"{config.stat_prefix}.ext_authz" if config.stat_prefix else "ext_authz"
        self.count = FilterStats(context.stats, prefix, STATS).count

    def on_request(self, stream: Any) -> FilterStatus:
        per = self.routes.get(stream)
        if per.disabled:
            return FilterStatus.CONTINUE
        if self.grpc is not None:
            request = check_request(stream, per.check_settings.context_extensions)
            self.grpc.call(request, self.timeout,
                           lambda response, error: self._grpc_answer(stream, response, error))
        else:
            task = asyncio.ensure_future(asyncio.wait_for(self._ask_http(stream), self.timeout))
            task.add_done_callback(lambda t: self._http_answer(stream, t))
        return FilterStatus.STOP

    # -- outcomes ---------------------------------------------------------------------------

    def _failed(self, stream: Any) -> None:
        self.count("error")
        if self.failure_allows:
            self.count("failure_mode_allowed")
            if self.failure_header:
                stream.request.headers.set("x-envoy-auth-failure-mode-allowed", "true")
            stream.continue_request()
            return
        stream.response_flags.append(UNAUTHORIZED_EXTERNAL)
        stream.send_local_reply(self.status_on_error, "")

    def _deny(self, stream: Any, status: int, headers: list[tuple[str, str]], body: str) -> None:
        self.count("denied")
        stream.response_flags.append(UNAUTHORIZED_EXTERNAL)
        stream.send_local_reply(status, body, headers)

    def _allow(self, stream: Any, add: list[tuple[str, str, bool]], remove: list[str]) -> None:
        self.count("ok")
        headers = stream.request.headers
        for name in remove:
            headers.remove(name.lower())
        for name, value, append in add:
            if append:
                headers.add(name, value)
            else:
                headers.set(name, value)
        stream.continue_request()

    def _grpc_answer(self, stream: Any, response: Any, error: BaseException | None) -> None:
        if stream.done:
            return
        if error is not None:
            self._failed(stream)
            return
        if response.status.code == GRPC_OK:
            ok = response.ok_response
            add = [(h.header.key.lower(), h.header.value,
                    h.append.value if h.HasField("append") else False) for h in ok.headers]
            self._allow(stream, add, list(ok.headers_to_remove))
            return
        denied = response.denied_response
        status = denied.status.code or FORBIDDEN
        headers = [(h.header.key.lower(), h.header.value) for h in denied.headers]
        self._deny(stream, status, headers, denied.body)

    async def _ask_http(self, stream: Any) -> tuple[int, list[tuple[str, str]], bytes]:
        assert self.http is not None
        head = stream.request
        fields = [(k, v) for k, v in head.headers.items()
                  if k in ALWAYS_SENT or self.allowed_headers(k)]
        fields.append(("host", head.authority))
        fields += self.headers_to_add
        target = self.http.path_prefix + head.path
        return await http_call(self.clusters, self.http.server_uri.cluster, head.method or "GET",
                               target, fields, b"", MAX_DENIAL_BYTES)

    def _http_answer(self, stream: Any, task: Any) -> None:
        if stream.done:
            return
        if task.cancelled() or task.exception() is not None:
            self._failed(stream)
            return
        status, headers, body = task.result()
        if status == 200:
            add = [(k, v, False) for k, v in headers if self.upstream_headers(k)]
            self._allow(stream, add, [])
            return
        passed = [(k, v) for k, v in headers if self.client_headers(k)
                  or k == "www-authenticate"]
        self._deny(stream, status if 200 <= status <= 599 else FORBIDDEN, passed,
                   body.decode("utf-8", "replace"))


def build(config: ExtAuthzConfig, context: BuildContext) -> Callable[[], StreamFilter]:
    flt = ExtAuthz(config, context)
    return lambda: flt
