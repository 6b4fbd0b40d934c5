"""What the admin API gives away and to whom: secrets redacted wherever it shows config
or host metadata, answers bounded in size and built without holding up the proxy,
state changes by POST only and never from another site's page, a warning when it
listens beyond loopback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterator

import anyio
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import ROOT, free_port, tcp_proxy_config
from test_admin import post
from test_dashboard import CHROMIUM, CHROMIUM_ARGS
from test_tcp_proxy import echo_once
from mosn.admin.redact import REDACTED, Redactor, json_pieces
from mosn.admin.server import MAX_RESPONSE_BYTES, YIELD_BYTES, JsonBody, render
from mosn.config import ConfigError, load, validate
from mosn.testing.process import MosnProcess

SECRETS = {
    "pwd": "hunter2-pwd",
    "access_key": "AKIA-ACCESS-KEY",
    "dsn": "postgres://app:dsn-pass@db/app",
    "X-Internal-Session": "session-cookie-value",
    "X-Corp-Sig": "corp-signature-value",
    "Authorization": "Basic hc-credentials",
    "X-Auth": "route-auth-value",
    "x-otlp-token": "otlp-token-value",
}
"""Each value must not appear in any admin answer (the keys are where they sit)."""


def secret_config(listen_port: int, echo_port: int) -> dict[str, Any]:
    """A tcp_proxy on ``listen_port`` to the echo server, and an HTTP router whose
    config, host metadata, health check and tracing headers hold the secrets."""
    raw = tcp_proxy_config(listen_port, [f"127.0.0.1:{echo_port}"])
    raw["admin"] = {"address": {"socket_address": {"address": "127.0.0.1",
                                                   "port_value": free_port()}},
                    "redact_keys": ["x-corp-sig"]}
    host = raw["cluster_manager"]["clusters"][0]["hosts"][0]
    host["metadata"] = {"zone": "east", "db": {"pwd": SECRETS["pwd"], "dsn": SECRETS["dsn"]},
                        "access_key": SECRETS["access_key"], "X-Corp-Sig": SECRETS["X-Corp-Sig"]}
    raw["cluster_manager"]["clusters"][0]["health_check"] = {
        "protocol": "tcp", "interval": "1h", "check_config": {"headers": [
            {"key": "Authorization", "value": SECRETS["Authorization"]},
            {"key": "x-probe", "value": "probe-visible"}]}}
    raw["servers"][0]["routers"] = [{"router_config_name": "main", "virtual_hosts": [{
        "name": "all", "domains": ["*"], "routers": [{
            "match": {"prefix": "/", "headers": [{"name": "X-Auth",
                                                  "value": SECRETS["X-Auth"]}]},
            "route": {"cluster_name": "backend", "request_headers_to_add": [{"header": {
                "key": "X-Internal-Session", "value": SECRETS["X-Internal-Session"]}}]},
        }]}]}]
    raw["tracing"] = {"config": {"headers": {"x-otlp-token": SECRETS["x-otlp-token"],
                                             "x-tenant": "tenant-visible"}}}
    return raw


DUMPS = ("/config_dump", "/api/v1/config_dump", "/api/v1/config_dump?allclusters",
         "/api/v1/config_dump?cluster=backend", "/api/v1/config_dump?allrouters",
         "/api/v1/config_dump?mosnconfig", "/clusters")


def test_no_admin_answer_shows_a_secret(start_mosn, echo_server):
    mosn = start_mosn(secret_config(free_port(), echo_server))
    for path in DUMPS:
        answer = mosn.admin(path)
        assert answer.status_code == 200, path
        for key, secret in SECRETS.items():
            assert secret not in answer.text, (path, key)
    clusters = mosn.admin("/clusters").json()["clusters"]
    assert clusters[0]["hosts"][0]["metadata"] == {
        "zone": "east", "db": {"pwd": REDACTED, "dsn": REDACTED},
        "access_key": REDACTED, "X-Corp-Sig": REDACTED}
    dump = mosn.admin("/config_dump").json()
    check = dump["cluster_manager"]["clusters"][0]["health_check"]["check_config"]
    assert check["headers"] == [{"key": "Authorization", "value": REDACTED},
                                {"key": "x-probe", "value": "probe-visible"}]
    assert dump["tracing"]["config"]["headers"] == {"x-otlp-token": REDACTED,
                                                    "x-tenant": "tenant-visible"}


@pytest.mark.parametrize("name", [
    "password", "db_password", "passwd", "pwd", "DB_PWD", "passphrase", "client_secret",
    "secretKey", "token", "authToken", "x-auth-token", "credentials", "creds", "dsn",
    "database_dsn", "Authorization", "Proxy-Authorization", "cookie", "Set-Cookie",
    "session", "x-session", "sessionId", "session_id", "jwt", "api_key", "apiKey",
    "X-Api-Key", "access_key", "secret_access_key", "private_key", "privateKey",
    "session_ticket_keys", "auth", "x-auth", "bearer", "signature",
])
def test_secret_names(name):
    assert Redactor().secret(name)


@pytest.mark.parametrize("name", [
    "key", "name", "value", "address", "hostname", "zone", "author", "authority",
    "session_timeout", "password_file", "token_bucket", "token_header", "auth_type",
    "secret_name", "max_tokens_count", "monkey", "keyboard", "key_file", "passthrough",
    "tokenizer_path", "compass",
])
def test_plain_names(name):
    assert not Redactor().secret(name)


def test_numbers_flags_and_empty_values_show():
    assert Redactor().redact({"max_tokens": 100, "token": "", "secret": None,
                              "use_token": True, "password": "x"}) == {
        "max_tokens": 100, "token": "", "secret": None, "use_token": True,
        "password": REDACTED}


def test_pairs_are_redacted_by_the_name_they_carry():
    redact = Redactor().redact
    assert redact({"name": "X-Auth", "value": "v", "regex": False}) == {
        "name": "X-Auth", "value": REDACTED, "regex": False}
    assert redact({"header_name": "cookie", "exact_match": "c=1"}) == {
        "header_name": "cookie", "exact_match": REDACTED}
    assert redact({"name": "token", "value": "q"}) == {"name": "token", "value": REDACTED}
    # a named thing that is not a pair keeps its fields (a cluster "token-service")
    assert redact({"name": "token-service", "type": "SIMPLE"}) == {
        "name": "token-service", "type": "SIMPLE"}


def test_extra_keys_match_as_runs_of_words_whatever_the_spelling():
    redactor = Redactor(["x-corp-sig", "internal_name"])
    for name in ("X-Corp-Sig", "x_corp_sig", "xCorpSig", "x-corp-sig-v2", "old.x.corp.sig"):
        assert redactor.secret(name), name
    assert redactor.secret("internal_name")  # named outright: redacted even ending in name
    assert not redactor.secret("x-corp") and not redactor.secret("corp_sig_x")


def test_extra_keys_are_validated_with_their_path():
    raw = tcp_proxy_config(2045, ["127.0.0.1:8080"])
    raw["admin"] = {"redact_keys": ["ok", "--", ""]}
    with pytest.raises(ConfigError) as info:
        validate(raw)
    assert info.value.errors == [
        "admin.redact_keys[1]: '--' has no letter or digit to match a key by",
        "admin.redact_keys[2]: '' has no letter or digit to match a key by"]


def test_json_pieces_write_what_json_reads():
    value = {"b": [1, 2.5, None, True, {"password": "p"}], "a": {}, "c": [], 3: "int key",
             "u": "\u00e9\u4e2d", "nan": float("nan")}
    text = "".join(json_pieces(value, Redactor()))
    assert text.isascii()
    assert json.loads(text) == {"b": [1, 2.5, None, True, {"password": REDACTED}], "a": {},
                                "c": [], "3": "int key", "u": "\u00e9\u4e2d", "nan": "nan"}


KEYS = st.sampled_from(["password", "name", "key", "value", "X-Api-Key", "token_bucket",
                        "header_name", "session_timeout", "dsn", "zone"]) | st.text(max_size=8)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEYS, inner, max_size=5),
    max_leaves=30)


@settings(max_examples=200, deadline=None)
@given(JSON_VALUES, st.lists(st.text(alphabet="abcxyz-_", min_size=1, max_size=8), max_size=3))
def test_the_writer_redacts_what_the_copy_redacts(value, extra):
    """What the admin API writes (JSON in pieces, judged as written) reads back as the
    redacted copy ``Redactor.redact`` makes: one rule, two ways of applying it."""
    redactor = Redactor(extra)
    assert json.loads("".join(json_pieces(value, redactor))) == redactor.redact(value)


def test_a_large_answer_is_built_between_turns_of_the_event_loop():
    """Writing an answer lets every other task run each ``YIELD_BYTES`` (the proxy's
    connections live on the same loop); without that, a task counting loop turns
    would see none while the answer is written."""
    data = {f"key{i:06d}": "v" * 90 for i in range(30_000)}

    async def main() -> tuple[int, bytes | None]:
        turns, done = 0, False

        async def count_turns() -> None:
            nonlocal turns
            while not done:
                turns += 1
                await anyio.sleep(0)

        async with anyio.create_task_group() as tg:
            tg.start_soon(count_turns)
            await anyio.sleep(0)
            before = turns
            body = await render(JsonBody(data))
            during = turns - before
            done = True
        return during, body

    during, body = anyio.run(main)
    assert body is not None and json.loads(body) == data
    assert len(body) > 40 * YIELD_BYTES
    assert during >= len(body) // YIELD_BYTES - 1


def test_an_answer_over_the_bound_is_refused_not_built():
    async def main() -> bytes | None:
        return await render(JsonBody({"blob": "x" * MAX_RESPONSE_BYTES}))

    assert anyio.run(main) is None
    assert anyio.run(render, b"x" * (MAX_RESPONSE_BYTES + 1)) is None
    assert anyio.run(render, b"x" * MAX_RESPONSE_BYTES) is not None


class JsonMosn(MosnProcess):
    """mosn on a JSON config file (a large one: YAML would take long to write)."""

    def __init__(self, config: dict[str, Any], workdir: Path) -> None:
        self.admin_port = config["admin"]["address"]["socket_address"]["port_value"]
        self.config_path = workdir / f"mosn-{self.admin_port}.json"
        self.config_path.write_text(json.dumps(config))
        self.log_path = workdir / f"mosn-{self.admin_port}.log"
        self.log = open(self.log_path, "w")  # noqa: SIM115 (open while mosn runs)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mosn", "start", "-c", str(self.config_path)],
            stdout=self.log, stderr=subprocess.STDOUT)
        self.wait_ready()


@pytest.fixture
def big_metadata_mosn(tmp_path, echo_server) -> Iterator[tuple[MosnProcess, int]]:
    port = free_port()
    raw = tcp_proxy_config(port, [f"127.0.0.1:{echo_server}"])
    raw["admin"] = {"address": {"socket_address": {"address": "127.0.0.1",
                                                   "port_value": free_port()}}}
    raw["cluster_manager"]["clusters"][0]["hosts"][0]["metadata"] = {
        "blob": "x" * MAX_RESPONSE_BYTES}
    mosn = JsonMosn(raw, tmp_path)
    try:
        yield mosn, port
    finally:
        mosn.stop()


def test_answers_over_the_bound_are_an_error_saying_so(big_metadata_mosn):
    mosn, port = big_metadata_mosn
    for path in ("/clusters", "/config_dump", "/api/v1/config_dump?allclusters"):
        answer = mosn.admin(path, timeout=30)
        assert answer.status_code == 500, path
        assert f"larger than the admin API's limit of {MAX_RESPONSE_BYTES} bytes" in answer.text
    assert mosn.admin("/api/v1/config_dump?alllisteners").json()["proxy"]["name"] == "proxy"
    assert mosn.admin("/ready").status_code == 200
    assert echo_once(port, b"still proxying") == b"still proxying"


# -- state changes: POST only, never from another site -------------------------------

LOG_WAIT = 5.0
"""Seconds mosn's log may take to show a line (it is written as mosn runs)."""


