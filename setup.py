"""Compiles the modules listed under [tool.mosn] compile in pyproject.toml with Cython
when mosn is installed, if it can (mosn/build.py); everything else about the
distribution is in pyproject.toml."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mosn.build import setup_compiled  # noqa: E402

setup_compiled()
