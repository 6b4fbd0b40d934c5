"""Every config in docs/tls.md loads (``mosn validate``'s checks, certificates and all),
with the certificates it names made under ``certs/`` beside it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from conftest import ROOT
from mosn.config import validate
from mosn.testing.certs import CertificateAuthority

DOC = ROOT / "docs" / "tls.md"
BLOCKS = re.findall(r"```yaml\n(.*?)```", DOC.read_text(), re.DOTALL)


@pytest.fixture(scope="module")
def config_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("tlsdocs")
    ca = CertificateAuthority()
    (d / "certs").mkdir()
    (d / "certs" / "ca.crt").write_bytes(ca.cert_pem)
    names = {"server": ["localhost"], "default": ["default.example"],
             "api": ["api.example.com"], "apps": ["*.apps.example.com"], "client": ["client"]}
    for name, dns in names.items():
        issued = ca.issue(dns=dns)
        (d / "certs" / f"{name}.crt").write_bytes(issued.cert_pem)
        (d / "certs" / f"{name}.key").write_bytes(issued.key_pem)
    return d


def test_the_doc_has_configs():
    assert len(BLOCKS) == 5


@pytest.mark.parametrize("block", BLOCKS, ids=[f"config{i}" for i in range(len(BLOCKS))])
def test_doc_config_loads(block: str, config_dir: Path) -> None:
    loaded = validate(yaml.safe_load(block), base_dir=config_dir)
    assert not [w for w in loaded.warnings if "unknown field" in w], loaded.warnings
    assert any(True for _ in loaded.config.listeners())