def wait_for_log(mosn: MosnProcess, text: str, count: int = 1) -> int:
    """How often ``text`` is in mosn's log, once it is there ``count`` times or
    ``LOG_WAIT`` has passed."""
    deadline = time.monotonic() + LOG_WAIT
    while (seen := mosn.output().count(text)) < count and time.monotonic() < deadline:
        time.sleep(0.05)
    return seen



def post_with(mosn: MosnProcess, path: str, headers: dict[str, str],
              method: str = "POST") -> int:
    request = urllib.request.Request(mosn.url(path), method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=5) as r:
            return r.status
    except urllib.error.HTTPError as exc:
        return exc.code


@pytest.fixture
def admin_mosn(start_mosn, echo_server) -> MosnProcess:
    return start_mosn(tcp_proxy_config(free_port(), [f"127.0.0.1:{echo_server}"]))


@pytest.mark.parametrize("headers", [
    {"Origin": "https://evil.example"},
    {"Origin": "null"},
    {"Origin": "http://127.0.0.1:1"},  # another port is another origin
    {"Sec-Fetch-Site": "cross-site"},
    {"Sec-Fetch-Site": "same-site"},
    {"Referer": "https://evil.example/page.html"},
])
def test_a_cross_site_post_changes_nothing(admin_mosn, headers):
    mosn = admin_mosn
    for path in ("/healthcheck/fail", "/logging?level=debug"):
        assert post_with(mosn, path, headers) == 403, path
    assert mosn.admin("/ready").status_code == 200
    assert "debug" not in mosn.admin("/logging").text
    assert wait_for_log(mosn, "refused POST /healthcheck/fail from a browser on another site")


