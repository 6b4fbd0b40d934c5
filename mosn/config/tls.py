"""TLS config in MOSN's shape (``pkg/config/v2/tls.go``): ``tls_context`` and
``tls_context_set`` on a filter chain, ``tls_context`` on a cluster.

The models check the shape (MOSN's version, curve and ALPN names, fields mosn cannot
honour); :func:`check_tls` then builds every context with :mod:`mosn.tls` so a missing
or unreadable file, a key that does not match its certificate or an unknown cipher is
refused with the path of its field before anything listens.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

from typing import Annotated

from pydantic import AfterValidator, Field, field_validator, model_validator

from mosn.config.base import Model, is_empty
from mosn.config.types import Duration
from mosn.tls import (
    DEFAULT_HANDSHAKE_TIMEOUT,
    TlsError,
    alpn_protocols,
    check_context,
    curve_name,
    tls_version,
)


def refused(reason: str) -> Any:
    """A MOSN field mosn cannot honour: allowed only when empty; else refused with
    ``reason``."""

    def check(value: Any) -> Any:
        if not is_empty(value):
            raise ValueError(f"not supported: {reason}")
        return value

    return Annotated[Any, AfterValidator(check)]


class StringMatcher(Model):
    """Envoy's ``StringMatcher``: one of exact, prefix, suffix, contains, safe_regex."""

    exact: str | None = None
    prefix: str | None = None
    suffix: str | None = None
    contains: str | None = None
    safe_regex: dict[str, str] | None = None
    """``{regex: ...}`` (Python's ``re``, matched against the whole value)."""
    ignore_case: bool = False

    @model_validator(mode="after")
    def _one(self) -> "StringMatcher":
        set_ = [n for n in ("exact", "prefix", "suffix", "contains", "safe_regex")
                if getattr(self, n) is not None]
        if len(set_) != 1:
            raise ValueError("set exactly one of exact, prefix, suffix, contains, safe_regex")
        if self.safe_regex is not None and set(self.safe_regex) != {"regex"}:
            raise ValueError("safe_regex is {regex: PATTERN}")
        return self


SAN_TYPES = ("DNS", "URI", "EMAIL", "IP_ADDRESS")


class SanMatcherConfig(Model):
    """Envoy's ``SubjectAltNameMatcher``: the peer certificate must carry a SAN of
    ``san_type`` that ``matcher`` accepts."""

    san_type: str
    matcher: StringMatcher

    @field_validator("san_type")
    @classmethod
    def _type(cls, value: str) -> str:
        if value.upper() not in SAN_TYPES:
            raise ValueError(f"san_type is one of {', '.join(SAN_TYPES)}")
        return value.upper()


class TlsContextConfig(Model):
    """MOSN's ``TLSConfig``. ``ca_cert``, ``cert_chain`` and ``private_key`` are each
    a file (relative to the config file's directory) or inline PEM."""

    status: bool = False
    """TLS is on only when true (MOSN's switch)."""
    type: refused("MOSN's extension point for Go config hooks (pkg/mtls ConfigHooks); "
                  "mosn has no such hooks") = None
    server_name: str = ""
    """Client: the SNI sent and the name the server certificate must carry.
    Server (in ``tls_context_set``): the name this certificate is chosen for (its
    certificate's DNS names are used when empty)."""
    ca_cert: str = ""
    cert_chain: str = ""
    private_key: str = ""
    verify_client: bool = False
    require_client_cert: bool = False
    insecure_skip: bool = False
    cipher_suites: str = ""
    """TLS 1.2 and older suites, ``:``-separated, in MOSN's or OpenSSL's names."""
    ecdh_curves: str = ""
    min_version: str = ""
    max_version: str = ""
    alpn: str = ""
    """Comma-separated ALPN protocols (``h2,http/1.1``)."""
    ticket: refused("Python's ssl cannot set session ticket keys; workers share the "
                    "keys of the context made before they fork") = None
    fall_back: bool = False
    """A certificate that cannot be loaded turns TLS off (with a warning) instead of
    refusing the config (MOSN's)."""
    extend_verify: refused("arguments of MOSN's Go verification hooks; use "
                           "match_typed_subject_alt_names") = None
    callbacks: refused("MOSN's Go TLS context callbacks; mosn has no such hooks") = None
    sds_source: refused("secrets from a control plane (SDS) come with xDS, which mosn "
                        "does not have yet") = None
    match_typed_subject_alt_names: list[SanMatcherConfig] = Field(default_factory=list)
    """Envoy's: the peer certificate must have a SAN accepted by one of these."""
    handshake_timeout: Duration = DEFAULT_HANDSHAKE_TIMEOUT
    """mosn's own: a handshake not done by then is closed (``ssl.handshake_timeout``)."""

    @field_validator("min_version", "max_version")
    @classmethod
    def _version(cls, value: str) -> str:
        tls_version(value)
        return value

    @field_validator("ecdh_curves")
    @classmethod
    def _curves(cls, value: str) -> str:
        curve_name(value)
        return value

    @field_validator("alpn")
    @classmethod
    def _alpn(cls, value: str) -> str:
        alpn_protocols(value)
        return value

    @model_validator(mode="after")
    def _versions(self) -> "TlsContextConfig":
        low, high = tls_version(self.min_version), tls_version(self.max_version)
        if low is not None and high is not None and low > high:
            raise ValueError(f"min_version {self.min_version} is above max_version "
                             f"{self.max_version}")
        if self.require_client_cert and not self.verify_client:
            raise ValueError("require_client_cert needs verify_client: true (MOSN's)")
        return self


