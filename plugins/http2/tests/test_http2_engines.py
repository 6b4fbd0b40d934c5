"""Which HTTP/2 engine runs: the native one wherever it could be built, the pure-Python
one under ``MOSN_NO_EXTENSIONS=1`` or ``extend_config.Http2.engine: python``; and
docs/http2.md's config snippets, loaded as written."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import httpx
import pytest
import yaml

from h2_fixtures import h2_upstream, proxy_config  # noqa: F401 (pytest fixtures)
from mosn.config.loader import validate
from mosn.extensions import NO_EXTENSIONS_VARIABLE
from mosn.testing.process import free_port
from mosn_http2.engine import native_error

ROOT = Path(__file__).resolve().parents[3]
NGHTTP2_HEADER = Path("/usr/include/nghttp2/nghttp2.h")
PYTHON_HEADER = Path(sysconfig.get_paths()["include"]) / "Python.h"
MOSN = Path(sys.executable).parent / "mosn"


@pytest.mark.skipif(os.environ.get(NO_EXTENSIONS_VARIABLE, "") not in ("", "0"),
                    reason="extensions turned off for this run")
@pytest.mark.skipif(not (NGHTTP2_HEADER.exists() and PYTHON_HEADER.exists() and shutil.which("cc")),
                    reason="no C compiler, Python headers or libnghttp2 headers: nothing to build with")
def test_native_engine_is_built_where_it_can_be():
    """scripts/setup installs libnghttp2's headers; installing the plugin then builds
    the native engine. A build that failed quietly fails here."""
    assert native_error() is None


def test_no_extensions_switch_forces_the_python_engine(start_mosn, h2_upstream):
    port = free_port()
    mosn = start_mosn(proxy_config(port, h2_upstream),
                      env={**os.environ, NO_EXTENSIONS_VARIABLE: "1"})
    with httpx.Client(http1=False, http2=True, timeout=10) as client:
        assert client.get(f"http://127.0.0.1:{port}/echo").status_code == 200
    assert "Http2 on the python engine" in mosn.output()


def test_native_engine_asked_for_where_it_cannot_run_is_refused(tmp_path, h2_upstream):
    config = tmp_path / "mosn.yaml"
    config.write_text(yaml.safe_dump(proxy_config(
        free_port(), h2_upstream, extend_config={"Http2": {"engine": "nghttp2"}})))
    done = subprocess.run([str(MOSN), "validate", "-c", str(config)], capture_output=True,
                          text=True, env={**os.environ, NO_EXTENSIONS_VARIABLE: "1"}, timeout=60)
    assert done.returncode == 1
    assert ("filters[0].config.extend_config.Http2.engine: the nghttp2 engine cannot run "
            "here: extensions are turned off (MOSN_NO_EXTENSIONS)") in done.stdout + done.stderr


def test_docs_config_snippets_load():
    """Every YAML block of docs/http2.md (a proxy filter) in a whole config: valid."""
    text = (ROOT / "docs" / "http2.md").read_text()
    snippets = re.findall(r"```yaml\n(.*?)```", text, re.DOTALL)
    assert snippets
    for snippet in snippets:
        filters = yaml.safe_load(snippet)["filters"]
        config = proxy_config(free_port(), free_port())
        chain = config["servers"][0]["listeners"][0]["filter_chains"][0]
        filters[0]["config"].setdefault("router_config_name", "main")
        chain["filters"] = filters
        validate(config)  # raises ConfigError with every error
