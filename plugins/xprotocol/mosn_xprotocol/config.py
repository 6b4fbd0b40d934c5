"""The config of a declarative codec: a private length-prefixed RPC protocol described
in the proxy's ``extend_config.xprotocol.codec`` instead of written in Python.

Every fixed field names its ``offset`` in the frame and its ``size`` in bytes (1, 2,
4 or 8; unsigned; ``byte_order`` big unless the codec or the field says little).
The fixed header is ``header_size`` bytes; everything the routing keys read after
it, then the body, make up the rest of the frame, whose size the ``length`` fields
give. Models refuse unknown keys: a typo in a protocol description is an error, not
a warning.
"""

from __future__ import annotations

import codecs
from typing import Annotated, Any, Iterable, Literal

from pydantic import BeforeValidator, ConfigDict, Field, field_validator, model_validator

from mosn.config.base import Model

MAX_HEADER_SIZE = 4096
"""Bytes of a fixed header: a page is far more than any RPC header needs."""
DEFAULT_MAX_FRAME_SIZE = 16 * 1024 * 1024
"""A frame is held whole before it is forwarded; a larger one is refused (bad_frame)."""
MAX_MAX_FRAME_SIZE = 1024 * 1024 * 1024
"""The largest limit a config may set (MOSN's suspect-frame size)."""
MAX_MAGIC_BYTES = 16
"""Magic longer than this is a header, not a magic."""
MAX_STRING_OFFSET = 2 * MAX_HEADER_SIZE
"""Where a routing string after the header may start at the latest: past a header of
at most ``MAX_HEADER_SIZE`` bytes, as many again of fields mosn does not read. Every
reply mosn builds (an error reply to a bad frame too) is written with zeros up to it."""
INT_SIZES = (1, 2, 4, 8)

ByteOrder = Literal["big", "little"]


def _one_or_many(value: Any) -> Any:
    return [value] if isinstance(value, int) else value


IntList = Annotated[list[int], BeforeValidator(_one_or_many)]


class Strict(Model):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class IntField(Strict):
    """An unsigned integer at a fixed offset."""

    offset: int = Field(ge=0)
    size: Literal[1, 2, 4, 8]
    byte_order: ByteOrder | None = None
    """Default: the codec's ``byte_order``."""

    @property
    def end(self) -> int:
        return self.offset + self.size

    @property
    def max_value(self) -> int:
        return (1 << (8 * self.size)) - 1


class Magic(Strict):
    """Bytes every frame has at ``offset`` (``hex: "cafe"`` or ``text: "AC"``); they
    let ``downstream_protocol: Auto`` recognise the protocol and reject strangers."""

    offset: int = Field(default=0, ge=0)
    hex: str | None = None
    text: str | None = None

    @model_validator(mode="after")
    def _one_form(self) -> "Magic":
        if (self.hex is None) == (self.text is None):
            raise ValueError("set one of hex or text")
        value = self.value  # raises on bad hex
        if not 1 <= len(value) <= MAX_MAGIC_BYTES:
            raise ValueError(f"a magic is 1 to {MAX_MAGIC_BYTES} bytes")
        return self

    @property
    def value(self) -> bytes:
        if self.text is not None:
            return self.text.encode("latin-1")
        try:
            return bytes.fromhex(self.hex or "")
        except ValueError:
            raise ValueError(f"hex: {self.hex!r} is not hex bytes") from None

    @property
    def end(self) -> int:
        return self.offset + len(self.value)


