"""A config file's text as plain data (JSON's types), within bounds.

``yaml.safe_load`` and ``json.loads`` alone let a config file through with three
faults that surface later and far from their cause: aliases that expand a 1 KB
document into hundreds of megabytes once something walks it (YAML's "billion
laughs"), nesting deep enough to end a parser in a ``RecursionError``, and a key
written twice, where the last value silently wins. Here each is refused with its
path in the document (and its lines). A YAML document also keeps to JSON's types,
as MOSN's configs are JSON: a mapping key is a string (``200: x`` has the key
``"200"``), a date stays a string, and a tag of another type (``!!binary``,
``!!set``, ``!!timestamp`` ...) is refused.
"""

from __future__ import annotations

import json
import re
from typing import Any, Iterable

import yaml
from yaml.composer import Composer
from yaml.constructor import SafeConstructor
from yaml.events import MappingStartEvent, SequenceStartEvent
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from yaml.parser import Parser
from yaml.reader import Reader
from yaml.resolver import Resolver
from yaml.scanner import Scanner

MAX_DEPTH = 64
"""Mappings and lists a config may nest, aliases expanded: MOSN's deepest configs
nest about 15; the parsers recurse at each level and Python stops at 1,000 frames."""
MAX_ALIAS_NODES = 100_000
"""Nodes a YAML document may gain by expanding its aliases: room for an anchored
block reused in thousands of places, while a 1 KB "billion laughs" document gains
hundreds of millions (and every later walk of it, such as a config dump, pays)."""

_TAG = "tag:yaml.org,2002:"
STR_TAG, MERGE_TAG = _TAG + "str", _TAG + "merge"
ALLOWED_TAGS = frozenset(_TAG + name for name in (
    "str", "int", "float", "bool", "null", "map", "seq", "merge"))
"""JSON's types (and the ``<<`` merge key); anything else has no JSON form."""
_JSON_TOKEN = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[{}\[\],:]|"')
"""The tokens of JSON that give it structure (numbers and literals are skipped); a
lone quote is a string that never ends."""


class DocumentError(Exception):
    """The document was refused; ``errors`` holds one ``path: reason`` line each."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("\n".join(errors))
        self.errors = errors


def join_path(parts: Iterable[Any]) -> str:
    """``servers[0].listeners[1].address`` from ``("servers", 0, "listeners", 1, "address")``."""
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _where(parts: list[Any]) -> str:
    return join_path(parts) or "(the top level)"


def _twice(first: int, again: int) -> str:
    return f"duplicate key (lines {first} and {again})" if first != again else \
        f"duplicate key (twice on line {first})"


# -- YAML ------------------------------------------------------------------------------


class _PyParser(Reader, Scanner, Parser):
    """PyYAML's own scanner and parser, in pure Python."""

    def __init__(self, text: str) -> None:
        Reader.__init__(self, text)
        Scanner.__init__(self)
        Parser.__init__(self)


class _Loader(Composer, SafeConstructor, Resolver):
    """PyYAML's safe loader with the depth bounded while composing (its composer
    recurses per level) and dates left as strings (YAML 1.2's core schema, JSON's).
    The composer is PyYAML's Python one in front of either parser (:data:`PARSERS`),
    so the bound holds whichever reads the text."""

    yaml_implicit_resolvers = {
        first: [(tag, regexp) for tag, regexp in resolvers if tag != _TAG + "timestamp"]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}

    parser: Any = None
    """The parser class a subclass reads events with."""

    def __init__(self, text: str) -> None:
        self.parser.__init__(self, text)
        Composer.__init__(self)
        SafeConstructor.__init__(self)
        Resolver.__init__(self)
        self.path: list[Any] = []

    def compose_node(self, parent: Node | None, index: Any) -> Node:
        if parent is not None:
            self.path.append(index if isinstance(index, int)
                             else index.value if isinstance(index, ScalarNode) else "(key)")
        try:
            if len(self.path) >= MAX_DEPTH and (self.check_event(MappingStartEvent)
                                                or self.check_event(SequenceStartEvent)):
                line = self.peek_event().start_mark.line + 1
                raise DocumentError([f"{_where(self.path)}: nested deeper than {MAX_DEPTH} "
                                     f"levels (line {line})"])
            return super().compose_node(parent, index)
        finally:
            if parent is not None:
                self.path.pop()


PARSERS: dict[str, type[_Loader]] = {
    "python": type("_PyLoader", (_Loader, _PyParser), {"parser": _PyParser}),
}
"""Loaders by parser: PyYAML's own, and libyaml's (about ten times faster) where
PyYAML was built with it, which is then the one used."""
if yaml.__with_libyaml__:
    from yaml.cyaml import CParser

    PARSERS["libyaml"] = type("_CLoader", (_Loader, CParser), {"parser": CParser})
DEFAULT_PARSER = "libyaml" if "libyaml" in PARSERS else "python"


