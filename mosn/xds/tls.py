"""TLS transport sockets and SDS ``Secret`` resources into MOSN's ``tls_context``.

A transport socket names its certificate and validation context inline or by SDS
secret name; a named secret is left as a reference (:data:`SDS_KEY`) that the
snapshot fills in once the secret has arrived (until then the listener or cluster
that needs it is warming).
"""

from __future__ import annotations

from typing import Any

from envoy.extensions.transport_sockets.tls.v3 import secret_pb2, tls_pb2

from mosn.xds.fields import Fields, ads_source, translate
from mosn.xds.matchers import string_matcher

TLS_SOCKET = "envoy.extensions.transport_sockets.tls.v3"
DOWNSTREAM = {f"{TLS_SOCKET}.DownstreamTlsContext": tls_pb2.DownstreamTlsContext}
UPSTREAM = {f"{TLS_SOCKET}.UpstreamTlsContext": tls_pb2.UpstreamTlsContext}
RAW_BUFFER = "envoy.extensions.transport_sockets.raw_buffer.v3.RawBuffer"
SDS_KEY = "sds"
"""In a translated ``tls_context``: ``{"certificate": NAME, "validation": NAME}``, the
SDS secrets still to fill in."""
VERSIONS = {"TLS_AUTO": "", "TLSv1_0": "TLSv1_0", "TLSv1_1": "TLSv1_1",
            "TLSv1_2": "TLSv1_2", "TLSv1_3": "TLSv1_3"}
SAN_TYPES = {"DNS": "DNS", "URI": "URI", "EMAIL": "EMAIL", "IP_ADDRESS": "IP_ADDRESS"}
ANY_SAN = ("DNS", "URI", "EMAIL", "IP_ADDRESS")
"""``match_subject_alt_names`` (untyped) accepts a SAN of any type (Envoy's)."""


def secret(message: secret_pb2.Secret) -> dict[str, Any]:
    """A Secret as the ``tls_context`` fields it fills in."""
    return translate(message, "Secret", message.name, _secret)


def _secret(f: Fields) -> dict[str, Any]:
    f.accept("name")
    kind = f.which("type")
    if kind == "tls_certificate":
        return certificate(f.child(kind))  # type: ignore[arg-type]
    if kind == "validation_context":
        return validation(f.child(kind))  # type: ignore[arg-type]
    if kind is not None:
        f.refuse(kind, "mosn takes tls_certificate and validation_context secrets")
    else:
        f.error("an empty secret")
    return {}


def data_source(f: Fields | None) -> str:
    """A ``DataSource``: inline PEM, or a file name (read when the context is built)."""
    if f is None:
        return ""
    kind = f.which("specifier")
    if kind in ("inline_string", "filename"):
        return f.scalar(kind)
    if kind == "inline_bytes":
        return f.scalar(kind).decode("ascii", "replace")
    if kind is not None:
        f.refuse(kind, "a certificate is inline_string, inline_bytes or filename in mosn")
    if f.has("watched_directory"):
        f.refuse("watched_directory", "mosn rereads certificate files by itself")
    return ""


def certificate(f: Fields) -> dict[str, Any]:
    return {"cert_chain": data_source(f.child("certificate_chain")),
            "private_key": data_source(f.child("private_key"))}


def validation(f: Fields) -> dict[str, Any]:
    out: dict[str, Any] = {"ca_cert": data_source(f.child("trusted_ca"))}
    sans = [san_matcher(m) for m in f.children("match_typed_subject_alt_names")]
    for m in f.children("match_subject_alt_names"):
        matcher = string_matcher(m)
        sans += [{"san_type": kind, "matcher": matcher} for kind in ANY_SAN]
    if sans:
        out["match_typed_subject_alt_names"] = sans
    return out


def san_matcher(f: Fields) -> dict[str, Any]:
    kind = f.enum("san_type")
    if kind not in SAN_TYPES:
        f.error(f"san_type {kind} is not supported by mosn", "san_type")
    matcher = f.child("matcher")
    return {"san_type": SAN_TYPES.get(kind, "DNS"),
            "matcher": string_matcher(matcher) if matcher else {}}


