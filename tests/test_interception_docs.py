"""Every config in docs/interception.md loads (``mosn validate``'s checks), with the
certificates it names made under ``certs/`` beside it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from conftest import ROOT
from mosn.config import validate
from mosn.testing.certs import CertificateAuthority

DOC = ROOT / "docs" / "interception.md"
BLOCKS = re.findall(r"```yaml\n(.*?)```", DOC.read_text(), re.DOTALL)


@pytest.fixture(scope="module")
def config_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("interceptiondocs")
    issued = CertificateAuthority().issue(dns=["api.example.com"])
    (d / "certs").mkdir()
    (d / "certs" / "api.crt").write_bytes(issued.cert_pem)
    (d / "certs" / "api.key").write_bytes(issued.key_pem)
    return d


def test_the_doc_has_configs() -> None:
    assert len(BLOCKS) == 6


@pytest.mark.parametrize("block", BLOCKS, ids=[f"config{i}" for i in range(len(BLOCKS))])
def test_doc_config_loads(block: str, config_dir: Path) -> None:
    raw = yaml.safe_load(block)
    if "servers" not in raw:  # a cluster on its own: give it a listener to serve
        raw["servers"] = [{"listeners": [{"address": "127.0.0.1:1", "filter_chains": [
            {"filters": [{"type": "tcp_proxy", "config": {"cluster": "egress_http"}}]}]}]}]
    loaded = validate(raw, base_dir=config_dir)
    assert not [w for w in loaded.warnings if "unknown field" in w], loaded.warnings
