"""Just enough Hessian 2.0 for routing: read strings, skip any value, read a map of
strings; and write the few values mosn's own frames carry.

Dubbo's request body is a row of hessian2 values (``dubbo/remoting/.../
DecodeableRpcInvocation``): dubbo version, service path, service version, method,
the parameter descriptor, the arguments, the attachments map. Routing needs the
first four strings and the attachments, so the arguments are *skipped*, never built:
no objects, no class lookups, and a long string or binary is passed over by its
length (C-speed counting), not read character by character.

Why not a library from PyPI: ``python-hessian`` (pyhessian 1.2.0) and ``pyhessian2``
build whole Python objects from a stream and cannot stop after four strings or step
over a value; the Dubbo clients on PyPI (``python3-dubbo`` ...) carry private copies
of such a decoder. A reader that skips is smaller than adapting any of them.

Spec: the Hessian 2.0 Serialization Protocol (caucho.com, "hessian-serialization"),
as written by Java's hessian-lite (Dubbo) and hessian.js. A string's length counts
UTF-16 code units; Java writes each unit as 1 to 3 bytes (a surrogate pair as two
3-byte sequences), hessian.js may write an astral character as 4 bytes (2 units).
"""

from __future__ import annotations

import struct

__all__ = [
    "HessianError",
    "Reader",
    "encode_binary",
    "encode_int",
    "encode_map",
    "encode_string",
    "NULL",
]

MAX_DEPTH = 64
"""Lists, maps and objects nested deeper than this are refused: real arguments are
far shallower, and the skipper recurses once per level."""
STRING_CHUNK = 0x8000
"""UTF-16 units per string chunk, as Java's hessian writes them."""

NULL = b"N"
_END = 0x5A  # 'Z': ends a variable-length list or a map

_U16 = struct.Struct(">H")
_I32 = struct.Struct(">i")
_CONTINUATION = bytes(range(0x80, 0xC0))
_NOT_FOUR_BYTE_LEAD = bytes(b for b in range(256) if not 0xF0 <= b <= 0xF7)
_SEQUENCE_LENGTH = (1,) * 8 + (0,) * 4 + (2, 2, 3, 4)
"""UTF-8 sequence length by the lead byte's high nibble (0: a stray continuation byte)."""

# Fixed-size values: tag -> bytes after the tag.
_FIXED: dict[int, int] = {
    0x44: 8,  # D double
    0x46: 0, 0x54: 0, 0x4E: 0,  # F T N
    0x49: 4,  # I int
    0x4A: 8,  # J date (ms)
    0x4B: 4,  # K date (minutes)
    0x4C: 8,  # L long
    0x59: 4,  # Y long as int32
    0x5B: 0, 0x5C: 0,  # double 0.0, 1.0
    0x5D: 1, 0x5E: 2, 0x5F: 4,  # double as byte, short, float
}
for _t in range(0x38, 0x40):
    _FIXED[_t] = 2  # long, three octets
for _t in range(0x80, 0xC0):
    _FIXED[_t] = 0  # int, one octet
for _t in range(0xC0, 0xD0):
    _FIXED[_t] = 1  # int, two octets
for _t in range(0xD0, 0xD8):
    _FIXED[_t] = 2  # int, three octets
for _t in range(0xD8, 0xF0):
    _FIXED[_t] = 0  # long, one octet
for _t in range(0xF0, 0x100):
    _FIXED[_t] = 1  # long, two octets


class HessianError(ValueError):
    """Bytes that are not the hessian2 value expected (or end too soon)."""


def _is_string_tag(tag: int) -> bool:
    return tag <= 0x1F or 0x30 <= tag <= 0x33 or tag in (0x52, 0x53)


def _utf16_units(chunk: bytes) -> int:
    """UTF-16 units encoded in ``chunk``: one per lead byte, two per 4-byte lead."""
    return (len(chunk.translate(None, _CONTINUATION))
            + len(chunk.translate(None, _NOT_FOUR_BYTE_LEAD)))


