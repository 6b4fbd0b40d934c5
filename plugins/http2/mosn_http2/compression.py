"""HPACK (RFC 7541) for h2's connections: an encoder in place of hpack's, and
hpack's decoder with a fast path.

hpack's encoder searches its dynamic table entry by entry and Huffman-codes every
literal again; on a proxy's response path it was about a tenth of the CPU per
request. ``Encoder`` keeps the same dynamic table (incremental indexing, eviction by
size) with two dicts over it, so a field sent before is one lookup and one cached
byte string, and caches the coded form of short strings. h2 uses an encoder through
``encode(headers)`` and the ``header_table_size`` setter (the peer's
SETTINGS_HEADER_TABLE_SIZE); that is all it provides.

As h2 does when it normalises outbound headers (which the codecs turn off), the
credentials in ``authorization``, ``proxy-authorization`` and short ``cookie`` values
are never indexed (RFC 7541 7.1.3), so they never enter a compression context that
other requests' fields could probe.

``Decoder`` is hpack's with the loop over a block rewritten: a field indexed in one
byte (most fields, once a connection is warm) is read from the table in place and
handed back as a plain tuple of bytes; every other representation, and every error,
goes through hpack's own methods.
"""

from __future__ import annotations

from collections import deque
from typing import Iterable

from hpack import Decoder as HpackDecoder
from hpack import HeaderTuple
from hpack.exceptions import HPACKDecodingError, OversizedHeaderListError
from hpack.hpack import encode_integer
from hpack.huffman import HuffmanEncoder
from hpack.huffman_constants import REQUEST_CODES, REQUEST_CODES_LENGTH
from hpack.table import HeaderTable

DEFAULT_TABLE_SIZE = 4096
"""The dynamic table size both ends start with (SETTINGS_HEADER_TABLE_SIZE's
default, RFC 9113 6.5.2)."""
MAX_TABLE_SIZE = 4096
"""The largest dynamic table kept, whatever the peer allows (an encoder may use less,
RFC 7541 4.2): a peer cannot make a connection hold more than this of our fields."""
ENTRY_OVERHEAD = 32
"""Bytes counted per table entry on top of its name and value (RFC 7541 4.1)."""
STRING_CACHE_SIZE = 4096
"""Coded strings kept (shared by all connections; emptied when full)."""
STRING_CACHE_MAX_LENGTH = 256
"""Longer strings are coded each time, not cached."""
SHORT_COOKIE = 20
"""Cookie values shorter than this are never indexed (guessable; h2's threshold)."""

NEVER_INDEXED_NAMES = frozenset({b"authorization", b"proxy-authorization"})
PER_REQUEST_NAMES = frozenset({
    b"x-request-id", b"traceparent", b"x-b3-traceid", b"x-b3-spanid", b"x-b3-parentspanid",
    b"uber-trace-id", b"sw8", b"x-amzn-trace-id", b"x-cloud-trace-context",
})
"""Fields whose value is new on every request (ids; mosn adds x-request-id to each):
sent without indexing and without the cache, so they push neither the other fields
out of the table nor the other strings out of the cache; and not Huffman-coded, which
would save about a quarter of their bytes for a per-byte loop in Python each time."""

_STATIC: dict[tuple[bytes, bytes], int] = {}
_STATIC_NAMES: dict[bytes, int] = {}
for _index, (_name, _value) in enumerate(HeaderTable.STATIC_TABLE, 1):
    _STATIC.setdefault((_name, _value), _index)
    _STATIC_NAMES.setdefault(_name, _index)
_STATIC_TABLE = HeaderTable.STATIC_TABLE
_STATIC_LENGTH = len(_STATIC_TABLE)
_DYNAMIC_BASE = _STATIC_LENGTH + 1
"""The index of the dynamic table's newest entry (RFC 7541 2.3.3)."""

_huffman = HuffmanEncoder(REQUEST_CODES, REQUEST_CODES_LENGTH).encode
_strings: dict[bytes, bytes] = {}
_INDEXED = [b""] + [bytes(encode_integer(i, 7)) for i in range(1, 256)]
for _i in range(1, 256):
    _INDEXED[_i] = bytes([_INDEXED[_i][0] | 0x80]) + _INDEXED[_i][1:]


def _integer(value: int, prefix_bits: int, flags: int) -> bytes:
    field = encode_integer(value, prefix_bits)
    field[0] |= flags
    return bytes(field)


def _string(text: bytes) -> bytes:
    """A string literal (RFC 7541 5.2), Huffman-coded when that is shorter; cached."""
    coded = _strings.get(text)
    if coded is None:
        huffman = _huffman(text)
        if len(huffman) < len(text):
            coded = _integer(len(huffman), 7, 0x80) + huffman
        else:
            coded = _integer(len(text), 7, 0) + text
        if len(text) <= STRING_CACHE_MAX_LENGTH:
            if len(_strings) >= STRING_CACHE_SIZE:
                _strings.clear()
            _strings[text] = coded
    return coded


