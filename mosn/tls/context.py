"""SSL contexts from MOSN's TLS config: a filter chain's certificates chosen by server
name (:class:`ServerTls`), a cluster's client side (:class:`ClientTls`), both rebuilt
when their files change (:meth:`reload`) or when new secrets arrive (:meth:`update`,
the seam a control plane's secret discovery will use).

Session resumption across workers: a server's *session context* is made once,
before the workers fork, and every handshake starts on it; OpenSSL encrypts and
decrypts session tickets with the keys of that context (``SSL_CTX`` ``session_ctx``),
never with the certificate context the server-name callback switches to. So every
worker holds the same ticket keys, and a certificate rotation (new certificate
contexts) does not invalidate tickets.
"""

from __future__ import annotations

import logging
import os
import ssl
import tempfile
import weakref
from pathlib import Path
from typing import Any, Iterable

from cryptography import x509

from mosn.tls.identity import (
    SanMatcher,
    certificate_details,
    key_matches_certificate,
    load_pem_certificates,
    sans_of_certificate,
)
from mosn.tls.options import (
    TlsError,
    alpn_protocols,
    cipher_string,
    curve_name,
    tls_version,
)

log = logging.getLogger("mosn.tls")

DEFAULT_HANDSHAKE_TIMEOUT = 10.0
"""Seconds a TLS handshake may take before the connection is closed (Go's
``net/http`` TLSHandshakeTimeout, which MOSN's Go runtime inherits)."""
MAX_CLIENT_SESSIONS = 1024
"""Upstream TLS sessions kept for resumption per cluster (one per host and ALPN)."""
LEGACY_SECURITY_LEVEL = "@SECLEVEL=0"
"""OpenSSL 3 refuses TLS 1.0 and 1.1 (SHA-1 signatures) above security level 0; a
config that asks for them (MOSN's ``min_version: TLSv1_0``) gets this level."""


def read_pem(value: str, field: str) -> bytes:
    """Inline PEM, or the content of the file ``value`` names."""
    if "-----BEGIN" in value:
        return value.encode()
    try:
        return Path(value).read_bytes()
    except OSError as exc:
        raise TlsError(field, f"cannot read {value}: {exc.strerror or exc}") from None


def _certificates(pem: bytes, field: str, source: str) -> list[x509.Certificate]:
    try:
        certs = load_pem_certificates(pem)
    except ValueError:
        certs = []
    if not certs:
        raise TlsError(field, f"no PEM certificate in {_where(source)}")
    return certs


def _where(value: str) -> str:
    return "the inline PEM" if "-----BEGIN" in value else value


class _Material:
    """The PEM a context is built from, read once per build."""

    def __init__(self, tls: Any, need_cert: bool) -> None:
        self.ca = read_pem(tls.ca_cert, "ca_cert") if tls.ca_cert else None
        if self.ca is not None:
            _certificates(self.ca, "ca_cert", tls.ca_cert)
        self.chain = self.key = None
        self.certificates: list[x509.Certificate] = []
        if tls.cert_chain or tls.private_key:
            if not tls.cert_chain:
                raise TlsError("cert_chain", "private_key is set without cert_chain")
            if not tls.private_key:
                raise TlsError("private_key", "cert_chain is set without private_key")
            self.chain = read_pem(tls.cert_chain, "cert_chain")
            self.certificates = _certificates(self.chain, "cert_chain", tls.cert_chain)
            self.key = read_pem(tls.private_key, "private_key")
            try:
                matches = key_matches_certificate(self.key, self.certificates[0])
            except (ValueError, TypeError) as exc:
                raise TlsError("private_key", f"not a usable PEM private key in "
                                              f"{_where(tls.private_key)}: {exc}") from None
            if not matches:
                raise TlsError("private_key", "the private key does not match the "
                                              "certificate of cert_chain")
        elif need_cert:
            raise TlsError("cert_chain", "a server needs cert_chain and private_key")


