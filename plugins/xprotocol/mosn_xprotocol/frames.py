"""A declared protocol's frame layout, compiled once from its config: reading the
fields and routing keys of a frame, and assembling frames (replies, and the requests
the tools make) from a header template.

A frame is the fixed header (``header_size`` bytes), then the routing strings that
live after it (each at its offset or right after another), then the body, then (for
a delimited protocol) the delimiter. Its size comes from the length fields, or from
where the delimiter first occurs after the header. Routing keys inside the body are
read from the body's start; every routing value is bounded by its ``max_size``.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Union

from mosn.rpc.codec import FrameKind
from mosn_xprotocol.config import BodyKey, CodecConfig, RoutingKey, Width

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
    """The routing keys of the header in the order their bytes come: fixed fields
    first, then each string anchored at an offset (by offset) followed by the strings
    ``after`` it. Keys in the body are not among them. (The config's mapping order
    does not matter: YAML and JSON tools reorder keys.)"""
    fixed = [(n, k) for n, k in routing.items() if k.fixed]
    strings = {n: k for n, k in routing.items() if not k.fixed and k.body is None}
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
    """A binary unsigned (or signed) integer at a fixed offset, with its struct format."""

    __slots__ = ("offset", "size", "struct", "max_value")

    def __init__(self, offset: int, size: int, byte_order: str, signed: bool = False) -> None:
        self.offset = offset
        self.size = size
        formats = _SIGNED_FORMATS if signed else _FORMATS
        self.struct = struct.Struct((">" if byte_order == "big" else "<") + formats[size])
        self.max_value = (1 << (8 * size)) - 1

    @classmethod
    def of(cls, field: Width, default_order: str, signed: bool = False) -> "AnySlot":
        if field.digits is not None:
            return DecimalSlot(field.offset, field.digits)
        return cls(field.offset, field.width, field.byte_order or default_order, signed)

    @property
    def end(self) -> int:
        return self.offset + self.size

    def read(self, data: bytes | bytearray) -> int:
        return self.struct.unpack_from(data, self.offset)[0]

    def write(self, data: bytearray, value: int) -> None:
        if not 0 <= value <= self.max_value:
            raise LayoutError(f"{value} does not fit {self.size} byte(s) at offset {self.offset}")
        self.struct.pack_into(data, self.offset, value)


class DecimalSlot:
    """An unsigned number written as ``size`` ASCII decimal digits, zero-padded."""

    __slots__ = ("offset", "size", "max_value")

    def __init__(self, offset: int, digits: int) -> None:
        self.offset = offset
        self.size = digits
        self.max_value = 10 ** digits - 1

    @property
    def end(self) -> int:
        return self.offset + self.size

    def read(self, data: bytes | bytearray) -> int:
        raw = bytes(data[self.offset:self.offset + self.size])
        if len(raw) != self.size or not raw.isdigit():
            raise LayoutError(f"{raw!r} at offset {self.offset} is not {self.size} decimal digits")
        return int(raw)

    def write(self, data: bytearray, value: int) -> None:
        if not 0 <= value <= self.max_value:
            raise LayoutError(f"{value} does not fit {self.size} digit(s) at offset {self.offset}")
        data[self.offset:self.end] = b"%0*d" % (self.size, value)


AnySlot = Union[Slot, DecimalSlot]


@dataclass(frozen=True, slots=True)
class StringKey:
    """A routing string after the header."""

    name: str
    offset: int | None
    after: str | None
    prefix: struct.Struct | None
    length_field: AnySlot | None
    encoding: str
    max_size: int


@dataclass(frozen=True, slots=True)
class FixedKey:
    """A routing key in a fixed-width header field."""

    name: str
    offset: int
    size: int
    type: str
    number: Slot | None
    encoding: str


@dataclass(frozen=True, slots=True)
class BodyField:
    """A routing key inside the body (offsets from the body's start)."""

    name: str
    offset: int
    size: int | None
    type: str
    number: struct.Struct | None
    prefix: struct.Struct | None
    key: bytes
    """``key`` then ``separator``: how the line starts."""
    line_end: bytes
    field: int
    delimiter: bytes
    search_limit: int
    encoding: str
    max_size: int


def _text(raw: bytes, type_: str, encoding: str) -> str:
    if type_ == "hex":
        return raw.hex()
    return raw.rstrip(b"\0").decode(encoding, "replace")


def _over(name: str, length: int, limit: int) -> LayoutError:
    return LayoutError(f"routing key {name} is {length} bytes, over its limit of {limit} "
                       f"(routing.{name}.max_size)")


class Layout:
    """Everything the codec needs to know about a declared protocol, precomputed."""

    def __init__(self, config: CodecConfig) -> None:
        order = config.byte_order
        self.name = config.name
        self.header_size = config.header_size
        self.magic = config.magic.value if config.magic else b""
        self.magic_offset = config.magic.offset if config.magic else 0
        self.template = (config.header_template.value if config.header_template
                         else bytes(config.header_size))
        self.delimiter = config.delimiter.value if config.delimiter else b""
        """Frames end with these bytes (b"": frames are sized by the length fields)."""
        length = config.length
        self.lengths = [Slot.of(f, order) for f in length.fields] if length else []
        self.counts = length.counts if length else "frame"
        self.adjust = length.adjust if length else 0
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
        self.status = Slot.of(config.status, order)
        self.timeout: AnySlot | None = None
        self.timeout_scale = 1.0
        if config.timeout is not None:
            t = config.timeout
            self.timeout = Slot.of(t, order, signed=t.signed)
            self.timeout_scale = 1000.0 if t.unit == "ms" else 1.0
        self.fixed_keys: list[FixedKey] = []
        self.string_keys: list[StringKey] = []
        for name, key in string_order(config.routing):
            self._add_key(name, key, order)
        self.body_keys = [self._body_key(name, key, order)
                          for name, key in config.routing.items() if key.body is not None]
        self.body_form = next((k.body.form for k in config.routing.values()
                               if k.body is not None), "")
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
                                          key.encoding, key.max_size))

    @staticmethod
    def _body_key(name: str, key: RoutingKey, order: str) -> BodyField:
        body: BodyKey = key.body  # type: ignore[assignment]
        endian = ">" if (key.byte_order or order) == "big" else "<"
        number = prefix = None
        if body.size is not None and body.type == "uint":
            number = struct.Struct(endian + _FORMATS[body.size])
        if body.length_prefix is not None:
            prefix = struct.Struct(endian + _FORMATS[body.length_prefix])
        key_bytes = (body.key + body.separator).encode("latin-1") if body.key else b""
        return BodyField(name, body.offset, body.size, body.type, number, prefix, key_bytes,
                         body.line_end.encode("latin-1"), body.field or 0,
                         (body.delimiter or "").encode("latin-1"), body.search_limit,
                         key.encoding, key.max_size)

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

    def delimited_size(self, buffer: bytes | bytearray, limit: int, start: int) -> int | None:
        """The size of the delimited frame at the front of ``buffer`` (its delimiter
        included), searching from ``start``; None if its delimiter has not arrived;
        LayoutError if there is none within ``limit`` bytes."""
        at = buffer.find(self.delimiter, max(start, self.header_size), limit)
        if at >= 0:
            return at + len(self.delimiter)
        if len(buffer) >= limit:
            raise LayoutError(f"no delimiter {self.delimiter!r} within {limit} bytes "
                              "(max_frame_size)")
        return None

    def timeout_of(self, header: bytes | bytearray) -> float | None:
        if self.timeout is None:
            return None
        value = self.timeout.read(header)
        return value / self.timeout_scale if value > 0 else None

    def routing_headers(self, frame: bytes, body_keys: bool = True) -> dict[str, str]:
        """The routing keys of a whole frame (with ``body_keys``, those inside the body
        too); LayoutError if one runs past its end or over its ``max_size``."""
        headers: dict[str, str] = {}
        for key in self.fixed_keys:
            if key.type == "uint":
                headers[key.name] = str(key.number.read(frame))  # type: ignore[union-attr]
            else:
                headers[key.name] = _text(frame[key.offset:key.offset + key.size], key.type,
                                          key.encoding)
        ends: dict[str, int] = {}
        size = len(frame) - len(self.delimiter)
        body_start = self.header_size
        for key in self.string_keys:
            start = key.offset if key.offset is not None else ends[key.after]  # type: ignore[index]
            if key.prefix is not None:
                if start + key.prefix.size > size:
                    raise LayoutError(f"the length of {key.name} is past the end of the frame")
                (length,) = key.prefix.unpack_from(frame, start)
                start += key.prefix.size
            else:
                length = key.length_field.read(frame)  # type: ignore[union-attr]
            if length > key.max_size:
                raise _over(key.name, length, key.max_size)
            end = start + length
            if end > size:
                raise LayoutError(f"{key.name} ({length} bytes at {start}) runs past the "
                                  f"end of the {size}-byte frame")
            headers[key.name] = frame[start:end].decode(key.encoding, "replace")
            ends[key.name] = end
            body_start = max(body_start, end)
        for field in self.body_keys if body_keys else ():
            value = self._read_body_key(field, frame, body_start, size)
            if value is not None:
                headers[field.name] = value
        return headers

    def _read_body_key(self, key: BodyField, frame: bytes, body: int, end: int) -> str | None:
        """The value of ``key`` in the body ``frame[body:end]``; None where a line or
        a field is absent."""
        start = body + key.offset
        form = self.body_form
        if form == "offset":
            if key.prefix is not None:
                if start + key.prefix.size > end:
                    raise LayoutError(f"the length of {key.name} is past the end of the body")
                (length,) = key.prefix.unpack_from(frame, start)
                if length > key.max_size:
                    raise _over(key.name, length, key.max_size)
                start += key.prefix.size
            else:
                length = key.size  # type: ignore[assignment]
            if start + length > end:
                raise LayoutError(f"{key.name} ({length} bytes at {start - body} of the body) "
                                  "runs past the end of the body")
            if key.number is not None:
                return str(key.number.unpack_from(frame, start)[0])
            return _text(frame[start:start + length], key.type, key.encoding)
        search_end = min(end, start + key.search_limit)
        if form == "lines":
            raw = self._key_line(key, frame, start, search_end, end)
        else:
            raw = self._delimited_field(key, frame, start, search_end, end)
        return None if raw is None else raw.decode(key.encoding, "replace")

    @staticmethod
    def _key_line(key: BodyField, frame: bytes, pos: int, search_end: int,
                  end: int) -> bytes | None:
        """``key=value`` lines from ``pos`` to the first empty one: the value of the
        one starting with the key."""
        line_end, crlf = key.line_end, key.line_end == b"\n"
        while pos < search_end:
            if frame.startswith(key.key, pos, end):
                start = pos + len(key.key)
                stop = frame.find(line_end, start, min(end, start + key.max_size + 2))
                if stop < 0:
                    if end - start > key.max_size + (1 if crlf else 0):
                        raise _over(key.name, end - start, key.max_size)
                    stop = end  # the last line of the body, unterminated
                value = frame[start:stop]
                if crlf and value.endswith(b"\r"):
                    value = value[:-1]
                if len(value) > key.max_size:
                    raise _over(key.name, len(value), key.max_size)
                return value
            stop = frame.find(line_end, pos, search_end)
            if stop < 0:
                return None
            if stop == pos or (crlf and stop == pos + 1 and frame[pos] == 0x0D):
                return None  # an empty line ends the key=value lines
            pos = stop + len(line_end)
        return None

    @staticmethod
    def _delimited_field(key: BodyField, frame: bytes, pos: int, search_end: int,
                         end: int) -> bytes | None:
        """Field number ``key.field`` of ``frame[pos:end]`` split at the delimiter."""
        delimiter = key.delimiter
        for _ in range(key.field):
            stop = frame.find(delimiter, pos, search_end)
            if stop < 0:
                return None
            pos = stop + len(delimiter)
        if pos >= search_end and search_end < end:
            return None  # the field starts past the bytes searched
        stop = frame.find(delimiter, pos, min(end, pos + key.max_size + len(delimiter)))
        if stop < 0:
            if end - pos > key.max_size:
                raise _over(key.name, end - pos, key.max_size)
            stop = end  # the last field of the body
        return frame[pos:stop]

    # -- writing ----------------------------------------------------------------------------

    def blank_header(self) -> bytes:
        """The header a frame made from scratch starts from: the template, with zero
        in its status and timeout fields (ASCII digits need writing)."""
        header = bytearray(self.template)
        self.status.write(header, 0)
        if self.timeout is not None:
            self.timeout.write(header, 0)
        return bytes(header)

    def assemble(self, template: bytes | bytearray, kind: FrameKind, request_id: int,
                 status: int | None, strings: dict[str, str], body: bytes,
                 body_keys: bool = False) -> bytes:
        """A frame whose header is ``template``'s (its first ``header_size`` bytes, the
        rest zero) with the magic, the kind (keeping the bits outside the kind mask),
        the request id and ``status`` written, the routing keys of the header from
        ``strings`` (and, with ``body_keys``, those of the body in front of ``body``),
        then ``body``, the length fields set to match or the delimiter after it.
        LayoutError if a value does not fit."""
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
            if len(raw) > key.max_size:
                raise _over(key.name, len(raw), key.max_size)
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
        if body_keys and self.body_keys:
            body = self._body_with_keys(strings, body)
        frame += body
        if self.delimiter:
            if frame.find(self.delimiter, self.header_size) >= 0:
                raise LayoutError(f"the frame holds its delimiter {self.delimiter!r} before "
                                  "its end")
            frame += self.delimiter
        else:
            self._write_lengths(frame)
        return bytes(frame)

    def _body_with_keys(self, strings: dict[str, str], payload: bytes) -> bytes:
        """``payload`` behind the body's routing keys, laid out as they are read."""
        keys = self.body_keys
        form = self.body_form
        if form == "offset":
            head = bytearray()
            for key in sorted(keys, key=lambda k: k.offset):
                value = strings.get(key.name, "")
                head += bytes(max(0, key.offset - len(head)))
                if key.prefix is None:
                    head[key.offset:key.offset + key.size] = self._fixed_bytes(  # type: ignore[operator]
                        key.name, key.type, key.size, key.number, key.encoding,  # type: ignore[arg-type]
                        value)
                    continue
                raw = self._bounded(key, value)
                if len(raw) > (1 << (8 * key.prefix.size)) - 1:
                    raise LayoutError(f"{key.name} is too long for its length prefix")
                head += key.prefix.pack(len(raw)) + raw
            return bytes(head) + payload
        first = keys[0]
        head = bytearray(first.offset)
        if form == "lines":
            for key in keys:
                raw = self._bounded(key, strings.get(key.name, ""))
                if key.line_end in raw:
                    raise LayoutError(f"{key.name}: {raw!r} holds the line end")
                head += key.key + raw + key.line_end
            return bytes(head + first.line_end + payload)
        fields = [b""] * (max(k.field for k in keys) + 1)
        for key in keys:
            raw = self._bounded(key, strings.get(key.name, ""))
            if key.delimiter in raw:
                raise LayoutError(f"{key.name}: {raw!r} holds the delimiter")
            fields[key.field] = raw
        return bytes(head + first.delimiter.join(fields) + first.delimiter + payload)

    @staticmethod
    def _bounded(key: BodyField, value: str) -> bytes:
        raw = value.encode(key.encoding)
        if len(raw) > key.max_size:
            raise _over(key.name, len(raw), key.max_size)
        return raw

    @staticmethod
    def _fixed_bytes(name: str, type_: str, size: int, number: struct.Struct | None,
                     encoding: str, value: str) -> bytes:
        if type_ == "uint":
            if not (value.isascii() and value.isdigit()) or int(value) >= 1 << (8 * size):
                raise LayoutError(f"{name}: {value!r} is not a number that fits {size} bytes")
            return number.pack(int(value))  # type: ignore[union-attr]
        if type_ == "hex":
            try:
                raw = bytes.fromhex(value)
            except ValueError:
                raise LayoutError(f"{name}: {value!r} is not hex") from None
        else:
            raw = value.encode(encoding)
        if len(raw) > size:
            raise LayoutError(f"{name}: {value!r} is longer than its {size} bytes")
        return raw.ljust(size, b"\0")

    def _write_fixed(self, frame: bytearray, key: FixedKey, value: str) -> None:
        number = key.number.struct if key.number is not None else None
        frame[key.offset:key.offset + key.size] = self._fixed_bytes(
            key.name, key.type, key.size, number, key.encoding, value)

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