def transport_socket(f: Fields, types: dict[str, type]) -> dict[str, Any] | None:
    """A filter chain's (``DOWNSTREAM``) or cluster's (``UPSTREAM``) transport socket:
    a ``tls_context``, or None for plaintext."""
    f.accept("name")
    if f.has("typed_config") and f.message.typed_config.type_url.endswith(RAW_BUFFER):
        f.accept("typed_config")
        return None
    context = f.typed("typed_config", types)
    if context is None:
        return None
    out: dict[str, Any] = {"status": True}
    common = context.child("common_tls_context")
    if common is not None:
        out.update(common_tls(common))
    if types is DOWNSTREAM:
        required = context.wrapped("require_client_certificate", False)
        out["verify_client"] = bool(out.get("ca_cert") or out.get(SDS_KEY, {}).get("validation"))
        if required:
            out["require_client_cert"] = True
    else:
        out["server_name"] = context.scalar("sni")
        if not (out.get("ca_cert") or out.get(SDS_KEY, {}).get("validation")):
            out["insecure_skip"] = True  # Envoy checks no server certificate without one
    return out


def common_tls(f: Fields) -> dict[str, Any]:
    out: dict[str, Any] = {}
    params = f.child("tls_params")
    if params is not None:
        for field, key in (("tls_minimum_protocol_version", "min_version"),
                           ("tls_maximum_protocol_version", "max_version")):
            version = VERSIONS[params.enum(field)]
            if version:
                out[key] = version
        ciphers = list(params.scalar("cipher_suites"))
        if ciphers:
            out["cipher_suites"] = ":".join(ciphers)
        curves = list(params.scalar("ecdh_curves"))
        if curves:
            out["ecdh_curves"] = ",".join(curves)
    sds: dict[str, str] = {}
    certificates = f.children("tls_certificates")
    if len(certificates) > 1:
        f.error("mosn takes one certificate per context", "tls_certificates")
    if certificates:
        out.update(certificate(certificates[0]))
    named = f.children("tls_certificate_sds_secret_configs")
    if len(named) > 1:
        f.error("mosn takes one certificate per context", "tls_certificate_sds_secret_configs")
    if named:
        sds["certificate"] = sds_name(named[0])
    kind = f.which("validation_context_type")
    if kind == "validation_context":
        out.update(validation(f.child(kind)))  # type: ignore[arg-type]
    elif kind == "validation_context_sds_secret_config":
        sds["validation"] = sds_name(f.child(kind))  # type: ignore[arg-type]
    elif kind == "combined_validation_context":
        combined = f.child(kind)
        assert combined is not None
        default = combined.child("default_validation_context")
        if default is not None:
            out.update(validation(default))
        named_ca = combined.child("validation_context_sds_secret_config")
        if named_ca is not None:
            sds["validation"] = sds_name(named_ca)
    elif kind is not None:
        f.refuse(kind, "this validation context is not supported by mosn")
    alpn = list(f.scalar("alpn_protocols"))
    if alpn:
        out["alpn"] = ",".join(alpn)
    if sds:
        out[SDS_KEY] = sds
    return out


def sds_name(f: Fields) -> str:
    """An ``SdsSecretConfig``: its name, delivered over the same ADS stream."""
    ads_source(f.child("sds_config"), "secrets")
    return f.scalar("name")


def fill_secrets(tls: dict[str, Any], secrets: dict[str, dict[str, Any]]) -> list[str]:
    """Put the named secrets into ``tls`` in place; the names not yet known."""
    named = tls.pop(SDS_KEY, None)
    if not named:
        return []
    missing = []
    for role, name in named.items():
        found = secrets.get(name)
        if found is None:
            missing.append(name)
            tls.setdefault(SDS_KEY, {})[role] = name
            continue
        for key, value in found.items():
            if key == "match_typed_subject_alt_names":
                tls[key] = [*tls.get(key, []), *value]
            else:
                tls[key] = value
    return missing
