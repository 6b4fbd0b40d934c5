"""``--kind cluster-type``: a cluster type whose hosts are listed in a file, followed
as it changes."""

DESCRIPTION = "The ${name} cluster type for mosn: hosts listed in a file, followed as it changes"
TEST_DEPENDENCIES = ("pytest>=8",)

from mosn.testing.templates import INSTALL, INSTALLED_ONLY

FILES: dict[str, str] = {}

FILES["README.md"] = '''
# mosn-plugin-${name}

The `${name}` cluster type for [mosn](https://github.com/mosn/mosn)'s Python data
plane: a cluster's hosts are the lines of a file, `HOST:PORT` and an optional weight,
`#` starting a comment. mosn reads it when it starts (a missing or bad file stops it,
saying why) and again whenever it changes (looking every `interval`); a change that
does not parse is counted (`dns_resolution_failure` of the cluster) and the hosts stay
as they were. Hosts that stay keep their connections; removed ones finish what they
carry.

Written by `mosn plugin new ${name} --kind cluster-type` as a starting point: change it
into your discovery (a registry, an API); the conformance suite in `tests/` checks the
hosts read, each change followed, and traffic through a real mosn as the file changes.

## Layout

| file | what it holds |
|---|---|
| `mosn_${name}/config.py` | `${Name}ClusterConfig`, what a cluster's `cluster_config` may set |
| `mosn_${name}/discovery.py` | `parse_hosts` and `${Name}Discovery` (`hosts`, `async run(update, count_failure)`) |
| `mosn_${name}/plugin.py` | registers the type with mosn |
| `tests/` | the parser's tests and the conformance suite |

''' + INSTALL + '''
```yaml
cluster_manager:
  clusters:
    - name: backend
      type: ${name}
      cluster_config: {path: hosts.txt, interval: 1s}
```
'''

FILES["mosn_${name}/__init__.py"] = '''
"""The ${name} cluster type for mosn: hosts listed in a file."""

from mosn_${name}.config import DEFAULT_INTERVAL, ${Name}ClusterConfig
from mosn_${name}.discovery import ${Name}Discovery, parse_hosts

__all__ = ["DEFAULT_INTERVAL", "${Name}ClusterConfig", "${Name}Discovery", "parse_hosts"]
'''

FILES["mosn_${name}/config.py"] = '''
"""What a cluster of ``type: ${name}`` may set in its ``cluster_config``."""

from __future__ import annotations

from pydantic import ConfigDict, Field

from mosn.config import Duration, Model

DEFAULT_INTERVAL = 1.0
"""Seconds between looks at the file (one stat each)."""
MIN_INTERVAL = 0.01
"""Looking more often than this costs more than any change is worth."""


class ${Name}ClusterConfig(Model):
    model_config = ConfigDict(extra="forbid")  # a misspelt key is an error

    path: str = Field(min_length=1)
    """The file listing the hosts."""
    interval: Duration = Field(default=DEFAULT_INTERVAL, ge=MIN_INTERVAL)
'''