def test_posts_from_tools_and_the_admins_own_pages_work(admin_mosn):
    mosn = admin_mosn
    own = f"127.0.0.1:{mosn.admin_port}"
    curl = subprocess.run(["curl", "-s", "-X", "POST", mosn.url("/healthcheck/fail")],
                          capture_output=True, text=True, timeout=10)
    assert curl.stdout == "OK\n"
    assert mosn.admin("/ready").status_code == 503
    assert post(mosn, "/healthcheck/ok").status_code == 200
    assert post_with(mosn, "/healthcheck/fail", {"Origin": f"http://{own}",
                                                 "Sec-Fetch-Site": "same-origin"}) == 200
    assert post_with(mosn, "/healthcheck/ok", {"Referer": f"http://{own}/dashboard"}) == 200
    assert mosn.admin("/ready").status_code == 200


def test_state_changes_take_post_only(admin_mosn):
    mosn = admin_mosn
    for method in ("GET", "HEAD", "PUT", "DELETE"):
        for path in ("/healthcheck/fail", "/healthcheck/ok"):
            assert post_with(mosn, path, {}, method) == 405, (method, path)
    assert post_with(mosn, "/logging?level=debug", {}, "PUT") == 405
    assert mosn.admin("/logging?level=debug").status_code == 200  # a GET only lists
    assert "debug" not in mosn.admin("/logging").text
    assert mosn.admin("/ready").status_code == 200


