'''``mosn plugin new NAME --kind KIND``: writes a plugin distribution to start from.

``NAME/`` holds the distribution ``mosn-plugin-NAME``: a ``pyproject.toml`` with the
``mosn.plugins`` entry point, the package ``mosn_NAME/`` with a small working
extension of the kind, a README, and tests on the kind's conformance suite
(:mod:`mosn.testing`). It installs and loads as written (``pip install -e ./NAME``;
``mosn plugins list``) and its tests pass. The kinds (each module of
:mod:`mosn.testing.templates` holds one's files):

- ``codec``: an RPC protocol, in the house layout of a protocol plugin
  (``frames.py``, ``codec.py``, ``matcher.py``, ``mapping.py``, ``config.py``,
  ``plugin.py``), a length-prefixed frame codec for the RPC engine;
- ``filter``: a stream filter, a rate limit per key that holds requests over the
  rate for their turn (or refuses them);
- ``lb``: a load balancer, ``LB_NAME``, weighted random;
- ``health-checker``: a health checker sending a line and expecting one back;
- ``cluster-type``: a cluster type whose hosts are listed in a file, followed as it
  changes.

The files are kept as text (``string.Template``: ``${name}``, ``${Name}`` for class
names, ``${NAME}`` in capitals, ``${magic}`` the codec's two-letter magic) so they
ship inside the ``mosn`` wheel without package data.
'''

from __future__ import annotations

import importlib
import keyword
import re
from pathlib import Path
from string import Template

__all__ = ["KINDS", "KIND_TITLES", "ScaffoldError", "create", "render"]

KIND_TITLES = {
    "codec": "protocol plugin (an RPC frame codec)",
    "filter": "stream filter plugin",
    "lb": "load balancer plugin",
    "health-checker": "health checker plugin",
    "cluster-type": "cluster type plugin",
}
"""What each ``--kind`` writes, in words."""
KINDS = tuple(KIND_TITLES)

NAME_PATTERN = re.compile(r"[a-z][a-z0-9_]{0,39}")
"""A plugin name: a Python identifier in lower case (it names the package ``mosn_NAME``
and the extension in configs)."""


class ScaffoldError(Exception):
    """The plugin cannot be written (bad name, the directory is taken)."""


def class_prefix(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("_") if part)


def render(name: str, kind: str = "codec") -> dict[str, str]:
    """Relative path -> text of every file of the plugin ``name`` of ``kind``."""
    check_name(name)
    if kind not in KIND_TITLES:
        raise ScaffoldError(f"{kind!r} is not a kind: {', '.join(KINDS)}")
    module = importlib.import_module(f"mosn.testing.templates.{kind.replace('-', '_')}")
    values = {"name": name, "Name": class_prefix(name), "NAME": name.upper(),
              "magic": (name.upper() + "_")[:2]}
    files = {"pyproject.toml": PYPROJECT.replace("${description}", module.DESCRIPTION)
             .replace("${test_deps}", ", ".join(f'"{d}"' for d in module.TEST_DEPENDENCIES)),
             **module.FILES}
    return {Template(path).substitute(values): Template(text).substitute(values).lstrip("\n")
            for path, text in files.items()}


def check_name(name: str) -> None:
    if not NAME_PATTERN.fullmatch(name) or keyword.iskeyword(name):
        raise ScaffoldError(f"{name!r} is not a plugin name: use lower-case letters, digits "
                            "and underscores, starting with a letter (e.g. acme)")


def create(name: str, directory: str | Path = ".", kind: str = "codec") -> Path:
    """Write the plugin ``name`` of ``kind`` to ``directory/name``; return that path."""
    files = render(name, kind)
    root = Path(directory) / name
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise ScaffoldError(f"{root} already exists and is not empty")
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


PYPROJECT = '''
[build-system]
requires = ["setuptools>=77"]
build-backend = "setuptools.build_meta"

[project]
name = "mosn-plugin-${name}"
version = "0.1.0"
description = "${description}"
readme = "README.md"
requires-python = ">=3.11"
dependencies = ["mosn>=0.1.0"]

[project.optional-dependencies]
test = [${test_deps}]

[project.entry-points."mosn.plugins"]
${name} = "mosn_${name}.plugin"

[tool.setuptools]
packages = ["mosn_${name}"]

[tool.pytest.ini_options]
testpaths = ["tests"]
pythonpath = ["."]
'''
