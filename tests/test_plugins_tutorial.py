"""docs/plugins.md's tutorials, run as written: for each kind, every block between
``<!-- tutorial: KIND -->`` and ``<!-- /tutorial -->`` in order, in one shell, so
the page cannot drift from mosn.

Blocks by their info string:
- ``sh``: shell commands; each must succeed (``set -e``);
- ``sh exit=N``: shell commands whose last one must exit N;
- ``LANG file=PATH``: written to PATH (a config, a host list);
- ``python edit=PATH``: each ``NAME = ...`` line replaces the line of PATH that
  assigns NAME (an edit the reader makes by hand);
- anything else (``text`` ...): output shown to the reader, not run; the test checks
  the lines it can (see ``EXPECTED``).

The commands run in a scratch virtualenv layered over mosn's (its site-packages
added through a ``.pth``), so ``pip install -e ./acme`` installs into the scratch one
and leaves mosn's environment alone; pip runs offline (``PIP_NO_INDEX``, no build
isolation). The ports the page shows are swapped for free ones.
"""

from __future__ import annotations

import collections
import os
import re
import shlex
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, free_port
from mosn.config import validate
from mosn.testing import CodeBlock, code_blocks, plugin_site
from test_docs_snippets import base as listener_config

DOC = ROOT / "docs" / "plugins.md"
PORTS = ("12200", "12220", "12221", "12222", "34901")
"""The ports the tutorials show, each replaced by a free port."""
KINDS = re.findall(r"<!-- tutorial: (\S+) -->", DOC.read_text())
TUTORIAL_TIMEOUT = 900
"""Seconds for one tutorial: a virtualenv, an install and the plugin's tests on a
loaded CI machine."""


def tutorial_blocks(doc: str, kind: str) -> list[CodeBlock]:
    return code_blocks(doc, f"<!-- tutorial: {kind} -->", "<!-- /tutorial -->")


def script(blocks: list[CodeBlock]) -> str:
    """One bash script running the blocks in order; it exits non-zero at the first
    block that fails, naming it."""
    lines = ["set -eu", "trap 'set +e; kill $(jobs -p) 2>/dev/null; wait' EXIT"]
    for n, block in enumerate(blocks, 1):
        lines.append(f"echo '### block {n}'")
        if "file" in block.attrs:
            lines.append(f"cat > {shlex.quote(block.attrs['file'])} <<'MOSN_EOF'\n"
                         f"{block.text}MOSN_EOF")
        elif block.language == "sh":
            expected = block.attrs.get("exit")
            if expected is None:
                lines.append(block.text)
            else:
                lines += ["set +e", block.text, "rc=$?", "set -e",
                          f"[ $rc -eq {int(expected)} ] || "
                          f"{{ echo 'block {n} exited '$rc' not {expected}'; exit 90; }}"]
        elif block.language == "python" and "edit" in block.attrs:
            lines.append(edit_command(Path(block.attrs["edit"]), block.text))
    return "\n".join(lines) + "\n"


def edit_command(path: Path, text: str) -> str:
    """A command replacing each assignment in ``text`` in ``path``."""
    program = ("import re, sys\n"
               "path, new = sys.argv[1], sys.argv[2]\n"
               "source = open(path).read()\n"
               "for line in new.splitlines():\n"
               "    name = re.match(r'([A-Za-z_][A-Za-z0-9_]*)\\s*=', line)\n"
               "    if not name: continue\n"
               "    pattern = r'(?m)^' + name.group(1) + r'\\s*=.*$'\n"
               "    source, n = re.subn(pattern, lambda m: line, source)\n"
               "    assert n == 1, f'{name.group(1)} is assigned {n} times in {path}'\n"
               "open(path, 'w').write(source)\n")
    return f"python -c {shlex.quote(program)} {shlex.quote(str(path))} {shlex.quote(text)}"