PAGE_TIMEOUT_MS = 15_000
"""How long a page may take to post its form."""


class Page(BaseHTTPRequestHandler):
    """A page of another site that posts to the admin API, as an attack would."""

    html = b""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("content-type", "text/html")
        self.send_header("content-length", str(len(self.html)))
        self.end_headers()
        self.wfile.write(self.html)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"no {CHROMIUM}")
@pytest.mark.parametrize("site", ["localhost", "127.0.0.1"])
def test_a_real_browser_on_another_site_cannot_fail_ready(admin_mosn, site):
    """Chromium loads a page of another site (``localhost`` is another site than
    ``127.0.0.1``; another port of ``127.0.0.1`` is another origin of the same site)
    whose form and script post to ``/healthcheck/fail``: both are refused. The
    admin's own page (the dashboard) posting the same is obeyed."""
    playwright = pytest.importorskip("playwright.sync_api")
    mosn = admin_mosn
    target = mosn.url("/healthcheck/fail")
    handler = type("Attack", (Page,), {"html": (
        f'<form id="f" method="POST" action="{target}" target="sink"></form>'
        '<iframe name="sink"></iframe>'
        f'<script>fetch("{target}", {{method: "POST", mode: "no-cors"}})'
        '.finally(() => document.getElementById("f").submit());</script>').encode()})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with playwright.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page()
                with page.expect_response(lambda r: r.url == target
                                          and r.request.resource_type == "document",
                                          timeout=PAGE_TIMEOUT_MS) as answer:
                    page.goto(f"http://{site}:{server.server_port}/")
                assert answer.value.status == 403
                assert mosn.admin("/ready").status_code == 200
                # the script's post and the form's
                assert wait_for_log(mosn, "refused POST /healthcheck/fail", 2) == 2
                own = browser.new_page()
                own.goto(mosn.url("/dashboard"))
                status = own.evaluate(f'fetch("{target}", {{method: "POST"}}).then(r => r.status)')
                assert status == 200
                assert mosn.admin("/ready").status_code == 503
            finally:
                browser.close()
    finally:
        server.shutdown()
        server.server_close()


