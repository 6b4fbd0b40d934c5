"""What the server codec checks of a request head beyond llhttp's parse: the form of
the request target and its authority (RFC 9112 3.2), and the transfer coding
(RFC 9112 6.1). Pure functions over text; each failure is a :class:`CodecError`
carrying the status to answer, after which the connection is closed.
"""

from __future__ import annotations

from mosn.stream.types import CodecError

CHUNKED = "chunked"
"""The one transfer coding mosn decodes (RFC 9112 7.1)."""
_SCHEMES = frozenset({"http", "https"})
_AUTHORITY_END = "/?#"


def origin_form(method: str, target: str, host: str | None, version: str) -> tuple[str, str]:
    """The request's path (origin-form, with its query) and authority.

    An absolute-form target (``http://a.example/x``) becomes origin-form (``/x``)
    with its authority as the Host: a proxy ignores the Host field then (RFC 9112
    3.2.2), so routing sees the same path and host whatever form the client used.
    CONNECT's authority-form and OPTIONS' ``*`` are kept as they are. HTTP/1.1 needs
    a Host (RFC 9112 3.2: ``400`` without one)."""
    if target[:1] == "/" or (target == "*" and method == "OPTIONS") or method == "CONNECT":
        if host is None and version == "1.1":
            raise CodecError("an HTTP/1.1 request without Host")
        return target, host or ""
    scheme, sep, rest = target.partition("://")
    if not sep or scheme.lower() not in _SCHEMES:
        raise CodecError(f"request target {target[:64]!r} is in no form HTTP/1.1 knows")
    end = next((i for i, c in enumerate(rest) if c in _AUTHORITY_END), len(rest))
    authority, path = rest[:end], rest[end:].partition("#")[0]
    if not authority or "@" in authority:
        # No host, or userinfo, which a sender must not send (RFC 9110 4.2.4).
        raise CodecError(f"request target {target[:64]!r} has no usable authority")
    if path[:1] != "/":
        path = "/" + path  # an empty path is "/" (RFC 9110 4.2.3), before a query too
    return path, authority


def check_transfer_coding(values: list[str], version: str) -> None:
    """Refuse a request body framing the codec cannot read exactly: ``501`` for a
    coding other than ``chunked`` (RFC 9112 6.1: one the server does not understand;
    Envoy refuses any value but ``chunked`` the same way), ``400`` when ``chunked``
    is not the final coding or the request is HTTP/1.0 (its framing cannot be
    trusted then, RFC 9112 6.1 and 6.3)."""
    codings = [c.strip().lower() for value in values for c in value.split(",") if c.strip()]
    if version == "1.0":
        raise CodecError("Transfer-Encoding in an HTTP/1.0 request")
    if not codings or codings[-1] != CHUNKED:
        raise CodecError("chunked is not the final transfer coding")
    if len(codings) > 1:
        raise CodecError(f"transfer coding {', '.join(codings[:-1])} is not implemented", 501)
