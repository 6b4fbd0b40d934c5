"""docs/plugins.md's tutorial, run as written: every block between ``<!-- tutorial -->``
and ``<!-- /tutorial -->`` in order, in one shell, so the page cannot drift from mosn.

Blocks by their info string:
- ``sh``: shell commands; each must succeed (``set -e``);
- ``sh exit=N``: shell commands whose last one must exit N;
- ``yaml file=PATH``: written to PATH;
- ``python edit=PATH``: each ``NAME = ...`` line replaces the line of PATH that
  assigns NAME (an edit the reader makes by hand);
- anything else (``text`` ...): output shown to the reader, not run.

The commands run in a scratch virtualenv layered over mosn's (its site-packages
added through a ``.pth``), so ``pip install ./acme`` installs into the scratch one and
leaves mosn's environment alone; pip runs offline (``PIP_NO_INDEX``, no build
isolation). The ports the page shows are swapped for free ones.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

from conftest import ROOT, free_port

DOC = ROOT / "docs" / "plugins.md"
PORTS = ("12200", "12220", "12221", "34901")
"""The ports the tutorial shows, each replaced by a free port."""
FENCE = re.compile(r"^```(\S*)([^\n]*)\n(.*?)^```\s*$", re.MULTILINE | re.DOTALL)


@dataclass
class Block:
    language: str
    attrs: dict[str, str]
    text: str


def tutorial_blocks(doc: str) -> list[Block]:
    start, end = doc.index("<!-- tutorial -->"), doc.index("<!-- /tutorial -->")
    blocks = []
    for m in FENCE.finditer(doc[start:end]):
        attrs = dict(part.split("=", 1) for part in m.group(2).split() if "=" in part)
        blocks.append(Block(m.group(1), attrs, m.group(3)))
    return blocks


def script(blocks: list[Block], work: Path) -> str:
    """One bash script running the blocks in order; it exits non-zero at the first
    block that fails, naming it."""
    lines = ["set -eu", "trap 'set +e; kill $(jobs -p) 2>/dev/null; wait' EXIT"]
    for n, block in enumerate(blocks, 1):
        lines.append(f"echo '### block {n}'")
        if block.language == "sh":
            expected = block.attrs.get("exit")
            if expected is None:
                lines.append(block.text)
            else:
                lines += ["set +e", block.text, "rc=$?", "set -e",
                          f"[ $rc -eq {int(expected)} ] || "
                          f"{{ echo 'block {n} exited '$rc' not {expected}'; exit 90; }}"]
        elif block.language == "yaml" and "file" in block.attrs:
            lines.append(f"cat > {shlex.quote(block.attrs['file'])} <<'MOSN_EOF'\n"
                         f"{block.text}MOSN_EOF")
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
    and ``pytest`` commands; the environment to run the tutorial in."""
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


def test_the_tutorial_blocks_are_found() -> None:
    blocks = tutorial_blocks(DOC.read_text())
    kinds = [(b.language, tuple(sorted(b.attrs))) for b in blocks]
    assert ("sh", ()) in kinds and ("sh", ("exit",)) in kinds
    assert ("yaml", ("file",)) in kinds and ("python", ("edit",)) in kinds


def test_the_tutorial_runs(tmp_path: Path) -> None:
    doc = DOC.read_text()
    for port in PORTS:
        doc = doc.replace(port, str(free_port()))
    work = tmp_path / "work"
    work.mkdir()
    env = sandbox(tmp_path / "venv")
    text = script(tutorial_blocks(doc), work)
    (tmp_path / "tutorial.sh").write_text(text)
    done = subprocess.run(["bash", str(tmp_path / "tutorial.sh")], cwd=work, env=env,
                          capture_output=True, text=True, timeout=600)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    # what the page says the reader will see
    assert re.search(r"^acme\s+mosn-plugin-acme\s+0\.1\.0\s+yes\s+protocol: acme; "
                     r"xprotocol_codec: acme$", done.stdout, re.MULTILINE), output
    assert "4 requests: 4 succeeded, 0 failed" in done.stdout, output
    assert "request 1: status 2 (http 404)" in done.stdout, output
    bench = re.search(r"requests (\d+) in [\d.]+s: .* errors (\d+)", done.stdout)
    assert bench and int(bench.group(1)) > 0 and bench.group(2) == "0", output
    assert not (Path(sysconfig.get_path("purelib")) / "mosn_acme").exists()
