"""Certificates as identities: subject alternative names, their matchers (Envoy's
``match_typed_subject_alt_names``, SPIFFE ids in Istio's form
``spiffe://cluster.local/ns/NS/sa/SA``), and what ``/certs`` shows of a certificate."""

from __future__ import annotations

import datetime
import re
from dataclasses import dataclass
from typing import Any, Callable, Iterable

from cryptography import x509
from cryptography.hazmat.primitives import serialization

_PEER_CERT_SAN_TYPES = {"DNS": "DNS", "URI": "URI", "email": "EMAIL", "IP Address": "IP_ADDRESS"}
"""``SSLObject.getpeercert()`` names of SAN types, and Envoy's."""


@dataclass(frozen=True, slots=True)
class San:
    type: str
    """``DNS``, ``URI``, ``EMAIL`` or ``IP_ADDRESS`` (Envoy's ``san_type`` names)."""
    value: str


def sans_of_peercert(peercert: dict[str, Any]) -> tuple[San, ...]:
    """The SANs in the dict form of a verified peer certificate (``getpeercert()``)."""
    return tuple(San(_PEER_CERT_SAN_TYPES[kind], value.rstrip("\n"))
                 for kind, value in peercert.get("subjectAltName", ())
                 if kind in _PEER_CERT_SAN_TYPES)


def sans_of_certificate(cert: x509.Certificate) -> tuple[San, ...]:
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return ()
    out = [San("DNS", v) for v in ext.get_values_for_type(x509.DNSName)]
    out += [San("URI", v) for v in ext.get_values_for_type(x509.UniformResourceIdentifier)]
    out += [San("EMAIL", v) for v in ext.get_values_for_type(x509.RFC822Name)]
    out += [San("IP_ADDRESS", str(v)) for v in ext.get_values_for_type(x509.IPAddress)]
    return tuple(out)


def sans_of_der(der: bytes) -> tuple[San, ...]:
    """The SANs of a DER certificate (one the handshake did not verify)."""
    return sans_of_certificate(x509.load_der_x509_certificate(der))


def subject_of_der(der: bytes) -> str:
    return x509.load_der_x509_certificate(der).subject.rfc4514_string()


def string_test(matcher: Any) -> Callable[[str], bool]:
    """An Envoy ``StringMatcher`` (exact, prefix, suffix, contains, safe_regex) as a test."""
    fold: Callable[[str], str] = str.lower if matcher.ignore_case else (lambda v: v)
    if matcher.safe_regex is not None:
        fullmatch = re.compile(matcher.safe_regex["regex"],
                               re.IGNORECASE if matcher.ignore_case else 0).fullmatch
        return lambda value: fullmatch(value) is not None
    if matcher.exact is not None:
        exact = fold(matcher.exact)
        return lambda value: fold(value) == exact
    if matcher.prefix is not None:
        prefix = fold(matcher.prefix)
        return lambda value: fold(value).startswith(prefix)
    if matcher.suffix is not None:
        suffix = fold(matcher.suffix)
        return lambda value: fold(value).endswith(suffix)
    contains = fold(matcher.contains or "")
    return lambda value: contains in fold(value)


class SanMatcher:
    """Envoy's ``match_typed_subject_alt_names``: a certificate passes when one of
    its SANs of a matcher's type passes that matcher's test."""

    __slots__ = ("tests",)

    def __init__(self, configs: Iterable[Any]) -> None:
        self.tests = tuple((c.san_type, string_test(c.matcher)) for c in configs)

    def __bool__(self) -> bool:
        return bool(self.tests)

    def matches(self, sans: Iterable[San]) -> bool:
        sans = tuple(sans)
        return any(san.type == kind and test(san.value)
                   for kind, test in self.tests for san in sans)


# -- /certs ------------------------------------------------------------------------------


def load_pem_certificates(pem: bytes) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(pem)


def certificate_details(cert: x509.Certificate, path: str,
                        now: datetime.datetime | None = None) -> dict[str, Any]:
    """One certificate as Envoy's ``/certs`` shows it (``CertificateDetails``)."""
    now = now or datetime.datetime.now(datetime.timezone.utc)
    not_after = cert.not_valid_after_utc
    names = []
    for san in sans_of_certificate(cert):
        key = {"DNS": "dns", "URI": "uri", "EMAIL": "email", "IP_ADDRESS": "ip_address"}[san.type]
        names.append({key: san.value})
    return {
        "path": path,
        "serial_number": format(cert.serial_number, "x"),
        "subject": cert.subject.rfc4514_string(),
        "subject_alt_names": names,
        "days_until_expiration": str((not_after - now).days),
        "valid_from": cert.not_valid_before_utc.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "expiration_time": not_after.strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def key_matches_certificate(key_pem: bytes, cert: x509.Certificate) -> bool:
    """Whether the PEM private key is the certificate's (compared by public key)."""
    key = serialization.load_pem_private_key(key_pem, password=None)
    fmt = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return key.public_key().public_bytes(*fmt) == cert.public_key().public_bytes(*fmt)