class Length(Strict):
    """Where the frame's size comes from: the sum of ``fields``, counting

    - ``after_header``: the bytes after the fixed header (the default);
    - ``after_field``: the bytes after the (single) length field itself;
    - ``frame``: the whole frame, header included;

    plus ``adjust`` (which may be negative), as Netty's ``lengthAdjustment``.
    A single field may be written in place: ``length: {offset: 12, size: 4}``.
    """

    fields: list[IntField] = Field(min_length=1)
    counts: Literal["after_header", "after_field", "frame"] = "after_header"
    adjust: int = 0

    @model_validator(mode="before")
    @classmethod
    def _single_field(cls, data: Any) -> Any:
        if isinstance(data, dict) and "offset" in data and "fields" not in data:
            field = {k: data[k] for k in ("offset", "size", "byte_order") if k in data}
            rest = {k: v for k, v in data.items() if k not in field}
            return {"fields": [field], **rest}
        return data

    @model_validator(mode="after")
    def _after_field_needs_one(self) -> "Length":
        if self.counts == "after_field" and len(self.fields) != 1:
            raise ValueError("counts: after_field needs exactly one length field")
        return self


FRAME_KINDS = ("request", "oneway", "response", "heartbeat", "heartbeat_reply", "goaway")


class KindField(Strict):
    """The field that says what a frame is, and the values (after ``mask``) for each
    kind. ``request`` and ``response`` are required; a kind without values never
    occurs. Replies the proxy builds write the first value of their kind, keeping
    the bits outside ``mask`` of the frame they answer."""

    offset: int = Field(ge=0)
    size: Literal[1, 2, 4, 8] = 1
    byte_order: ByteOrder | None = None
    mask: int | None = Field(default=None, ge=1)
    request: IntList = Field(min_length=1)
    response: IntList = Field(min_length=1)
    oneway: IntList = Field(default_factory=list)
    heartbeat: IntList = Field(default_factory=list)
    """A keep-alive request, answered by mosn itself."""
    heartbeat_reply: IntList = Field(default_factory=list)
    """Default: heartbeats are answered with a ``response`` value."""
    goaway: IntList = Field(default_factory=list)

    @model_validator(mode="after")
    def _distinct_values(self) -> "KindField":
        limit = self.mask if self.mask is not None else (1 << (8 * self.size)) - 1
        if limit > (1 << (8 * self.size)) - 1:
            raise ValueError(f"mask {limit:#x} is wider than {self.size} byte(s)")
        seen: dict[int, str] = {}
        for kind in FRAME_KINDS:
            for value in getattr(self, kind):
                if value < 0 or value & ~limit:
                    raise ValueError(f"{kind}: {value:#x} does not fit the field (and its mask)")
                if value in seen:
                    raise ValueError(f"{kind}: {value:#x} already means {seen[value]}")
                seen[value] = kind
        return self

    @property
    def end(self) -> int:
        return self.offset + self.size


class StatusField(Strict):
    """A response's status, and the statuses the proxy answers its own failures with.
    Each failure not given a status of its own is answered with ``error``."""

    offset: int = Field(ge=0)
    size: Literal[1, 2, 4, 8]
    byte_order: ByteOrder | None = None
    success: int = Field(default=0, ge=0)
    error: int = Field(ge=0)
    """Any failure, and what a status this config does not name reads back as (500)."""
    no_route: int | None = Field(default=None, ge=0)
    """No route matched the request (HTTP-like 404)."""
    no_healthy_upstream: int | None = Field(default=None, ge=0)
    """No host to send it to (503)."""
    overflow: int | None = Field(default=None, ge=0)
    """A circuit breaker or pool limit said no (503 with Envoy's UO flag)."""
    timeout: int | None = Field(default=None, ge=0)
    """No response within the route's timeout (504)."""
    upstream_lost: int | None = Field(default=None, ge=0)
    """The upstream connection failed or closed with the request in flight (502)."""
    bad_frame: int | None = Field(default=None, ge=0)
    """The request could not be decoded (400)."""
    forbidden: int | None = Field(default=None, ge=0)
    """A filter refused the request (403)."""

    @model_validator(mode="after")
    def _fits(self) -> "StatusField":
        top = (1 << (8 * self.size)) - 1
        for name in ("success", "error", *FAILURES):
            value = getattr(self, name)
            if value is not None and value > top:
                raise ValueError(f"{name}: {value} does not fit {self.size} byte(s)")
        if self.error == self.success:
            raise ValueError("error and success must differ")
        for name in FAILURES:
            if getattr(self, name) == self.success:
                raise ValueError(f"{name}: a failure cannot have the success status")
        return self

    @property
    def end(self) -> int:
        return self.offset + self.size


