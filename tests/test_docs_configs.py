"""The config snippets of docs/l7.md, docs/upgrade.md and of the Timeouts section of
docs/operations.md, loaded as written: each is a whole config that validates with no
error and no ignored key."""

from __future__ import annotations

import re

import pytest
import yaml

from conftest import ROOT
from mosn.config.loader import validate

_YAML_BLOCK = re.compile(r"```yaml\n(.*?)```", re.S)


def section(text: str, heading: str) -> str:
    """The text under ``heading`` up to the next heading of the same level."""
    start = text.index(heading)
    level = heading.split(" ", 1)[0] + " "
    end = text.find("\n" + level, start + len(heading))
    return text[start:end if end != -1 else len(text)]


def snippets() -> list[tuple[str, str]]:
    l7 = (ROOT / "docs" / "l7.md").read_text()
    operations = (ROOT / "docs" / "operations.md").read_text()
    found = [("l7.md", block) for block in _YAML_BLOCK.findall(l7)]
    upgrade = (ROOT / "docs" / "upgrade.md").read_text()
    found += [("upgrade.md", block) for block in _YAML_BLOCK.findall(upgrade)]
    found += [("operations.md#timeouts", block)
              for block in _YAML_BLOCK.findall(section(operations, "## Timeouts"))]
    return found


SNIPPETS = snippets()


def test_there_are_snippets():
    assert len(SNIPPETS) >= 4


@pytest.mark.parametrize("where, block", SNIPPETS, ids=[f"{w}[{i}]" for i, (w, _) in
                                                         enumerate(SNIPPETS)])
def test_snippet_is_a_valid_config(where, block):
    loaded = validate(yaml.safe_load(block))
    assert loaded.warnings == []