def build_context(tls: Any, server_side: bool, alpn: Iterable[str] = ()) -> ssl.SSLContext:
    """An ``SSLContext`` for one MOSN ``TLSConfig``; ``alpn`` when the config has none
    (a client offering its protocol's id). Raises :class:`TlsError`."""
    material = _Material(tls, need_cert=server_side)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER if server_side else ssl.PROTOCOL_TLS_CLIENT)
    low, high = tls_version(tls.min_version), tls_version(tls.max_version)
    if low is not None:
        ctx.minimum_version = low
    if high is not None:
        ctx.maximum_version = high
    ciphers = cipher_string(tls.cipher_suites) if tls.cipher_suites else ""
    if low is not None and low < ssl.TLSVersion.TLSv1_2:
        ciphers = f"{ciphers or 'DEFAULT'}:{LEGACY_SECURITY_LEVEL}"
    if ciphers:
        ctx.set_ciphers(ciphers)
    curve = curve_name(tls.ecdh_curves)
    if curve is not None:
        ctx.set_ecdh_curve(curve)
    protocols = alpn_protocols(tls.alpn) or tuple(alpn)
    if protocols:
        ctx.set_alpn_protocols(list(protocols))
    if material.ca is not None:
        ctx.load_verify_locations(cadata=material.ca.decode())
    if material.chain is not None:
        _load_chain(ctx, material.chain, material.key)  # type: ignore[arg-type]
    if server_side:
        if tls.verify_client:
            if material.ca is None:
                raise TlsError("ca_cert", "verify_client needs ca_cert (the CA of the "
                                          "client certificates)")
            ctx.verify_mode = ssl.CERT_REQUIRED if tls.require_client_cert else ssl.CERT_OPTIONAL
        else:
            ctx.verify_mode = ssl.CERT_NONE
    elif tls.insecure_skip:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    else:
        if material.ca is None:
            ctx.load_default_certs(ssl.Purpose.SERVER_AUTH)
        # Envoy's way: SAN matchers take the place of the host name check.
        ctx.check_hostname = not tls.match_typed_subject_alt_names
    return ctx


def _load_chain(ctx: ssl.SSLContext, chain: bytes, key: bytes) -> None:
    # Python's ssl loads a certificate chain from files only: inline PEM goes through
    # a private temporary file, removed at once.
    with tempfile.TemporaryDirectory(prefix="mosn-tls-") as tmp:
        os.chmod(tmp, 0o700)
        chain_path, key_path = Path(tmp, "chain.pem"), Path(tmp, "key.pem")
        chain_path.write_bytes(chain)
        key_path.write_bytes(key)
        try:
            ctx.load_cert_chain(chain_path, key_path)
        except ssl.SSLError as exc:
            raise TlsError("private_key", f"OpenSSL refused the certificate and key: "
                                          f"{exc.reason or exc}") from None


def check_context(tls: Any, server_side: bool) -> None:
    """Build the context once, for ``mosn validate``; raises :class:`TlsError`."""
    build_context(tls, server_side)


def files_of(configs: Iterable[Any]) -> list[str]:
    """The files (not inline PEM) a set of TLS configs reads."""
    out = []
    for tls in configs:
        for value in (tls.ca_cert, tls.cert_chain, tls.private_key):
            if value and "-----BEGIN" not in value and value not in out:
                out.append(value)
    return out


def certificate_names(tls: Any) -> tuple[str, ...]:
    """The server names a certificate is chosen for: ``server_name``, else its DNS SANs."""
    if tls.server_name:
        return tuple(n.strip().lower() for n in tls.server_name.split(",") if n.strip())
    certs = load_pem_certificates(read_pem(tls.cert_chain, "cert_chain"))
    return tuple(s.value.lower() for s in sans_of_certificate(certs[0]) if s.type == "DNS")


def name_matches(pattern: str, name: str) -> bool:
    """``*.example.com`` matches one label in front of ``example.com`` (RFC 6125 6.4.3)."""
    if pattern.startswith("*."):
        head, dot, rest = name.partition(".")
        return bool(dot and head) and rest == pattern[2:]
    return pattern == name


def describe(configs: Iterable[Any]) -> list[dict[str, Any]]:
    """``/certs`` entries (Envoy's shape) for these TLS configs."""
    out = []
    for tls in configs:
        entry: dict[str, Any] = {"ca_cert": [], "cert_chain": []}
        for field in ("ca_cert", "cert_chain"):
            value = getattr(tls, field)
            if not value:
                continue
            try:
                certs = load_pem_certificates(read_pem(value, field))
            except (TlsError, ValueError):
                continue
            path = "<inline>" if "-----BEGIN" in value else value
            shown = certs[:1] if field == "cert_chain" else certs  # the leaf of a chain
            entry[field] = [certificate_details(c, path) for c in shown]
        out.append(entry)
    return out