FAILURES = ("no_route", "no_healthy_upstream", "overflow", "timeout", "upstream_lost",
            "bad_frame", "forbidden")
"""The failures the proxy answers itself, in the order their statuses are looked up."""


class TimeoutField(Strict):
    """How long the caller waits, in requests (0 or less: not said). It caps the
    route's timeout, as bolt's timeout field does."""

    offset: int = Field(ge=0)
    size: Literal[1, 2, 4, 8]
    byte_order: ByteOrder | None = None
    unit: Literal["ms", "s"] = "ms"
    signed: bool = True
    """Read as a signed integer (so -1 means none, as bolt writes)."""

    @property
    def end(self) -> int:
        return self.offset + self.size


class RoutingKey(Strict):
    """Where a routing header (``service``, ``method`` ...) comes from. Either

    - a fixed-width field in the header: ``offset`` and ``size``, read as ``type``
      ``string`` (NUL padding dropped), ``uint`` (decimal) or ``hex``; or
    - a string after the header, starting at ``offset`` or right ``after`` another
      such key, its length given by a ``length_prefix`` of 1, 2 or 4 bytes in front
      of it or by a ``length_field`` of the header.
    """

    offset: int | None = Field(default=None, ge=0)
    size: int | None = Field(default=None, ge=1, le=MAX_HEADER_SIZE)
    type: Literal["string", "uint", "hex"] = "string"
    after: str | None = None
    length_prefix: Literal[1, 2, 4] | None = None
    length_field: IntField | None = None
    byte_order: ByteOrder | None = None
    """Of the length prefix, or of a ``uint`` field."""
    encoding: str = "utf-8"

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, value: str) -> str:
        try:
            codecs.lookup(value)
        except LookupError:
            raise ValueError(f"unknown encoding {value!r}") from None
        return value

    @model_validator(mode="after")
    def _one_form(self) -> "RoutingKey":
        variable = self.length_prefix is not None or self.length_field is not None
        if not variable:
            if self.offset is None or self.size is None or self.after is not None:
                raise ValueError("a fixed field needs offset and size; a string after the "
                                 "header needs length_prefix or length_field")
            if self.type == "uint" and self.size not in INT_SIZES:
                raise ValueError("a uint field is 1, 2, 4 or 8 bytes")
            return self
        if self.length_prefix is not None and self.length_field is not None:
            raise ValueError("set one of length_prefix or length_field")
        if (self.offset is None) == (self.after is None):
            raise ValueError("a string after the header starts at an offset or after another key")
        if self.size is not None or self.type != "string":
            raise ValueError("size and type are for fixed fields")
        return self

    @property
    def fixed(self) -> bool:
        return self.length_prefix is None and self.length_field is None


