"""The stream filter conformance suite of the kit (mosn.testing), run on the built-in
``fault`` filter with real traffic of every installed protocol; and the suite catching
a filter that raises."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest

from mosn.testing import FilterCase, StreamFilterConformance, plugin_site

pytest_plugins = ["pytester"]


class TestFaultConformance(StreamFilterConformance):
    filter_type = "fault"
    filter_config = {"abort": {"status": 503},
                     "headers": [{"name": "x-fault", "value": "abort"}]}
    cases = (FilterCase("a request goes through"),
             FilterCase("an abort", headers={"x-fault": "abort"}, status=503))


BROKEN = '''
from mosn.plugins import Extension, hookimpl
from mosn.proxy import StreamFilter


class Broken(StreamFilter):
    def on_request(self, stream):
        if stream.request.headers.get("method") == "boom" or stream.request.method == "boom":
            raise KeyError("boom")
        return super().on_request(stream)


@hookimpl
def mosn_stream_filters():
    return [Extension("kit_broken", lambda config, context: Broken)]
'''


def test_the_suite_fails_a_filter_that_raises(pytester: pytest.Pytester, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """A filter raising on requests whose method is ``boom``: the case claiming it
    goes through fails on every protocol, with mosn's traceback of it."""
    (tmp_path / "kit_broken.py").write_text(BROKEN)
    site = plugin_site(tmp_path / "site", [("kit_broken", "kit_broken")], "kit-broken")
    pytester.makepyfile(test_broken=textwrap.dedent('''
        from mosn.testing import FilterCase, StreamFilterConformance


        class TestBroken(StreamFilterConformance):
            filter_type = "kit_broken"
            cases = (FilterCase("plain"), FilterCase("boom", method="boom"))
    '''))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(site), str(tmp_path)]))
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-k",
                                           "test_cases and not held")
    outcomes = result.parseoutcomes()
    assert outcomes.get("failed", 0) >= 1 and outcomes.get("passed", 0) >= 1, result.stdout.str()
    result.stdout.fnmatch_lines(["*'boom' over Http1 (http1_alone): not a success: status 500*",
                                 "*KeyError: 'boom'*"])
