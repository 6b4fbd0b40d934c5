"""The ``dsl`` stream filter: MOSN's conditional request and response edits written
as expressions (``pkg/filter/stream/dsl``, on MOSN's CEL with Istio's CEXL syntax).

MOSN compiles its expressions with cel-go and Istio's attribute vocabulary; PyPI's
``cel-python`` parses standard CEL only (no CEXL ``a | b`` default, no global
``conditional`` macro, no receiver-less ``ctx`` calls) and evaluates far slower than
a request can afford, so mosn compiles the subset MOSN's samples and docs use into
Python closures once, at config load:

- literals: strings (``"..."``, ``'...'``), integers, ``true``, ``false``;
- attributes (Istio's names): ``request.host``, ``.method``, ``.path`` (with the
  query), ``.url_path``, ``.scheme``, ``.headers[NAME]``, ``.query_params[NAME]``,
  ``.useragent``, ``.referer``, ``.id``, ``.size``; ``response.code``,
  ``response.headers[NAME]`` (in ``send_filter_by_dsl``); ``source.ip``,
  ``source.port``; ``destination.ip``, ``destination.port`` (the chosen host, from
  ``after_balancer_by_dsl`` on); ``context.protocol``;
  ``connection.requested_server_name``, ``connection.mtls``; and mosn's
  ``variable("NAME")``, any ``%variable%`` of the registry;
- operators, loosest first: ``||``, ``&&``, ``== != < <= > >=``, ``|`` (CEXL's
  default: its left side, or its right when the left has no value), ``+``, ``!``
  and unary ``-``; ``(...)``, ``[...]``;
- functions: ``conditional(c, a, b)``, ``string(x)``, ``ip(x)``, ``toLower(x)``,
  ``toUpper(x)``, ``match(x, "glob*")`` (Istio's prefix or suffix wildcard), and the
  methods ``x.startsWith(y)``, ``endsWith``, ``contains``, ``matches`` (a regex);
- MOSN's actions on ``ctx``: ``rewrite_request_url(PATH)`` (the path; the query is
  kept), ``add_request_header(K, V)`` (sets it), ``del_request_header(K)``,
  ``add_response_header(K, V)``, ``del_response_header(K)``; each returns true.

A value that is not there (a header absent, no response yet) makes the expression
fail unless a ``|`` gives a default; a failed expression changes nothing more and is
counted (``dsl.error``), as MOSN recovers and goes on.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any, Callable

from pydantic import field_validator, model_validator

from mosn.config.base import Model, Unsupported
from mosn.filters.common import FilterStats
from mosn.network.filter import FilterStatus
from mosn.plugins import BuildContext, Extension, hookimpl
from mosn.proxy.stream_filter import Phase, StreamFilter
from mosn.stream.types import ResponseHead
from mosn.variables import variable

MAX_EXPRESSION_LENGTH = 4096
"""Characters of one expression: a config bound, so a runaway string is refused at
load instead of compiled into deep recursion."""
MAX_DEPTH = 64
"""Nesting depth of an expression (parentheses, calls): Python's recursion stays far
below its limit."""
STATS = ("evaluated", "error")


class DslError(ValueError):
    """An expression that does not compile; the message names where."""


class Absent(Exception):
    """A value that is not there (evaluation only; ``|`` catches it)."""


_TOKEN = re.compile(r"""
    \s*(?:
      (?P<number>\d+)
    | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
    | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
    | (?P<op>\|\||&&|==|!=|<=|>=|[|<>!+\-()\[\].,])
    )""", re.X)
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", '"': '"', "'": "'"}
_COMPARE = {"==": lambda a, b: a == b, "!=": lambda a, b: a != b,
            "<": lambda a, b: a < b, "<=": lambda a, b: a <= b,
            ">": lambda a, b: a > b, ">=": lambda a, b: a >= b}

Getter = Callable[[Any], Any]
"""A compiled piece: reads the evaluation's :class:`Env`, returns a value or raises."""


class Env:
    """What one evaluation reads and changes."""

    __slots__ = ("stream", "response")

    def __init__(self, stream: Any, response: ResponseHead | None = None) -> None:
        self.stream = stream
        self.response = response