class ServerTls:
    """The TLS side of one filter chain: its certificates (``tls_context``, or the
    ``tls_context_set`` chosen among by SNI, the first one the default)."""

    def __init__(self, configs: list[Any]) -> None:
        self.configs = list(configs)
        first = self.configs[0]
        self.handshake_timeout: float = first.handshake_timeout
        self.san_matcher = SanMatcher(first.match_typed_subject_alt_names)
        self.session_context = build_context(first, server_side=True)
        self.session_context.sni_callback = self._choose
        self.server_names: "weakref.WeakKeyDictionary[Any, str]" = weakref.WeakKeyDictionary()
        """The SNI each handshake in progress asked for."""
        self.certificates: list[tuple[tuple[str, ...], ssl.SSLContext]] = []
        self.generation = 0
        """How many times the certificates were rebuilt (rotation)."""
        self._build()

    def _build(self) -> None:
        self.certificates = [(certificate_names(tls), build_context(tls, server_side=True))
                             for tls in self.configs]
        self.generation += 1

    def files(self) -> list[str]:
        return files_of(self.configs)

    def reload(self) -> None:
        """Rebuild every certificate context from its files; new handshakes use them,
        live connections keep theirs. Keeps the old ones if the new files are bad."""
        self._build()

    def update(self, configs: list[Any]) -> None:
        """New TLS configs (certificates pushed by a control plane); same rules as
        :meth:`reload`. Settings shared by the chain (verification, versions, ALPN)
        stay those the chain started with."""
        old = self.configs
        self.configs = list(configs)
        try:
            self._build()
        except Exception:
            self.configs = old
            raise

    def wrap(self, incoming: ssl.MemoryBIO, outgoing: ssl.MemoryBIO) -> ssl.SSLObject:
        return self.session_context.wrap_bio(incoming, outgoing, server_side=True)

    def select(self, server_name: str | None) -> ssl.SSLContext:
        """The certificate context for ``server_name``: an exact name, else a
        wildcard, else the first (default) certificate."""
        certificates = self.certificates
        if server_name and len(certificates) > 1:
            name = server_name.lower().rstrip(".")
            for names, ctx in certificates:
                if name in names:
                    return ctx
            for names, ctx in certificates:
                if any(name_matches(p, name) for p in names if p.startswith("*.")):
                    return ctx
        return certificates[0][1]

    def cipher_names(self) -> list[str]:
        return [c["name"] for c in self.session_context.get_ciphers()]

    def _choose(self, sslobj: Any, server_name: str | None, _ctx: ssl.SSLContext) -> None:
        if server_name:
            self.server_names[sslobj] = server_name
        sslobj.context = self.select(server_name)

    def certificates_info(self) -> list[dict[str, Any]]:
        return describe(self.configs)


class ClientTls:
    """The TLS side of a cluster's upstream connections: one context per ALPN list
    offered, the sessions of earlier connections for resumption."""

    def __init__(self, config: Any) -> None:
        self.config = config
        self.server_name: str = config.server_name
        self.handshake_timeout: float = config.handshake_timeout
        self.san_matcher = SanMatcher(config.match_typed_subject_alt_names)
        self.fixed_alpn = alpn_protocols(config.alpn)
        self._contexts: dict[tuple[str, ...], ssl.SSLContext] = {}
        self._sessions: dict[Any, ssl.SSLSession] = {}
        self.generation = 0
        self.context(())  # fail now (at start), not on the first request

    def context(self, alpn: tuple[str, ...]) -> ssl.SSLContext:
        key = self.fixed_alpn or alpn
        ctx = self._contexts.get(key)
        if ctx is None:
            ctx = self._contexts[key] = build_context(self.config, server_side=False, alpn=key)
        return ctx

    def files(self) -> list[str]:
        return files_of([self.config])

    def cipher_names(self) -> list[str]:
        return [c["name"] for c in self.context(()).get_ciphers()]

    def reload(self) -> None:
        """New contexts from the files (client certificate or CA rotated); sessions of
        the old ones are dropped."""
        fresh = {key: build_context(self.config, server_side=False, alpn=key)
                 for key in self._contexts or {(): None}}
        self._contexts = fresh
        self._sessions.clear()
        self.generation += 1

    def update(self, config: Any) -> None:
        old = self.config
        self.config = config
        try:
            self.reload()
        except Exception:
            self.config = old
            raise

    def wrap(self, incoming: ssl.MemoryBIO, outgoing: ssl.MemoryBIO, alpn: tuple[str, ...],
             host_name: str, key: Any) -> ssl.SSLObject:
        """A client ``SSLObject`` for one upstream connection; ``key`` identifies the
        host (and what else makes a session reusable) for resumption."""
        ctx = self.context(alpn)
        name = self.server_name or host_name or None
        return ctx.wrap_bio(incoming, outgoing, server_side=False, server_hostname=name,
                            session=self._sessions.get(key))

    def keep_session(self, key: Any, session: ssl.SSLSession | None) -> None:
        if session is None:
            return
        if len(self._sessions) >= MAX_CLIENT_SESSIONS and key not in self._sessions:
            self._sessions.pop(next(iter(self._sessions)))
        self._sessions[key] = session

    def certificates_info(self) -> list[dict[str, Any]]:
        return describe([self.config])
