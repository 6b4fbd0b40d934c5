"""MOSN's TLS option names turned into what Python's ``ssl`` (OpenSSL) takes.

Each function raises :class:`TlsError` naming the field and the reason when a value
is unknown, or known but impossible through Python's ``ssl``.
"""

from __future__ import annotations

import ssl


class TlsError(ValueError):
    """A TLS setting that cannot be honoured; ``field`` names the config field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


VERSIONS = {
    "tls_auto": None,
    "tlsv1_0": ssl.TLSVersion.TLSv1,
    "tlsv1_1": ssl.TLSVersion.TLSv1_1,
    "tlsv1_2": ssl.TLSVersion.TLSv1_2,
    "tlsv1_3": ssl.TLSVersion.TLSv1_3,
}
"""MOSN's version names (``pkg/mtls/types.go``), case-insensitive; also ``TLSv1.2``."""

CURVES = {"x25519": "X25519", "p256": "prime256v1", "p384": "secp384r1", "p521": "secp521r1"}
"""MOSN's curve names and OpenSSL's."""

ALPN_PROTOCOLS = ("h2", "http/1.1", "sofa")
"""The ALPN ids MOSN accepts (others it drops; mosn refuses them)."""

MOSN_CIPHERS = {
    "ECDHE-ECDSA-AES256-GCM-SHA384": "ECDHE-ECDSA-AES256-GCM-SHA384",
    "ECDHE-RSA-AES256-GCM-SHA384": "ECDHE-RSA-AES256-GCM-SHA384",
    "ECDHE-ECDSA-AES128-GCM-SHA256": "ECDHE-ECDSA-AES128-GCM-SHA256",
    "ECDHE-RSA-AES128-GCM-SHA256": "ECDHE-RSA-AES128-GCM-SHA256",
    "ECDHE-ECDSA-WITH-CHACHA20-POLY1305": "ECDHE-ECDSA-CHACHA20-POLY1305",
    "ECDHE-RSA-WITH-CHACHA20-POLY1305": "ECDHE-RSA-CHACHA20-POLY1305",
    "ECDHE-RSA-AES256-CBC-SHA": "ECDHE-RSA-AES256-SHA",
    "ECDHE-RSA-AES128-CBC-SHA": "ECDHE-RSA-AES128-SHA",
    "ECDHE-ECDSA-AES256-CBC-SHA": "ECDHE-ECDSA-AES256-SHA",
    "ECDHE-ECDSA-AES128-CBC-SHA": "ECDHE-ECDSA-AES128-SHA",
    "RSA-AES256-CBC-SHA": "AES256-SHA",
    "RSA-AES128-CBC-SHA": "AES128-SHA",
    "ECDHE-RSA-3DES-EDE-CBC-SHA": "ECDHE-RSA-DES-CBC3-SHA",
    "RSA-3DES-EDE-CBC-SHA": "DES-CBC3-SHA",
}
"""MOSN's cipher names (``pkg/mtls/ciphers.go``) and OpenSSL's."""
TLS13_SUITES = frozenset({
    "AES256-GCM-SHA384", "AES128-GCM-SHA256",  # MOSN's names of the TLS 1.3 suites
    "TLS_AES_256_GCM_SHA384", "TLS_AES_128_GCM_SHA256", "TLS_CHACHA20_POLY1305_SHA256",
})
"""TLS 1.3 suites: OpenSSL enables all of them and Python's ssl has no call to choose."""
GUOMI_SUITES = frozenset({"TLS_SM4_GCM_SM3", "TLS_SM4_CCM_SM3"})
"""RFC 8998's ShangMi suites, which MOSN has through its own Go TLS and cgo SM4. The
OpenSSL under Python's ssl (3.0 here) has SM2, SM3 and SM4 as algorithms but no TLS
suite, group or signature scheme built on them, and no TLCP (GB/T 38636)."""


def tls_version(name: str) -> ssl.TLSVersion | None:
    """MOSN's ``min_version``/``max_version`` value; None for empty or ``TLS_AUTO``."""
    if not name:
        return None
    key = name.lower().replace(".", "_")
    key = {"tlsv1": "tlsv1_0", "tls1_0": "tlsv1_0", "tls1_1": "tlsv1_1",
           "tls1_2": "tlsv1_2", "tls1_3": "tlsv1_3"}.get(key, key)
    if key not in VERSIONS:
        raise ValueError(f"unknown TLS version {name!r} (known: {', '.join(VERSIONS)})")
    return VERSIONS[key]


def curve_name(curves: str) -> str | None:
    """OpenSSL's name of the one curve in MOSN's comma-separated ``ecdh_curves``."""
    names = [c.strip().lower() for c in curves.split(",") if c.strip()]
    if not names:
        return None
    for name in names:
        if name not in CURVES:
            raise ValueError(f"unknown curve {name!r} (known: {', '.join(CURVES)})")
    if len(names) > 1:
        raise ValueError("several curves at once cannot be set through Python's ssl "
                         "(SSLContext.set_ecdh_curve takes one); list one curve")
    return CURVES[names[0]]


def alpn_protocols(alpn: str) -> tuple[str, ...]:
    """MOSN's comma-separated ``alpn`` as a tuple, in order."""
    protocols = tuple(p.strip() for p in alpn.split(",") if p.strip())
    for p in protocols:
        if p.lower() not in ALPN_PROTOCOLS:
            raise ValueError(f"ALPN protocol {p!r} is not one MOSN knows "
                             f"({', '.join(ALPN_PROTOCOLS)})")
    return protocols


def cipher_string(suites: str) -> str:
    """OpenSSL's cipher string for MOSN's ``:``-separated ``cipher_suites``; MOSN's
    names and OpenSSL's are both taken."""
    names = [s.strip() for s in suites.split(":") if s.strip()]
    out = []
    for name in names:
        if name.upper() in GUOMI_SUITES:
            raise TlsError("cipher_suites", f"{name} (ShangMi, RFC 8998) is not available: the "
                                            "OpenSSL under Python's ssl has no SM4 TLS suites "
                                            "(see docs/tls.md, Guomi)")
        if name in TLS13_SUITES or name.upper() in TLS13_SUITES:
            raise TlsError("cipher_suites", f"{name} is a TLS 1.3 suite: Python's ssl cannot "
                                            "choose TLS 1.3 suites (OpenSSL enables all three)")
        out.append(MOSN_CIPHERS.get(name.upper(), name))
    text = ":".join(out)
    probe = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    for name in out:
        try:
            probe.set_ciphers(name)
        except ssl.SSLError:
            raise TlsError("cipher_suites", f"unknown cipher {name!r}") from None
    return text
