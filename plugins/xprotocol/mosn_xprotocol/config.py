"""The config of a declarative codec: a private RPC protocol described in the proxy's
``extend_config.xprotocol.codec`` instead of written in Python.

Every fixed field names its ``offset`` in the frame and either its ``size`` in bytes
(1, 2, 4 or 8; unsigned; ``byte_order`` big unless the codec or the field says
little) or its ``digits`` (an unsigned number written as ASCII decimal digits, for
text protocols). The fixed header is ``header_size`` bytes; the routing strings that
follow it, then the body, make up the rest of the frame, which ends where the
``length`` fields say or at the first ``delimiter`` after the header. Routing keys
live in the header, in strings after it, or inside the body. Models refuse unknown
keys: a typo in a protocol description is an error, not a warning.
"""

from __future__ import annotations

import codecs
from typing import Annotated, Any, ClassVar, Iterable, Literal

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
MAX_DELIMITER_BYTES = 16
"""A delimiter longer than this is a trailer with a structure of its own."""
MAX_DIGITS = 19
"""ASCII decimal fields up to 19 digits: every such number fits an unsigned 64 bits."""
DEFAULT_MAX_ROUTING_VALUE = 256
"""Bytes of one routing value (a service, method or tenant name): names are far
shorter; a longer value is refused (``bad_frame``) so that no header, reply or log
line carries the bulk of a request."""
MAX_MAX_ROUTING_VALUE = 4096
"""The most a description may allow one routing value (``max_size``)."""
DEFAULT_BODY_SEARCH = 4096
"""Body bytes searched for a ``key=value`` line or a delimited field: such routing
keys come first in a body, and a request must not cost a scan of all of it."""
MAX_BODY_SEARCH = 64 * 1024
"""The most a description may search (``search_limit``)."""
INT_SIZES = (1, 2, 4, 8)

ByteOrder = Literal["big", "little"]


def _kind_value(value: Any) -> Any:
    """A kind value: a number, or one character standing for its byte (``"Q"``)."""
    if isinstance(value, str):
        if len(value) != 1 or ord(value) > 0xFF:
            raise ValueError(f"{value!r}: a kind value is a number or one character")
        return ord(value)
    return value


def _one_or_many(value: Any) -> Any:
    if isinstance(value, (int, str)):
        return [_kind_value(value)]
    if isinstance(value, list):
        return [_kind_value(v) for v in value]
    return value


IntList = Annotated[list[int], BeforeValidator(_one_or_many)]


class Strict(Model):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class Width(Strict):
    """A number at a fixed offset: binary (``size`` bytes in ``byte_order``) or text
    (``digits`` ASCII decimal digits, zero-padded)."""

    offset: int = Field(ge=0)
    size: Literal[1, 2, 4, 8] | None = None
    digits: int | None = Field(default=None, ge=1, le=MAX_DIGITS)
    byte_order: ByteOrder | None = None
    """Default: the codec's ``byte_order``."""

    @model_validator(mode="after")
    def _one_width(self) -> "Width":
        if (self.size is None) == (self.digits is None):
            raise ValueError("set one of size (binary) or digits (ASCII decimal)")
        return self

    @property
    def width(self) -> int:
        return self.size if self.size is not None else self.digits  # type: ignore[return-value]

    @property
    def end(self) -> int:
        return self.offset + self.width

    @property
    def max_value(self) -> int:
        if self.digits is not None:
            return 10 ** self.digits - 1
        return (1 << (8 * self.width)) - 1


class IntField(Width):
    """An unsigned integer at a fixed offset."""


class ByteString(Strict):
    """Bytes written ``hex: "cafe"`` or ``text: "AC"`` (Latin-1, so YAML escapes such
    as ``"\r\n"`` stand for their bytes)."""

    hex: str | None = None
    text: str | None = None
    max_bytes: ClassVar[int] = MAX_DELIMITER_BYTES
    what: ClassVar[str] = "a delimiter"

    @model_validator(mode="after")
    def _one_form(self) -> "ByteString":
        if (self.hex is None) == (self.text is None):
            raise ValueError("set one of hex or text")
        value = self.value  # raises on bad hex
        if not 1 <= len(value) <= self.max_bytes:
            raise ValueError(f"{self.what} is 1 to {self.max_bytes} bytes")
        return self

    @property
    def value(self) -> bytes:
        if self.text is not None:
            try:
                return self.text.encode("latin-1")
            except UnicodeEncodeError:
                raise ValueError(f"text: {self.text!r} is not Latin-1; use hex") from None
        try:
            return bytes.fromhex(self.hex or "")
        except ValueError:
            raise ValueError(f"hex: {self.hex!r} is not hex bytes") from None


