"""Request path normalization before routing, as Envoy's HTTP connection manager does
it (``normalize_path``, ``merge_slashes``, ``path_with_escaped_slashes_action``).

Routing must see the path the upstream will act on: ``/./admin``, ``/x/../admin``,
``//admin``, ``/%61dmin`` and ``/%2Fadmin`` all reach an upstream's ``/admin`` on
most servers, so a rule for ``/admin`` that sees them raw is bypassed. The steps, in
Envoy's order, each on the path without its query (the query is never touched):

1. escaped slashes (``%2F``, ``%5C``, any case): kept, unescaped, the request
   redirected to the unescaped path (307), or refused (400);
2. RFC 3986 normalization (Envoy's, from Chromium's URL canonicalizer): backslashes
   become slashes, dot segments are resolved (``%2e`` counts as a dot), escapes of
   unreserved characters (``A-Z a-z 0-9 - . _ ~``) are decoded, characters a path may
   not hold raw are percent-encoded; a NUL (raw or ``%00``) fails it (400);
3. runs of slashes merged into one.

Pure functions over text (a path's bytes as Latin-1, as the codecs give it).
"""

from __future__ import annotations

import enum
import re

_HEX = "0123456789abcdefABCDEF"
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
"""Characters whose escapes are decoded (RFC 3986 2.3, 6.2.2.2)."""
_KEPT = frozenset("!$&'()*+,/:;=@[]")
"""Characters kept as they are, raw or escaped (Chromium's PASS class)."""
_ESCAPED_SLASHES = {"%2F": "/", "%2f": "/", "%5C": "\\", "%5c": "\\"}
_ESCAPED_SLASH = re.compile("%2[Ff]|%5[Cc]")
_PLAIN = re.compile(r"[A-Za-z0-9\-._~!$&'()*+,/:;=@\[\]]*")
"""A path of these characters alone, with no ``/.`` and no ``//``, is already normal."""
_SLASHES = re.compile("/{2,}")
_PLAIN_TARGET = re.compile(r"/[A-Za-z0-9\-._~!$&'()*+,/:;=@\[\]]*(?:\?.*)?", re.S)
"""The same for a path with its query (the query may hold anything)."""


class EscapedSlashesAction(str, enum.Enum):
    """Envoy's ``path_with_escaped_slashes_action`` values."""

    IMPLEMENTATION_SPECIFIC_DEFAULT = "IMPLEMENTATION_SPECIFIC_DEFAULT"
    """The implementation's default: mosn's is ``UNESCAPE_AND_REDIRECT`` (Envoy's is
    ``KEEP_UNCHANGED``, which lets ``/%2Fadmin`` past a rule for ``/admin`` to an
    upstream that decodes it)."""
    KEEP_UNCHANGED = "KEEP_UNCHANGED"
    REJECT_REQUEST = "REJECT_REQUEST"
    UNESCAPE_AND_REDIRECT = "UNESCAPE_AND_REDIRECT"
    UNESCAPE_AND_FORWARD = "UNESCAPE_AND_FORWARD"


DEFAULT_ESCAPED_SLASHES_ACTION = EscapedSlashesAction.UNESCAPE_AND_REDIRECT
"""mosn's default (Envoy's edge-proxy advice): a path whose meaning depends on how a
server reads ``%2F`` is sent back to the client to ask for the unescaped one."""


class PathAction(enum.Enum):
    CONTINUE = "continue"
    REDIRECT = "redirect"
    """Answer 307 with the normalized path as the Location."""
    REJECT = "reject"
    """Answer 400."""


_CONTINUE = PathAction.CONTINUE


