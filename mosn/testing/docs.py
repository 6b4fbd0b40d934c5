"""Code blocks of a Markdown page, for tests that load or run what a page shows (so
the page cannot drift from mosn).

A fence's info string is a language and ``name=value`` attributes, which renderers
ignore: ```` ```yaml file=mosn.yaml ```` is YAML to write to ``mosn.yaml``;
```` ```sh exit=1 ```` is a command expected to exit 1. What an attribute means is up
to the test reading the page.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["CodeBlock", "code_blocks"]

FENCE = re.compile(r"^```(\S*)([^\n]*)\n(.*?)^```\s*$", re.MULTILINE | re.DOTALL)


@dataclass(frozen=True)
class CodeBlock:
    language: str
    attrs: dict[str, str] = field(default_factory=dict)
    """``name=value`` pairs of the info string."""
    flags: frozenset[str] = frozenset()
    """Bare words of the info string after the language (``yaml validate``)."""
    text: str = ""


def code_blocks(page: str | Path, start: str | None = None,
                end: str | None = None) -> list[CodeBlock]:
    """The fenced blocks of ``page`` (its text, or a path to read), in order; with
    ``start`` and ``end``, only those between the first occurrences of the two
    markers (``<!-- tutorial: filter -->`` ...)."""
    text = page.read_text() if isinstance(page, Path) else page
    if start is not None:
        text = text[text.index(start) + len(start):]
    if end is not None:
        text = text[:text.index(end)]
    blocks = []
    for m in FENCE.finditer(text):
        words = m.group(2).split()
        attrs = dict(w.split("=", 1) for w in words if "=" in w)
        flags = frozenset(w for w in words if "=" not in w)
        blocks.append(CodeBlock(m.group(1), attrs, flags, m.group(3)))
    return blocks
