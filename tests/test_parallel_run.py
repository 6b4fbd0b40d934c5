"""The suite runs on several pytest-xdist workers (scripts/test): each worker's
``free_port`` draws from a range of its own, and installs shared by the workers (peers'
node_modules and venvs, test plugins) are made one at a time under ``install_lock``."""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

from mosn.testing import free_port, install_lock
from mosn.testing import process

LOCK_WAIT = 1.0
"""Seconds a second holder is given to take a held lock (it must not)."""
CHILD_TIMEOUT = 60.0
"""Seconds for a child process to start on a loaded machine."""


def test_free_port_draws_from_this_workers_range_and_skips_a_busy_port():
    own = process.worker_ports(4, 2)
    assert len(own) >= process.RECENT_PORTS
    others = [process.worker_ports(4, index) for index in (0, 1, 3)]
    assert all(set(own).isdisjoint(r) for r in others)

    before = process.use_ports(own)
    try:
        drawn = free_port()
        busy = own[(own.index(drawn) + 1) % len(own)]  # the next one it would try
        with contextlib.ExitStack() as holding:
            try:
                holding.enter_context(socket.create_server(("127.0.0.1", busy)))
            except OSError as error:  # a test of the worker whose range this is holds it
                if error.errno != errno.EADDRINUSE:
                    raise
            ports = [free_port() for _ in range(20)]
    finally:
        process.use_ports(before)
    assert all(p in own for p in [drawn, *ports]) and len({drawn, *ports}) == 21
    assert busy not in ports


def test_two_workers_of_a_real_run_draw_disjoint_ports(tmp_path: Path):
    (tmp_path / "test_ports.py").write_text(textwrap.dedent("""
        import os
        from pathlib import Path
        from mosn.testing import free_port

        def test_ports():
            worker = os.environ["PYTEST_XDIST_WORKER"]
            Path(worker).write_text(f"{free_port()} {free_port()}")
    """))
    # Only the two plugins this needs (xdist's workers start quicker without the rest).
    env = {**os.environ, "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}
    run = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "xdist",
                          "-p", "mosn.testing.plugin", "-n", "2", "--dist", "each", "-q",
                          "test_ports.py"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=CHILD_TIMEOUT)
    assert run.returncode == 0, run.stdout + run.stderr
    ports = {w: set(map(int, (tmp_path / w).read_text().split())) for w in ("gw0", "gw1")}
    assert all(len(p) == 2 for p in ports.values())
    ephemeral = int(process.EPHEMERAL_RANGE.read_text().split()[0])  # the kernel's choices
    assert process.WORKER_PORTS_FROM <= min(ports["gw0"]), ports
    assert max(ports["gw0"]) < min(ports["gw1"]) <= max(ports["gw1"]) < ephemeral, ports


def test_install_lock_makes_a_second_installer_wait(tmp_path: Path):
    done = tmp_path / "installed"
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import sys
            from pathlib import Path
            from mosn.testing import install_lock
            with install_lock({str(tmp_path)!r}):
                print("held", flush=True)
                sys.stdin.read()
                Path({str(done)!r}).write_text("yes")
        """)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdin is not None
        assert holder.stdout.readline() == "held\n"
        seen: list[bool] = []
        entered = threading.Event()

        def second() -> None:
            with install_lock(tmp_path):
                seen.append(done.exists())
                entered.set()

        thread = threading.Thread(target=second, daemon=True)
        thread.start()
        assert not entered.wait(LOCK_WAIT), "the lock was taken while held"
        holder.stdin.close()  # the holder finishes its install and lets go
        assert entered.wait(CHILD_TIMEOUT)
        assert seen == [True]
    finally:
        holder.kill()
        holder.wait()

