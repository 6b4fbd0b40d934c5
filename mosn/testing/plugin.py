"""mosn's pytest plugin, loaded by pytest from the ``pytest11`` entry point of the
``mosn`` distribution: installed mosn means these fixtures are there in any test.

Fixtures:

``start_mosn``
    ``start_mosn(config, *args, env=None) -> MosnProcess``: a real mosn process on
    ``config`` (a dict in MOSN's shape), ready (``/ready`` answered) when it returns,
    stopped at teardown.
``mock_rpc_server``
    ``mock_rpc_server(codec, *, delay=0.0, response_bytes=0) -> MockServer``: the
    mock server of ``mosn mock server`` for a codec object, on a free port
    (``.port``, ``.address``), stopped at teardown.

The conformance suite is a base class, not a fixture:
``from mosn.testing import CodecConformance``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

import pytest

if TYPE_CHECKING:
    from mosn.testing.mock import MockServer
    from mosn.testing.process import MosnProcess

# mosn's modules are imported inside the fixtures: this module is loaded by every
# pytest run in an environment where mosn is installed, and should cost nothing there.


def pytest_configure(config: pytest.Config) -> None:
    """In a pytest-xdist worker (``pytest -n N``), ``free_port`` draws from the
    worker's own range of ports, so two workers never start servers on one port."""
    worker = getattr(config, "workerinput", None)  # set by pytest-xdist in its workers
    if worker is not None:
        from mosn.testing.process import use_ports, worker_ports

        index = int(worker["workerid"].removeprefix("gw"))
        use_ports(worker_ports(int(worker["workercount"]), index))


@pytest.fixture
def start_mosn(tmp_path: Path) -> Iterator[Callable[..., MosnProcess]]:
    """Start mosn on a config; every mosn started is stopped after the test."""
    from mosn.testing.process import MosnProcess

    started: list[MosnProcess] = []

    def start(config: dict[str, Any], *args: str,
              env: dict[str, str] | None = None) -> MosnProcess:
        process = MosnProcess(config, tmp_path, args, env)
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()


@pytest.fixture
def mock_rpc_server() -> Iterator[Callable[..., MockServer]]:
    """Start a mock RPC server for a codec; every one started is stopped after the test."""
    from mosn.testing.mock import MockServer

    started: list[MockServer] = []

    def start(codec: Any, *, delay: float = 0.0, response_bytes: int = 0) -> MockServer:
        server = MockServer(codec, delay=delay, response_bytes=response_bytes).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()
