"""Compiled extensions and their pure-Python twins: one switch for all of them.

A compiled hot path (a protocol engine bound with cffi, a Cython module) ships
beside a pure-Python twin that does the same and passes the same tests. The
compiled one runs where it was built; ``MOSN_NO_EXTENSIONS=1`` in the environment
forces every pure-Python twin, in the core and in every plugin (as aiohttp's
``AIOHTTP_NO_EXTENSIONS`` and yarl's ``YARL_NO_EXTENSIONS`` do), to compare them or
to rule a compiled one out when chasing a bug.

The Cython modules are plain ``.py`` modules compiled where they stand (the list is
``[tool.mosn] compile`` in each distribution's pyproject.toml, built by
:mod:`mosn.build`), so an extension module sits beside the ``.py`` it was made from,
and Python's import system prefers the extension. Under the switch this module puts an
import hook first on ``sys.meta_path`` that loads the ``.py`` instead, for every module
of mosn's packages (``mosn`` and ``mosn_*``) that has both. ``mosn/__init__.py``
imports this module first, and a plugin package with compiled modules imports it
before them, so no compiled module of the project can be imported ahead of the hook.
"""

from __future__ import annotations

import importlib.machinery
import importlib.metadata
import importlib.util
import os
import sys
from pathlib import Path

__all__ = [
    "NO_EXTENSIONS_VARIABLE",
    "build_description",
    "built_modules",
    "extensions_enabled",
    "loaded_compiled",
    "source_of",
]

NO_EXTENSIONS_VARIABLE = "MOSN_NO_EXTENSIONS"

# The entry-point group through which plugins are found (mosn.plugins says the same;
# it is not imported here because this module runs before anything else of mosn).
_PLUGIN_GROUP = "mosn.plugins"


def extensions_enabled() -> bool:
    """False when ``MOSN_NO_EXTENSIONS`` is set to anything but empty or ``0``."""
    return os.environ.get(NO_EXTENSIONS_VARIABLE, "") in ("", "0")


def _is_project_module(fullname: str) -> bool:
    top = fullname.partition(".")[0]
    return top == "mosn" or top.startswith("mosn_")


# A module's .py edited later than this after its extension was built makes the
# extension stale (a wheel's install writes both within the same second).
STALE_AFTER = 1.0

_stale: set[str] = set()


def _extension_beside(directory: str, name: str) -> str | None:
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        path = os.path.join(directory, name + suffix)
        if os.path.exists(path):
            return path
    return None


def _is_stale(source: str, extension: str) -> bool:
    return os.stat(source).st_mtime > os.stat(extension).st_mtime + STALE_AFTER


class _PureSource:
    """Meta-path finder: a project module that has both a compiled build and its
    ``.py`` source beside it is loaded from the source under ``MOSN_NO_EXTENSIONS``,
    and whenever the source was edited after the build (an editable install whose
    module changed since: the extension would run old code)."""

    @classmethod
    def find_spec(cls, fullname, path, target=None):
        if path is None or not _is_project_module(fullname):
            return None
        name = fullname.rpartition(".")[2]
        for directory in path:
            source = os.path.join(directory, name + ".py")
            extension = _extension_beside(directory, name)
            if extension is None or not os.path.isfile(source):
                continue
            if not extensions_enabled():
                return importlib.util.spec_from_file_location(fullname, source)
            if _is_stale(source, extension):
                _stale.add(fullname)
                return importlib.util.spec_from_file_location(fullname, source)
            return None
        return None


def _install() -> None:
    if _PureSource in sys.meta_path:
        return
    early = loaded_compiled()
    if early and not extensions_enabled():  # imported ahead of the hook: half-compiled
        raise ImportError(f"{NO_EXTENSIONS_VARIABLE} is set but these compiled modules were "
                          f"imported before mosn.extensions: {', '.join(early)}")
    sys.meta_path.insert(0, _PureSource)


def loaded_compiled() -> list[str]:
    """The project's modules imported in this process from a compiled build."""
    suffixes = tuple(importlib.machinery.EXTENSION_SUFFIXES)
    return sorted(name for name, module in list(sys.modules.items())
                  if _is_project_module(name)
                  and (getattr(module, "__file__", None) or "").endswith(suffixes))


def source_of(module) -> str | None:
    """The text of a module's ``.py`` source: its own, or for a compiled build the
    ``.py`` twin beside it (``inspect.getsource`` finds none for an extension);
    None where there is neither."""
    file = getattr(module, "__file__", None) or ""
    if file.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES)):
        file = os.path.join(os.path.dirname(file), module.__name__.rpartition(".")[2] + ".py")
    if not file.endswith(".py") or not os.path.isfile(file):
        return None
    with open(file, encoding="utf-8") as f:
        return f.read()


def _package_dirs() -> list[str]:
    tops = {"mosn"}
    for ep in importlib.metadata.entry_points(group=_PLUGIN_GROUP):
        tops.add(ep.value.partition(":")[0].partition(".")[0])
    dirs = []
    for top in sorted(tops):
        try:
            spec = importlib.util.find_spec(top)
        except (ImportError, ValueError):
            continue
        if spec is not None and spec.submodule_search_locations:
            dirs.extend(spec.submodule_search_locations)
    return dirs


def built_modules() -> list[str]:
    """Every module of mosn and its installed plugins that has a compiled build beside
    its ``.py`` source (whether or not the switch lets it run)."""
    found = []
    for root in _package_dirs():
        base = Path(root)
        for source in base.rglob("*.py"):
            if _extension_beside(str(source.parent), source.stem):
                parts = source.relative_to(base.parent).with_suffix("").parts
                found.append(".".join(parts))
    return sorted(found)


def build_description() -> str:
    """Which build runs, for ``mosn version``, the first log line and /server_info."""
    built = built_modules()
    if not built:
        return "pure Python (no compiled modules built)"
    if not extensions_enabled():
        return f"pure Python ({NO_EXTENSIONS_VARIABLE}=1; {len(built)} compiled modules unused)"
    stale = f"; run from source, edited since the build: {', '.join(sorted(_stale))}" if _stale else ""
    return f"compiled ({len(built)} modules with Cython{stale})"


_install()
