"""The ``jwt_authn`` filter in a real mosn: tokens signed here (pyjwt, cryptography)
sent by curl; keys from a file, inline, or served over HTTP by a JWKS server the
test runs (and counts fetches of); claims forwarded to the backend and read by RBAC."""

from __future__ import annotations

import json
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterator

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from mosn.config import ConfigError, validate
from mosn.testing import free_port
from policy_peers import HeadersEcho, curl, serve

ISSUER = "https://issuer.example"


def jwks(*keys: tuple[str, Any]) -> dict[str, Any]:
    out = []
    for kid, key in keys:
        algorithm = jwt.algorithms.RSAAlgorithm if isinstance(key, rsa.RSAPrivateKey) \
            else jwt.algorithms.ECAlgorithm
        jwk = json.loads(algorithm.to_jwk(key.public_key()))
        jwk.update(kid=kid, use="sig")
        out.append(jwk)
    return {"keys": out}


@pytest.fixture(scope="module")
def keys() -> dict[str, Any]:
    return {"rsa": rsa.generate_private_key(public_exponent=65537, key_size=2048),
            "ec": ec.generate_private_key(ec.SECP256R1()),
            "stranger": rsa.generate_private_key(public_exponent=65537, key_size=2048)}


def token(key: Any, kid: str, **claims: Any) -> str:
    body = {"iss": ISSUER, "sub": "alice", "aud": "api", "exp": int(time.time()) + 600, **claims}
    alg = "RS256" if isinstance(key, rsa.RSAPrivateKey) else "ES256"
    return jwt.encode(body, key, algorithm=alg, headers={"kid": kid})


class JwksServer(ThreadingHTTPServer):
    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document
        self.fetches = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.fetches += 1
                body = json.dumps(outer.document).encode()
                self.send_response(200)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)


@pytest.fixture(scope="module")
def echo() -> Iterator[int]:
    yield from serve(ThreadingHTTPServer(("127.0.0.1", 0), HeadersEcho))


def mosn_config(port: int, echo: int, jwt_config: dict[str, Any], *,
                extra_filters: list[dict[str, Any]] = (), clusters: list[dict[str, Any]] = (),
                routes: list[dict[str, Any]] = ()) -> dict[str, Any]:
    return {
        "servers": [{"graceful_timeout": "1s",
                     "routers": [{"router_config_name": "main", "virtual_hosts": [{
                         "name": "all", "domains": ["*"], "routers": [
                             *routes, {"match": {"prefix": "/"},
                                       "route": {"cluster_name": "up"}}]}]}],
                     "listeners": [{"name": "http", "address": f"127.0.0.1:{port}",
                                    "stream_filters": [{"type": "jwt_authn",
                                                        "config": jwt_config},
                                                       *extra_filters],
                                    "filter_chains": [{"filters": [{"type": "proxy", "config": {
                                        "downstream_protocol": "Http1",
                                        "router_config_name": "main"}}]}]}]}],
        "cluster_manager": {"clusters": [
            {"name": "up", "hosts": [{"address": f"127.0.0.1:{echo}"}]}, *clusters]},
    }


def provider(jwks_source: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"issuer": ISSUER, "audiences": ["api"], **jwks_source, **extra}


def require_all_paths(name: str = "main") -> list[dict[str, Any]]:
    return [{"match": {"prefix": "/public"}},
            {"match": {"prefix": "/"}, "requires": {"provider_name": name}}]


def bearer(t: str) -> str:
    return f"Authorization: Bearer {t}"


def test_local_jwks_file_verifies_and_forwards_claims(start_mosn, echo, keys, tmp_path) -> None:
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(jwks(("k1", keys["rsa"]), ("k2", keys["ec"]))))
    port = free_port()
    start_mosn(mosn_config(port, echo, {"providers": {"main": provider(
        {"local_jwks": {"filename": str(path)}},
        claim_to_headers=[{"header_name": "x-sub", "claim_name": "sub"}],
        forward_payload_header="x-jwt-payload")}, "rules": require_all_paths()}))
    status, _, body = curl(port, "/api", bearer(token(keys["ec"], "k2")))
    assert status == 200
    seen = json.loads(body)
    assert seen["x-sub"] == "alice"
    assert "authorization" not in seen  # forward: false
    payload = json.loads(__import__("base64").urlsafe_b64decode(seen["x-jwt-payload"] + "=="))
    assert payload["iss"] == ISSUER
    assert curl(port, "/public/x")[0] == 200


def test_failures_get_401_with_www_authenticate(start_mosn, echo, keys) -> None:
    port = free_port()
    start_mosn(mosn_config(port, echo, {"providers": {"main": provider(
        {"local_jwks": {"inline_string": json.dumps(jwks(("k1", keys["rsa"])))}})},
        "rules": require_all_paths()}))
    status, head, body = curl(port, "/api")
    assert (status, body) == (401, "Jwt is missing")
    assert 'www-authenticate: bearer realm="http://127.0.0.1' in head
    status, head, body = curl(port, "/api", bearer(token(keys["stranger"], "k1")))
    assert (status, body) == (401, "Jwt verification fails")
    assert 'error="invalid_token"' in head
    expired = token(keys["rsa"], "k1", exp=int(time.time()) - 3600)
    assert curl(port, "/api", bearer(expired))[2] == "Jwt is expired"
    wrong_issuer = token(keys["rsa"], "k1", iss="https://elsewhere")
    assert curl(port, "/api", bearer(wrong_issuer))[0] == 401
    wrong_audience = token(keys["rsa"], "k1", aud="other")
    assert curl(port, "/api", bearer(wrong_audience))[:3:2] == (403,
                                                                "Audiences in Jwt are not allowed")
    assert curl(port, "/api", bearer("not.a.token"))[0] == 401