class HeaderTemplate(ByteString):
    """The header of a frame mosn makes from scratch (the tools' requests) before
    its fields are written: a text protocol's spaces between fields, a version byte."""

    max_bytes: ClassVar[int] = MAX_HEADER_SIZE
    what: ClassVar[str] = "a header template"


class Magic(ByteString):
    """Bytes every frame has at ``offset`` (``hex: "cafe"`` or ``text: "AC"``); they
    let ``downstream_protocol: Auto`` recognise the protocol and reject strangers."""

    offset: int = Field(default=0, ge=0)
    max_bytes: ClassVar[int] = MAX_MAGIC_BYTES
    what: ClassVar[str] = "a magic"

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
            field = {k: data[k] for k in ("offset", "size", "digits", "byte_order") if k in data}
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


class StatusField(Width):
    """A response's status, and the statuses the proxy answers its own failures with.
    Each failure not given a status of its own is answered with ``error``."""

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
        top = self.max_value
        unit = "byte(s)" if self.digits is None else "digit(s)"
        for name in ("success", "error", *FAILURES):
            value = getattr(self, name)
            if value is not None and value > top:
                raise ValueError(f"{name}: {value} does not fit {self.width} {unit}")
        if self.error == self.success:
            raise ValueError("error and success must differ")
        for name in FAILURES:
            if getattr(self, name) == self.success:
                raise ValueError(f"{name}: a failure cannot have the success status")
        return self


FAILURES = ("no_route", "no_healthy_upstream", "overflow", "timeout", "upstream_lost",
            "bad_frame", "forbidden")
"""The failures the proxy answers itself, in the order their statuses are looked up."""


class TimeoutField(Width):
    """How long the caller waits, in requests (0 or less: not said). It caps the
    route's timeout, as bolt's timeout field does."""

    unit: Literal["ms", "s"] = "ms"
    signed: bool = True
    """Read as a signed integer (so -1 means none, as bolt writes); ``digits`` are
    never signed."""