def sandbox(root: Path) -> dict[str, str]:
    """A virtualenv whose Python also sees mosn's site-packages, with ``pip``, ``mosn``
    and ``pytest`` commands; the environment to run a tutorial in."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True)
    purelib = Path(subprocess.run(
        [str(root / "bin" / "python"), "-c",
         "import sysconfig; print(sysconfig.get_path('purelib'))"],
        check=True, capture_output=True, text=True).stdout.strip())
    mosn_site = sysconfig.get_path("purelib")
    (purelib / "mosn-tutorial-base.pth").write_text(
        f"import site; site.addsitedir({mosn_site!r})\n")
    for command, module in (("pip", "pip"), ("mosn", "mosn"), ("pytest", "pytest")):
        shim = root / "bin" / command
        shim.write_text(f'#!/bin/sh\nexec "{root}/bin/python" -m {module} "$@"\n')
        shim.chmod(0o755)
    return {
        **{k: v for k, v in os.environ.items()
           if not k.startswith(("PIP_", "PYTHON", "VIRTUAL_ENV"))},
        "PATH": f"{root / 'bin'}{os.pathsep}{os.environ['PATH']}",
        "VIRTUAL_ENV": str(root),
        "PIP_NO_INDEX": "1",
        "PIP_NO_BUILD_ISOLATION": "0",  # pip reads this (inverted) name as "build isolation off"
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
    }


def registers(kind: str, name: str, what: str) -> str:
    """The ``mosn plugins list`` row the page shows for the plugin."""
    return rf"^{name}\s+mosn-plugin-{name}\s+0\.1\.0\s+yes\s+{re.escape(what)}$"


def check_codec(out: str) -> None:
    assert re.search(registers("codec", "acme", "protocol: acme; xprotocol_codec: acme"),
                     out, re.MULTILINE)
    assert "4 requests: 4 succeeded, 0 failed" in out
    assert "request 1: status 2 (http 404)" in out
    bench = re.search(r"requests (\d+) in [\d.]+s: .* errors (\d+)", out)
    assert bench and int(bench.group(1)) > 0 and bench.group(2) == "0"


def check_filter(out: str) -> None:
    assert re.search(registers("filter", "quota", "stream_filter: quota"), out, re.MULTILINE)
    codes = [line for line in out.splitlines() if re.fullmatch(r"\d{3}", line)]
    assert codes == ["200", "200", "200", "429", "429"], codes
    assert "listener.web.downstream_rq_4xx: 2" in out


def check_lb(out: str) -> None:
    assert re.search(registers("lb", "pick", "load_balancer: LB_PICK"), out, re.MULTILINE)
    counts = {int(size): int(n) for n, size in re.findall(r"^\s+(\d+) (\d+) bytes$", out,
                                                         re.MULTILINE)}
    assert len(counts) == 3 and sum(counts.values()) == 600, counts
    for (size, n), weight in zip(sorted(counts.items()), (1, 2, 3)):
        assert 50 * weight <= n <= 150 * weight, counts  # 100 per weight, +-50%


def check_health_checker(out: str) -> None:
    assert re.search(registers("health-checker", "ping", "health_checker: ping"), out,
                     re.MULTILINE)
    assert "cluster.backend.health_check.healthy: 1" in out
    assert "cluster.backend.health_check.turned_unhealthy: 1" in out


def check_cluster_type(out: str) -> None:
    assert re.search(registers("cluster-type", "hostsfile", "cluster_type: hostsfile"), out,
                     re.MULTILINE)
    batches = re.findall(r"((?:request \d: status 0 \(http 200\), (\d+) bytes.*\n){4})", out)
    sizes = [collections.Counter(re.findall(r"(\d+) bytes", batch)) for batch, _ in batches]
    assert len(sizes) == 2 and len(sizes[0]) == 1 and len(sizes[1]) == 2, sizes


EXPECTED = {"codec": check_codec, "filter": check_filter, "lb": check_lb,
            "health-checker": check_health_checker, "cluster-type": check_cluster_type}
"""What each tutorial's output must show (as the page shows it)."""
CI_TUTORIAL = "codec"
"""The tutorial CI follows end to end (a fresh virtualenv, 15-30 s each); the other
kinds' run with ``-m long``."""


def test_every_kind_has_a_tutorial() -> None:
    assert sorted(KINDS) == sorted(EXPECTED)
    for kind in KINDS:
        blocks = tutorial_blocks(DOC.read_text(), kind)
        assert [b.text for b in blocks if b.language == "sh"][0].startswith("mosn plugin new")
        assert any("pip install -e ./" in b.text for b in blocks if b.language == "sh")


def test_the_config_blocks_outside_the_tutorials_load(monkeypatch: pytest.MonkeyPatch,
                                                      tmp_path: Path) -> None:
    """``plugins: {disable: [hello]}``, with the hello plugin of tests/plugins."""
    doc = DOC.read_text()
    outside = re.sub(r"<!-- tutorial: .*?<!-- /tutorial -->", "", doc, flags=re.DOTALL)
    blocks = [b for b in code_blocks(outside) if b.language == "yaml"]
    assert blocks
    site = plugin_site(tmp_path, [("hello", "mosn_hello.plugin")], "mosn-plugin-hello")
    monkeypatch.syspath_prepend(str(ROOT / "tests" / "plugins" / "hello"))
    monkeypatch.syspath_prepend(str(site))
    for block in blocks:  # a part of a config: beside a listener (a config needs one)
        loaded = validate({**listener_config(), **yaml.safe_load(block.text)})
        assert [p.name for p in loaded.plugins.plugins if not p.enabled] == ["hello"]


@pytest.mark.parametrize("kind", [
    kind if kind == CI_TUTORIAL else pytest.param(kind, marks=pytest.mark.long)
    for kind in KINDS])
def test_the_tutorial_runs(tmp_path: Path, kind: str) -> None:
    doc = DOC.read_text()
    for port in PORTS:
        doc = doc.replace(port, str(free_port()))
    work = tmp_path / "work"
    work.mkdir()
    env = sandbox(tmp_path / "venv")
    text = script(tutorial_blocks(doc, kind))
    (tmp_path / "tutorial.sh").write_text(text)
    done = subprocess.run(["bash", str(tmp_path / "tutorial.sh")], cwd=work, env=env,
                          capture_output=True, text=True, timeout=TUTORIAL_TIMEOUT)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    try:
        EXPECTED[kind](done.stdout)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{output}") from None
    assert "failed" not in re.findall(r"^\d+ (?:passed|failed).*", done.stdout, re.M)[0]
    name = re.search(r"mosn plugin new (\w+)", text).group(1)  # type: ignore[union-attr]
    assert not (Path(sysconfig.get_path("purelib")) / f"mosn_{name}").exists()