def _tokens(text: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            raise DslError(f"unexpected {text[pos:pos + 10].strip()!r} at {pos}")
        kind = m.lastgroup or ""
        value = m.group(kind)
        if kind == "string":
            value = re.sub(r"\\(.)", lambda e: _ESCAPES.get(e.group(1), e.group(1)), value[1:-1])
        out.append((kind, value))
        pos = m.end()
    return out


def _absent(value: Any) -> Any:
    if value is None or value == "":
        raise Absent
    return value


def _head_attr(read: Callable[[Any], Any]) -> Getter:
    def get(env: Env) -> Any:
        return _absent(read(env.stream.request))
    return get


def _address(which: str, part: int) -> Getter:
    def get(env: Env) -> Any:
        s = env.stream
        if which == "destination":
            host = s.host
            if host is None:
                raise Absent
            if host.address.is_unix:
                raise Absent
            address = (host.address.host, host.address.port)
        else:
            address = s.conn.remote_address
        if not isinstance(address, tuple):
            raise Absent
        return address[part]
    return get


class _HeaderMap:
    """``request.headers`` / ``response.headers``: a name's value, or absent."""

    __slots__ = ("headers",)

    def __init__(self, headers: Any) -> None:
        self.headers = headers

    def __getitem__(self, name: Any) -> Any:
        name = str(name)
        value = self.headers.get(name.lower())
        if value is None:
            value = self.headers.get(name)
        return _absent(value)


def _query(head: Any) -> dict[str, str]:
    from_query = head.path.partition("?")[2]
    return dict(p.partition("=")[::2] for p in from_query.split("&") if p)


def _response_headers(env: Env) -> Any:
    if env.response is None:
        raise Absent
    return _HeaderMap(env.response.headers)


def _size(head: Any) -> int | None:
    length = head.headers.get("content-length")
    return int(length) if length is not None and length.isdigit() else None


ATTRIBUTES: dict[str, Getter] = {
    "request.host": _head_attr(lambda h: h.authority),
    "request.method": _head_attr(lambda h: h.method),
    "request.path": _head_attr(lambda h: h.path),
    "request.url_path": _head_attr(lambda h: h.path.partition("?")[0]),
    "request.scheme": _head_attr(lambda h: h.scheme),
    "request.headers": lambda env: _HeaderMap(env.stream.request.headers),
    "request.query_params": lambda env: _HeaderMap(_query(env.stream.request)),
    "request.useragent": _head_attr(lambda h: h.headers.get("user-agent")),
    "request.referer": _head_attr(lambda h: h.headers.get("referer")),
    "request.id": _head_attr(lambda h: h.headers.get("x-request-id")),
    "request.size": _head_attr(_size),
    "response.code": lambda env: env.response.status if env.response is not None
    else _absent(None),
    "response.headers": _response_headers,
    "source.ip": _address("source", 0),
    "source.port": _address("source", 1),
    "destination.ip": _address("destination", 0),
    "destination.port": _address("destination", 1),
    "context.protocol": lambda env: _absent(env.stream.protocol),
    "connection.requested_server_name": lambda env: _absent(
        env.stream.conn.tls.server_name if env.stream.conn.tls is not None else None),
    "connection.mtls": lambda env: bool(env.stream.conn.tls is not None
                                        and env.stream.conn.tls.peer_certificate),
}
"""Istio's attribute names MOSN's DSL reads, as far as mosn has them."""


def _set_path(env: Env, path: str) -> bool:
    head = env.stream.request
    query = head.path.partition("?")[2]
    head.path = f"{path}?{query}" if query else str(path)
    return True


def _request_headers(env: Env) -> Any:
    return env.stream.request.headers


def _response_headers_of(env: Env) -> Any:
    if env.response is None:
        raise Absent  # a response header is only there to change once a response is
    return env.response.headers


def _set_header(headers_of: Getter) -> Callable[..., bool]:
    def add(env: Env, key: Any, value: Any) -> bool:
        headers_of(env)[str(key).lower()] = str(value)
        return True
    return add


def _del_header(headers_of: Getter) -> Callable[..., bool]:
    def delete(env: Env, key: Any) -> bool:
        headers_of(env).pop(str(key).lower(), None)
        return True
    return delete


ACTIONS: dict[str, tuple[int, Callable[..., bool]]] = {
    "rewrite_request_url": (1, _set_path),
    "add_request_header": (2, _set_header(_request_headers)),
    "del_request_header": (1, _del_header(_request_headers)),
    "add_response_header": (2, _set_header(_response_headers_of)),
    "del_response_header": (1, _del_header(_response_headers_of)),
}
"""MOSN's ``ctx`` functions: (number of arguments, the action)."""


def _glob(value: Any, pattern: Any) -> bool:
    value, pattern = str(value), str(pattern)
    if pattern.endswith("*"):
        return value.startswith(pattern[:-1])
    if pattern.startswith("*"):
        return value.endswith(pattern[1:])
    return value == pattern


FUNCTIONS: dict[str, tuple[int, Callable[..., Any]]] = {
    "string": (1, str),
    "ip": (1, lambda v: str(ipaddress.ip_address(str(v)))),
    "toLower": (1, lambda v: str(v).lower()),
    "toUpper": (1, lambda v: str(v).upper()),
    "match": (2, _glob),
}
METHODS: dict[str, Callable[[Any, Any], bool]] = {
    "startsWith": lambda v, a: str(v).startswith(str(a)),
    "endsWith": lambda v, a: str(v).endswith(str(a)),
    "contains": lambda v, a: str(a) in str(v),
    "matches": lambda v, a: re.search(str(a), str(v)) is not None,
}


class _Parser:
    """Recursive descent over the tokens, producing closures."""

    def __init__(self, text: str) -> None:
        if len(text) > MAX_EXPRESSION_LENGTH:
            raise DslError(f"longer than {MAX_EXPRESSION_LENGTH} characters")
        self.tokens = _tokens(text)
        self.pos = 0
        self.depth = 0

    def peek(self) -> tuple[str, str]:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else ("end", "")

    def take(self, op: str | None = None) -> tuple[str, str]:
        token = self.peek()
        if op is not None and token != ("op", op):
            raise DslError(f"expected {op!r}, found {token[1] or 'the end'!r}")
        self.pos += 1
        return token

    def parse(self) -> Getter:
        expr = self.or_()
        if self.peek()[0] != "end":
            raise DslError(f"unexpected {self.peek()[1]!r}")
        return expr

    def _binary(self, ops: tuple[str, ...], lower: Callable[[], Getter],
                make: Callable[[str, Getter, Getter], Getter]) -> Getter:
        left = lower()
        while self.peek()[0] == "op" and self.peek()[1] in ops:
            op = self.take()[1]
            left = make(op, left, lower())
        return left

    def or_(self) -> Getter:
        return self._binary(("||",), self.and_,
                            lambda _, a, b: lambda env: bool(a(env)) or bool(b(env)))

    def and_(self) -> Getter:
        return self._binary(("&&",), self.compare,
                            lambda _, a, b: lambda env: bool(a(env)) and bool(b(env)))

    def compare(self) -> Getter:
        def make(op: str, a: Getter, b: Getter) -> Getter:
            test = _COMPARE[op]
            return lambda env: test(a(env), b(env))
        return self._binary(tuple(_COMPARE), self.default, make)

    def default(self) -> Getter:
        def make(_: str, a: Getter, b: Getter) -> Getter:
            def either(env: Env) -> Any:
                try:
                    return a(env)
                except Absent:
                    return b(env)
            return either
        return self._binary(("|",), self.add, make)

    def add(self) -> Getter:
        def make(_: str, a: Getter, b: Getter) -> Getter:
            def plus(env: Env) -> Any:
                x, y = a(env), b(env)
                return str(x) + str(y) if isinstance(x, str) or isinstance(y, str) else x + y
            return plus
        return self._binary(("+",), self.unary, make)

    def unary(self) -> Getter:
        if self.peek() == ("op", "!"):
            self.take()
            inner = self.unary()
            return lambda env: not inner(env)
        if self.peek() == ("op", "-"):
            self.take()
            inner = self.unary()
            return lambda env: -inner(env)
        return self.postfix()

    def postfix(self) -> Getter:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise DslError(f"nested deeper than {MAX_DEPTH}")
        value = self.primary()
        while self.peek()[0] == "op" and self.peek()[1] in (".", "["):
            if self.take()[1] == "[":
                key = self.or_()
                self.take("]")
                value = (lambda obj, k: lambda env: obj(env)[k(env)])(value, key)
                continue
            kind, name = self.take()
            if kind != "name" or name not in METHODS:
                raise DslError(f"unknown method {name!r} (known: {', '.join(METHODS)})")
            args = self.arguments()
            if len(args) != 1:
                raise DslError(f"{name} takes one argument")
            method = METHODS[name]
            value = (lambda obj, arg, m: lambda env: m(obj(env), arg(env)))(value, args[0], method)
        self.depth -= 1
        return value

    def arguments(self) -> list[Getter]:
        self.take("(")
        args: list[Getter] = []
        if self.peek() != ("op", ")"):
            args.append(self.or_())
            while self.peek() == ("op", ","):
                self.take()
                args.append(self.or_())
        self.take(")")
        return args

    def primary(self) -> Getter:
        kind, value = self.take()
        if kind == "number":
            number = int(value)
            return lambda env: number
        if kind == "string":
            return lambda env: value
        if kind == "op" and value == "(":
            inner = self.or_()
            self.take(")")
            return inner
        if kind != "name":
            raise DslError(f"unexpected {value or 'end'!r}")
        if value in ("true", "false"):
            truth = value == "true"
            return lambda env: truth
        if self.peek() == ("op", "("):
            return self.call(value)
        dotted = value
        while (self.peek() == ("op", ".") and self.pos + 1 < len(self.tokens)
               and self.tokens[self.pos + 1][0] == "name"
               and self.tokens[self.pos + 1][1] not in METHODS):
            self.take()
            dotted += "." + self.take()[1]
            if dotted.startswith("ctx.") and self.peek() == ("op", "("):
                return self.action(dotted[4:])
        getter = ATTRIBUTES.get(dotted)
        if getter is None:
            raise DslError(f"unknown attribute {dotted!r} (known: {', '.join(ATTRIBUTES)})")
        return getter

    def call(self, name: str) -> Getter:
        args = self.arguments()
        if name == "conditional":
            if len(args) != 3:
                raise DslError("conditional takes three arguments")
            test, then, other = args
            return lambda env: then(env) if test(env) else other(env)
        if name == "variable":
            if len(args) != 1:
                raise DslError("variable takes one argument")
            try:
                read = variable(args[0](None)).get
            except Exception as exc:  # not a literal, or not a known name
                raise DslError(f"variable needs a known variable's name: {exc}") from None
            return lambda env: _absent(read(env.stream))
        found = FUNCTIONS.get(name)
        if found is None:
            raise DslError(f"unknown function {name!r} (known: conditional, variable, "
                           f"{', '.join(FUNCTIONS)})")
        count, fn = found
        if len(args) != count:
            raise DslError(f"{name} takes {count} argument(s)")
        return lambda env: fn(*[a(env) for a in args])

    def action(self, name: str) -> Getter:
        found = ACTIONS.get(name)
        if found is None:
            raise DslError(f"unknown function ctx.{name} (known: {', '.join(ACTIONS)})")
        count, act = found
        args = self.arguments()
        if len(args) != count:
            raise DslError(f"ctx.{name} takes {count} argument(s)")
        return lambda env: act(env, *[a(env) for a in args])


def compile_expression(text: str) -> Getter:
    """The expression compiled; :class:`DslError` saying what is wrong."""
    return _Parser(text).parse()


def _checked(value: str) -> str:
    if value:
        try:
            compile_expression(value)
        except DslError as exc:
            raise ValueError(f"{exc}") from None
    return value


class DslConfig(Model):
    """MOSN's ``StreamDSL``: one expression per phase."""

    before_router_by_dsl: str = ""
    after_router_by_dsl: str = ""
    after_balancer_by_dsl: str = ""
    send_filter_by_dsl: str = ""
    send_router_by_dsl: str = ""
    """The key MOSN's ``dsl-sample`` writes for ``send_filter_by_dsl`` (MOSN itself
    ignores it there); mosn takes it as ``send_filter_by_dsl``."""
    log_filter_by_dsl: Unsupported = None
    debug: bool = False
    """MOSN's; it does nothing in MOSN either."""

    _expressions = field_validator("before_router_by_dsl", "after_router_by_dsl",
                                   "after_balancer_by_dsl", "send_filter_by_dsl",
                                   "send_router_by_dsl")(_checked)

    @model_validator(mode="after")
    def _one_send(self) -> "DslConfig":
        if self.send_filter_by_dsl and self.send_router_by_dsl:
            raise ValueError("set send_filter_by_dsl or send_router_by_dsl, not both")
        return self


class _PhaseDsl(StreamFilter):
    def __init__(self, phase: Phase, expression: Getter, stats: FilterStats) -> None:
        self.phase = phase
        self.expression = expression
        self.stats = stats

    def on_request(self, stream: Any) -> FilterStatus:
        evaluate(self.expression, Env(stream), self.stats)
        return FilterStatus.CONTINUE


class _SendDsl(StreamFilter):
    """Only ``on_response``; its phase is the earliest (it never holds a request)."""

    phase = Phase.BEFORE_ROUTE

    def __init__(self, expression: Getter, stats: FilterStats) -> None:
        self.expression = expression
        self.stats = stats

    def on_response(self, stream: Any, head: ResponseHead) -> None:
        evaluate(self.expression, Env(stream, head), self.stats)


def evaluate(expression: Getter, env: Env, stats: FilterStats) -> None:
    stats.count("evaluated")
    try:
        expression(env)
    except Exception:  # absent values, type errors: MOSN recovers and goes on
        stats.count("error")


def build(config: DslConfig, context: BuildContext) -> Callable[[], tuple[StreamFilter, ...]]:
    stats = FilterStats(context.stats, "dsl", STATS)
    filters: list[StreamFilter] = []
    for phase, text in ((Phase.BEFORE_ROUTE, config.before_router_by_dsl),
                        (Phase.AFTER_ROUTE, config.after_router_by_dsl),
                        (Phase.AFTER_CHOOSE_HOST, config.after_balancer_by_dsl)):
        if text:
            filters.append(_PhaseDsl(phase, compile_expression(text), stats))
    send = config.send_filter_by_dsl or config.send_router_by_dsl
    if send:
        filters.append(_SendDsl(compile_expression(send), stats))
    made = tuple(filters)
    return lambda: made


@hookimpl
def mosn_stream_filters() -> list[Extension]:
    return [Extension("dsl", build, DslConfig,
                      description="MOSN's conditional header and path edits (CEXL subset)")]