class BodyKey(Strict):
    """Where a routing key is inside the body (the bytes after the header and the
    strings that follow it), in one of four forms:

    - a fixed-width field: ``offset`` (from the body's start) and ``size``, read as
      ``type``;
    - a length-prefixed sub-field: ``offset`` and ``length_prefix`` (1, 2 or 4 bytes);
    - a ``key=value`` line: ``key`` (and ``separator``, ``line_end``): the lines from
      ``offset`` up to the first empty one are searched for one starting with
      ``key`` then ``separator``;
    - a delimited field: ``field`` (0 is the first) of the body from ``offset``
      split at ``delimiter``.

    A line or a field must start within the first ``search_limit`` bytes searched.
    """

    offset: int = Field(default=0, ge=0)
    size: int | None = Field(default=None, ge=1, le=MAX_MAX_ROUTING_VALUE)
    type: Literal["string", "uint", "hex"] = "string"
    length_prefix: Literal[1, 2, 4] | None = None
    key: str | None = Field(default=None, min_length=1)
    separator: str = Field(default="=", min_length=1, max_length=MAX_DELIMITER_BYTES)
    line_end: str = Field(default="\n", min_length=1, max_length=MAX_DELIMITER_BYTES)
    """Lines end with this (``"\n"`` also ends a line written with ``"\r\n"``)."""
    field: int | None = Field(default=None, ge=0)
    delimiter: str | None = Field(default=None, min_length=1, max_length=MAX_DELIMITER_BYTES)
    search_limit: int = Field(default=DEFAULT_BODY_SEARCH, ge=1, le=MAX_BODY_SEARCH)

    @field_validator("separator", "line_end", "delimiter")
    @classmethod
    def _latin1(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                value.encode("latin-1")
            except UnicodeEncodeError:
                raise ValueError(f"{value!r} is not Latin-1 text") from None
        return value

    @model_validator(mode="after")
    def _one_form(self) -> "BodyKey":
        forms = [name for name, on in (
            ("size", self.size is not None), ("length_prefix", self.length_prefix is not None),
            ("key", self.key is not None), ("field", self.field is not None)) if on]
        if len(forms) != 1:
            raise ValueError("set one of size (a fixed field), length_prefix (a sub-field), "
                             "key (a key=value line) or field (a delimited field)")
        if (self.field is None) != (self.delimiter is None):
            raise ValueError("field and delimiter go together")
        if self.size is not None and self.type == "uint" and self.size not in INT_SIZES:
            raise ValueError("a uint field is 1, 2, 4 or 8 bytes")
        if self.size is None and self.type != "string":
            raise ValueError("type is for fixed fields (size)")
        return self

    @property
    def form(self) -> str:
        """``offset`` (fixed or length-prefixed), ``lines`` or ``fields``."""
        if self.key is not None:
            return "lines"
        if self.field is not None:
            return "fields"
        return "offset"


class RoutingKey(Strict):
    """Where a routing header (``service``, ``method`` ...) comes from. Either

    - a fixed-width field in the header: ``offset`` and ``size``, read as ``type``
      ``string`` (NUL padding dropped), ``uint`` (decimal) or ``hex``; or
    - a string after the header, starting at ``offset`` or right ``after`` another
      such key, its length given by a ``length_prefix`` of 1, 2 or 4 bytes in front
      of it or by a ``length_field`` of the header; or
    - a place inside the body: ``body: {...}`` (:class:`BodyKey`).

    Every value is at most ``max_size`` bytes; a frame carrying a longer one is
    answered ``bad_frame``.
    """

    offset: int | None = Field(default=None, ge=0)
    size: int | None = Field(default=None, ge=1, le=MAX_HEADER_SIZE)
    type: Literal["string", "uint", "hex"] = "string"
    after: str | None = None
    length_prefix: Literal[1, 2, 4] | None = None
    length_field: IntField | None = None
    body: BodyKey | None = None
    byte_order: ByteOrder | None = None
    """Of the length prefix, or of a ``uint`` field."""
    encoding: str = "utf-8"
    max_size: int = Field(default=DEFAULT_MAX_ROUTING_VALUE, ge=1, le=MAX_MAX_ROUTING_VALUE)
    """Bytes of the value at most."""

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
        if self.body is not None:
            if (self.offset, self.size, self.after, self.length_prefix, self.length_field) != (
                    None, None, None, None, None) or self.type != "string":
                raise ValueError("a key in the body says where inside body: {...} alone")
            if self.body.size is not None and self.body.size > self.max_size:
                raise ValueError(f"body.size {self.body.size} is over max_size {self.max_size}")
            return self
        variable = self.length_prefix is not None or self.length_field is not None
        if not variable:
            if self.offset is None or self.size is None or self.after is not None:
                raise ValueError("a fixed field needs offset and size; a string after the "
                                 "header needs length_prefix or length_field; a key inside "
                                 "the body needs body")
            if self.type == "uint" and self.size not in INT_SIZES:
                raise ValueError("a uint field is 1, 2, 4 or 8 bytes")
            if self.size > self.max_size:
                raise ValueError(f"size {self.size} is over max_size {self.max_size}")
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
        """A fixed-width field of the header."""
        return self.body is None and self.length_prefix is None and self.length_field is None


class CodecConfig(Strict):
    """A private protocol, declared: what mosn's RPC engine needs to route, remap
    request ids, answer heartbeats and reply errors, without decoding bodies."""

    name: str = "xprotocol"
    """What the protocol is called in error messages and logs."""
    byte_order: ByteOrder = "big"
    header_size: int = Field(ge=1, le=MAX_HEADER_SIZE)
    magic: Magic | None = None
    length: Length | None = None
    """Frames sized by length fields; or"""
    delimiter: ByteString | None = None
    """frames ending with these bytes (the first time they occur after the header)."""
    request_id: IntField
    kind: KindField
    status: StatusField
    timeout: TimeoutField | None = None
    routing: dict[str, RoutingKey] = Field(default_factory=dict)
    """Routing header name (lower case, as the router matches it) -> where it is."""
    header_template: HeaderTemplate | None = None
    """``header_size`` bytes a request made from scratch starts from (default zeros)."""
    multiplexed: bool = True
    """False: one request at a time on a connection (ping-pong)."""
    max_frame_size: int = Field(default=DEFAULT_MAX_FRAME_SIZE, ge=1, le=MAX_MAX_FRAME_SIZE)

    @model_validator(mode="after")
    def _consistent(self) -> "CodecConfig":
        problems = list(self._problems())
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def _problems(self) -> Iterable[str]:
        if (self.length is None) == (self.delimiter is None):
            yield "set one of length (frames sized by length fields) or delimiter (frames " \
                  "ending with a delimiter)"
            return
        if self.max_frame_size < self.header_size:
            yield f"max_frame_size {self.max_frame_size} is smaller than header_size"
        if self.header_template is not None and \
                len(self.header_template.value) != self.header_size:
            yield (f"header_template is {len(self.header_template.value)} bytes, not "
                   f"header_size ({self.header_size})")
        fixed: list[tuple[str, int, int]] = []
        if self.magic is not None:
            fixed.append(("magic", self.magic.offset, self.magic.end))
        length_fields = self.length.fields if self.length is not None else []
        fixed += [(f"length.fields[{i}]", f.offset, f.end) for i, f in enumerate(length_fields)]
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
        for name, key in self.routing.items():
            if name != name.lower() or not name:
                yield f"routing.{name}: routing keys are lower case (the router matches them so)"
        yield from self._string_problems()
        yield from self._body_problems()
        if self.length is not None:
            yield from self._length_problems(self.length)

    def _string_problems(self) -> Iterable[str]:
        strings = {name: key for name, key in self.routing.items()
                   if not key.fixed and key.body is None}
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
        if self.delimiter is not None:
            for name, key in strings.items():
                if key.length_field is not None:
                    yield (f"routing.{name}.length_field: delimited frames have no length "
                           "fields; use length_prefix")

    def _body_problems(self) -> Iterable[str]:
        """Keys in the body: one form for all (so a request can be built with them),
        one separator and line end, or one delimiter; fixed fields apart, and a
        length-prefixed one after them."""
        keys = {name: key.body for name, key in self.routing.items() if key.body is not None}
        if not keys:
            return
        forms = {body.form for body in keys.values()}
        if len(forms) > 1:
            yield ("routing: the keys in the body use one form: fixed and length-prefixed "
                   "fields, key=value lines, or delimited fields")
            return
        form = forms.pop()
        bodies = list(keys.items())
        if form == "lines":
            if len({(b.separator, b.line_end, b.offset) for _, b in bodies}) > 1:
                yield "routing: key=value lines share one offset, separator and line_end"
            if len({b.key for _, b in bodies}) < len(bodies):
                yield "routing: two routing keys read the same key=value line"
        elif form == "fields":
            if len({(b.delimiter, b.offset) for _, b in bodies}) > 1:
                yield "routing: delimited fields share one offset and delimiter"
        else:
            fixed = sorted((b.offset, b.offset + (b.size or 0), name)
                           for name, b in bodies if b.size is not None)
            for (a0, a1, a), (b0, _, b) in zip(fixed, fixed[1:]):
                if b0 < a1:
                    yield f"routing.{a}.body and routing.{b}.body overlap"
            prefixed = [(name, b) for name, b in bodies if b.length_prefix is not None]
            if len(prefixed) > 1:
                yield "routing: at most one length-prefixed field in the body (it ends " \
                      "where its length says, so nothing fixed can follow it)"
            elif prefixed and fixed and prefixed[0][1].offset < max(end for _, end, _ in fixed):
                yield (f"routing.{prefixed[0][0]}.body.offset: a length-prefixed field starts "
                       "after the fixed fields of the body")

    def _length_problems(self, length: Length) -> Iterable[str]:
        bound = {(k.length_field.offset, k.length_field.width)
                 for k in self.routing.values() if k.length_field is not None}
        free = [f for f in length.fields if (f.offset, f.width) not in bound]
        if len(free) > 1:
            yield ("length: at most one length field may count something other than a "
                   "routing string (the body); mosn could not build replies otherwise")
        if len(free) == 0 and length.counts != "after_header":
            yield "length: the body needs a length field of its own"


class XProtocolConfig(Model):
    """``extend_config.xprotocol`` of a ``proxy`` filter (and ``--protocol-config`` of
    ``mosn mock client``, ``mosn mock server`` and ``mosn bench`` with ``--protocol
    xprotocol``)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    codec: CodecConfig | None = None

    def cross_check(self, root: Any, plugins: Any) -> Iterable[tuple[str, str]]:
        """Called when the proxy speaks ``xprotocol``: it needs a codec."""
        if self.codec is None:
            yield "codec", ("describe the protocol: a proxy speaking xprotocol needs "
                            "extend_config.xprotocol.codec")