class _Walk:
    """One pass over the composed node graph, before anything is constructed: alias
    expansion and depth bounded, keys made strings, duplicate keys and foreign tags
    found. Each node's expanded size and height are computed once, so the pass costs
    the document's own size however far its aliases would expand."""

    def __init__(self) -> None:
        self.measured: dict[int, tuple[int, int]] = {}
        self.open: set[int] = set()
        self.gained = 0
        self.errors: list[str] = []

    def visit(self, node: Node, path: list[Any]) -> tuple[int, int]:
        """(expanded nodes, expanded height) of ``node`` met at ``path``."""
        key = id(node)
        if key in self.open:
            raise DocumentError([f"{_where(path)}: an alias refers to a node that holds "
                                 f"it (line {node.start_mark.line + 1}): a cycle"])
        if key in self.measured:  # an alias: the node again, expanded here
            size, height = self.measured[key]
            self.gained += size
            if self.gained > MAX_ALIAS_NODES:
                raise DocumentError([f"{_where(path)}: aliases expand the document by more "
                                     f"than {MAX_ALIAS_NODES} nodes (anchor at line "
                                     f"{node.start_mark.line + 1})"])
            if len(path) + height > MAX_DEPTH:
                raise DocumentError([f"{_where(path)}: nested deeper than {MAX_DEPTH} levels "
                                     f"once the alias (anchor at line "
                                     f"{node.start_mark.line + 1}) is expanded"])
            return size, height
        if node.tag not in ALLOWED_TAGS:
            self.errors.append(f"{_where(path)}: the YAML type {node.tag.replace(_TAG, '!!')} "
                               f"has no JSON form (line {node.start_mark.line + 1})")
        self.open.add(key)
        size, height = 1, 0
        if isinstance(node, SequenceNode):
            for i, item in enumerate(node.value):
                s, h = self.visit(item, path + [i])
                size, height = size + s, max(height, h + 1)
        elif isinstance(node, MappingNode):
            s, h = self._mapping(node, path)
            size, height = size + s, max(height, h + 1)
        self.open.discard(key)
        self.measured[key] = (size, height)
        return size, height

    def _mapping(self, node: MappingNode, path: list[Any]) -> tuple[int, int]:
        size, height, seen = 0, 0, {}
        for i, (key, value) in enumerate(node.value):
            if key.tag == MERGE_TAG:
                name: Any = "<<"
            elif isinstance(key, ScalarNode):
                name = key.value
                if key.tag != STR_TAG:  # a key is a string, as in JSON
                    node.value[i] = (ScalarNode(STR_TAG, name, key.start_mark, key.end_mark,
                                                key.style), value)
                line = key.start_mark.line + 1
                if name in seen:
                    self.errors.append(f"{_where(path + [name])}: {_twice(seen[name], line)}")
                seen.setdefault(name, line)
            else:
                self.errors.append(f"{_where(path)}: a mapping key must be a string, not a "
                                   f"{'list' if isinstance(key, SequenceNode) else 'mapping'} "
                                   f"(line {key.start_mark.line + 1})")
                name = "(key)"
            s, h = self.visit(value, path + [name])
            size, height = size + s + 1, max(height, h)
        return size, height


def parse_yaml(text: str, parser: str = DEFAULT_PARSER) -> Any:
    """The YAML document in ``text`` as plain data; raise :class:`DocumentError` for
    the faults above and ``yaml.YAMLError`` for text that is not YAML. ``parser``
    names one of :data:`PARSERS`."""
    loader = PARSERS[parser](text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        walk = _Walk()
        walk.visit(node, [])
        if walk.errors:
            raise DocumentError(walk.errors)
        return loader.construct_document(node)
    finally:
        loader.dispose()


# -- JSON ------------------------------------------------------------------------------


class _Frame:
    __slots__ = ("keys", "key", "index")

    def __init__(self, is_object: bool) -> None:
        self.keys: dict[str, int] | None = {} if is_object else None
        self.key: Any = None
        """The key whose value comes next (an object), or None before it is read."""
        self.index = 0
        """The position of the next item (a list)."""


def _json_path(stack: list[_Frame]) -> list[Any]:
    return [f.index if f.keys is None else f.key for f in stack]


def check_json(text: str) -> list[str]:
    """Duplicate keys in the JSON ``text`` (one line each); raise
    :class:`DocumentError` if it nests deeper than :data:`MAX_DEPTH`. Text that is
    not JSON is left to ``json.loads`` to describe."""
    stack: list[_Frame] = []
    errors = []
    line, counted = 1, 0  # lines counted up to the offset `counted`
    for token in _JSON_TOKEN.finditer(text):
        t = token.group()
        top = stack[-1] if stack else None
        if t in "{[":
            if len(stack) >= MAX_DEPTH:
                line += text.count("\n", counted, token.start())
                raise DocumentError([f"{_where(_json_path(stack))}: nested deeper than "
                                     f"{MAX_DEPTH} levels (line {line})"])
            stack.append(_Frame(t == "{"))
        elif t in "}]":
            if not stack:
                break
            stack.pop()
        elif t == '"':
            break  # not JSON: json.loads says where
        elif top is None or t == ":":
            continue
        elif t == ",":
            if top.keys is None:
                top.index += 1
            else:
                top.key = None
        elif top.keys is not None and top.key is None:
            try:
                top.key = json.loads(t)
            except ValueError:
                break
            line += text.count("\n", counted, token.start())
            counted = token.start()
            if top.key in top.keys:
                errors.append(f"{_where(_json_path(stack))}: {_twice(top.keys[top.key], line)}")
            top.keys.setdefault(top.key, line)
    return errors
