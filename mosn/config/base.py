"""The base of every config model: MOSN's key matching, warnings, unsupported fields."""

from __future__ import annotations

from typing import Annotated, Any, Iterator

from pydantic import AfterValidator, BaseModel, ConfigDict, model_validator


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


class Model(BaseModel):
    """Base of every config model: case-insensitive keys, unknown keys kept for warnings."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    @model_validator(mode="before")
    @classmethod
    def _match_keys_without_case(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        names = _key_names.get(cls)
        if names is None:
            names = _key_names[cls] = {name.lower(): info.alias or name
                                       for name, info in cls.model_fields.items()}
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

    def unknown_fields(self, path: str = "") -> Iterator[str]:
        """Paths of every ignored key in this model and the models below it."""
        for key in self.model_extra or {}:
            yield f"{path}.{key}" if path else key
        for name in type(self).model_fields:
            yield from unknown_in(getattr(self, name), f"{path}.{name}" if path else name)


def unknown_in(value: Any, path: str) -> Iterator[str]:
    if isinstance(value, Model):
        yield from value.unknown_fields(path)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from unknown_in(item, f"{path}[{i}]")