FILE_FIELDS = ("ca_cert", "cert_chain", "private_key")


def is_pem(value: str) -> bool:
    return "-----BEGIN" in value


def resolve_paths(tls: TlsContextConfig, base_dir: Path) -> None:
    """Make relative file fields absolute, against the config file's directory."""
    for name in FILE_FIELDS:
        value = getattr(tls, name)
        if value and not is_pem(value) and not Path(value).is_absolute():
            setattr(tls, name, str((base_dir / value).resolve()))


def contexts(config: Any) -> Iterator[tuple[str, TlsContextConfig, str]]:
    """Every TLS context of the config: ``(path, context, side)``, side ``server``
    (a filter chain's) or ``client`` (a cluster's)."""
    for path, listener in config.listeners():
        for i, chain in enumerate(listener.filter_chains):
            base = f"{path}.filter_chains[{i}]"
            if chain.tls_context is not None:
                yield f"{base}.tls_context", chain.tls_context, "server"
            for j, one in enumerate(chain.tls_context_set):
                yield f"{base}.tls_context_set[{j}]", one, "server"
    for i, cluster in enumerate(config.cluster_manager.clusters):
        if cluster.tls_context is not None:
            yield f"cluster_manager.clusters[{i}].tls_context", cluster.tls_context, "client"


def check_tls(config: Any, base_dir: Path) -> tuple[list[str], list[str]]:
    """Resolve file paths and build every enabled context; ``(errors, warnings)``,
    each ``path.field: reason``."""
    errors: list[str] = []
    warnings: list[str] = []
    for path, tls, side in contexts(config):
        resolve_paths(tls, base_dir)
        if not tls.status:
            continue
        try:
            check_context(tls, server_side=side == "server")
        except TlsError as exc:
            line = f"{path}.{exc.field}: {exc}" if exc.field else f"{path}: {exc}"
            if tls.fall_back and exc.field in FILE_FIELDS:
                warnings.append(f"{line} (fall_back: TLS is off here)")
                tls.status = False
            else:
                errors.append(line)
    for path, listener in config.listeners():
        for i, chain in enumerate(listener.filter_chains):
            enabled = chain.enabled_tls()
            if listener.inspector and not enabled:
                errors.append(f"{path}.inspector: needs a filter chain with TLS (status: true)")
            if len(enabled) > 1 and len({_shared(t) for t in enabled}) > 1:
                errors.append(f"{path}.filter_chains[{i}].tls_context_set: the certificates of "
                              "one chain must share verify_client, require_client_cert, versions "
                              "and alpn (one handshake chooses among them by server name)")
    return errors, warnings


def _shared(tls: TlsContextConfig) -> tuple[Any, ...]:
    return (tls.verify_client, tls.require_client_cert, tls.min_version, tls.max_version,
            tls.alpn)
