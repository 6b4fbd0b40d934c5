"""Reading a protobuf message so that no set field goes unnoticed.

The translators read an Envoy resource through :class:`Fields`; each field they read
is marked. When a resource is translated, :meth:`Fields.unread` walks the message's
set fields (``ListFields``: a field left at its default is not set) and names each one
no translator read: mosn cannot honour it, and the resource is refused (NACK) with
that field's path. A field nobody set passes, however unknown to mosn.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Iterator

from google.protobuf.any_pb2 import Any as AnyMessage
from google.protobuf.duration_pb2 import Duration
from google.protobuf.message import DecodeError, Message
from google.protobuf.struct_pb2 import Struct
from google.protobuf.json_format import MessageToDict

class Refused(Exception):
    """A resource mosn cannot take: one ``path: reason`` line per problem."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("; ".join(errors))
        self.errors = errors


class Fields:
    """One message being translated: read its fields through here."""

    __slots__ = ("message", "path", "errors", "_read", "_children")

    def __init__(self, message: Message, path: str, errors: list[str]) -> None:
        self.message = message
        self.path = path
        self.errors = errors
        self._read: set[str] = set()
        self._children: list[Fields] = []

    def _at(self, name: str) -> str:
        return f"{self.path}.{name}" if self.path else name

    def has(self, name: str) -> bool:
        """Whether a field is set; does not count as reading it."""
        field = self.message.DESCRIPTOR.fields_by_name[name]
        if field.has_presence:
            return self.message.HasField(name)
        return bool(getattr(self.message, name))  # repeated, or a scalar off its default

    def which(self, oneof: str) -> str | None:
        """The field set in a oneof (not yet read)."""
        return self.message.WhichOneof(oneof)

    def scalar(self, name: str) -> Any:
        """A string, number, bool, enum (its number) or bytes."""
        self._read.add(name)
        return getattr(self.message, name)

    def enum(self, name: str) -> str:
        """An enum field by its value's name."""
        self._read.add(name)
        field = self.message.DESCRIPTOR.fields_by_name[name]
        return field.enum_type.values_by_number[getattr(self.message, name)].name

    def wrapped(self, name: str, default: Any = None) -> Any:
        """A ``google.protobuf.*Value`` wrapper's value, or ``default`` when unset."""
        self._read.add(name)
        if not self.message.HasField(name):
            return default
        return getattr(self.message, name).value

    def seconds(self, name: str, default: float | None = None) -> float | None:
        """A ``google.protobuf.Duration`` in seconds, or ``default`` when unset."""
        self._read.add(name)
        if not self.message.HasField(name):
            return default
        value: Duration = getattr(self.message, name)
        return value.seconds + value.nanos / 1e9

    def struct(self, name: str) -> dict[str, Any]:
        """A ``google.protobuf.Struct`` as plain data."""
        self._read.add(name)
        if not self.message.HasField(name):
            return {}
        value: Struct = getattr(self.message, name)
        return MessageToDict(value)

    def struct_map(self, name: str) -> dict[str, dict[str, Any]]:
        """A ``map<string, google.protobuf.Struct>`` (``filter_metadata``) as plain data."""
        self._read.add(name)
        return {key: MessageToDict(value) for key, value in getattr(self.message, name).items()}

    def accept(self, *names: str) -> None:
        """Fields whose value mosn takes as it comes (a name shown only in logs)."""
        self._read.update(names)

    def child(self, name: str) -> Fields | None:
        """A sub-message to read in turn, or None when unset."""
        self._read.add(name)
        if not self.message.HasField(name):
            return None
        return self.adopt(getattr(self.message, name), self._at(name))

    def children(self, name: str) -> list[Fields]:
        """A repeated sub-message, each to read in turn."""
        self._read.add(name)
        items = getattr(self.message, name)
        if not items:
            return []
        path = self._at(name)
        return [self.adopt(item, f"{path}[{i}]") for i, item in enumerate(items)]

    def typed(self, name: str, types: dict[str, type[Message]]) -> Fields | None:
        """A ``google.protobuf.Any`` unpacked into the message its type URL names,
        when that is one of ``types`` (by full name); else an error."""
        self._read.add(name)
        if not self.message.HasField(name):
            return None
        return self._unpack(getattr(self.message, name), self._at(name), types)

    def typed_map(self, name: str,
                  types: dict[str, type[Message]]) -> dict[str, tuple[str, Fields]]:
        """A ``map<string, google.protobuf.Any>`` (``typed_per_filter_config``): each
        value unpacked as :meth:`typed` unpacks one, with its type's full name, by key
        (in key order); a value of another type is an error."""
        self._read.add(name)
        items = getattr(self.message, name)
        out: dict[str, tuple[str, Fields]] = {}
        for key in sorted(items):
            packed: AnyMessage = items[key]
            inner = self._unpack(packed, f"{self._at(name)}[{key!r}]", types)
            if inner is not None:
                out[key] = (packed.type_url.rpartition("/")[2], inner)
        return out

    def _unpack(self, packed: AnyMessage, path: str,
                types: dict[str, type[Message]]) -> Fields | None:
        type_name = packed.type_url.rpartition("/")[2]
        cls = types.get(type_name)
        if cls is None:
            self.errors.append(f"{path}: type {type_name!r} is not supported by mosn"
                               f" (supported here: {', '.join(sorted(types)) or 'none'})")
            return None
        inner = cls()
        try:
            packed.Unpack(inner)
        except DecodeError as exc:
            self.errors.append(f"{path}: {type_name} does not decode: {exc}")
            return None
        return self.adopt(inner, path)

    def parts(self, name: str) -> list[tuple[Message, str]]:
        """A repeated sub-message's items with their paths, to translate apart
        (through a :class:`PartCache`)."""
        self._read.add(name)
        path = self._at(name)
        return [(item, f"{path}[{i}]") for i, item in enumerate(getattr(self.message, name))]

    def refuse(self, name: str, reason: str) -> None:
        """A field read whose value mosn cannot honour."""
        self._read.add(name)
        self.errors.append(f"{self._at(name)}: {reason}")

    def error(self, reason: str, name: str = "") -> None:
        self.errors.append(f"{self._at(name) if name else self.path}: {reason}")

    def adopt(self, message: Message, path: str) -> Fields:
        """The fields of ``message`` (found at ``path``, e.g. an unpacked ``Any``), whose
        unread fields count with this one's."""
        child = Fields(message, path, self.errors)
        self._children.append(child)
        return child

    def unread(self) -> Iterator[str]:
        """Paths of the set fields nobody read, here and below."""
        for field, _ in self.message.ListFields():
            if field.name not in self._read:
                yield self._at(field.name)
        for child in self._children:
            yield from child.unread()


