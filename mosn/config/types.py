"""Value types shared by config models: durations and addresses."""

from __future__ import annotations

import ipaddress
import math
import re
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer

_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNIT_SECONDS = {
    "ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0,
}


def parse_duration(value: Any) -> float:
    """Seconds from a Go-style duration (``"1m30s"``, ``"250ms"``) or a number of seconds."""
    if isinstance(value, bool):
        raise ValueError("a duration is a string like '15s' or a number of seconds")
    if isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip()
        if not text:
            raise ValueError("empty duration")
        pos, seconds = 0, 0.0
        for m in _DURATION_PART.finditer(text):
            if m.start() != pos:
                break
            seconds += float(m.group(1)) * _UNIT_SECONDS[m.group(2)]
            pos = m.end()
        if pos != len(text):
            raise ValueError(f"invalid duration {value!r}: use units ns, us, ms, s, m, h as in '1m30s'")
    else:
        raise ValueError("a duration is a string like '15s' or a number of seconds")
    if seconds < 0:
        raise ValueError("a duration cannot be negative")
    return seconds


def format_duration(seconds: float) -> str:
    return f"{seconds:g}s"


Duration = Annotated[
    float, BeforeValidator(parse_duration), PlainSerializer(format_duration, return_type=str)
]
"""A duration in seconds; written in config as ``"15s"``, ``"300ms"`` or a number."""


TIMEOUT_DISABLED = "disabled"
"""How a config turns a timeout that allows it off (kept as ``math.inf``)."""


def parse_timeout(value: Any) -> float:
    """A duration, or :data:`TIMEOUT_DISABLED` for none at all (``math.inf``)."""
    if isinstance(value, str) and value.strip().lower() == TIMEOUT_DISABLED:
        return math.inf
    return parse_duration(value)


def format_timeout(seconds: float) -> str:
    return TIMEOUT_DISABLED if seconds == math.inf else format_duration(seconds)


Timeout = Annotated[
    float, BeforeValidator(parse_timeout), PlainSerializer(format_timeout, return_type=str)
]
"""A duration that may also be ``disabled`` (no limit): ``math.inf`` once parsed."""


@dataclass(frozen=True, slots=True)
class Address:
    """A TCP ``host:port`` or a Unix socket path (``unix:/path``)."""

    host: str = ""
    port: int = 0
    path: str | None = None

    @property
    def is_unix(self) -> bool:
        return self.path is not None

    def __str__(self) -> str:
        if self.path is not None:
            return f"unix:{self.path}"
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def is_loopback(host: str) -> bool:
    """Only this machine can reach ``host`` (``127.0.0.0/8``, ``::1``, ``localhost``)."""
    if host.lower().rstrip(".") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a name that may resolve anywhere


def parse_address(value: Any) -> Address:
    if isinstance(value, Address):
        return value
    if not isinstance(value, str) or not value:
        raise ValueError("an address is a string 'host:port' or 'unix:/path'")
    if value.startswith("unix:"):
        path = value[len("unix:"):]
        if not path:
            raise ValueError("a unix address needs a path: 'unix:/run/mosn.sock'")
        return Address(path=path)
    if value.startswith("/") or value.startswith("@"):
        return Address(path=value)
    host, sep, port_text = value.rpartition(":")
    if not sep or not host:
        raise ValueError(f"{value!r} is not 'host:port'")
    if host.startswith("["):
        if not host.endswith("]"):
            raise ValueError(f"{value!r}: unclosed '[' in an IPv6 address")
        host = host[1:-1]
        ipaddress.IPv6Address(host)
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError(f"{value!r}: port must be a number from 0 to 65535")
    return Address(host=host, port=int(port_text))


def unix_path(value: Any, network: str | None) -> Any:
    """MOSN also writes a Unix listener as ``network: unix`` with a bare path address."""
    if network == "unix" and isinstance(value, str) and not value.startswith("unix:"):
        return f"unix:{value}"
    return value


AddressField = Annotated[Address, BeforeValidator(parse_address), PlainSerializer(str, return_type=str)]
