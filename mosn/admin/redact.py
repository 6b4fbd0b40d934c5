"""Secrets kept out of what the admin API shows, and its JSON built in bounded pieces.

Config dumps and host metadata pass through :class:`Redactor`: the value of a key
whose name says it holds a secret becomes ``[redacted]``, at any depth, and so does
the value of a header (or query parameter) pair whose name says so. Names are
compared word by word, whatever their case and separators (``X-Api-Key``,
``apiKey``, ``api_key`` are the same three words run together or not), against
the lists below and the config's ``admin.redact_keys``.

:func:`json_pieces` writes JSON a piece at a time, so the admin server can stop at
its size bound and let the event loop run between pieces.
"""

from __future__ import annotations

import json
import math
import re
from functools import lru_cache
from typing import Any, Iterable, Iterator

REDACTED = "[redacted]"
SECRET_PARTS = ("password", "passwd", "passphrase", "secret", "token", "credential",
                "authorization", "authentication", "cookie", "apikey", "privatekey",
                "accesskey", "sessionid")
"""A name with a word containing one of these holds a secret (``db_password``,
``authToken``, ``Set-Cookie``, ``x-apikey``, the SkyWalking driver's
``authentication`` token)."""
SECRET_WORDS = frozenset({"pwd", "pass", "dsn", "auth", "creds", "session", "jwt", "bearer",
                          "signature"})
"""Short words that mean a secret only as a whole word (``db_pwd``, ``x-auth``, a
database ``dsn``; not ``author`` or ``passthrough``); a trailing ``s`` is allowed."""
KEY_WORDS = frozenset({"key", "keys"})
"""``key`` after another word is a key in the cryptographic sense (``api_key``,
``access_key``, ``private_key``, ``X-Api-Key``, ``session_ticket_keys``); alone it is
a header's name in MOSN's ``{key, value}`` pairs and stays."""
ABOUT_A_SECRET = frozenset({"timeout", "ttl", "interval", "name", "path", "file", "header",
                            "type", "mode", "length", "size", "count", "bucket"})
"""A last word that makes the name a setting about a secret rather than the secret
(``session_timeout``, ``password_file``, ``token_header``, ``token_bucket``)."""
PAIR_NAMES = ("key", "name", "header_name")
"""The field naming a header or parameter in a pair (MOSN's ``{key, value}`` and
``{name, value}``, Envoy's ``header_name``)."""
PAIR_VALUES = frozenset({"value", "exact_match", "prefix_match", "suffix_match",
                         "contains_match", "regex_match", "safe_regex_match", "string_match"})
"""The fields of a pair that carry the header's value (MOSN's and Envoy's matchers)."""
WORDS_CACHE = 4096
"""Distinct key names whose verdict is remembered (a config repeats a few hundred)."""

_CAMEL = re.compile(r"([a-z0-9])([A-Z])")
_SEPARATORS = re.compile(r"[^a-z0-9]+")


def words(name: str) -> tuple[str, ...]:
    """``("x", "api", "key")`` from ``X-Api-Key``, ``xApiKey`` or ``x_api_key``."""
    return tuple(w for w in _SEPARATORS.split(_CAMEL.sub(r"\1_\2", name).lower()) if w)


def _builtin(parts: tuple[str, ...]) -> bool:
    if not parts or parts[-1] in ABOUT_A_SECRET:
        return False
    return (any(p in w for w in parts for p in SECRET_PARTS)
            or any(w in SECRET_WORDS or (w.endswith("s") and w[:-1] in SECRET_WORDS)
                   for w in parts)
            or any(w in KEY_WORDS for w in parts[1:]))


def _contains(parts: tuple[str, ...], run: tuple[str, ...]) -> bool:
    n = len(run)
    return any(parts[i:i + n] == run for i in range(len(parts) - n + 1))


_TRIGGERS = (*SECRET_PARTS, *SECRET_WORDS, "key")
"""A secret name holds one of these in its lower-case text (each word does)."""


