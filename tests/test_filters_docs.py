"""Every config in docs/filters.md loads as written: a whole config that validates
with no error and no ignored key (the policy plugin installed)."""

from __future__ import annotations

import re

import pytest
import yaml

from conftest import ROOT
from mosn.config.loader import validate

_YAML_BLOCK = re.compile(r"```yaml\n(.*?)```", re.S)
SNIPPETS = _YAML_BLOCK.findall((ROOT / "docs" / "filters.md").read_text())


def test_there_are_snippets() -> None:
    assert len(SNIPPETS) >= 7


@pytest.mark.parametrize("block", SNIPPETS, ids=[f"filters.md[{i}]" for i in range(len(SNIPPETS))])
def test_snippet_is_a_valid_config(block: str) -> None:
    loaded = validate(yaml.safe_load(block))
    assert loaded.warnings == []
