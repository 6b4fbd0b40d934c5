"""Every compiled plugin's setup.py (a link to this file): compiles the modules listed
under [tool.mosn] compile in the plugin's pyproject.toml with Cython when the plugin is
installed. The build is the core's (mosn/build.py), so mosn must be installed where the
plugin is built, as scripts/setup does with --no-build-isolation; built in isolation,
without mosn, the plugin installs as pure Python."""

import sys

try:
    from mosn.build import setup_compiled
except ImportError as exc:
    from setuptools import setup

    print(f"note: no mosn to build with ({exc}): the plugin stays pure Python", file=sys.stderr)
    setup()
else:
    setup_compiled()
