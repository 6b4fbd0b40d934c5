"""The ``ext_authz`` filter in a real mosn: an authorization server written here on
grpcio and xds-protos (``envoy.service.auth.v3``), and one over plain HTTP; curl
as the client, an echo backend that shows the headers it got."""

from __future__ import annotations

import json
import time
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterator

import grpc
import pytest
from envoy.config.core.v3 import base_pb2
from envoy.service.auth.v3 import external_auth_pb2, external_auth_pb2_grpc
from envoy.type.v3 import http_status_pb2
from google.rpc import status_pb2

from mosn.config import ConfigError, validate
from mosn.testing import free_port
from policy_peers import HeadersEcho, curl, serve

SLOW_SECONDS = 2.0
"""How long the slow server takes: past the filter's timeout in these tests."""


class AuthServer(external_auth_pb2_grpc.AuthorizationServicer):
    """Allows requests carrying ``x-token: good`` (adding ``x-user``), denies the
    rest with 401 and a body; ``slow`` delays the answer."""

    def __init__(self) -> None:
        self.checks: list[Any] = []
        self.slow = False

    def Check(self, request: Any, context: Any) -> Any:
        self.checks.append(request)
        if self.slow:
            time.sleep(SLOW_SECONDS)  # the server's own delay, past the filter's timeout
        headers = request.attributes.request.http.headers
        if headers.get("x-token") == "good":
            return external_auth_pb2.CheckResponse(
                status=status_pb2.Status(code=0),
                ok_response=external_auth_pb2.OkHttpResponse(
                    headers=[base_pb2.HeaderValueOption(header=base_pb2.HeaderValue(
                        key="x-user", value="ann"))],
                    headers_to_remove=["x-token"]))
        return external_auth_pb2.CheckResponse(
            status=status_pb2.Status(code=7),
            denied_response=external_auth_pb2.DeniedHttpResponse(
                status=http_status_pb2.HttpStatus(code=http_status_pb2.Unauthorized),
                headers=[base_pb2.HeaderValueOption(header=base_pb2.HeaderValue(
                    key="x-why", value="no token"))],
                body="go away"))