class CodecConfig(Strict):
    """A private protocol, declared: what mosn's RPC engine needs to route, remap
    request ids, answer heartbeats and reply errors, without decoding bodies."""

    name: str = "xprotocol"
    """What the protocol is called in error messages and logs."""
    byte_order: ByteOrder = "big"
    header_size: int = Field(ge=1, le=MAX_HEADER_SIZE)
    magic: Magic | None = None
    length: Length
    request_id: IntField
    kind: KindField
    status: StatusField
    timeout: TimeoutField | None = None
    routing: dict[str, RoutingKey] = Field(default_factory=dict)
    """Routing header name (lower case, as the router matches it) -> where it is."""
    multiplexed: bool = True
    """False: one request at a time on a connection (ping-pong)."""
    max_frame_size: int = Field(default=DEFAULT_MAX_FRAME_SIZE, le=MAX_MAX_FRAME_SIZE)

    @model_validator(mode="after")
    def _consistent(self) -> "CodecConfig":
        problems = list(self._problems())
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def _problems(self) -> Iterable[str]:
        if self.max_frame_size < self.header_size:
            yield f"max_frame_size {self.max_frame_size} is smaller than header_size"
        fixed: list[tuple[str, int, int]] = []
        if self.magic is not None:
            fixed.append(("magic", self.magic.offset, self.magic.end))
        fixed += [(f"length.fields[{i}]", f.offset, f.end)
                  for i, f in enumerate(self.length.fields)]
        fixed += [("request_id", self.request_id.offset, self.request_id.end),
                  ("kind", self.kind.offset, self.kind.end),
                  ("status", self.status.offset, self.status.end)]
        if self.timeout is not None:
            fixed.append(("timeout", self.timeout.offset, self.timeout.end))
        for name, key in self.routing.items():
            if key.fixed:
                start = key.offset or 0
                fixed.append((f"routing.{name}", start, start + (key.size or 0)))
            elif key.length_field is not None:
                fixed.append((f"routing.{name}.length_field", key.length_field.offset,
                              key.length_field.end))
        for name, start, end in fixed:
            if end > self.header_size:
                yield (f"{name} (bytes {start}-{end - 1}) is outside the "
                       f"{self.header_size}-byte header")
        # Status and timeout may share bytes: one is read in responses, the other in
        # requests (bolt's layout). Routing keys and string lengths may be read twice.
        exclusive = [f for f in fixed if not f[0].startswith("routing.")]
        for i, (a, a0, a1) in enumerate(exclusive):
            for b, b0, b1 in exclusive[i + 1:]:
                if a0 < b1 and b0 < a1 and {a, b} != {"status", "timeout"}:
                    yield f"{a} and {b} overlap"
        strings = {name: key for name, key in self.routing.items() if not key.fixed}
        for name, key in self.routing.items():
            if name != name.lower() or not name:
                yield f"routing.{name}: routing keys are lower case (the router matches them so)"
        for name, key in strings.items():
            if key.offset is not None and key.offset < self.header_size:
                yield (f"routing.{name}.offset: a string starts after the header "
                       f"(at {self.header_size} or later)")
            if key.offset is not None and key.offset > MAX_STRING_OFFSET:
                yield (f"routing.{name}.offset: a string starts at {MAX_STRING_OFFSET} "
                       "at the latest")
            chain, current = [name], key
            while current.after is not None:
                if current.after not in strings:
                    yield (f"routing.{chain[-1]}.after: {current.after!r} is not a routing "
                           "string (one with length_prefix or length_field)")
                    break
                if current.after in chain:
                    yield (f"routing.{name}.after: the strings {' -> '.join(chain)} "
                           "go round in a circle")
                    break
                chain.append(current.after)
                current = strings[current.after]
        bound = {(k.length_field.offset, k.length_field.size)
                 for k in self.routing.values() if k.length_field is not None}
        free = [f for f in self.length.fields if (f.offset, f.size) not in bound]
        if len(free) > 1:
            yield ("length: at most one length field may count something other than a "
                   "routing string (the body); mosn could not build replies otherwise")
        if len(free) == 0 and self.length.counts != "after_header":
            yield "length: the body needs a length field of its own"


class XProtocolConfig(Model):
    """``extend_config.xprotocol`` of a ``proxy`` filter (and ``--protocol-config`` of
    ``mosn mock client --protocol xprotocol``)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    codec: CodecConfig | None = None

    def cross_check(self, root: Any, plugins: Any) -> Iterable[tuple[str, str]]:
        """Called when the proxy speaks ``xprotocol``: it needs a codec."""
        if self.codec is None:
            yield "codec", ("describe the protocol: a proxy speaking xprotocol needs "
                            "extend_config.xprotocol.codec")
