"""``--kind health-checker``: a health checker that sends a line and expects one back."""

DESCRIPTION = "The ${name} health checker for mosn: a line sent, a line expected back"
TEST_DEPENDENCIES = ("pytest>=8",)

from mosn.testing.templates import INSTALL, INSTALLED_ONLY

FILES: dict[str, str] = {}

FILES["README.md"] = '''
# mosn-plugin-${name}

The `${name}` health checker for [mosn](https://github.com/mosn/mosn)'s Python data
plane: each probe connects to the host, sends `send` (`PING` and a line end) and
reads one line back; the host is healthy when the line is `expect` (`PONG`).

Written by `mosn plugin new ${name} --kind health-checker` as a starting point: change
it into your protocol's probe; the conformance suite in `tests/` probes real servers
(healthy, unhealthy, closing, silent, gone) and runs it in a real mosn through a host
turning unhealthy, flapping and recovering.

## Layout

| file | what it holds |
|---|---|
| `mosn_${name}/config.py` | `${Name}CheckConfig`, what `health_check.check_config` may set |
| `mosn_${name}/checker.py` | `${Name}Checker`: `async check(host) -> bool`, one probe |
| `mosn_${name}/plugin.py` | registers it with mosn |
| `examples/pong.py` | a host answering probes, to try the checker against |
| `tests/` | the conformance suite |

''' + INSTALL + '''
A host to try it on: `python ${name}/examples/pong.py --port 12220` answers `PONG`
(`--answer ERR`: a host that fails).

```yaml
cluster_manager:
  clusters:
    - name: backend
      hosts: [{address: 127.0.0.1:12220}]
      health_check:
        protocol: ${name}
        check_config: {send: "PING\\r\\n", expect: PONG}
        interval: 1s
        timeout: 500ms
        healthy_threshold: 2
        unhealthy_threshold: 2
```
'''

FILES["mosn_${name}/__init__.py"] = '''
"""The ${name} health checker for mosn."""

from mosn_${name}.checker import ${Name}Checker
from mosn_${name}.config import MAX_LINE, ${Name}CheckConfig

__all__ = ["MAX_LINE", "${Name}CheckConfig", "${Name}Checker"]
'''

FILES["mosn_${name}/config.py"] = '''
"""What ``health_check.check_config`` may set for ``protocol: ${name}``."""

from __future__ import annotations

from pydantic import ConfigDict, Field

from mosn.config import Model

MAX_LINE = 1024
"""Bytes of the answer line read at most: a health answer is a word, not a page."""


class ${Name}CheckConfig(Model):
    model_config = ConfigDict(extra="forbid")  # a misspelt key is an error

    send: str = Field(default="PING\\r\\n", min_length=1)
    """What a probe writes (UTF-8)."""
    expect: str = Field(default="PONG", min_length=1, max_length=MAX_LINE)
    """The answer line (without its line end) of a healthy host."""
    port: int = Field(default=0, ge=0, le=65535)
    """Probe this port of the host (0: the host's own)."""
'''

FILES["mosn_${name}/checker.py"] = '''
"""The ``${name}`` health checker: one probe of one host.

mosn calls ``check(host)`` every ``health_check.interval`` for each host of the
cluster, bounded by ``health_check.timeout`` (a probe past it is cancelled: the
connection is closed on the way out). True is healthy; False or
``HealthCheckFailed`` is a wrong answer; ``OSError`` (refused, reset) or
``TimeoutError`` a network failure. The thresholds turn answers into health.
"""

from __future__ import annotations

import asyncio
from typing import Any

from mosn.config import Address
from mosn.upstream import HealthCheckFailed, Host
from mosn_${name}.config import MAX_LINE, ${Name}CheckConfig


class ${Name}Checker:
    def __init__(self, config: ${Name}CheckConfig | None = None, cluster_config: Any = None) -> None:
        config = config or ${Name}CheckConfig()
        self.send = config.send.encode()
        self.expect = config.expect.encode()
        self.port = config.port

    async def check(self, host: Host) -> bool:
        address = host.address
        if address.is_unix:
            reader, writer = await asyncio.open_unix_connection(address.path, limit=MAX_LINE)
        else:
            if self.port:
                address = Address(address.host, self.port)
            reader, writer = await asyncio.open_connection(address.host, address.port,
                                                           limit=MAX_LINE)
        try:
            writer.write(self.send)
            await writer.drain()
            line = await reader.readline()
        except ValueError:  # no line end within MAX_LINE bytes
            raise HealthCheckFailed(f"no answer line within {MAX_LINE} bytes") from None
        finally:
            writer.close()
            try:
                await writer.wait_closed()
            except OSError:
                pass
        if not line.endswith(b"\\n"):
            raise HealthCheckFailed("the connection closed before an answer line")
        return line.rstrip(b"\\r\\n") == self.expect
'''

FILES["mosn_${name}/plugin.py"] = '''
"""Registers the ``${name}`` health checker with mosn."""

from __future__ import annotations

from mosn.plugins import Extension, hookimpl
from mosn_${name}.checker import ${Name}Checker
from mosn_${name}.config import ${Name}CheckConfig


@hookimpl
def mosn_health_checkers() -> list[Extension]:
    return [Extension("${name}", ${Name}Checker, ${Name}CheckConfig,
                      description="a line sent, a line expected back")]
'''

FILES["examples/pong.py"] = '''
"""A host for the ${name} health checker to probe: answers each line it reads with
``--answer`` (PONG), until stopped. ``python pong.py --port 12220 [--answer ERR]``."""

import argparse
import asyncio


async def serve(port: int, answer: bytes) -> None:
    async def talk(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await reader.readline():
            writer.write(answer + b"\\r\\n")
        writer.close()

    server = await asyncio.start_server(talk, "127.0.0.1", port)
    print(f"answering {answer.decode()} on 127.0.0.1:{port}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--answer", default="PONG")
    args = parser.parse_args()
    try:
        asyncio.run(serve(args.port, args.answer.encode()))
    except KeyboardInterrupt:
        pass
'''

FILES["tests/test_${name}_checker.py"] = '''
"""The checker against mosn.testing's health checker conformance suite: real servers
answering well, badly, never or not at all, and a real mosn's health checks."""

from __future__ import annotations

import importlib.metadata

import pytest

from mosn.testing import HealthCheckerConformance
''' + INSTALLED_ONLY + '''

class Test${Name}Conformance(HealthCheckerConformance):
    checker_type = "${name}"
    checker_config = {"send": "PING\\r\\n", "expect": "PONG"}

    def respond(self, received: bytes, healthy: bool) -> bytes | None:
        """A host of the protocol: a line in, a line out."""
        if not received.endswith(b"\\n"):
            return None
        assert received == b"PING\\r\\n"
        return b"PONG\\r\\n" if healthy else b"ERR\\r\\n"
'''
