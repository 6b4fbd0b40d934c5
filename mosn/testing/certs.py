"""Certificates made at test time (never committed): a CA and the certificates it
issues, with DNS, IP and URI (SPIFFE) names, a chosen key type and validity window.

>>> ca = CertificateAuthority()
>>> server = ca.issue(dns=["localhost"], ips=["127.0.0.1"])
>>> paths = server.write(tmp_path / "server")   # {"cert": ..., "key": ..., "ca": ...}
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

DAY = datetime.timedelta(days=1)


def _key(kind: str) -> ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey:
    if kind == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return ec.generate_private_key(ec.SECP256R1())


def _pem_key(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


@dataclass
class Issued:
    cert_pem: bytes
    key_pem: bytes
    ca_pem: bytes

    def write(self, prefix: Path) -> dict[str, str]:
        """Write ``PREFIX.crt``, ``PREFIX.key`` and ``PREFIX-ca.crt``; their paths."""
        prefix.parent.mkdir(parents=True, exist_ok=True)
        paths = {"cert": f"{prefix}.crt", "key": f"{prefix}.key", "ca": f"{prefix}-ca.crt"}
        Path(paths["cert"]).write_bytes(self.cert_pem)
        Path(paths["key"]).write_bytes(self.key_pem)
        Path(paths["ca"]).write_bytes(self.ca_pem)
        return paths


class CertificateAuthority:
    def __init__(self, name: str = "mosn test CA", key: str = "ec") -> None:
        self.key = _key(key)
        self.name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = datetime.datetime.now(datetime.timezone.utc)
        self.cert = (
            x509.CertificateBuilder().subject_name(self.name).issuer_name(self.name)
            .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - DAY).not_valid_after(now + 3650 * DAY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True,
                crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(self.key.public_key()),
                           critical=False)
            .sign(self.key, hashes.SHA256()))
        self.cert_pem = self.cert.public_bytes(serialization.Encoding.PEM)

    def issue(self, dns: Iterable[str] = (), ips: Iterable[str] = (), uris: Iterable[str] = (),
              common_name: str = "", key: str = "ec", not_before_days: float = -1,
              not_after_days: float = 365) -> Issued:
        """A certificate for server and client use, valid from ``not_before_days`` to
        ``not_after_days`` days from now (negative: in the past)."""
        dns, ips, uris = list(dns), list(ips), list(uris)
        private = _key(key)
        cn = common_name or (dns[0] if dns else uris[0] if uris else "mosn test")
        names: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
        names += [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
        names += [x509.UniformResourceIdentifier(u) for u in uris]
        now = datetime.datetime.now(datetime.timezone.utc)
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
            .issuer_name(self.name).public_key(private.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now + not_before_days * DAY)
            .not_valid_after(now + not_after_days * DAY)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                                  ExtendedKeyUsageOID.CLIENT_AUTH]),
                           critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                self.key.public_key()), critical=False))
        if names:
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        cert = builder.sign(self.key, hashes.SHA256())
        return Issued(cert.public_bytes(serialization.Encoding.PEM), _pem_key(private),
                      self.cert_pem)
