"""Certificates and TLS contexts: built from MOSN's TLS config, chosen by server
name, watched for rotation, and the peer identities they verify (SANs, SPIFFE ids).

The handshake itself is a layer of the connection (:mod:`mosn.network.tls`); this
package only makes what it needs. Lower than :mod:`mosn.config` and
:mod:`mosn.network`: it imports neither.
"""

from mosn.tls.clienthello import MAX_CLIENT_HELLO, ClientHello, Verdict, inspect
from mosn.tls.context import (
    DEFAULT_HANDSHAKE_TIMEOUT,
    ClientTls,
    ServerTls,
    build_context,
    check_context,
    name_matches,
)
from mosn.tls.context import describe as describe_certificates
from mosn.tls.identity import San, SanMatcher, sans_of_der, sans_of_peercert, subject_of_der
from mosn.tls.options import TlsError, alpn_protocols, cipher_string, curve_name, tls_version
from mosn.tls.watch import ROTATION_POLL_INTERVAL, CertificateWatcher

__all__ = [
    "DEFAULT_HANDSHAKE_TIMEOUT",
    "MAX_CLIENT_HELLO",
    "ROTATION_POLL_INTERVAL",
    "CertificateWatcher",
    "ClientHello",
    "ClientTls",
    "San",
    "SanMatcher",
    "ServerTls",
    "TlsError",
    "Verdict",
    "alpn_protocols",
    "build_context",
    "check_context",
    "describe_certificates",
    "cipher_string",
    "curve_name",
    "inspect",
    "name_matches",
    "sans_of_der",
    "sans_of_peercert",
    "subject_of_der",
    "tls_version",
]
