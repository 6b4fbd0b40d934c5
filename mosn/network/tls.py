"""TLS as a layer of the connection (MOSN's TLS conn wrapping the raw conn): an
``ssl.SSLObject`` over two memory BIOs between the transport and the read/write
filters, so every filter, codec and the proxy see plaintext.

Measured on this machine against uvloop's own TLS transport (``create_server(ssl=)``,
an echo of 200-byte messages over keep-alive connections, bench/tls_io.py): the memory
BIOs added 6.5 us of CPU per message where uvloop's transport added 49 us, and held
9.5 KiB per idle connection where it held 28.6 KiB (docs/benchmarks.md, TLS). The
layer also sees the first bytes the listener filters read, which a transport that
owns the socket would not.

After the handshake :attr:`Connection.tls` is this object: what was negotiated and
who the peer is, as plain attributes.
"""

from __future__ import annotations

import functools
import logging
import ssl
from typing import Any, Callable

from mosn.tls import San, SanMatcher, sans_of_der, sans_of_peercert, subject_of_der
from mosn.variables import register_variable

log = logging.getLogger("mosn.tls")

READ_SIZE = 16 * 1024
"""Bytes of plaintext asked of one ``SSLObject.read``: a whole TLS record (RFC 8446
5.1: at most 2^14 bytes), which is all OpenSSL returns at once. ``read`` allocates
this much before it shrinks to what it got: more would cost a page-mapping call per
read for nothing."""

TLS_VERSIONS = ("SSLv3", "TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3")
"""Versions counted in ``ssl.versions.*`` (the names ``SSLObject.version()`` returns)."""

_NO_CERT_REASONS = frozenset({"PEER_DID_NOT_RETURN_A_CERTIFICATE",
                              "TLSV13_ALERT_CERTIFICATE_REQUIRED"})
_VERIFY_REASONS = frozenset({"CERTIFICATE_VERIFY_FAILED"})


def stat_names(ciphers: list[str]) -> tuple[str, ...]:
    """The ``ssl.*`` stats of a listener or cluster whose contexts enable ``ciphers``."""
    return (
        "ssl.handshake", "ssl.connection_error", "ssl.handshake_timeout",
        "ssl.fail_verify_no_cert", "ssl.fail_verify_san", "ssl.fail_verify_error",
        "ssl.session_reused",
        *(f"ssl.versions.{v}" for v in TLS_VERSIONS),
        *(f"ssl.ciphers.{c}" for c in ciphers),
    )


class TlsStats:
    """The ``ssl.*`` indices of one listener or cluster (read through the store, whose
    row is the worker's own once it forks)."""

    __slots__ = ("store", "indices", "handshake", "connection_error", "handshake_timeout",
                 "fail_verify_no_cert", "fail_verify_san", "fail_verify_error",
                 "session_reused")

    def __init__(self, store: Any, scope: Any) -> None:
        self.store = store
        self.indices: dict[str, int] = scope.indices
        for name in ("handshake", "connection_error", "handshake_timeout",
                     "fail_verify_no_cert", "fail_verify_san", "fail_verify_error",
                     "session_reused"):
            setattr(self, name, scope.indices[f"ssl.{name}"])

    def count(self, index: int) -> None:
        self.store.values[index] += 1

    def count_name(self, name: str) -> None:
        index = self.indices.get(name)
        if index is not None:
            self.store.values[index] += 1