@lru_cache(maxsize=WORDS_CACHE)
def _is_secret(name: str, extra: tuple[tuple[str, ...], ...]) -> bool:
    lower = name.lower()
    if not any(t in lower for t in _TRIGGERS) and not any(run[0] in lower for run in extra):
        return False  # most names: no word to look at closer
    parts = words(name)
    return any(_contains(parts, run) for run in extra) or _builtin(parts)


def _shown(value: Any) -> bool:
    """Empty values and numbers say nothing secret (``max_tokens: 100`` shows)."""
    return not value or isinstance(value, (bool, int, float))


class Redactor:
    """Which values of a mapping are secrets. ``extra`` names more keys (the config's
    ``admin.redact_keys``); each matches as a run of words, whatever the case and
    separators, and is redacted even where its last word is in ``ABOUT_A_SECRET``."""

    def __init__(self, extra: Iterable[str] = ()) -> None:
        self.extra = tuple(sorted({w for w in map(words, extra) if w}))

    def secret(self, name: Any) -> bool:
        return isinstance(name, str) and _is_secret(name, self.extra)

    def hides(self, key: Any, value: Any) -> bool:
        """Is ``value``, under ``key``, shown as ``[redacted]``?"""
        return not _shown(value) and self.secret(key)

    def pair_values(self, mapping: dict[Any, Any]) -> set[Any]:
        """The keys of ``mapping`` shown as ``[redacted]`` because it is a header (or
        parameter) pair whose name says it holds a secret; looks at a few keys only."""
        named = next((mapping[f] for f in PAIR_NAMES if isinstance(mapping.get(f), str)), None)
        if named is None or not self.secret(named):
            return set()
        return {k for k in PAIR_VALUES.intersection(mapping) if not _shown(mapping[k])}

    def redact(self, value: Any) -> Any:
        """A copy of ``value`` with its secrets replaced."""
        if isinstance(value, dict):
            pair = self.pair_values(value)
            return {k: REDACTED if k in pair or self.hides(k, v) else self.redact(v)
                    for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self.redact(v) for v in value]
        return value


def json_pieces(value: Any, redactor: Redactor | None = None, indent: str = "") -> Iterator[str]:
    """``value`` as JSON (two-space indents, keys sorted, ASCII only, so a piece's
    length is its size in bytes), a piece at a time, secrets replaced when a
    ``redactor`` is given. A value JSON has no form for (a NaN, a date from a
    registry) is written as its ``str``."""
    if isinstance(value, dict):
        if not value:
            yield "{}"
            return
        inner = indent + "  "
        # Each key is judged as it is written (not all first): a mapping of a hundred
        # thousand keys is then judged in pieces, between turns of the event loop.
        pair = redactor.pair_values(value) if redactor is not None else ()
        yield "{"
        for i, key in enumerate(_sorted(value)):
            yield f"{',' if i else ''}\n{inner}{json.dumps(_key(key))}: "
            if key in pair or (redactor is not None and redactor.hides(key, value[key])):
                yield json.dumps(REDACTED)
            else:
                yield from json_pieces(value[key], redactor, inner)
        yield f"\n{indent}}}"
    elif isinstance(value, (list, tuple)):
        if not value:
            yield "[]"
            return
        inner = indent + "  "
        yield "["
        for i, item in enumerate(value):
            yield f"{',' if i else ''}\n{inner}"
            yield from json_pieces(item, redactor, inner)
        yield f"\n{indent}]"
    elif value is None or isinstance(value, (str, int, bool)) or (
            isinstance(value, float) and math.isfinite(value)):
        yield json.dumps(value)
    else:
        yield json.dumps(str(value))


def _sorted(mapping: dict[Any, Any]) -> list[Any]:
    try:
        return sorted(mapping)  # string keys (all of a config's): the fast way
    except TypeError:
        return sorted(mapping, key=str)


def _key(key: Any) -> str:
    if isinstance(key, bool) or key is None:
        return json.dumps(key)
    return str(key)
