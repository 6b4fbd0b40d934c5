"""The plugin author's kit can fail: codecs each broken in one way fail the
conformance suite in the test that covers that way (run by pytest in a subprocess,
as a plugin author would run it), and the intact codec passes every test. Also the
kit's pytest fixtures (``start_mosn``, ``mock_rpc_server``), loaded through the
``pytest11`` entry point."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from conftest import ROOT
from mosn.testing import pip_install_target

MINIRPC = ROOT / "tests" / "plugins" / "minirpc"

BROKEN_CODECS = '''
import socket  # noqa: F401 -- the defect of IoCodec's module
import struct

from mosn.rpc import Frame, FrameError, FrameKind
from mosn.stream.types import MatchResult
from mosn_minirpc.codec import HEADER, MiniRpcCodec, encode


class IoCodec(MiniRpcCodec):
    """Its module imports socket."""


def _plain(cls):
    cls.__module__ = "mosn_minirpc.codec"  # judged by the intact codec's module
    return cls


@_plain
class EatsPartialFrames(MiniRpcCodec):
    def decode(self, buffer):
        if len(buffer) >= HEADER.size:
            service_length, body_length = struct.unpack_from(">HI", buffer, 8)
            if len(buffer) < HEADER.size + service_length + body_length:
                del buffer[:1]  # the defect: a byte of a partial frame is gone
                return None
        return super().decode(buffer)


@_plain
class PatchesTheWrongBytes(MiniRpcCodec):
    def set_request_id(self, data, request_id):
        struct.pack_into(">I", data, 3, request_id)


@_plain
class CrashesOnGarbage(MiniRpcCodec):
    def decode(self, buffer):
        if len(buffer) >= 2 and buffer[:2] != b"MR":
            raise ValueError("not mine")
        return super().decode(buffer)


@_plain
class ForgetsTheIdInErrors(MiniRpcCodec):
    def error_reply(self, request, status, message):
        return encode(FrameKind.RESPONSE, 0, request.headers.get("service", ""), b"", status)


@_plain
class ShortIds(MiniRpcCodec):
    def set_request_id(self, data, request_id):
        struct.pack_into(">I", data, 4, request_id & 0xFFFF)


@_plain
class ClaimsEverything(MiniRpcCodec):
    def match(self, data):
        return MatchResult.MATCH


@_plain
class AnswersHeartbeatsWithIdZero(MiniRpcCodec):
    def heartbeat_reply(self, heartbeat):
        return encode(FrameKind.HEARTBEAT_REPLY, 0)


@_plain
class ErrorsReadAsSuccess(MiniRpcCodec):
    def http_status(self, status):
        return 200
'''

TESTS = '''
import pytest

from mosn.rpc import FrameKind
from mosn.testing import CodecConformance
from mosn_minirpc.codec import MiniRpcCodec, encode
import broken_codecs as broken


class Base(CodecConformance):
    service = "echo"
    fuzz_examples = 100

    @pytest.fixture
    def heartbeat(self):
        return encode(FrameKind.HEARTBEAT, 9)


def suite(codec_class):
    class Suite(Base):
        @pytest.fixture
        def codec(self):
            return codec_class()
    return Suite


TestIntact = suite(MiniRpcCodec)
TestIoCodec = suite(broken.IoCodec)
TestEatsPartialFrames = suite(broken.EatsPartialFrames)
TestPatchesTheWrongBytes = suite(broken.PatchesTheWrongBytes)
TestCrashesOnGarbage = suite(broken.CrashesOnGarbage)
TestForgetsTheIdInErrors = suite(broken.ForgetsTheIdInErrors)
TestShortIds = suite(broken.ShortIds)
TestClaimsEverything = suite(broken.ClaimsEverything)
TestAnswersHeartbeatsWithIdZero = suite(broken.AnswersHeartbeatsWithIdZero)
TestErrorsReadAsSuccess = suite(broken.ErrorsReadAsSuccess)
'''

OWN_TEST = {
    "TestIoCodec": "test_codec_module_is_sans_io",
    "TestEatsPartialFrames": "test_split_at_every_byte",
    "TestPatchesTheWrongBytes": "test_set_request_id_patches_only_the_id",
    "TestCrashesOnGarbage": "test_fuzz_arbitrary_bytes",
    "TestForgetsTheIdInErrors": "test_error_replies",
    "TestShortIds": "test_request_ids_up_to_the_maximum",
    "TestClaimsEverything": "test_does_not_match_http",
    "TestAnswersHeartbeatsWithIdZero": "test_heartbeat_reply",
    "TestErrorsReadAsSuccess": "test_error_replies",
}
"""The conformance test that covers each defect (a defect may show in others too:
the fuzzers find many)."""


def run_pytest(directory: Path, *args: str, pythonpath: str = "") -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": pythonpath}
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
                          cwd=directory, env=env, capture_output=True, text=True, timeout=600)


def outcomes(junit: Path) -> dict[str, dict[str, str]]:
    """class name -> test name -> passed / failed / skipped / error."""
    result: dict[str, dict[str, str]] = {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        cls = case.get("classname", "").rsplit(".", 1)[-1]
        outcome = "passed"
        for tag in ("failure", "error", "skipped"):
            if case.find(tag) is not None:
                outcome = {"failure": "failed"}.get(tag, tag)
        result.setdefault(cls, {})[case.get("name", "")] = outcome
    return result


@pytest.fixture(scope="module")
def broken_run(tmp_path_factory) -> dict[str, dict[str, str]]:
    work = tmp_path_factory.mktemp("broken")
    (work / "broken_codecs.py").write_text(textwrap.dedent(BROKEN_CODECS))
    (work / "test_broken.py").write_text(textwrap.dedent(TESTS))
    proc = run_pytest(work, "-q", "--junitxml", str(work / "junit.xml"),
                      pythonpath=f"{work}:{MINIRPC}")
    assert proc.returncode == 1, proc.stdout + proc.stderr  # 1: tests failed (not a crash)
    assert "failed" in proc.stdout
    return outcomes(work / "junit.xml")


def test_the_intact_codec_passes_every_test(broken_run) -> None:
    assert broken_run["TestIntact"]
    assert set(broken_run["TestIntact"].values()) == {"passed"}


@pytest.mark.parametrize("suite", sorted(OWN_TEST))
def test_a_broken_codec_fails_its_test(broken_run, suite: str) -> None:
    failed = {name for name, outcome in broken_run[suite].items() if outcome == "failed"}
    assert OWN_TEST[suite] in failed, f"{suite} failed only {sorted(failed)}"


FIXTURE_TESTS = '''
import sys

from mosn.rpc import FrameKind
from mosn.testing import call, rpc_proxy_config
from mosn_minirpc.codec import MiniRpcCodec


def test_mosn_between_a_client_and_a_mock_server(start_mosn, mock_rpc_server):
    from mosn.testing import free_port

    backend = mock_rpc_server(MiniRpcCodec(), response_bytes=5)
    port = free_port()
    mosn = start_mosn(rpc_proxy_config(port, "minirpc", [backend.address], service="^echo$"))
    results = call(MiniRpcCodec(), port, service="echo", count=3)
    assert [r.ok for r in results] == [True, True, True]
    assert all(len(r.frame.data) == 14 + len("echo") + 5 for r in results)
    assert mosn.admin("/ready").status_code == 200
    no_route = call(MiniRpcCodec(), port, service="nope")[0]
    assert not no_route.ok and no_route.frame.status == 1  # minirpc's NO_ROUTE
'''


def test_the_fixtures_run_mosn_and_a_mock_server(tmp_path: Path) -> None:
    """A plugin author's test using only the kit's fixtures (no conftest): mosn with
    the minirpc plugin installed, a mock minirpc backend, requests through mosn."""
    site = tmp_path / "site"
    pip_install_target(MINIRPC, site)
    (tmp_path / "test_fixtures.py").write_text(FIXTURE_TESTS)
    proc = run_pytest(tmp_path, "-q", "test_fixtures.py", pythonpath=str(site))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 passed" in proc.stdout