# -- beyond loopback --------------------------------------------------------------------


def exposed_config(tmp_path: Path, echo_port: int, address: str) -> tuple[Path, dict[str, Any]]:
    raw = tcp_proxy_config(free_port(), [f"127.0.0.1:{echo_port}"])
    raw["admin"] = {"address": {"socket_address": {"address": address,
                                                   "port_value": free_port()}}}
    path = tmp_path / f"admin-{address}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path, raw


@pytest.mark.parametrize("address, warned", [
    ("0.0.0.0", True), ("::", True), ("10.1.2.3", True), ("admin.example", True),
    ("127.0.0.1", False), ("127.0.0.2", False), ("::1", False), ("localhost", False),
])
def test_an_admin_beyond_loopback_is_warned_about(tmp_path, address, warned):
    _, raw = exposed_config(tmp_path, 8080, address)
    said = [w for w in validate(raw).warnings
            if w.startswith("admin.address.socket_address.address: the admin API on")]
    assert bool(said) is warned, said


def test_validate_says_so(tmp_path, echo_server):
    path, _ = exposed_config(tmp_path, echo_server, "0.0.0.0")
    out = subprocess.run([sys.executable, "-m", "mosn", "validate", "-c", str(path)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert ": warning: admin.address.socket_address.address: the admin API on 0.0.0.0:" \
        in out.stderr and "is reachable beyond this machine" in out.stderr


def test_start_logs_a_warning_for_an_admin_beyond_loopback(start_mosn, echo_server, tmp_path):
    _, raw = exposed_config(tmp_path, echo_server, "0.0.0.0")
    mosn = start_mosn(raw)
    port = raw["admin"]["address"]["socket_address"]["port_value"]
    assert wait_for_log(mosn, f"the admin API on 0.0.0.0:{port} is reachable beyond this "
                              "machine"), mosn.output()


def yaml_blocks(doc: str, section: str | None = None) -> list[str]:
    """The ```yaml blocks of ``docs/<doc>`` (of one ``## section`` of it)."""
    text = (ROOT / "docs" / doc).read_text()
    if section is not None:
        text = text.split(f"\n## {section}\n", 1)[1].split("\n## ", 1)[0]
    return [b.split("```", 1)[0] for b in text.split("```yaml\n")[1:]]


@pytest.mark.parametrize("doc, section", [
    ("operations.md", "The admin API: what it shows and how to secure it"),
    ("admin.md", None),
    ("config.md", "Limits of the loader"),
])
def test_doc_snippets_load(tmp_path, doc, section):
    """Every config block of these docs (sections) is a config mosn loads."""
    blocks = yaml_blocks(doc, section)
    assert blocks
    for i, block in enumerate(blocks):
        snippet = yaml.safe_load(block)
        if "servers" not in snippet:  # an admin block: a config needs a listener too
            block += yaml.safe_dump({"servers": tcp_proxy_config(2045, ["127.0.0.1:1"],
                                                                 cluster="backend")["servers"]})
            if "cluster_manager" not in snippet:
                block += yaml.safe_dump({"cluster_manager": {"clusters": [
                    {"name": "backend", "hosts": [{"address": "127.0.0.1:1"}]}]}})
        (tmp_path / f"snippet{i}.yaml").write_text(block)
        loaded = load(tmp_path / f"snippet{i}.yaml")
        assert not loaded.warnings, loaded.warnings

