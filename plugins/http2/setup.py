"""Builds the native HTTP/2 engine (mosn_http2._nghttp2, cffi against libnghttp2)
when the plugin is installed, if it can: without a C compiler or libnghttp2's headers
(Debian: libnghttp2-dev) the plugin installs without it and runs on its pure-Python
engine. Everything else about the distribution is in pyproject.toml."""

import sys

from setuptools import setup
from setuptools.command.build_ext import build_ext

sys.path.insert(0, "mosn_http2")
from engine_nghttp2_build import ffibuilder  # noqa: E402

NOTE = ("mosn-plugin-http2: the native HTTP/2 engine was not built ({}); the plugin "
        "runs on its pure-Python engine. Install a C compiler and libnghttp2's headers "
        "(apt-get install gcc libnghttp2-dev), then reinstall, for the native one.")


class OptionalBuildExt(build_ext):
    """A failed compile is a note, not a failed install."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:  # no compiler at all: distutils' platform errors
            print(NOTE.format(exc), file=sys.stderr)

    def build_extension(self, ext) -> None:
        try:
            super().build_extension(ext)
        except Exception as exc:  # the compiler or the headers failed
            print(NOTE.format(exc), file=sys.stderr)


setup(ext_modules=[ffibuilder.distutils_extension()], cmdclass={"build_ext": OptionalBuildExt})
