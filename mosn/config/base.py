"""The base of every config model: MOSN's key matching, unknown keys, unsupported fields.

Nothing in a config is silently ignored. A model keeps the keys it does not know
(``extra="allow"``) so that the loader can report each with its path and a "did you
mean" at once, instead of stopping at the first; the loader refuses them, except the
MOSN fields a model lists in ``mosn_runtime_fields`` (they only mean something to
MOSN's Go runtime), which are accepted with a warning each (docs/compat.md).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Iterator

from pydantic import AfterValidator, BaseModel, ConfigDict, model_validator

SUGGESTION_CUTOFF = 0.75
"""How close (difflib's ratio) a key must be to a field name to be offered as "did
you mean": ``max_frame_sise`` finds ``max_frame_size``, ``name`` does not find ``type``."""


def is_empty(value: Any) -> bool:
    """An unset MOSN field: null, false, "", 0, or containers of those."""
    if isinstance(value, dict):
        return all(is_empty(v) for v in value.values())
    if isinstance(value, list):
        return all(is_empty(v) for v in value)
    return value in (None, False, "", 0)


def _unset(value: Any) -> Any:
    if not is_empty(value):
        raise ValueError("not supported by mosn yet; remove it (or leave it empty)")
    return value


Unsupported = Annotated[Any, AfterValidator(_unset)]
"""A MOSN field whose feature mosn does not run yet: allowed only when empty."""


_key_names: dict[type, dict[str, str]] = {}
"""Per model class: its keys in lower case -> as written (or their aliases)."""


@dataclass(frozen=True)
class ExtraKey:
    """A key of the config no field of its model takes."""

    path: str
    key: str
    value: Any
    model: type["Model"]

    @property
    def runtime_only(self) -> str | None:
        """Why the key is accepted though unused (a MOSN Go runtime field), else None."""
        return self.model.mosn_runtime_fields.get(self.key.lower())

    def error(self, places: dict[str, list[str]] | None = None) -> str:
        """``unknown field`` and a hint: the field the key is closest to; else where
        a field of that name is (``places``: lower-cased name to paths); else the
        fields the model takes."""
        names = self.model.key_names()
        close = did_you_mean(self.key, names)
        if close is not None:
            return f"unknown field; did you mean {close!r}?"
        where = (places or {}).get(self.key.lower())
        if where:
            return f"unknown field here; {self.key!r} belongs at {' or '.join(where)}"
        if not names:
            return "unknown field (this takes no keys)"
        return f"unknown field (known here: {', '.join(sorted(names.values()))})"


def did_you_mean(key: str, names: dict[str, str]) -> str | None:
    """The written form of the name in ``names`` (lower-cased to written) closest to
    ``key``, if one is close."""
    close = difflib.get_close_matches(key.lower(), list(names), n=1, cutoff=SUGGESTION_CUTOFF)
    return names[close[0]] if close else None


class Model(BaseModel):
    """Base of every config model: case-insensitive keys, unknown keys kept for the
    loader to report."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    mosn_runtime_fields: ClassVar[dict[str, str]] = {}
    """MOSN's fields of this model that only its Go runtime uses, each with why mosn
    has no use for it: accepted with a warning (lower-case keys)."""

    @classmethod
    def key_names(cls) -> dict[str, str]:
        """The keys this model takes, lower-cased, each to its written form."""
        names = _key_names.get(cls)
        if names is None:
            names = _key_names[cls] = {name.lower(): info.alias or name
                                       for name, info in cls.model_fields.items()}
        return names

    @model_validator(mode="before")
    @classmethod
    def _match_keys_without_case(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        names = cls.key_names()
        if all(isinstance(key, str) and names.get(key.lower(), key) == key for key in data):
            return data  # every key as written (the common case; a config made by mosn)
        out, written = {}, {}
        for key, value in data.items():
            canonical = names.get(key.lower(), key) if isinstance(key, str) else key
            if canonical in out:  # one value would be dropped without a word
                raise ValueError(f"{written[canonical]!r} and {key!r} are the same key "
                                 "(keys match without regard to case)")
            out[canonical], written[canonical] = value, key
        return out

    def extra_keys(self, path: str = "") -> Iterator[ExtraKey]:
        """Every key no field takes, in this model and the models below it."""
        for key, value in (self.model_extra or {}).items():
            yield ExtraKey(f"{path}.{key}" if path else str(key), str(key), value, type(self))
        for name in type(self).model_fields:
            yield from extra_keys_in(getattr(self, name), f"{path}.{name}" if path else name)


class Empty(Model):
    """A message that takes no keys (Envoy's ``{}`` options: ``source_ip: {}``,
    ``allow_missing: {}``): any key in it is an unknown key with its path."""


def extra_keys_in(value: Any, path: str) -> Iterator[ExtraKey]:
    if isinstance(value, Model):
        yield from value.extra_keys(path)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from extra_keys_in(item, f"{path}[{i}]")
    elif isinstance(value, dict):
        for key, item in value.items():
            if isinstance(item, (Model, list, dict)):
                yield from extra_keys_in(item, f"{path}.{key}")