FILES["mosn_${name}/discovery.py"] = '''
"""Hosts from a file: read when the cluster is built, then followed.

mosn calls the type's factory while it loads the config, in the process that starts
(before any worker): ``hosts`` is the first host set. Then ``run(update,
count_failure)`` runs for the life of mosn (once, in the parent when there are
workers); each ``update(hosts)`` replaces the cluster's hosts everywhere.
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Callable

from mosn.config import parse_address
from mosn.upstream import Host
from mosn_${name}.config import ${Name}ClusterConfig

log = logging.getLogger("mosn.${name}")

MAX_FILE_BYTES = 1024 * 1024
"""A host list larger than this is not a host list."""


def parse_hosts(text: str) -> list[Host]:
    """``HOST:PORT [WEIGHT]`` per line; ``#`` comments and blank lines ignored.
    ValueError naming the line of the first one that does not parse."""
    hosts = []
    for number, line in enumerate(text.splitlines(), 1):
        words = line.split("#", 1)[0].split()
        if not words:
            continue
        try:
            if len(words) > 2:
                raise ValueError("expected HOST:PORT and an optional weight")
            weight = int(words[1]) if len(words) == 2 else 1
            if not 1 <= weight <= 128:
                raise ValueError(f"weight {weight} is not 1 to 128")
            hosts.append(Host(parse_address(words[0]), weight=weight))
        except ValueError as exc:
            raise ValueError(f"line {number}: {line.strip()!r}: {exc}") from None
    return hosts


def read_hosts(path: str) -> list[Host]:
    with open(path, "rb") as f:
        data = f.read(MAX_FILE_BYTES + 1)
    if len(data) > MAX_FILE_BYTES:
        raise ValueError(f"larger than {MAX_FILE_BYTES} bytes")
    return parse_hosts(data.decode("utf-8", "replace"))


class ${Name}Discovery:
    def __init__(self, config: ${Name}ClusterConfig) -> None:
        self.path = config.path
        self.interval = config.interval
        try:
            self.version = self._version()
            self.hosts = read_hosts(self.path)
        except (OSError, ValueError) as exc:
            raise ValueError(f"${name}: cannot read the hosts of {self.path}: {exc}") from None

    def _version(self) -> tuple[int, int, int]:
        """What changes when the file does (a rename over it, or a write in place)."""
        st = os.stat(self.path)
        return st.st_ino, st.st_mtime_ns, st.st_size

    async def run(self, update: Callable[[list[Host]], None],
                  count_failure: Callable[[int], None]) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                version = self._version()
                if version == self.version:
                    continue
                hosts = read_hosts(self.path)
            except (OSError, ValueError) as exc:
                log.warning("${name}: %s: %s; the hosts stay as they were", self.path, exc)
                count_failure(1)
                continue
            self.version = version
            update(hosts)
'''

FILES["mosn_${name}/plugin.py"] = '''
"""Registers the ``${name}`` cluster type with mosn."""

from __future__ import annotations

from mosn.config import ClusterConfig
from mosn.plugins import BuildContext, Extension, hookimpl
from mosn_${name}.config import ${Name}ClusterConfig
from mosn_${name}.discovery import ${Name}Discovery


def build(cluster: ClusterConfig, context: BuildContext) -> ${Name}Discovery:
    return ${Name}Discovery(cluster.parsed_cluster_config)


@hookimpl
def mosn_cluster_types() -> list[Extension]:
    return [Extension("${name}", build, ${Name}ClusterConfig,
                      description="hosts listed in a file, followed as it changes")]
'''

FILES["tests/test_${name}_parse.py"] = '''
"""The host list's format."""

from __future__ import annotations

import pytest

from mosn_${name} import parse_hosts


def test_hosts_weights_and_comments() -> None:
    hosts = parse_hosts("# the orders service\\n127.0.0.1:8080\\n\\n127.0.0.1:8081 3  # big\\n")
    assert [(str(h.address), h.weight) for h in hosts] == [("127.0.0.1:8080", 1),
                                                            ("127.0.0.1:8081", 3)]


@pytest.mark.parametrize("text, message", [
    ("127.0.0.1\\n", "line 1"),
    ("127.0.0.1:80\\n127.0.0.1:81 heavy\\n", "line 2"),
    ("127.0.0.1:80 0\\n", "weight 0"),
    ("127.0.0.1:80 1 2\\n", "optional weight"),
])
def test_a_bad_line_is_named(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_hosts(text)
'''

FILES["tests/test_${name}_conformance.py"] = '''
"""The cluster type against mosn.testing's cluster type conformance suite: the hosts
read through mosn's config loader, each change followed, traffic through a real mosn
as the file changes."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path
from typing import Any

import pytest

from mosn.testing import ClusterTypeConformance
''' + INSTALLED_ONLY + '''

class Test${Name}Conformance(ClusterTypeConformance):
    cluster_type = "${name}"

    def cluster(self, hosts: list[str], workdir: Path) -> dict[str, Any]:
        self.change(hosts, workdir)
        return {"cluster_config": {"path": str(workdir / "hosts.txt"), "interval": "50ms"}}

    def change(self, hosts: list[str], workdir: Path) -> None:
        """Written aside, then renamed over the list: mosn never reads half a file."""
        staged = workdir / "hosts.txt.new"
        staged.write_text("".join(f"{h}\\n" for h in hosts))
        staged.replace(workdir / "hosts.txt")
'''
