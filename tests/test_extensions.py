"""The compiled build and its one switch back to pure Python (mosn/extensions.py,
mosn/build.py): every module listed under ``[tool.mosn] compile`` runs compiled where it
was built and from its ``.py`` under ``MOSN_NO_EXTENSIONS=1``, in the same install;
``mosn version`` says which; a wheel built without a C compiler is pure Python with a
note, one built with a compiler carries the extension modules."""

from __future__ import annotations

import importlib.machinery
import json
import os
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXTENSION_SUFFIXES = tuple(importlib.machinery.EXTENSION_SUFFIXES)
MOSN = Path(sys.executable).with_name("mosn")
# Building a wheel: pip's own start-up and setuptools' metadata, and for the compiled
# one a C compile of two Cython modules on a loaded 2-core machine.
WHEEL_TIMEOUT = 300
# A fresh interpreter importing mosn and every plugin's compiled modules.
IMPORT_TIMEOUT = 120


def _listed(project: Path) -> list[str]:
    with open(project / "pyproject.toml", "rb") as f:
        return tomllib.load(f).get("tool", {}).get("mosn", {}).get("compile", [])


NATIVE_ONLY = {"mosn_http2._nghttp2"}
"""Extension modules of the project with no .py twin (the Http2 plugin's cffi engine):
imported with the compiled modules, whatever the switch, and no part of the Cython build."""

DISTRIBUTIONS = [ROOT] + sorted(p for p in (ROOT / "plugins").iterdir() if (p / "pyproject.toml").exists())
LISTED = {name: project for project in DISTRIBUTIONS for name in _listed(project)}

REPORT = """
import json, sys
for name in sys.argv[1:]:
    __import__(name)
from mosn.extensions import build_description, loaded_compiled
print(json.dumps({"files": {n: sys.modules[n].__file__ for n in sys.argv[1:]},
                  "compiled": loaded_compiled(), "build": build_description()}))
"""


def _imported(env_switch: str | None) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "MOSN_NO_EXTENSIONS"}
    if env_switch is not None:
        env["MOSN_NO_EXTENSIONS"] = env_switch
    done = subprocess.run([sys.executable, "-c", REPORT, *LISTED], env=env, capture_output=True,
                          text=True, timeout=IMPORT_TIMEOUT, check=True)
    return json.loads(done.stdout)


def _mosn_version(env_switch: str | None) -> str:
    env = {k: v for k, v in os.environ.items() if k != "MOSN_NO_EXTENSIONS"}
    if env_switch is not None:
        env["MOSN_NO_EXTENSIONS"] = env_switch
    return subprocess.run([str(MOSN), "version"], env=env, capture_output=True, text=True,
                          timeout=IMPORT_TIMEOUT, check=True).stdout


def _built(name: str) -> bool:
    source = LISTED[name].joinpath(*name.split(".")).with_suffix(".py")
    return any(source.with_suffix(suffix).exists() for suffix in EXTENSION_SUFFIXES)


def test_every_listed_module_exists_as_a_py_source():
    assert "mosn.stream.types" in LISTED and "mosn_http1.frames" in LISTED
    for name, project in LISTED.items():
        assert project.joinpath(*name.split(".")).with_suffix(".py").is_file(), name


def test_compiled_where_built_and_pure_under_the_switch_in_the_same_install():
    if shutil.which("cc"):  # a compiler here: a listed module left pure is a failed build
        assert [name for name in LISTED if not _built(name)] == []
    compiled = _imported(None)
    for name, file in compiled["files"].items():
        assert file.endswith(EXTENSION_SUFFIXES) == _built(name), (name, file)
    assert sorted(set(compiled["compiled"]) - NATIVE_ONLY) == sorted(n for n in LISTED if _built(n))

    pure = _imported("1")
    assert all(file.endswith(".py") for file in pure["files"].values()), pure["files"]
    assert set(pure["compiled"]) <= NATIVE_ONLY  # nothing of the project, listed or not, runs compiled
    assert pure["build"].startswith("pure Python")

    if any(_built(name) for name in LISTED):
        assert compiled["build"].startswith("compiled (")
        assert "compiled (" in _mosn_version(None)
        assert "pure Python (MOSN_NO_EXTENSIONS=1" in _mosn_version("1")


def _wheel(project: Path, out: Path, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pip", "wheel", "-v", "--no-deps", "--no-build-isolation",
                           "--no-cache-dir", "--disable-pip-version-check", "-w", str(out), str(project)],
                          env=env, capture_output=True, text=True, timeout=WHEEL_TIMEOUT)


def test_a_wheel_built_without_a_c_compiler_installs_and_runs_pure_with_a_note(tmp_path):
    env = {**os.environ, "CC": "/bin/false", "LDSHARED": "/bin/false"}
    done = _wheel(ROOT, tmp_path / "dist", env)
    assert done.returncode == 0, done.stderr
    assert "its pure-Python twin runs instead" in done.stdout + done.stderr
    wheel, = (tmp_path / "dist").glob("mosn-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "mosn/stream/types.py" in names
    assert not [n for n in names if n.endswith(EXTENSION_SUFFIXES)]

    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--disable-pip-version-check",
                    "--target", str(target), str(wheel)], check=True, capture_output=True,
                   timeout=WHEEL_TIMEOUT)
    run = subprocess.run([sys.executable, "-c", "import mosn.stream.types as s; print(s.__file__)"],
                         env={**os.environ, "PYTHONPATH": str(target)}, cwd=tmp_path, capture_output=True,
                         text=True, timeout=IMPORT_TIMEOUT, check=True)
    assert run.stdout.strip() == str(target / "mosn" / "stream" / "types.py")


