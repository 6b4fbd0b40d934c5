"""The files ``mosn plugin new`` writes, one module per kind (see
:mod:`mosn.testing.scaffold`): each has ``DESCRIPTION`` (the distribution's),
``TEST_DEPENDENCIES`` and ``FILES`` (relative path -> ``string.Template`` text)."""

INSTALL = """
## Use

```sh
pip install -e ./${name}  # into mosn's environment (./: a bare name is looked up on PyPI)
mosn plugins list  # shows ${name} and what it registers
pytest -q ${name}  # its tests (those through a real mosn need the install)
```
"""
"""The README's first steps, the same for every kind."""

INSTALLED_ONLY = """
pytestmark = pytest.mark.skipif(
    "${name}" not in {ep.name for ep in importlib.metadata.entry_points(group="mosn.plugins")},
    reason="mosn loads installed plugins only: pip install -e . first")
"""
"""What a test module through a real mosn starts with: it waits for the install."""

__all__ = ["INSTALL", "INSTALLED_ONLY"]
