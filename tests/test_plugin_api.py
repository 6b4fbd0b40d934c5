"""Plugins use mosn's public API only: every name a plugin, the plugin kit's
templates or the examples import from ``mosn.*`` is in the ``__all__`` of the module
it comes from, or of a package above it that exports the same object."""

from __future__ import annotations

import ast
import importlib
import pathlib

ROOT = pathlib.Path(__file__).resolve().parent.parent
SOURCES = ("plugins/*/mosn_*/**/*.py", "mosn/testing/templates/*.py", "examples/**/*.py")


def _public(module_name: str, name: str) -> bool:
    module = importlib.import_module(module_name)
    if name in getattr(module, "__all__", ()):
        return True
    try:
        importlib.import_module(f"{module_name}.{name}")  # a submodule
        return True
    except ImportError:
        pass
    value = getattr(module, name, None)
    parts = module_name.split(".")
    for end in range(len(parts) - 1, 0, -1):
        package = importlib.import_module(".".join(parts[:end]))
        if name in getattr(package, "__all__", ()) and getattr(package, name, None) is value:
            return True
    return False


def _imports_from_mosn(path: pathlib.Path) -> list[tuple[int, str, str]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module \
                and (node.module == "mosn" or node.module.startswith("mosn.")):
            found += [(node.lineno, node.module, alias.name) for alias in node.names]
    return found


def test_plugins_import_only_public_names() -> None:
    paths = sorted({p for pattern in SOURCES for p in ROOT.glob(pattern)})
    assert any("mosn_http1" in str(p) for p in paths)  # the walk found the plugins
    private = [f"{path.relative_to(ROOT)}:{line}: {module}.{name}"
               for path in paths for line, module, name in _imports_from_mosn(path)
               if not _public(module, name)]
    assert not private, "names outside any __all__:\n" + "\n".join(private)


def test_the_check_catches_a_private_name(tmp_path: pathlib.Path) -> None:
    plugin = tmp_path / "plugin.py"
    plugin.write_text("from mosn.proxy.stream import DownstreamStream\n"
                      "from mosn.proxy.retry import RetryState\n"
                      "from mosn.proxy.filter import ProxyContext\n")
    assert [_public(m, n) for _, m, n in _imports_from_mosn(plugin)] == [True, True, False]
