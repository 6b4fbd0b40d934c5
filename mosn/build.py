"""Build-time helpers for mosn's distributions (the core and every plugin): imported
by their setup.py files only, never at run time.

A distribution lists the ``.py`` modules it compiles under ``[tool.mosn] compile`` in
its pyproject.toml, one module per line with the reason from the profile. Cython
compiles each where it stands (the ``.py`` stays the source and the pure-Python twin;
``MOSN_NO_EXTENSIONS=1`` runs it, see mosn/extensions.py). Without Cython, a C
compiler or Python's headers, or when one module fails to compile, the install goes on
with a note and that module stays pure Python.

A typed module has an augmenting ``.pxd`` beside its ``.py`` (Cython reads it there):
its ``cdef class`` declarations make the classes of that name extension types with
C-level attributes. Such a module must compile as declared: a ``.pxd`` whose
``.py`` changed shape (a class gone, an attribute in ``__slots__`` the ``.pxd`` does not
declare or the other way round) or that Cython refuses fails the build with the
reason, where an untyped module would quietly stay pure. (A C compiler that fails is
still a note: that is the machine, not the module.)
"""

from __future__ import annotations

import ast
import os
import re
import sys
import tomllib
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

__all__ = ["OptionalBuildExt", "TypedModuleError", "compiled_modules", "cython_extensions",
           "pxd_mismatches", "setup_compiled"]

# Cython sees the modules as plain Python: annotations are not C types (``x: float``
# would otherwise turn ints into doubles), so the compiled module behaves as its source.
CYTHON_DIRECTIVES = {"language_level": 3, "annotation_typing": False, "binding": True}

# -O2 -g0 over Python's own -O3 -g: Cython's C is large, and -O3 with debug info took
# 2.6 s of CPU against 1.6 s for mosn/rpc/codec.py's (setup time is CI time).
COMPILE_ARGS = [] if sys.platform == "win32" else ["-O2", "-g0"]

NOTE = ("{distribution}: {what} not built ({reason}); its pure-Python twin runs instead. "
        "Install {needs}, then reinstall, for the compiled build.")
NEEDS = "a C compiler, Python's headers and Cython>=3 (apt-get install gcc python3-dev)"


def _note(distribution: str, what: str, reason: object, needs: str = NEEDS) -> None:
    print(NOTE.format(distribution=distribution, what=what, reason=reason, needs=needs),
          file=sys.stderr)


class TypedModuleError(Exception):
    """A module with an augmenting ``.pxd`` that cannot be built as declared."""


_CDEF_CLASS = re.compile(r"^cdef class (\w+)\b.*:\s*$")
_CDEF_ATTRIBUTE = re.compile(r"^\s+cdef\s+(?:public\s+|readonly\s+)?[\w.]+\s+(\w+)\s*$")


def _pxd_classes(pxd: Path) -> dict[str, set[str]]:
    """The ``cdef class`` declarations of a ``.pxd``: their attributes by class name."""
    classes: dict[str, set[str]] = {}
    current: set[str] | None = None
    for line in pxd.read_text().splitlines():
        line = line.split("#", 1)[0].rstrip()
        if not line:
            continue
        match = _CDEF_CLASS.match(line)
        if match:
            current = classes.setdefault(match.group(1), set())
        elif not line[0].isspace():
            current = None
        elif current is not None:
            attribute = _CDEF_ATTRIBUTE.match(line)
            if attribute:
                current.add(attribute.group(1))
    return classes


def _slots(node: ast.ClassDef) -> set[str] | None:
    for statement in node.body:
        if isinstance(statement, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "__slots__" for t in statement.targets):
            value = ast.literal_eval(statement.value)
            return {value} if isinstance(value, str) else set(value)
    return None


