"""Builds the native HTTP/2 engine (mosn_http2._nghttp2, cffi against libnghttp2)
when the plugin is installed, if it can: without a C compiler or libnghttp2's headers
(Debian: libnghttp2-dev) the plugin installs without it and runs on its pure-Python
engine. The build helper is the core's (mosn/build.py): mosn must be installed where
the plugin is built (pip install --no-build-isolation, as scripts/setup does).
Everything else about the distribution is in pyproject.toml."""

import sys

sys.path.insert(0, "mosn_http2")
from engine_nghttp2_build import ffibuilder  # noqa: E402

try:
    from mosn.build import setup_compiled
except ImportError as exc:
    from setuptools import setup

    print(f"note: no mosn to build with ({exc}): the plugin runs on its pure-Python "
          "HTTP/2 engine", file=sys.stderr)
    setup()
else:
    setup_compiled([ffibuilder.distutils_extension()],
                   needs="a C compiler and libnghttp2's headers (apt-get install gcc libnghttp2-dev)")