def normalize(path: str, normalize_path: bool, merge: bool,
              escaped_slashes: EscapedSlashesAction) -> tuple[str, PathAction]:
    """The path (query included) as routing and the upstream should see it, and what
    to do with the request. Only an origin-form path (starting with ``/``) is changed;
    ``*`` (``OPTIONS *``) passes; any other form is refused (an HTTP/2 ``:path`` must be
    one of these two, RFC 9113 8.3.1; HTTP/1 has turned an absolute-form one into
    origin-form already)."""
    if _PLAIN_TARGET.fullmatch(path) is not None and "/." not in path and "//" not in path:
        return path, _CONTINUE  # the usual case: nothing to change
    if path[:1] != "/":
        return path, _CONTINUE if path == "*" else PathAction.REJECT
    part, sep, query = path.partition("?")
    action = PathAction.CONTINUE
    if escaped_slashes is EscapedSlashesAction.IMPLEMENTATION_SPECIFIC_DEFAULT:
        escaped_slashes = DEFAULT_ESCAPED_SLASHES_ACTION
    if escaped_slashes is not EscapedSlashesAction.KEEP_UNCHANGED and "%" in part:
        unescaped = _ESCAPED_SLASH.sub(lambda m: _ESCAPED_SLASHES[m.group()], part)
        if unescaped != part:
            if escaped_slashes is EscapedSlashesAction.REJECT_REQUEST:
                return path, PathAction.REJECT
            if escaped_slashes is EscapedSlashesAction.UNESCAPE_AND_REDIRECT:
                action = PathAction.REDIRECT
            part = unescaped
    if normalize_path:
        canonical = canonical_path(part)
        if canonical is None:
            return path, PathAction.REJECT
        part = canonical
    if merge:
        part = merge_slashes(part)
    return part + sep + query, action


def canonical_path(path: str) -> str | None:
    """RFC 3986 normalization of a path without its query, as Envoy's
    ``PathUtil::canonicalPath`` (Chromium's ``CanonicalizePath``) does it; None when
    the path holds a NUL."""
    if _PLAIN.fullmatch(path) is not None and "/." not in path and "//" not in path:
        return path  # the usual case: nothing to change
    out: list[str | _Stray] = []
    i, end = 0, len(path)
    while i < end:
        c = path[i]
        dot = _dot_length(path, i)
        if dot:
            if out and out[-1] == "/":
                i = _after_dot(path, i + dot, out)
            else:
                out.append(".")  # part of a name
                i += dot
            continue
        if c == "\\" or c == "/":
            out.append("/")
        elif c == "%":
            if i + 2 < end and path[i + 1] in _HEX and path[i + 2] in _HEX:
                value = chr(int(path[i + 1:i + 3], 16))
                if value == "\0":
                    return None
                # An unreserved character is decoded; any other is kept escaped, its
                # hex digits' case too (a server may care).
                out.append(value if value in _UNRESERVED else path[i:i + 3])
                i += 3
                continue
            out.append(_STRAY)
        elif c == "\0":
            return None
        elif c in _UNRESERVED or c in _KEPT:
            out.append(c)
        else:
            raw = c.encode("latin-1") if ord(c) < 256 else c.encode("utf-8")
            out.extend(f"%{b:02X}" for b in raw)
        i += 1
    return _joined(out) or "/"


class _Stray:
    """A ``%`` that begins no valid escape, kept as it is..."""


_STRAY = _Stray()


def _joined(out: list[str | _Stray]) -> str:
    """... unless the characters decoded after it make it read as an escape
    (``%%30%30`` -> ``%00``): then it is escaped itself, as Chromium does."""
    parts: list[str] = []
    for at, piece in enumerate(out):
        if piece is _STRAY:
            after = "".join(p for p in out[at + 1:at + 3] if isinstance(p, str))[:2]
            stray = len(after) == 2 and after[0] in _HEX and after[1] in _HEX
            parts.append("%25" if stray else "%")
        else:
            parts.append(piece)  # type: ignore[arg-type]
    return "".join(parts)


def _dot_length(path: str, i: int) -> int:
    """1 for a ``.`` at ``i``, 3 for ``%2e`` / ``%2E``, else 0."""
    c = path[i]
    if c == ".":
        return 1
    if c == "%" and path[i + 1:i + 3] in ("2e", "2E"):
        return 3
    return 0


def _after_dot(path: str, i: int, out: list[str | _Stray]) -> int:
    """A dot segment began right after a slash, its first dot ending at ``i``:
    resolve ``.`` and ``..`` (RFC 3986 5.2.4) on ``out``; return where to go on."""
    end = len(path)
    if i == end:
        return i  # "/." at the end: the current directory
    if path[i] in "/\\":
        return i + 1  # "/./"
    second = _dot_length(path, i)
    if second:
        after = i + second
        if after == end or path[after] in "/\\":
            # "/../" or "/.." at the end: up one, never above the root.
            if len(out) > 1:
                del out[-1]
                while len(out) > 1 and out[-1] != "/":
                    del out[-1]
            return after + 1 if after < end else after
    out.append(".")
    return i


def merge_slashes(path: str) -> str:
    """``//a///b`` -> ``/a/b`` (Envoy's ``merge_slashes``), on a path without its query."""
    if "//" not in path:
        return path
    return _SLASHES.sub("/", path)