class TlsLayer:
    """The TLS of one connection. Read-only after the handshake: ``alpn``,
    ``server_name`` (the SNI), ``version``, ``cipher``, ``session_reused``,
    ``peer_certificate`` (DER, or None), ``peer_verified``, ``peer_sans``,
    ``peer_uri_san``, ``peer_subject``."""

    __slots__ = ("conn", "sslobj", "incoming", "outgoing", "stats", "san_matcher",
                 "on_established", "server_side", "established", "failed", "_timer",
                 "_pending", "_names", "_sans", "alpn", "server_name", "version", "cipher",
                 "session_reused", "peer_certificate", "peer_verified", "_keep_session")

    def __init__(self, conn: Any, sslobj: ssl.SSLObject, incoming: ssl.MemoryBIO,
                 outgoing: ssl.MemoryBIO, stats: TlsStats, san_matcher: SanMatcher,
                 on_established: Callable[[Any], None], server_side: bool,
                 names: Any = None,
                 keep_session: Callable[[ssl.SSLSession], None] | None = None) -> None:
        """``keep_session`` (a client's): called once with the session to resume,
        as soon as it can be resumed (TLS 1.3: once a ticket arrived)."""
        self.conn = conn
        self.sslobj = sslobj
        self.incoming = incoming
        self.outgoing = outgoing
        self.stats = stats
        self.san_matcher = san_matcher
        self.on_established = on_established
        self.server_side = server_side
        self.established = False
        self.failed = False
        self._timer: Any = None
        self._pending: list[bytes] = []
        self._names = names
        self._sans: tuple[San, ...] | None = None
        self._keep_session = keep_session
        self.alpn = ""
        self.server_name = ""
        self.version = ""
        self.cipher = ""
        self.session_reused = False
        self.peer_certificate: bytes | None = None
        self.peer_verified = False

    # -- the handshake --------------------------------------------------------------------

    def start(self, timeout: float) -> None:
        """Arm the handshake timeout; a client sends its ClientHello now."""
        if timeout:
            self._timer = self.conn.loop.call_later(timeout, self._timed_out)
        if not self.server_side:
            self._handshake()

    def _handshake(self) -> bool:
        try:
            self.sslobj.do_handshake()
        except ssl.SSLWantReadError:
            self._flush()
            return False
        except (ssl.SSLError, ssl.CertificateError, ValueError) as exc:
            self._flush()  # the alert, so the peer learns why
            self._fail(exc)
            return False
        self._flush()
        return self._done()

    def _done(self) -> bool:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        sslobj = self.sslobj
        self.peer_certificate = sslobj.getpeercert(binary_form=True)
        self.peer_verified = bool(self.peer_certificate) and \
            sslobj.context.verify_mode != ssl.CERT_NONE
        if self.san_matcher and not self.san_matcher.matches(self.peer_sans):
            self.failed = True
            self.stats.count(self.stats.fail_verify_san)
            log.info("%s: TLS peer certificate refused: no subject alt name matches "
                     "(has %s)", self._who(), ", ".join(f"{s.type}:{s.value}"
                                                         for s in self.peer_sans) or "none")
            self.conn.close()
            return False
        self.established = True
        self.alpn = sslobj.selected_alpn_protocol() or ""
        if self.server_side:
            self.server_name = self._names.pop(sslobj, "") if self._names is not None else ""
        else:
            self.server_name = sslobj.server_hostname or ""
        self.version = sslobj.version() or ""
        cipher = sslobj.cipher()
        self.cipher = cipher[0] if cipher else ""
        self.session_reused = sslobj.session_reused
        stats = self.stats
        stats.count(stats.handshake)
        if self.session_reused:
            stats.count(stats.session_reused)
        stats.count_name(f"ssl.versions.{self.version}")
        stats.count_name(f"ssl.ciphers.{self.cipher}")
        if self._keep_session is not None:
            self._offer_session()
        self.on_established(self.conn)
        if self._pending and not self.conn.closed:
            pending, self._pending = self._pending, []
            for data in pending:
                self.conn.write_raw(self.send(data))
        return True

    def _fail(self, exc: BaseException) -> None:
        self.failed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        stats = self.stats
        reason = getattr(exc, "reason", None) or ""
        if isinstance(exc, ssl.SSLCertVerificationError) or reason in _VERIFY_REASONS:
            stats.count(stats.fail_verify_error)
            why = getattr(exc, "verify_message", "") or reason or str(exc)
            log.info("%s: TLS handshake failed: peer certificate not verified: %s",
                     self._who(), why)
        elif reason in _NO_CERT_REASONS:
            stats.count(stats.fail_verify_no_cert)
            log.info("%s: TLS handshake failed: no client certificate", self._who())
        else:
            stats.count(stats.connection_error)
            log.info("%s: TLS handshake failed: %s", self._who(), reason or exc)
        self.conn.close()

    def _timed_out(self) -> None:
        self._timer = None
        if self.established or self.failed:
            return
        self.failed = True
        self.stats.count(self.stats.handshake_timeout)
        log.info("%s: TLS handshake timed out", self._who())
        self.conn.close()

    def _who(self) -> str:
        side = "downstream" if self.server_side else "upstream"
        return f"{side} {_address(self.conn.remote_address)}"

    # -- the connection's intake and output ---------------------------------------------------

    def receive(self, data: bytes) -> bytes:
        """Ciphertext in, plaintext out (b"" while the handshake runs)."""
        if self.failed:
            return b""  # closing: what else the peer sends is dropped
        self.incoming.write(data)
        if not self.established and not self._handshake():
            return b""
        sslobj = self.sslobj
        incoming = self.incoming
        out = b""
        try:
            while True:
                chunk = sslobj.read(READ_SIZE)
                out = out + chunk if out else chunk
                if not incoming.pending and not sslobj.pending():
                    break
        except ssl.SSLWantReadError:
            pass
        except ssl.SSLZeroReturnError:
            pass  # close_notify: the TCP close follows
        except ssl.SSLError as exc:
            self.stats.count(self.stats.connection_error)
            log.info("%s: TLS error: %s", self._who(), exc.reason or exc)
            self.failed = True
            self.conn.close()
            return b""
        if self.outgoing.pending:  # post-handshake messages (a key update's answer)
            self.conn.write_raw(self.outgoing.read())
        if self._keep_session is not None:
            self._offer_session()
        return out

    def _offer_session(self) -> None:
        """A client keeps its session once it can be resumed: at once in TLS 1.2, when
        the server's ticket arrived in TLS 1.3 (after the handshake). Kept then, not
        at the close, so a connection opened while this one lives resumes."""
        session = self.sslobj.session
        if session is not None and session.has_ticket:
            keep, self._keep_session = self._keep_session, None
            keep(session)  # type: ignore[misc]

    def send(self, data: Any) -> bytes:
        """Plaintext in, ciphertext out (held until the handshake is done)."""
        if not self.established:
            self._pending.append(bytes(data))
            return b""
        self.sslobj.write(data)
        return self.outgoing.read()

    def _flush(self) -> None:
        if self.outgoing.pending:
            self.conn.write_raw(self.outgoing.read())

    def close_notify(self) -> None:
        """Tell the peer nothing more comes (TLS ``close_notify``) before the TCP close."""
        if not self.established:
            return
        try:
            self.sslobj.unwrap()
        except (ssl.SSLError, ValueError):
            pass  # it waits for the peer's close_notify, which nobody needs
        self._flush()

    def on_eof(self) -> bool:
        """The peer closed its side; True when that ends the handshake (a failure)."""
        if self.established or self.failed:
            return False
        self.failed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.stats.count(self.stats.connection_error)
        log.info("%s: TLS handshake failed: the peer closed the connection during it",
                 self._who())
        return True

    def on_lost(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._keep_session is not None and self.established:
            session = self.sslobj.session  # no ticket: a session id may still resume
            if session is not None:
                self._keep_session(session)
        if not self.established and not self.failed:
            self.failed = True
            self.stats.count(self.stats.connection_error)
            log.info("%s: TLS handshake failed: the connection was reset during it",
                     self._who())

    # -- the peer's identity ------------------------------------------------------------------

    @property
    def peer_sans(self) -> tuple[San, ...]:
        if self._sans is None:
            if not self.peer_certificate:
                self._sans = ()
            elif self.peer_verified:
                self._sans = sans_of_peercert(self.sslobj.getpeercert() or {})
            else:
                self._sans = sans_of_der(self.peer_certificate)
        return self._sans

    @property
    def peer_uri_san(self) -> str:
        """The peer's first URI SAN (its SPIFFE id in a mesh), or ""."""
        return next((s.value for s in self.peer_sans if s.type == "URI"), "")

    @property
    def peer_dns_san(self) -> str:
        return next((s.value for s in self.peer_sans if s.type == "DNS"), "")

    @property
    def peer_subject(self) -> str:
        return subject_of_der(self.peer_certificate) if self.peer_certificate else ""

    def __repr__(self) -> str:
        return (f"<TlsLayer {self.version or 'handshaking'} alpn={self.alpn!r} "
                f"sni={self.server_name!r} peer={self.peer_uri_san or self.peer_dns_san!r}>")


def _address(addr: Any) -> str:
    if isinstance(addr, tuple):
        return f"{addr[0]}:{addr[1]}"
    return str(addr)


def server_layer(conn: Any, tls: Any, stats: TlsStats,
                 on_established: Callable[[Any], None]) -> TlsLayer:
    """A server-side layer for an accepted connection, from a ``ServerTls``."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    sslobj = tls.wrap(incoming, outgoing)
    return TlsLayer(conn, sslobj, incoming, outgoing, stats, tls.san_matcher, on_established,
                    server_side=True, names=tls.server_names)


def client_layer(conn: Any, tls: Any, stats: TlsStats, alpn: tuple[str, ...], host_name: str,
                 session_key: Any, on_established: Callable[[Any], None]) -> TlsLayer:
    """A client-side layer for an upstream connection, from a ``ClientTls``; its
    session is kept for the next connection to the same host."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    sslobj = tls.wrap(incoming, outgoing, alpn, host_name, session_key)
    return TlsLayer(conn, sslobj, incoming, outgoing, stats, tls.san_matcher, on_established,
                    server_side=False,
                    keep_session=functools.partial(tls.keep_session, session_key))


TLS_VARIABLES: dict[str, Callable[[TlsLayer], str]] = {
    "downstream_peer_uri_san": lambda t: t.peer_uri_san,
    "downstream_peer_dns_san": lambda t: t.peer_dns_san,
    "downstream_peer_subject": lambda t: t.peer_subject,
    "downstream_tls_version": lambda t: t.version,
    "downstream_tls_cipher": lambda t: t.cipher,
    "downstream_alpn": lambda t: t.alpn,
    "requested_server_name": lambda t: t.server_name,
}
"""Variables of a downstream connection's TLS (Envoy's access log names, in MOSN's
lower case), read by access logs (``%downstream_peer_uri_san%``) and by route header
matchers named ``%downstream_peer_uri_san%``."""


def tls_variable(tls: TlsLayer | None, name: str) -> str | None:
    """The TLS variable ``name`` of a connection; None when it has no TLS or no value."""
    if tls is None:
        return None
    return TLS_VARIABLES[name](tls) or None


def _stream_tls_variable(name: str, stream: Any) -> str | None:
    return tls_variable(stream.conn.tls, name)


for _name, _meaning in (
        ("downstream_peer_uri_san", "the client certificate's first URI SAN (SPIFFE id)"),
        ("downstream_peer_dns_san", "the client certificate's first DNS SAN"),
        ("downstream_peer_subject", "the client certificate's subject"),
        ("downstream_tls_version", "the TLS version of the downstream connection"),
        ("downstream_tls_cipher", "the cipher of the downstream connection"),
        ("downstream_alpn", "the protocol ALPN chose on the downstream connection"),
        ("requested_server_name", "the SNI the client asked for")):
    register_variable(_name, functools.partial(_stream_tls_variable, _name), _meaning)


class WithTlsVariables:
    """Request headers that also answer ``%name%`` with the connection's TLS
    variables: what route header matchers read on a TLS connection."""

    __slots__ = ("headers", "tls")

    def __init__(self, headers: Any, tls: TlsLayer) -> None:
        self.headers = headers
        self.tls = tls

    def get(self, name: str, default: Any = None) -> Any:
        if name[:1] == "%" and name[-1:] == "%":
            read = TLS_VARIABLES.get(name[1:-1])
            if read is not None:
                return read(self.tls) or default
        return self.headers.get(name, default)

    def __getitem__(self, name: str) -> Any:
        value = self.get(name)
        if value is None:
            raise KeyError(name)
        return value

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.get(name) is not None
