"""The kit's MosnProcess leaves no process behind when mosn is not ready in time."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import free_port, tcp_proxy_config
from mosn.testing.process import MosnProcess


class Impatient(MosnProcess):
    """Gives mosn no time to get ready."""

    def wait_ready(self, timeout: float = 0.0) -> None:
        super().wait_ready(timeout=0.0)


def test_a_mosn_not_ready_in_time_is_stopped(tmp_path: Path) -> None:
    started: list[Impatient] = []

    class Recorded(Impatient):
        def __init__(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
            started.append(self)
            super().__init__(*args, **kwargs)

    with pytest.raises(TimeoutError):
        Recorded(tcp_proxy_config(free_port(), ["127.0.0.1:1"]), tmp_path)
    [process] = started
    assert process.proc.poll() is not None, "the mosn that was not ready still runs"
