"""``mosn plugin new``: the scaffolded plugin installs, loads, and passes its own tests
(the conformance suite and a test through a real mosn)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from mosn.cli import main
from mosn.testing import scaffold


def mosn(*args: str, env: dict[str, str] | None = None,
         cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mosn", *args], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=120)


def test_a_new_plugin_installs_loads_and_passes_its_tests(tmp_path: Path) -> None:
    made = mosn("plugin", "new", "acme", "--dir", str(tmp_path))
    assert made.returncode == 0, made.stderr
    root = tmp_path / "acme"
    assert sorted(p.name for p in (root / "mosn_acme").iterdir()) == [
        "__init__.py", "codec.py", "config.py", "frames.py", "mapping.py", "matcher.py",
        "plugin.py"]
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps",
                    "--no-build-isolation", "--target", str(site), str(root)],
                   check=True, capture_output=True)
    env = {**os.environ, "PYTHONPATH": str(site)}

    listed = mosn("plugins", "list", env=env)
    assert listed.returncode == 0, listed.stderr
    row = next(line for line in listed.stdout.splitlines() if line.startswith("acme "))
    assert "mosn-plugin-acme" in row and "protocol: acme; xprotocol_codec: acme" in row

    tests = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
                           cwd=root, env=env, capture_output=True, text=True, timeout=300)
    assert tests.returncode == 0, tests.stdout + tests.stderr
    assert " passed" in tests.stdout and "skipped" not in tests.stdout  # the mesh tests ran too


def test_the_tests_run_before_the_plugin_is_installed(tmp_path: Path) -> None:
    root = scaffold.create("beta", tmp_path)
    tests = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
                           cwd=root, capture_output=True, text=True, timeout=300)
    assert tests.returncode == 0, tests.stdout + tests.stderr
    assert "2 skipped" in tests.stdout  # the tests through mosn wait for pip install


@pytest.mark.parametrize("name", ["Acme", "1rpc", "my-rpc", "class", ""])
def test_bad_names_are_refused(tmp_path: Path, name: str, capsys) -> None:
    assert main(["plugin", "new", name, "--dir", str(tmp_path)]) == 2
    assert "is not a plugin name" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_an_existing_directory_is_left_alone(tmp_path: Path, capsys) -> None:
    (tmp_path / "acme").mkdir()
    (tmp_path / "acme" / "mine.txt").write_text("keep")
    assert main(["plugin", "new", "acme", "--dir", str(tmp_path)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert [p.name for p in (tmp_path / "acme").iterdir()] == ["mine.txt"]
