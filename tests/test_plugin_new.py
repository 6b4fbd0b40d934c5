"""``mosn plugin new``: the scaffolded plugin of each kind installs, loads and
registers what it says; before it is installed its own tests pass or wait for the
install. (docs/plugins.md's tutorials, run by test_plugins_tutorial.py, install each
kind with ``pip install -e`` and run all of its tests.)"""

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


KIND_FILES = {
    "filter": ["__init__.py", "config.py", "filter.py", "plugin.py"],
    "lb": ["__init__.py", "lb.py", "plugin.py"],
    "health-checker": ["__init__.py", "checker.py", "config.py", "plugin.py"],
    "cluster-type": ["__init__.py", "config.py", "discovery.py", "plugin.py"],
}
CI_KIND = "filter"
"""The kind whose scaffold CI builds and installs; the others run with ``-m long`` (each
takes a pip install and a pytest run)."""
KINDS = [kind if kind == CI_KIND else pytest.param(kind, marks=pytest.mark.long)
         for kind in sorted(KIND_FILES)]
REGISTERS = {
    "filter": "stream_filter: beta",
    "lb": "load_balancer: LB_BETA",
    "health-checker": "health_checker: beta",
    "cluster-type": "cluster_type: beta",
}


@pytest.mark.parametrize("kind", KINDS)
def test_each_kind_installs_and_registers(tmp_path: Path, kind: str) -> None:
    made = mosn("plugin", "new", "beta", "--kind", kind, "--dir", str(tmp_path))
    assert made.returncode == 0, made.stderr
    root = tmp_path / "beta"
    assert sorted(p.name for p in (root / "mosn_beta").iterdir()) == KIND_FILES[kind]
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps",
                    "--no-build-isolation", "--target", str(site), str(root)],
                   check=True, capture_output=True)
    listed = mosn("plugins", "list", env={**os.environ, "PYTHONPATH": str(site)})
    assert listed.returncode == 0, listed.stderr
    row = next(line for line in listed.stdout.splitlines() if line.startswith("beta "))
    assert "mosn-plugin-beta" in row and row.endswith(REGISTERS[kind])


@pytest.mark.parametrize("kind", KINDS)
def test_the_tests_of_each_kind_run_before_it_is_installed(tmp_path: Path, kind: str) -> None:
    root = scaffold.create("beta", tmp_path, kind)
    tests = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
                           cwd=root, capture_output=True, text=True, timeout=300)
    assert tests.returncode in (0, 5), tests.stdout + tests.stderr  # 5: all skipped
    assert "failed" not in tests.stdout and "error" not in tests.stdout.lower()
    assert "skipped" in tests.stdout  # the conformance suite waits for the install


def test_the_next_step_installs_from_the_directory(tmp_path: Path) -> None:
    """``pip install acme`` would fetch an unrelated distribution from the index."""
    made = mosn("plugin", "new", "acme", cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    assert "next: pip install -e ./acme  then  mosn plugins list  then  pytest ./acme" \
        in made.stdout
    assert "pip install acme" not in made.stdout


def test_an_unknown_kind_is_refused(tmp_path: Path) -> None:
    made = mosn("plugin", "new", "acme", "--kind", "router", "--dir", str(tmp_path))
    assert made.returncode == 2 and "invalid choice: 'router'" in made.stderr
    assert not any(tmp_path.iterdir())


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
