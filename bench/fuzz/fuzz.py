"""Coverage-guided fuzzing with atheris (libFuzzer for Python) of one target of
``targets.py``; see README.md.

    .venv/bin/python bench/fuzz/fuzz.py --list
    .venv/bin/python bench/fuzz/fuzz.py TARGET [libFuzzer options, e.g. -max_total_time=600]
    .venv/bin/python bench/fuzz/fuzz.py TARGET FILE...   # run these inputs once (a finding)

The corpus lives in ``bench/fuzz/corpus/TARGET`` (seeded from ``targets.SEEDS`` when
empty; not kept in git); crashes are written to ``bench/fuzz/findings/``. Besides
what libFuzzer checks (no unhandled exception: each is a crash), the run checks its
own memory: the resident set after ``RSS_LAST`` inputs must be within
``RSS_GROWTH`` of what it was after ``RSS_FIRST`` (a leak per input would show),
and says both on stderr.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import time
from pathlib import Path

import atheris

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
# bench/common.py, by its path: bench/ on sys.path would shadow h2 with bench/h2.py
_spec = importlib.util.spec_from_file_location("bench_common", HERE.parent / "common.py")
_common = sys.modules["bench_common"] = importlib.util.module_from_spec(_spec)  # type: ignore[arg-type]
_spec.loader.exec_module(_common)  # type: ignore[union-attr]
rss_kib = _common.rss_kib

RSS_FIRST = 1_000
"""Inputs after which the baseline resident set is taken (imports and caches settled)."""
RSS_LAST = 100_000
"""Inputs after which the resident set is compared with the baseline."""
RSS_GROWTH = 0.10
"""How much larger it may be then: more means memory kept per input."""
RSS_EVERY = 50_000
"""Inputs between the resident-set lines printed after the comparison."""
INSTRUMENTED = ("mosn", "mosn_http1", "mosn_http2", "mosn_sofarpc", "mosn_dubbo",
                "mosn_xprotocol", "yaml", "h2", "hpack", "hyperframe")
"""Packages whose code reports coverage to the fuzzer (the project's and the parsers
it relies on; httptools and libyaml are C and report none)."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("target", nargs="?")
    parser.add_argument("--list", action="store_true", help="list the targets and exit")
    args, libfuzzer = parser.parse_known_args()
    with atheris.instrument_imports(include=list(INSTRUMENTED)):
        from targets import SEEDS, TARGETS
    if args.list or args.target not in TARGETS:
        print("targets:", " ".join(TARGETS))
        sys.exit(0 if args.list else 2)
    target = TARGETS[args.target]
    corpus = HERE / "corpus" / args.target
    if not corpus.is_dir() or not any(corpus.iterdir()):
        corpus.mkdir(parents=True, exist_ok=True)
        for i, seed in enumerate(SEEDS[args.target]):
            (corpus / f"seed-{i:03d}").write_bytes(seed)
    findings = HERE / "findings"
    findings.mkdir(exist_ok=True)
    count = 0
    baseline = 0
    started = time.monotonic()

    def one_input(data: bytes) -> None:
        nonlocal count, baseline
        target(data)
        count += 1
        if count == RSS_FIRST:
            baseline = rss_kib(os.getpid())
            print(f"#rss after {count} inputs: {baseline} KiB", file=sys.stderr, flush=True)
        elif count == RSS_LAST or (count > RSS_LAST and count % RSS_EVERY == 0):
            rss = rss_kib(os.getpid())
            growth = rss / baseline - 1
            print(f"#rss after {count} inputs: {rss} KiB ({growth:+.1%} since {RSS_FIRST}; "
                  f"{time.monotonic() - started:.0f} s)", file=sys.stderr, flush=True)
            if count == RSS_LAST:
                assert growth <= RSS_GROWTH, (
                    f"resident set grew {growth:.1%} between input {RSS_FIRST} and {RSS_LAST}")

    inputs = [a for a in libfuzzer if not a.startswith("-")]  # files to run once, or a corpus
    atheris.Setup([sys.argv[0], f"-artifact_prefix={findings}/{args.target}-", *libfuzzer,
                   *([] if inputs else [str(corpus)])], one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
