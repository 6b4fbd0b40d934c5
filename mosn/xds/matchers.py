"""Envoy's matchers and percentages in mosn's words, shared by routes, TLS and the
HTTP filters.

A ``safe_regex`` matches the whole path or value in Envoy, so it is anchored here
(mosn's ``regex`` searches); prefix, suffix and contains header matches become
escaped regexes. Python's ``re`` stands in for RE2.
"""

from __future__ import annotations

import re
from typing import Any

from mosn.xds.fields import Fields

PERCENT_DENOMINATORS = {"HUNDRED": 100, "TEN_THOUSAND": 10_000, "MILLION": 1_000_000}


def whole_percent(f: Fields, reason: str) -> int:
    """A ``FractionalPercent`` as mosn's whole percent (0-100); an error (``reason``)
    when it is not one: mosn does not round. Envoy takes a numerator above its
    denominator as 100%."""
    per = PERCENT_DENOMINATORS[f.enum("denominator")]
    numerator = f.scalar("numerator")
    if numerator >= per:
        return 100
    if (numerator * 100) % per:
        f.error(f"{reason} ({numerator}/{per} is not)")
    return numerator * 100 // per


def regex(f: Fields) -> str:
    """A ``RegexMatcher``'s pattern (its engine, RE2, is what Python's re stands in for)."""
    f.accept("google_re2")
    return f.scalar("regex")


def anchored(pattern: str) -> str:
    """Envoy's ``safe_regex`` matches the whole value; mosn's router regex searches."""
    return f"^(?:{pattern})$"


def string_match_regex(f: Fields) -> str:
    """A ``StringMatcher`` as one regex over the whole value."""
    kind = f.which("match_pattern")
    flags = "(?i)" if f.scalar("ignore_case") else ""
    if kind == "exact":
        body = re.escape(f.scalar("exact"))
    elif kind == "prefix":
        body = re.escape(f.scalar("prefix")) + ".*"
    elif kind == "suffix":
        body = ".*" + re.escape(f.scalar("suffix"))
    elif kind == "contains":
        body = ".*" + re.escape(f.scalar("contains")) + ".*"
    elif kind == "safe_regex":
        body = regex(f.child("safe_regex"))  # type: ignore[arg-type]
    else:
        if kind is not None:
            f.refuse(kind, "this string match is not supported by mosn")
        else:
            f.error("a string matcher needs one of exact, prefix, suffix, contains, safe_regex")
        return ""
    return f"{flags}^(?:{body})$"


def string_matcher(f: Fields) -> dict[str, Any]:
    """A ``StringMatcher`` in mosn's own StringMatcher shape."""
    kind = f.which("match_pattern")
    out: dict[str, Any] = {"ignore_case": f.scalar("ignore_case")}
    if kind == "safe_regex":
        out["safe_regex"] = {"regex": regex(f.child("safe_regex"))}  # type: ignore[arg-type]
    elif kind in ("exact", "prefix", "suffix", "contains"):
        out[kind] = f.scalar(kind)
    elif kind is not None:
        f.refuse(kind, "this string match is not supported by mosn")
    return out


def header_matcher(f: Fields) -> dict[str, Any]:
    out: dict[str, Any] = {"name": f.scalar("name")}
    if f.scalar("invert_match"):
        out["invert_match"] = True
    kind = f.which("header_match_specifier")
    if kind == "exact_match":
        out["value"] = f.scalar("exact_match")
    elif kind in ("prefix_match", "suffix_match", "contains_match"):
        value = re.escape(f.scalar(kind))
        out["value"] = {"prefix_match": f"^{value}", "suffix_match": f"{value}$",
                        "contains_match": value}[kind]
        out["regex"] = True
    elif kind == "safe_regex_match":
        out["value"], out["regex"] = anchored(regex(f.child(kind))), True  # type: ignore[arg-type]
    elif kind == "string_match":
        sub = f.child(kind)
        assert sub is not None
        if sub.which("match_pattern") == "exact" and not sub.has("ignore_case"):
            out["value"] = sub.scalar("exact")
            sub.accept("ignore_case")
        else:
            out["value"], out["regex"] = string_match_regex(sub), True
    elif kind == "present_match":
        out["present_match"] = f.scalar("present_match")
    elif kind is not None:
        f.refuse(kind, "this header match is not supported by mosn")
    return out
