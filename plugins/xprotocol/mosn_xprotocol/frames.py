"""A declared protocol's frame layout, compiled once from its config: reading the
fields and routing keys of a frame, and assembling frames (replies, and the requests
the tools make) from a header template.

A frame is the fixed header (``header_size`` bytes), then the routing strings that
live after it (each at its offset or right after another), then the body. Its size
comes from the length fields; the body is whatever the length says is left.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from mosn.rpc.codec import FrameKind
from mosn_xprotocol.config import CodecConfig, IntField, RoutingKey

_FORMATS = {1: "B", 2: "H", 4: "I", 8: "Q"}
_SIGNED_FORMATS = {1: "b", 2: "h", 4: "i", 8: "q"}
_KIND_NAMES = {
    "request": FrameKind.REQUEST,
    "oneway": FrameKind.ONEWAY,
    "response": FrameKind.RESPONSE,
    "heartbeat": FrameKind.HEARTBEAT,
    "heartbeat_reply": FrameKind.HEARTBEAT_REPLY,
    "goaway": FrameKind.GOAWAY,
}


def string_order(routing: dict[str, RoutingKey]) -> list[tuple[str, RoutingKey]]:
    """The routing keys in the order their bytes come: fixed fields first, then each
    string anchored at an offset (by offset) followed by the strings ``after`` it.
    (The config's mapping order does not matter: YAML and JSON tools reorder keys.)"""
    fixed = [(n, k) for n, k in routing.items() if k.fixed]
    strings = {n: k for n, k in routing.items() if not k.fixed}
    followers: dict[str, list[str]] = {}
    for name, key in strings.items():
        if key.after is not None:
            followers.setdefault(key.after, []).append(name)
    ordered: list[tuple[str, RoutingKey]] = []

    def place(name: str) -> None:
        ordered.append((name, strings[name]))
        for follower in sorted(followers.get(name, ())):
            place(follower)

    for name, key in sorted(((n, k) for n, k in strings.items() if k.offset is not None),
                            key=lambda item: (item[1].offset, item[0])):
        place(name)
    return fixed + ordered


class LayoutError(ValueError):
    """The bytes do not fit the declared layout (or a value does not fit a field)."""


class Slot:
    """An integer at a fixed offset, with its struct format."""

    __slots__ = ("offset", "size", "struct", "max_value")

    def __init__(self, offset: int, size: int, byte_order: str, signed: bool = False) -> None:
        self.offset = offset
        self.size = size
        formats = _SIGNED_FORMATS if signed else _FORMATS
        self.struct = struct.Struct((">" if byte_order == "big" else "<") + formats[size])
        self.max_value = (1 << (8 * size)) - 1

    @classmethod
    def of(cls, field: IntField, default_order: str) -> "Slot":
        return cls(field.offset, field.size, field.byte_order or default_order)

    @property
    def end(self) -> int:
        return self.offset + self.size

    def read(self, data: bytes | bytearray) -> int:
        return self.struct.unpack_from(data, self.offset)[0]

    def write(self, data: bytearray, value: int) -> None:
        if not 0 <= value <= self.max_value:
            raise LayoutError(f"{value} does not fit {self.size} byte(s) at offset {self.offset}")
        self.struct.pack_into(data, self.offset, value)


@dataclass(frozen=True, slots=True)
class StringKey:
    """A routing string after the header."""

    name: str
    offset: int | None
    after: str | None
    prefix: struct.Struct | None
    length_field: Slot | None
    encoding: str


@dataclass(frozen=True, slots=True)
class FixedKey:
    """A routing key in a fixed-width header field."""

    name: str
    offset: int
    size: int
    type: str
    number: Slot | None
    encoding: str


class Layout:
    """Everything the codec needs to know about a declared protocol, precomputed."""

    def __init__(self, config: CodecConfig) -> None:
        order = config.byte_order
        self.name = config.name
        self.header_size = config.header_size
        self.magic = config.magic.value if config.magic else b""
        self.magic_offset = config.magic.offset if config.magic else 0
        self.lengths = [Slot.of(f, order) for f in config.length.fields]
        self.counts = config.length.counts
        self.adjust = config.length.adjust
        self.request_id = Slot.of(config.request_id, order)
        kind = config.kind
        self.kind = Slot(kind.offset, kind.size, kind.byte_order or order)
        self.kind_mask = kind.mask if kind.mask is not None else self.kind.max_value
        self.kinds: dict[int, FrameKind] = {}
        self.kind_values: dict[FrameKind, int] = {}
        for name, frame_kind in _KIND_NAMES.items():
            values = getattr(kind, name)
            for value in values:
                self.kinds[value] = frame_kind
            if values:
                self.kind_values[frame_kind] = values[0]
        self.kind_values.setdefault(FrameKind.HEARTBEAT_REPLY, self.kind_values[FrameKind.RESPONSE])
        self.opening_kinds = frozenset(v for v, k in self.kinds.items() if k in (
            FrameKind.REQUEST, FrameKind.ONEWAY, FrameKind.HEARTBEAT))
        self.status = Slot.of(config.status, order)  # type: ignore[arg-type]
        self.timeout: Slot | None = None
        self.timeout_scale = 1.0
        if config.timeout is not None:
            t = config.timeout
            self.timeout = Slot(t.offset, t.size, t.byte_order or order, signed=t.signed)
            self.timeout_scale = 1000.0 if t.unit == "ms" else 1.0
        self.fixed_keys: list[FixedKey] = []
        self.string_keys: list[StringKey] = []
        for name, key in string_order(config.routing):
            self._add_key(name, key, order)
        bound = {(k.length_field.offset, k.length_field.size)
                 for k in self.string_keys if k.length_field is not None}
        self.body_lengths = [s for s in self.lengths if (s.offset, s.size) not in bound]
        """The length field that counts the body (at most one: the config checks)."""

    def _add_key(self, name: str, key: RoutingKey, order: str) -> None:
        key_order = key.byte_order or order
        if key.fixed:
            number = None
            if key.type == "uint":
                number = Slot(key.offset or 0, key.size or 1, key_order)
            self.fixed_keys.append(FixedKey(name, key.offset or 0, key.size or 0, key.type,
                                            number, key.encoding))
            return
        prefix = None
        if key.length_prefix is not None:
            endian = ">" if key_order == "big" else "<"
            prefix = struct.Struct(endian + _FORMATS[key.length_prefix])
        length_field = Slot.of(key.length_field, order) if key.length_field is not None else None
        self.string_keys.append(StringKey(name, key.offset, key.after, prefix, length_field,
                                          key.encoding))

    # -- reading ----------------------------------------------------------------------------

    def kind_of(self, header: bytes | bytearray) -> FrameKind | None:
        return self.kinds.get(self.kind.read(header) & self.kind_mask)

    def frame_size(self, header: bytes | bytearray) -> int:
        """The whole frame's size, from the length fields of a whole header."""
        total = sum(s.read(header) for s in self.lengths) + self.adjust
        if self.counts == "after_header":
            return self.header_size + total
        if self.counts == "after_field":
            return self.lengths[0].end + total
        return total

    def timeout_of(self, header: bytes | bytearray) -> float | None:
        if self.timeout is None:
            return None
        value = self.timeout.read(header)
        return value / self.timeout_scale if value > 0 else None

    def routing_headers(self, frame: bytes) -> dict[str, str]:
        """The routing keys of a whole frame; LayoutError if a string runs past it."""
        headers: dict[str, str] = {}
        for key in self.fixed_keys:
            raw = frame[key.offset:key.offset + key.size]
            if key.type == "uint":
                headers[key.name] = str(key.number.read(frame))  # type: ignore[union-attr]
            elif key.type == "hex":
                headers[key.name] = raw.hex()
            else:
                headers[key.name] = raw.rstrip(b"\0").decode(key.encoding, "replace")
        ends: dict[str, int] = {}
        size = len(frame)
        for key in self.string_keys:
            start = key.offset if key.offset is not None else ends[key.after]  # type: ignore[index]
            if key.prefix is not None:
                if start + key.prefix.size > size:
                    raise LayoutError(f"the length of {key.name} is past the end of the frame")
                (length,) = key.prefix.unpack_from(frame, start)
                start += key.prefix.size
            else:
                length = key.length_field.read(frame)  # type: ignore[union-attr]
            end = start + length
            if end > size:
                raise LayoutError(f"{key.name} ({length} bytes at {start}) runs past the "
                                  f"end of the {size}-byte frame")
            headers[key.name] = frame[start:end].decode(key.encoding, "replace")
            ends[key.name] = end
        return headers

    # -- writing ----------------------------------------------------------------------------

    def assemble(self, template: bytes | bytearray, kind: FrameKind, request_id: int,
                 status: int | None, strings: dict[str, str], body: bytes) -> bytes:
        """A frame whose header is ``template``'s (its first ``header_size`` bytes, the
        rest zero) with the magic, the kind (keeping the bits outside the kind mask),
        the request id and ``status`` written, the routing keys from ``strings``, then
        ``body``, and the length fields set to match. LayoutError if a value does not fit."""
        frame = bytearray(bytes(template[:self.header_size]).ljust(self.header_size, b"\0"))
        if self.magic:
            frame[self.magic_offset:self.magic_offset + len(self.magic)] = self.magic
        old = self.kind.read(frame) & ~self.kind_mask & self.kind.max_value
        self.kind.write(frame, old | self.kind_values[kind])
        self.request_id.write(frame, request_id)
        if status is not None:
            self.status.write(frame, status)
        for key in self.fixed_keys:
            if key.name in strings:
                self._write_fixed(frame, key, strings[key.name])
        ends: dict[str, int] = {}
        for key in self.string_keys:
            raw = strings.get(key.name, "").encode(key.encoding)
            start = key.offset if key.offset is not None else ends[key.after]  # type: ignore[index]
            if start < len(frame):
                raise LayoutError(f"{key.name} would start at {start}, inside what is written")
            frame += bytes(start - len(frame))
            if key.prefix is not None:
                if len(raw) > (1 << (8 * key.prefix.size)) - 1:
                    raise LayoutError(f"{key.name} is too long for its length prefix")
                frame += key.prefix.pack(len(raw))
            else:
                key.length_field.write(frame, len(raw))  # type: ignore[union-attr]
            frame += raw
            ends[key.name] = len(frame)
        frame += body
        self._write_lengths(frame)
        return bytes(frame)

    def _write_fixed(self, frame: bytearray, key: FixedKey, value: str) -> None:
        if key.type == "uint":
            if not value.isdigit():
                raise LayoutError(f"{key.name}: {value!r} is not a number")
            key.number.write(frame, int(value))  # type: ignore[union-attr]
            return
        try:
            raw = bytes.fromhex(value) if key.type == "hex" else value.encode(key.encoding)
        except ValueError:
            raise LayoutError(f"{key.name}: {value!r} is not hex") from None
        if len(raw) > key.size:
            raise LayoutError(f"{key.name}: {value!r} is longer than its {key.size} bytes")
        frame[key.offset:key.offset + key.size] = raw.ljust(key.size, b"\0")

    def _write_lengths(self, frame: bytearray) -> None:
        size = len(frame)
        if self.counts == "after_header":
            wanted = size - self.header_size
        elif self.counts == "after_field":
            wanted = size - self.lengths[0].end
        else:
            wanted = size
        wanted -= self.adjust
        counted = sum(s.read(frame) for s in self.lengths if s not in self.body_lengths)
        if self.body_lengths:
            self.body_lengths[0].write(frame, wanted - counted)
        elif counted != wanted:
            raise LayoutError("the length fields cannot say this frame's size")