def pxd_mismatches(source: Path) -> list[str]:
    """Where the augmenting ``.pxd`` beside ``source`` (a ``.py``) and the source disagree:
    each ``cdef class`` must be a class of the module, and one with ``__slots__`` (the
    pure twin's attributes) must have exactly the attributes the ``.pxd`` declares.
    Empty when they agree or there is no ``.pxd``."""
    pxd = source.with_suffix(".pxd")
    if not pxd.exists():
        return []
    defined = {node.name: node for node in ast.parse(source.read_text()).body
               if isinstance(node, ast.ClassDef)}
    problems = []
    for name, attributes in _pxd_classes(pxd).items():
        node = defined.get(name)
        if node is None:
            problems.append(f"{pxd}: cdef class {name} is not a class of {source.name}")
            continue
        slots = _slots(node)
        if slots is None:  # nothing to check the declared attributes against
            continue
        for missing in sorted(slots - attributes):
            problems.append(f"{pxd}: {name}.{missing} is in __slots__ but not declared")
        for extra in sorted(attributes - slots):
            problems.append(f"{pxd}: {name}.{extra} is declared but not in __slots__")
    return problems


def _typed(extension: Extension) -> bool:
    return any(Path(source).with_suffix(".pxd").exists() for source in extension.sources
               if source.endswith(".py"))


class OptionalBuildExt(build_ext):
    """A failed compile is a note, not a failed install. The extensions are compiled
    side by side, one per CPU (they are independent)."""

    needs = NEEDS

    def finalize_options(self) -> None:
        if self.parallel is None:
            self.parallel = os.cpu_count() or 1
        super().finalize_options()

    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:  # no compiler at all: distutils' platform errors
            _note(self.distribution.get_name(), "extension modules were", exc, self.needs)

    def build_extension(self, ext) -> None:
        try:
            super().build_extension(ext)
        except Exception as exc:  # the compiler or the headers failed
            _note(self.distribution.get_name(), ext.name, exc, self.needs)


def compiled_modules(project_dir: Path) -> list[str]:
    """The dotted names under ``[tool.mosn] compile`` in the project's pyproject.toml."""
    with open(project_dir / "pyproject.toml", "rb") as f:
        return list(tomllib.load(f).get("tool", {}).get("mosn", {}).get("compile", []))


def cython_extensions(project_dir: Path, distribution: str) -> list[Extension]:
    """One extension per listed module, its C made by Cython under build/cython/;
    none (with a note) when Cython is missing or fails."""
    modules = compiled_modules(project_dir)
    if not modules:
        return []
    try:
        from Cython.Build import cythonize
    except ImportError as exc:
        _note(distribution, "the modules listed in pyproject.toml were", exc)
        return []
    wanted = [Extension(name, [str(Path(*name.split(".")).with_suffix(".py"))],
                        extra_compile_args=COMPILE_ARGS) for name in modules]
    problems = [p for e in wanted for p in pxd_mismatches(project_dir / e.sources[0])]
    if problems:
        raise TypedModuleError("a .pxd does not match its module:\n  " + "\n  ".join(problems))
    options = {"build_dir": "build/cython", "compiler_directives": CYTHON_DIRECTIVES, "quiet": True}
    try:
        return cythonize(wanted, nthreads=os.cpu_count() or 1, **options)
    except Exception:  # one module refused: the others are compiled one by one
        pass
    extensions = []
    for extension in wanted:
        try:
            extensions += cythonize([extension], **options)
        except Exception as exc:  # Cython refused the module: it stays pure
            if _typed(extension):
                raise TypedModuleError(f"{extension.name} (typed by its .pxd) refused by "
                                       f"Cython: {exc}") from exc
            _note(distribution, extension.name, exc)
    return extensions


def setup_compiled(extensions: list[Extension] | None = None, needs: str = NEEDS) -> None:
    """setup() for the distribution in the working directory (where pip runs setup.py),
    its metadata in pyproject.toml: its Cython modules and any other ``extensions``, each
    built if it can be (``needs``: what to install when one is not)."""
    project_dir = Path.cwd()
    with open(project_dir / "pyproject.toml", "rb") as f:
        distribution = tomllib.load(f)["project"]["name"]
    command = type("BuildExt", (OptionalBuildExt,), {"needs": needs})
    setup(ext_modules=cython_extensions(project_dir, distribution) + list(extensions or []),
          cmdclass={"build_ext": command})