class Encoder:
    """One connection's HPACK encoding context."""

    __slots__ = ("_limit", "_max", "_size", "_entries", "_exact", "_names", "_newest",
                 "_resized")

    def __init__(self) -> None:
        self._limit = DEFAULT_TABLE_SIZE  # the peer's SETTINGS_HEADER_TABLE_SIZE
        self._max = DEFAULT_TABLE_SIZE  # the size in use: min(limit, MAX_TABLE_SIZE)
        self._size = 0
        self._entries: deque[tuple[int, bytes, bytes, int]] = deque()
        """(number, name, value, size), oldest first; numbers grow by one per entry."""
        self._exact: dict[tuple[bytes, bytes], int] = {}
        """(name, value) -> the number of its newest entry."""
        self._names: dict[bytes, int] = {}
        """name -> the number of its newest entry."""
        self._newest = 0
        self._resized: list[int] = []
        """Sizes to signal at the start of the next block (the smallest, then the last)."""

    @property
    def header_table_size(self) -> int:
        return self._limit

    @header_table_size.setter
    def header_table_size(self, value: int) -> None:
        self._limit = value
        size = min(value, MAX_TABLE_SIZE)
        if size != self._max:
            self._max = size
            self._resized.append(size)
            self._evict(size)

    def _evict(self, room: int) -> None:
        """Drop the oldest entries until the table holds at most ``room`` bytes."""
        entries, exact, names = self._entries, self._exact, self._names
        while self._size > room and entries:
            number, name, value, size = entries.popleft()
            self._size -= size
            if exact.get((name, value)) == number:
                del exact[(name, value)]
            if names.get(name) == number:
                del names[name]

    def encode(self, headers: Iterable[tuple[bytes, bytes]]) -> bytes:
        out: list[bytes] = []
        if self._resized:
            # RFC 7541 4.2: the smallest size since the last block, then the last.
            sizes = self._resized
            smallest, last = min(sizes), sizes[-1]
            out.append(_integer(smallest, 5, 0x20))
            if last != smallest:
                out.append(_integer(last, 5, 0x20))
            sizes.clear()
        exact, names = self._exact, self._names
        for field in headers:
            name, value = field[0], field[1]
            key = (name, value)
            index = _STATIC.get(key)
            if index is None:
                number = exact.get(key)
                if number is not None:
                    index = _DYNAMIC_BASE + self._newest - number
            if index is not None:
                out.append(_INDEXED[index] if index < 256 else _integer(index, 7, 0x80))
                continue
            name_index = _STATIC_NAMES.get(name)
            if name_index is None and (number := names.get(name)) is not None:
                name_index = _DYNAMIC_BASE + self._newest - number
            if name in PER_REQUEST_NAMES:  # literal without indexing (RFC 7541 6.2.2)
                prefix = _integer(name_index, 4, 0) if name_index else b"\x00" + _string(name)
                out.append(prefix + _integer(len(value), 7, 0) + value)  # raw: see PER_REQUEST_NAMES
                continue
            sensitive = (name in NEVER_INDEXED_NAMES
                         or (name == b"cookie" and len(value) < SHORT_COOKIE)
                         or (isinstance(field, HeaderTuple) and not field.indexable))
            if sensitive:  # literal, never indexed (RFC 7541 6.2.3)
                prefix = _integer(name_index, 4, 0x10) if name_index else b"\x10" + _string(name)
            else:  # literal with incremental indexing (RFC 7541 6.2.1)
                prefix = _integer(name_index, 6, 0x40) if name_index else b"\x40" + _string(name)
            out.append(prefix + _string(value))
            if not sensitive:
                self._add(name, value)
        return b"".join(out)

    def _add(self, name: bytes, value: bytes) -> None:
        """RFC 7541 4.4: evict to make room, then add; an entry larger than the whole
        table empties it and is not added."""
        size = len(name) + len(value) + ENTRY_OVERHEAD
        if size > self._max:
            self._evict(0)
            return
        self._evict(self._max - size)
        self._newest += 1
        self._entries.append((self._newest, name, value, size))
        self._size += size
        self._exact[(name, value)] = self._newest
        self._names[name] = self._newest


class Decoder(HpackDecoder):
    """One connection's HPACK decoding context."""

    def decode(self, data: bytes, raw: bool = False) -> list[tuple[bytes, bytes]]:  # type: ignore[override]
        if not raw:
            return super().decode(data, raw)  # h2 asks for bytes (header_encoding None)
        dynamic = self.header_table.dynamic_entries
        view = memoryview(data)
        limit = self.max_header_list_size
        headers: list[tuple[bytes, bytes]] = []
        size = 0
        i, end = 0, len(data)
        while i < end:
            first = data[i]
            if first & 0x80:
                index = first & 0x7F
                if 0 < index <= _STATIC_LENGTH:
                    field = _STATIC_TABLE[index - 1]
                    i += 1
                elif _STATIC_LENGTH < index < 0x7F and index - _DYNAMIC_BASE < len(dynamic):
                    field = dynamic[index - _DYNAMIC_BASE]
                    i += 1
                else:  # a longer index, or an invalid one: hpack's way
                    field, consumed = self._decode_indexed(view[i:])
                    field = (bytes(field[0]), bytes(field[1]))
                    i += consumed
            elif first & 0x20 and not first & 0x40:
                if headers:
                    raise HPACKDecodingError("Table size update not at the start of the block")
                i += self._update_encoding_context(view[i:])
                continue
            else:
                literal = self._decode_literal_index if first & 0x40 else self._decode_literal_no_index
                field, consumed = literal(view[i:])
                field = field.__class__(bytes(field[0]), bytes(field[1]))
                i += consumed
            headers.append(field)
            size += len(field[0]) + len(field[1]) + ENTRY_OVERHEAD
            if size > limit:
                raise OversizedHeaderListError(f"A header list larger than {limit} has been received")
        self._assert_valid_table_size()
        return headers
