"""Dubbo's registry data: provider URLs as they sit in ZooKeeper, turned into hosts.

A Dubbo provider registers itself as an ephemeral znode under
``/<root>/<interface>/providers`` whose *name* is its URL, URL-encoded
(``ZookeeperRegistry.toUrlPath``: ``URL.encode(url.toFullString())``)::

    dubbo://10.0.0.5:20880/com.example.EchoService?anyhost=true&application=echo
        &interface=com.example.EchoService&methods=echo,whoami&version=1.0.0
        &group=blue&weight=100&side=provider&timestamp=1700000000000

Each such URL becomes a host whose metadata holds the URL's parameters (for subset
load balancing: ``version``, ``group``, ``application`` ...), ``version`` and
``group`` always present ("" when the provider has none).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import parse_qsl, quote, unquote, urlsplit

from mosn.config.models import MAX_HOST_WEIGHT
from mosn.config.types import Address

DEFAULT_ROOT = "/dubbo"
"""Dubbo's registry root (the registry ``group``, default ``dubbo``)."""
DEFAULT_WEIGHT = 100
"""Dubbo's weight of a provider that names none (``Constants.DEFAULT_WEIGHT``)."""


def providers_path(root: str, interface: str) -> str:
    return f"{root.rstrip('/')}/{interface}/providers"


def node_path(root: str, interface: str, category: str, url: str) -> str:
    """The znode a URL is registered as under ``/<root>/<interface>/<category>``
    (``ZookeeperRegistry.toUrlPath``: the whole URL encoded as one name)."""
    return f"{root.rstrip('/')}/{interface}/{category}/{quote(url, safe='')}"


@dataclass(frozen=True)
class Provider:
    """One provider URL, read."""

    address: Address
    interface: str
    weight: int
    metadata: dict[str, str] = field(default_factory=dict)


def parse_provider(znode: str, protocol: str = "dubbo") -> Provider | None:
    """The provider a znode name under ``providers`` stands for, or None when it is
    not one to send ``protocol`` traffic to (another protocol, disabled, weight 0, or
    not a URL at all)."""
    url = unquote(znode)
    try:
        parts = urlsplit(url)
        host, port = parts.hostname, parts.port
    except ValueError:
        return None
    if parts.scheme != protocol or not host or not port:
        return None
    params = dict(parse_qsl(parts.query, keep_blank_values=True))
    if params.get("enabled", "true") == "false" or params.get("disabled") == "true":
        return None
    if params.get("category", "providers") != "providers":
        return None
    try:
        weight = int(params.get("weight", DEFAULT_WEIGHT))
    except ValueError:
        weight = DEFAULT_WEIGHT
    if weight <= 0:
        return None  # Dubbo sends a weight-0 provider nothing
    interface = params.get("interface") or parts.path.strip("/")
    metadata = {**params, "interface": interface, "version": params.get("version", ""),
                "group": params.get("group", ""), "protocol": parts.scheme}
    return Provider(Address(host=host, port=port), interface, min(weight, MAX_HOST_WEIGHT),
                    metadata)


def provider_url(host: str, port: int, interface: str, **params: str) -> str:
    """A provider URL as Dubbo writes one."""
    return f"dubbo://{host}:{port}/{interface}?" + _query(
        {"interface": interface, "side": "provider", **params})


def consumer_url(host: str, interface: str, **params: str) -> str:
    """A consumer URL as Dubbo registers one (``consumer://<ip>/<interface>?...``)."""
    return f"consumer://{host}/{interface}?" + _query(
        {"interface": interface, "side": "consumer", **params})


def _query(params: dict[str, str]) -> str:
    return "&".join(f"{k}={v}" for k, v in sorted(params.items()))