def field_numbers(message: type[Message], *names: str) -> frozenset[int]:
    """The numbers of the fields a direct translation of ``message`` reads."""
    fields = message.DESCRIPTOR.fields_by_name
    return frozenset(fields[name].number for name in names)


def unsupported(message: Message, read: frozenset[int], path: str, errors: list[str]) -> None:
    """One error per set field of ``message`` outside ``read`` (the direct translators'
    counterpart of :meth:`Fields.unread`, one ``ListFields`` per message)."""
    for field, _ in message.ListFields():
        if field.number not in read:
            errors.append(f"{path}.{field.name}: field not supported by mosn" if path
                          else f"{field.name}: field not supported by mosn")


def ads_source(f: Fields | None, what: str) -> None:
    """A ``ConfigSource`` inside a resource: mosn takes ``what`` over the ADS stream
    (``{ads: {}}``), or by REST polling (``api_config_source``) from the control plane
    the resource naming them came from."""
    if f is None:
        return
    f.accept("resource_api_version", "initial_fetch_timeout")
    kind = f.which("config_source_specifier")
    if kind == "ads":
        f.accept("ads")
    elif kind == "api_config_source":
        api = f.child(kind)
        assert api is not None
        if api.enum("api_type") != "REST":
            api.error(f"mosn takes {what} over ADS or by REST", "api_type")
        api.accept("transport_api_version", "cluster_names", "refresh_delay", "request_timeout")
    elif kind is not None:
        f.refuse(kind, f"mosn takes {what} over ADS ({{ads: {{}}}}) or by REST")


TRANSLATED_CACHE_SIZE = 100_000
"""Parts (routes, virtual hosts, endpoints) whose translation is kept by their bytes:
a push translates only what changed; room for a mesh's whole table several times over."""


class PartCache:
    """Translations of sub-messages keyed by their serialized bytes (a part that did
    not change is not translated again). A translation is shared by every resource
    holding those bytes: it is never changed in place. Bounded: the oldest entries go
    first once ``size`` is reached."""

    def __init__(self, size: int = TRANSLATED_CACHE_SIZE) -> None:
        self.size = size
        self._items: OrderedDict[bytes, Any] = OrderedDict()  # the oldest out in O(1)

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: bytes) -> Any:
        """The translation kept for a part's bytes, or None."""
        return self._items.get(key)

    def keep(self, key: bytes, translated: Any) -> None:
        """Keep the translation of a part accepted without errors."""
        if len(self._items) >= self.size:
            self._items.popitem(last=False)
        self._items[key] = translated

    def part(self, f: Fields, message: Message, path: str, body: Any) -> Any:
        """``body(fields)`` over ``message`` (at ``path`` in ``f``'s resource), or its
        translation from before when its bytes are those of a part accepted then.
        Errors (and set fields nobody read) go to ``f``'s errors; only a part
        translated without any is kept."""
        key = message.SerializeToString(deterministic=True)
        found = self._items.get(key)
        if found is not None:
            return found
        errors: list[str] = []
        fields = Fields(message, path, errors)
        result = body(fields)
        errors += [f"{p}: field not supported by mosn" for p in fields.unread()]
        if errors:
            f.errors.extend(errors)
            return result
        self.keep(key, result)
        return result


def translate(message: Message, kind: str, name: str, body: Any) -> Any:
    """Run ``body(fields)`` over a resource; raise :class:`Refused` with every error,
    and every set field no part of the translation read."""
    errors: list[str] = []
    fields = Fields(message, "", errors)
    result = body(fields)
    errors += [f"{path}: field not supported by mosn" for path in fields.unread()]
    if errors:
        raise Refused([f"{kind} {name!r}: {line}" for line in errors])
    return result