PROBE_PYPROJECT = """
[project]
name = "mosn-probe"
version = "0"

[tool.setuptools]
packages = ["mosn_probe"]

[tool.mosn]
compile = ["mosn_probe.hot"]
"""


TYPED_PROBE = """
class Hot:
    __slots__ = ("a",)

    def __init__(self, a):
        self.a = a

    def twice(self):
        return 2 * self.a
"""
TYPED_PROBE_PXD = "cdef class Hot:\n    cdef public object a\n    cpdef twice(self)\n"
TYPED_PROBE_CHECK = """
import mosn_probe.hot as m
print(type(m.Hot.__dict__["a"]).__name__, m.Hot(3).twice())
"""


@pytest.mark.skipif(not shutil.which("cc"), reason="no C compiler here")
def test_a_wheel_built_with_a_c_compiler_carries_the_extension_modules(tmp_path):
    # A one-module distribution built as every plugin is (plugins/setup_plugin.py): the
    # listed modules of the real ones are checked compiled in this install above; a
    # wheel of those is minutes of C on a 2-core machine.
    project = tmp_path / "probe"
    (project / "mosn_probe").mkdir(parents=True)
    (project / "pyproject.toml").write_text(PROBE_PYPROJECT)
    (project / "setup.py").write_text((ROOT / "plugins" / "setup_plugin.py").read_text())
    (project / "mosn_probe" / "__init__.py").write_text("import mosn.extensions  # noqa: F401\n")
    (project / "mosn_probe" / "hot.py").write_text(TYPED_PROBE)
    (project / "mosn_probe" / "hot.pxd").write_text(TYPED_PROBE_PXD)
    done = _wheel(project, tmp_path / "dist", {**os.environ, "CFLAGS": "-O0 -g0"})
    assert done.returncode == 0, done.stderr
    wheel, = (tmp_path / "dist").glob("mosn_probe-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "mosn_probe/hot.py" in names
    assert [n for n in names if n.startswith("mosn_probe/hot.") and n.endswith(EXTENSION_SUFFIXES)], names

    # The .pxd made Hot an extension type with C fields; the switch runs the .py's
    # __slots__ class, with the same behaviour.
    zipfile.ZipFile(wheel).extractall(tmp_path / "site")
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "site")}
    for switch, kind in ((None, "getset_descriptor"), ("1", "member_descriptor")):
        env.pop("MOSN_NO_EXTENSIONS", None)
        if switch:
            env["MOSN_NO_EXTENSIONS"] = switch
        run = subprocess.run([sys.executable, "-c", TYPED_PROBE_CHECK], env=env, cwd=tmp_path,
                             capture_output=True, text=True, timeout=IMPORT_TIMEOUT, check=True)
        assert run.stdout.split() == [kind, "6"], (switch, run.stdout, run.stderr)


PXDS = sorted(p for root in DISTRIBUTIONS for package in root.glob("mosn*") if package.is_dir()
              for p in package.glob("**/*.pxd"))


def test_every_pxd_matches_its_module():
    """A typed module's .pxd (listed or not yet) declares exactly its classes' __slots__:
    one left behind by a change to its .py would fail the build once listed."""
    from mosn.build import pxd_mismatches

    assert ROOT / "mosn" / "proxy" / "stream.pxd" in PXDS
    for pxd in PXDS:
        assert pxd.with_suffix(".py").exists(), pxd
        assert pxd_mismatches(pxd.with_suffix(".py")) == []


MISMATCHED = {
    "class gone": ("class Other:\n    __slots__ = ('a',)\n",
                   "cdef class Hot:\n    cdef public object a\n",
                   "cdef class Hot is not a class of hot.py"),
    "slot added": ("class Hot:\n    __slots__ = ('a', 'b')\n",
                   "cdef class Hot:\n    cdef public object a\n",
                   "Hot.b is in __slots__ but not declared"),
    "slot gone": ("class Hot:\n    __slots__ = ('a',)\n",
                  "cdef class Hot:\n    cdef public object a\n    cdef readonly int b\n",
                  "Hot.b is declared but not in __slots__"),
}


@pytest.mark.parametrize("case", sorted(MISMATCHED))
def test_a_pxd_whose_module_changed_shape_fails_the_build(tmp_path, monkeypatch, case):
    from mosn.build import TypedModuleError, cython_extensions

    source, pxd, reason = MISMATCHED[case]
    (tmp_path / "pyproject.toml").write_text(PROBE_PYPROJECT)
    (tmp_path / "mosn_probe").mkdir()
    (tmp_path / "mosn_probe" / "hot.py").write_text(source)
    (tmp_path / "mosn_probe" / "hot.pxd").write_text(pxd)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(TypedModuleError, match=reason):
        cython_extensions(tmp_path, "mosn-probe")


def test_a_typed_module_cython_refuses_fails_the_build_not_pure(tmp_path, monkeypatch):
    pytest.importorskip("Cython")
    from mosn.build import TypedModuleError, cython_extensions

    source = "class Hot:\n    __slots__ = ('a',)\n\n    def twice(self):\n        return 2 * self.a\n"
    (tmp_path / "mosn_probe").mkdir()
    (tmp_path / "pyproject.toml").write_text(PROBE_PYPROJECT)
    (tmp_path / "mosn_probe" / "hot.py").write_text(source)
    (tmp_path / "mosn_probe" / "hot.pxd").write_text(  # a signature the .py does not have
        "cdef class Hot:\n    cdef public object a\n    cpdef twice(self, int times)\n")
    monkeypatch.chdir(tmp_path)  # (the same module without a .pxd compiles: the wheel above)
    with pytest.raises(TypedModuleError, match="mosn_probe.hot .typed by its .pxd. refused"):
        cython_extensions(tmp_path, "mosn-probe")