class Reader:
    """Reads hessian2 values from ``data[pos:end]``, moving ``pos`` past each."""

    __slots__ = ("data", "pos", "end", "_classes")

    def __init__(self, data: bytes, pos: int = 0, end: int | None = None) -> None:
        self.data = data
        self.pos = pos
        self.end = len(data) if end is None else end
        self._classes: list[int] = []
        """Field counts of the class definitions seen so far (``O`` refers to them)."""

    # -- primitives -----------------------------------------------------------------------

    def _byte(self) -> int:
        if self.pos >= self.end:
            raise HessianError("hessian2: the body ends inside a value")
        b = self.data[self.pos]
        self.pos += 1
        return b

    def _advance(self, n: int) -> None:
        if n > self.end - self.pos:
            raise HessianError(f"hessian2: a value of {n} bytes with {self.end - self.pos} left")
        self.pos += n

    def peek(self) -> int:
        if self.pos >= self.end:
            raise HessianError("hessian2: the body ends where a value was due")
        return self.data[self.pos]

    def read_int(self) -> int:
        tag = self._byte()
        data, pos = self.data, self.pos
        if 0x80 <= tag <= 0xBF:
            return tag - 0x90
        if 0xC0 <= tag <= 0xCF:
            self._advance(1)
            return ((tag - 0xC8) << 8) + data[pos]
        if 0xD0 <= tag <= 0xD7:
            self._advance(2)
            return ((tag - 0xD4) << 16) + (data[pos] << 8) + data[pos + 1]
        if tag == 0x49:
            self._advance(4)
            return _I32.unpack_from(data, pos)[0]
        raise HessianError(f"hessian2: tag {tag:#04x} where an int was due")

    # -- strings ----------------------------------------------------------------------------

    def _span(self, units: int) -> int:
        """The end of ``units`` UTF-16 units of text starting at ``pos``."""
        data, start, end = self.data, self.pos, self.end
        stop = start + units
        if stop <= end and data[start:stop].isascii():
            return stop
        counted, cur = 0, start
        while counted < units:
            stop = cur + (units - counted)
            if stop > end:
                raise HessianError("hessian2: the body ends inside a string")
            counted += _utf16_units(data[cur:stop])
            cur = stop
        if cur == start:
            return cur
        # The last character counted may go on past ``cur``: as many bytes as its lead
        # byte says, and no more (the next value's tag may look like a continuation
        # byte: an int from -16 to 47 is one byte 0x80-0xBF).
        lead = cur - 1
        while lead > start and 0x80 <= data[lead] <= 0xBF:
            lead -= 1
        length = _SEQUENCE_LENGTH[data[lead] >> 4]
        if not length:
            raise HessianError("hessian2: a string is not UTF-8")
        cur = max(cur, lead + length)
        if cur > end:
            raise HessianError("hessian2: the body ends inside a character")
        return cur

    def _string_chunks(self, first_tag: int, keep: bool) -> str | None:
        parts: list[bytes] = []
        tag = first_tag
        while True:
            if tag <= 0x1F:
                units, final = tag, True
            elif 0x30 <= tag <= 0x33:
                units, final = ((tag - 0x30) << 8) + self._byte(), True
            elif tag == 0x52 or tag == 0x53:
                self._advance(2)
                units, final = _U16.unpack_from(self.data, self.pos - 2)[0], tag == 0x53
            else:
                raise HessianError(f"hessian2: tag {tag:#04x} inside a string")
            stop = self._span(units)
            if keep:
                parts.append(self.data[self.pos:stop])
            self.pos = stop
            if final:
                break
            tag = self._byte()
        if not keep:
            return None
        raw = b"".join(parts)
        try:
            text = raw.decode("utf-8", "surrogatepass")
        except UnicodeDecodeError:
            raise HessianError("hessian2: a string is not UTF-8") from None
        if any("\ud800" <= c <= "\udfff" for c in text):  # Java's surrogate pairs
            text = text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
        return text

    def read_string(self) -> str:
        tag = self._byte()
        if not _is_string_tag(tag):
            raise HessianError(f"hessian2: tag {tag:#04x} where a string was due")
        return self._string_chunks(tag, True)  # type: ignore[return-value]

    def read_string_or_null(self) -> str | None:
        if self.peek() == 0x4E:
            self.pos += 1
            return None
        return self.read_string()

    # -- any value ------------------------------------------------------------------------

    def skip(self, depth: int = 0) -> None:
        """Step over one value of any type."""
        if depth > MAX_DEPTH:
            raise HessianError(f"hessian2: values nested deeper than {MAX_DEPTH}")
        tag = self._byte()
        while tag == 0x43:  # 'C' class definition, then the value that uses it
            self._skip_type()
            fields = self.read_int()
            if fields < 0:
                raise HessianError("hessian2: a class definition with a negative field count")
            for _ in range(fields):
                self.read_string()
            self._classes.append(fields)
            tag = self._byte()
        fixed = _FIXED.get(tag)
        if fixed is not None:
            self._advance(fixed)
        elif _is_string_tag(tag):
            self._string_chunks(tag, False)
        elif 0x20 <= tag <= 0x2F:
            self._advance(tag - 0x20)
        elif 0x34 <= tag <= 0x37:
            self._advance(((tag - 0x34) << 8) + self._byte())
        elif tag == 0x41 or tag == 0x42:  # binary chunks: 'A' more follow, 'B' last
            while True:
                self._advance(2)
                self._advance(_U16.unpack_from(self.data, self.pos - 2)[0])
                if tag == 0x42:
                    break
                tag = self._byte()
                if 0x20 <= tag <= 0x2F:
                    self._advance(tag - 0x20)
                    break
                if 0x34 <= tag <= 0x37:
                    self._advance(((tag - 0x34) << 8) + self._byte())
                    break
                if tag not in (0x41, 0x42):
                    raise HessianError(f"hessian2: tag {tag:#04x} inside a binary")
        elif tag == 0x48:  # 'H' untyped map
            self._skip_entries(depth)
        elif tag == 0x4D:  # 'M' typed map
            self._skip_type()
            self._skip_entries(depth)
        elif tag == 0x4F or 0x60 <= tag <= 0x6F:  # object instance
            index = self.read_int() if tag == 0x4F else tag - 0x60
            if not 0 <= index < len(self._classes):
                raise HessianError(f"hessian2: an object of undefined class #{index}")
            for _ in range(self._classes[index]):
                self.skip(depth + 1)
        elif tag == 0x51:  # 'Q' reference to an earlier value
            self.read_int()
        elif tag == 0x55:  # 'U' typed list, variable length
            self._skip_type()
            self._skip_until_end(depth)
        elif tag == 0x56:  # 'V' typed list, fixed length
            self._skip_type()
            self._skip_values(self.read_int(), depth)
        elif tag == 0x57:  # 'W' untyped list, variable length
            self._skip_until_end(depth)
        elif tag == 0x58:  # 'X' untyped list, fixed length
            self._skip_values(self.read_int(), depth)
        elif 0x70 <= tag <= 0x77:  # typed list, compact length
            self._skip_type()
            self._skip_values(tag - 0x70, depth)
        elif 0x78 <= tag <= 0x7F:  # untyped list, compact length
            self._skip_values(tag - 0x78, depth)
        else:
            raise HessianError(f"hessian2: tag {tag:#04x} does not start a value")

    def _skip_type(self) -> None:
        """``type ::= string | int`` (an int refers to a type named earlier)."""
        if _is_string_tag(self.peek()):
            self._string_chunks(self._byte(), False)
        else:
            self.read_int()

    def _skip_values(self, count: int, depth: int) -> None:
        if count < 0:
            raise HessianError("hessian2: a list of negative length")
        for _ in range(count):  # each value takes at least a byte: bounded by the body
            self.skip(depth + 1)

    def _skip_until_end(self, depth: int) -> None:
        while self.peek() != _END:
            self.skip(depth + 1)
        self.pos += 1

    def _skip_entries(self, depth: int) -> None:
        while self.peek() != _END:
            self.skip(depth + 1)
            self.skip(depth + 1)
        self.pos += 1

    # -- maps of strings --------------------------------------------------------------------

    def read_string_map(self) -> dict[str, str]:
        """A map (``H``, ``M`` or null): its string keys with string values; other
        entries are stepped over."""
        tag = self._byte()
        if tag == 0x4E:
            return {}
        if tag == 0x4D:
            self._skip_type()
        elif tag != 0x48:
            raise HessianError(f"hessian2: tag {tag:#04x} where a map was due")
        out: dict[str, str] = {}
        while self.peek() != _END:
            key = self._string_or_skip()
            value = self._string_or_skip()
            if key is not None and value is not None:
                out[key] = value
        self.pos += 1
        return out

    def _string_or_skip(self) -> str | None:
        if _is_string_tag(self.peek()):
            return self.read_string()
        self.skip(1)
        return None