@pytest.fixture
def authz() -> Iterator[tuple[AuthServer, int]]:
    service = AuthServer()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    external_auth_pb2_grpc.add_AuthorizationServicer_to_server(service, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield service, port
    server.stop(0)


class HttpAuth(BaseHTTPRequestHandler):
    """An HTTP authorization server: 200 with ``x-user`` for ``x-token: good``,
    else 403 with ``x-why``."""

    def do_GET(self) -> None:
        good = self.headers.get("x-token") == "good" and self.path.startswith("/authz/")
        self.send_response(200 if good else 403)
        self.send_header("x-user" if good else "x-why", "ann" if good else self.path)
        body = b"" if good else b"denied by http"
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def echo() -> Iterator[int]:
    yield from serve(ThreadingHTTPServer(("127.0.0.1", 0), HeadersEcho))


@pytest.fixture(scope="module")
def http_auth() -> Iterator[int]:
    yield from serve(ThreadingHTTPServer(("127.0.0.1", 0), HttpAuth))


def config(port: int, echo: int, authz_port: int, filter_config: dict[str, Any],
           routes: list[dict[str, Any]] = ()) -> dict[str, Any]:
    return {
        "servers": [{"graceful_timeout": "1s",
                     "routers": [{"router_config_name": "main", "virtual_hosts": [{
                         "name": "all", "domains": ["*"], "routers": [
                             *routes,
                             {"match": {"prefix": "/"}, "route": {"cluster_name": "up"}}]}]}],
                     "listeners": [{"name": "http", "address": f"127.0.0.1:{port}",
                                    "stream_filters": [{"type": "ext_authz",
                                                        "config": filter_config}],
                                    "filter_chains": [{"filters": [{"type": "proxy", "config": {
                                        "downstream_protocol": "Http1",
                                        "router_config_name": "main"}}]}]}]}],
        "cluster_manager": {"clusters": [
            {"name": "up", "hosts": [{"address": f"127.0.0.1:{echo}"}]},
            {"name": "authz", "hosts": [{"address": f"127.0.0.1:{authz_port}"}]}]},
    }


def grpc_filter(**extra: Any) -> dict[str, Any]:
    return {"grpc_service": {"envoy_grpc": {"cluster_name": "authz"}, "timeout": "2s"}, **extra}


def test_grpc_allow_adds_and_removes_headers(start_mosn, echo, authz) -> None:
    service, authz_port = authz
    port = free_port()
    start_mosn(config(port, echo, authz_port, grpc_filter()))
    status, _, body = curl(port, "/orders?id=1", "x-token: good")
    assert status == 200
    seen = json.loads(body)
    assert seen["x-user"] == "ann" and "x-token" not in seen
    http = service.checks[0].attributes.request.http
    assert (http.method, http.path) == ("GET", "/orders?id=1")
    assert service.checks[0].attributes.source.address.socket_address.address == "127.0.0.1"


def test_grpc_denial_is_passed_through(start_mosn, echo, authz) -> None:
    _, authz_port = authz
    port = free_port()
    mosn = start_mosn(config(port, echo, authz_port, grpc_filter()))
    status, head, body = curl(port)
    assert (status, body) == (401, "go away")
    assert "x-why: no token" in head
    assert mosn.wait_stat("ext_authz.denied", 1)["ext_authz.denied"] == 1


def test_a_timeout_refuses_or_fails_open(start_mosn, echo, authz) -> None:
    service, authz_port = authz
    service.slow = True
    closed, open_ = free_port(), free_port()
    start_mosn(config(closed, echo, authz_port, grpc_filter(
        grpc_service={"envoy_grpc": {"cluster_name": "authz"}, "timeout": "100ms"})))
    start_mosn(config(open_, echo, authz_port, grpc_filter(
        grpc_service={"envoy_grpc": {"cluster_name": "authz"}, "timeout": "100ms"},
        failure_mode_allow=True, failure_mode_allow_header_add=True)))
    assert curl(closed)[0] == 403
    status, _, body = curl(open_)
    assert status == 200
    assert json.loads(body)["x-envoy-auth-failure-mode-allowed"] == "true"


def test_a_route_turns_it_off_and_sends_context(start_mosn, echo, authz) -> None:
    service, authz_port = authz
    port = free_port()
    routes = [{"match": {"prefix": "/public"}, "route": {"cluster_name": "up"},
               "per_filter_config": {"ext_authz": {"disabled": True}}},
              {"match": {"prefix": "/team"}, "route": {"cluster_name": "up"},
               "per_filter_config": {"ext_authz": {"check_settings": {
                   "context_extensions": {"team": "blue"}}}}}]
    start_mosn(config(port, echo, authz_port, grpc_filter(), routes))
    assert curl(port, "/public")[0] == 200
    assert service.checks == []
    assert curl(port, "/team", "x-token: good")[0] == 200
    assert dict(service.checks[0].attributes.context_extensions) == {"team": "blue"}


def test_http_service(start_mosn, echo, http_auth) -> None:
    port = free_port()
    start_mosn(config(port, echo, http_auth, {"http_service": {
        "server_uri": {"uri": f"http://127.0.0.1:{http_auth}", "cluster": "authz",
                       "timeout": "2s"},
        "path_prefix": "/authz",
        "authorization_request": {"allowed_headers": {"patterns": [{"exact": "x-token"}]}},
        "authorization_response": {
            "allowed_upstream_headers": {"patterns": [{"exact": "x-user"}]},
            "allowed_client_headers": {"patterns": [{"exact": "x-why"}]}}}}))
    status, _, body = curl(port, "/doc", "x-token: good")
    assert status == 200 and json.loads(body)["x-user"] == "ann"
    status, head, body = curl(port, "/doc", "x-token: bad")
    assert (status, body) == (403, "denied by http")
    assert "x-why: /authz/doc" in head


def test_one_service_is_required() -> None:
    with pytest.raises(ConfigError) as exc:
        validate(config(1, 2, 3, {}))
    assert any("exactly one of grpc_service, http_service" in e for e in exc.value.errors)