def test_remote_jwks_is_fetched_once_and_cached(start_mosn, echo, keys) -> None:
    server = JwksServer(jwks(("k1", keys["rsa"])))
    for jwks_port in serve(server):
        port = free_port()
        start_mosn(mosn_config(port, echo, {"providers": {"main": provider({"remote_jwks": {
            "http_uri": {"uri": f"http://jwks.local:{jwks_port}/keys", "cluster": "jwks",
                         "timeout": "2s"},
            "cache_duration": "600s"}})}, "rules": require_all_paths()},
            clusters=[{"name": "jwks", "hosts": [{"address": f"127.0.0.1:{jwks_port}"}]}]))
        good = bearer(token(keys["rsa"], "k1"))
        assert [curl(port, "/api", good)[0] for _ in range(3)] == [200, 200, 200]
        assert server.fetches == 1


def test_requires_any_and_allow_missing(start_mosn, echo, keys) -> None:
    port = free_port()
    start_mosn(mosn_config(port, echo, {"providers": {
        "main": provider({"local_jwks": {"inline_string": json.dumps(jwks(("k1", keys["rsa"])))}}),
        "partner": provider({"local_jwks": {"inline_string": json.dumps(jwks(("p1", keys["ec"])))}},
                            from_headers=[{"name": "x-partner-token"}])},
        "rules": [{"match": {"prefix": "/"}, "requires": {"requires_any": {"requirements": [
            {"provider_name": "main"}, {"provider_name": "partner"},
            {"allow_missing": {}}]}}}]}))
    assert curl(port, "/a")[0] == 200  # no token at all: allowed
    assert curl(port, "/a", f"x-partner-token: {token(keys['ec'], 'p1')}")[0] == 200
    assert curl(port, "/a", bearer(token(keys["stranger"], "k1")))[0] == 401  # a bad one is not


def test_a_route_turns_it_off_or_names_a_requirement(start_mosn, echo, keys) -> None:
    port = free_port()
    routes = [{"match": {"prefix": "/open"}, "route": {"cluster_name": "up"},
               "per_filter_config": {"jwt_authn": {"disabled": True}}},
              {"match": {"prefix": "/strict"}, "route": {"cluster_name": "up"},
               "per_filter_config": {"jwt_authn": {"requirement_name": "main"}}}]
    start_mosn(mosn_config(port, echo, {
        "providers": {"main": provider({"local_jwks": {
            "inline_string": json.dumps(jwks(("k1", keys["rsa"])))}})},
        "requirement_map": {"main": {"provider_name": "main"}},
        "rules": [{"match": {"prefix": "/"}, "requires": {"provider_name": "main"}}]},
        routes=routes))
    assert curl(port, "/open")[0] == 200
    assert curl(port, "/strict")[0] == 401
    assert curl(port, "/strict", bearer(token(keys["rsa"], "k1")))[0] == 200


def test_rbac_reads_the_verified_claims(start_mosn, echo, keys) -> None:
    port = free_port()
    rbac = {"type": "rbac", "config": {"rules": {"action": "ALLOW", "policies": {"admins": {
        "permissions": [{"any": True}],
        "principals": [{"metadata": {"filter": "envoy.filters.http.jwt_authn",
                                     "path": [{"key": "payload"}, {"key": "role"}],
                                     "value": {"string_match": {"exact": "admin"}}}}]}}}}}
    start_mosn(mosn_config(port, echo, {"providers": {"main": provider(
        {"local_jwks": {"inline_string": json.dumps(jwks(("k1", keys["rsa"])))}},
        payload_in_metadata="payload")}, "rules": require_all_paths()}, extra_filters=[rbac]))
    assert curl(port, "/x", bearer(token(keys["rsa"], "k1", role="admin")))[0] == 200
    assert curl(port, "/x", bearer(token(keys["rsa"], "k1", role="user")))[0] == 403


def test_bad_configs_are_refused() -> None:
    config = mosn_config(1, 2, {"providers": {"main": {"issuer": ISSUER}},
                                "rules": require_all_paths("nobody")})
    with pytest.raises(ConfigError) as exc:
        validate(config)
    errors = exc.value.errors
    assert any("providers.main" in e and "local_jwks, remote_jwks" in e for e in errors), errors


SAMPLE = (Path(__file__).resolve().parents[3] / "tests" / "data" / "mosn_samples" / "filter"
          / "jwtauthn" / "config.json")


def test_mosns_jwtauthn_sample_runs(start_mosn, echo, keys) -> None:
    """MOSN's ``filter/jwtauthn`` sample (Envoy's JSON names: ``localJwks``,
    ``requiresAny`` ...): a request without a token passes (``allowMissing``), one
    with a token its key set did not sign is refused."""
    config = json.loads(SAMPLE.read_text())
    port = free_port()
    config["servers"][0]["listeners"][0]["address"] = f"127.0.0.1:{port}"
    config["cluster_manager"]["clusters"][0]["hosts"] = [{"address": f"127.0.0.1:{echo}"}]
    config["admin"]["address"]["socket_address"] = {"address": "127.0.0.1",
                                                    "port_value": free_port()}
    start_mosn(config)
    assert curl(port, "/")[0] == 200
    forged = token(keys["rsa"], "DHFbpoIUqrY8t2zpA2qXfCmr5VO5ZEr4RzHU_-envvQ",
                   iss="testing@secure.istio.io")
    assert curl(port, "/", bearer(forged))[:3:2] == (401, "Jwt verification fails")