# -- writing (mosn's own frames: error replies, tool requests) -------------------------------


def _java_units(text: str) -> list[str]:
    """``text`` as Java chars: an astral character becomes its surrogate pair."""
    if all(ord(c) < 0x10000 for c in text):
        return list(text)
    raw = text.encode("utf-16-be")
    return [chr(u) for (u,) in struct.iter_unpack(">H", raw)]


def encode_string(text: str) -> bytes:
    """A hessian2 string, as Java's hessian writes it (chunks of 32768 units)."""
    units = _java_units(text)
    out = bytearray()
    while len(units) > STRING_CHUNK:
        chunk, units = units[:STRING_CHUNK], units[STRING_CHUNK:]
        out += b"R" + _U16.pack(STRING_CHUNK) + "".join(chunk).encode("utf-8", "surrogatepass")
    n = len(units)
    raw = "".join(units).encode("utf-8", "surrogatepass")
    if n <= 0x1F:
        out.append(n)
    elif n <= 0x3FF:
        out += bytes([0x30 + (n >> 8), n & 0xFF])
    else:
        out += b"S" + _U16.pack(n)
    return bytes(out + raw)


def encode_binary(data: bytes) -> bytes:
    out = bytearray()
    while len(data) > 0xFFFF:
        out += b"A" + _U16.pack(0xFFFF) + data[:0xFFFF]
        data = data[0xFFFF:]
    n = len(data)
    if n <= 0x0F:
        out.append(0x20 + n)
    elif n <= 0x3FF:
        out += bytes([0x34 + (n >> 8), n & 0xFF])
    else:
        out += b"B" + _U16.pack(n)
    return bytes(out + data)


def encode_int(value: int) -> bytes:
    if -0x10 <= value <= 0x2F:
        return bytes([value + 0x90])
    if -0x800 <= value <= 0x7FF:
        return bytes([0xC8 + (value >> 8), value & 0xFF])
    if -0x40000 <= value <= 0x3FFFF:
        return bytes([0xD4 + (value >> 16), (value >> 8) & 0xFF, value & 0xFF])
    return b"I" + _I32.pack(value)


def encode_map(items: dict[str, str]) -> bytes:
    """An untyped map (``H``) of strings, as Dubbo writes its attachments."""
    out = bytearray(b"H")
    for key, value in items.items():
        out += encode_string(key) + encode_string(value)
    out.append(_END)
    return bytes(out)
