"""The ``mosn`` command: start, validate, plugins list, version."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from mosn import __version__
from mosn.config import ConfigError, LoadedConfig, load, read_file
from mosn.config.loader import load_plugins
from mosn.extensions import build_description
from mosn.plugins import PluginHost
from mosn.testing.scaffold import KINDS

if TYPE_CHECKING:
    from mosn.rpc.codec import FrameCodec


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return args.func(args)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mosn", description=__doc__)
    sub = parser.add_subparsers(metavar="COMMAND")

    start = sub.add_parser("start", help="run the proxy on a config file",
                           description="Validate the config, bind every listener, then serve.")
    start.add_argument("-c", "--config", required=True, metavar="FILE", help="YAML or JSON config")
    start.add_argument("--workers", default="1", metavar="N|auto",
                       help="worker processes sharing the listeners (default 1; auto = one per CPU)")
    start.add_argument("--log-level", default=None, metavar="LEVEL",
                       help="DEBUG, INFO, WARN or ERROR (default: the config's, else INFO)")
    start.add_argument("--run-dir", default="", metavar="DIR",
                       help="where the upgrade socket lives (default: the config's "
                       "upgrade.run_dir, else one that follows from the config file's path); "
                       "a second mosn start on the same one takes over (docs/upgrade.md)")
    start.set_defaults(func=_start)

    validate = sub.add_parser("validate", help="check a config file and exit",
                              description="Print every error with its path; exit 1 if any.")
    validate.add_argument("-c", "--config", required=True, metavar="FILE")
    validate.add_argument("--strict", action="store_true", help="treat warnings as errors")
    validate.set_defaults(func=_validate)

    plugins = sub.add_parser("plugins", help="installed plugins")
    psub = plugins.add_subparsers(metavar="COMMAND")
    plist = psub.add_parser("list", help="each plugin: name, distribution, version, "
                                         "what it registers, enabled")
    plist.add_argument("-c", "--config", metavar="FILE",
                       help="apply this config's plugins: section")
    plist.add_argument("--json", action="store_true", help="machine-readable output")
    plist.set_defaults(func=_plugins_list)
    plugins.set_defaults(func=lambda args: plugins.print_help() or 2)

    bench = sub.add_parser("bench", help="load-test an RPC endpoint with any installed codec",
                           description="Keep requests in flight on many connections; print "
                                       "req/s and latency percentiles.")
    bench.add_argument("--protocol", required=True, help="an installed RPC codec (bolt ...)")
    _protocol_config_option(bench)
    bench.add_argument("--target", required=True, metavar="HOST:PORT")
    bench.add_argument("--connections", type=int, default=50)
    bench.add_argument("--concurrency", type=int, default=1, help="requests in flight per connection")
    bench.add_argument("--payload", type=int, default=1024, metavar="BYTES")
    bench.add_argument("--duration", type=float, default=10.0, metavar="SECONDS")
    bench.add_argument("--warmup", type=float, default=1.0, metavar="SECONDS")
    bench.add_argument("--service", default="com.example.EchoService:1.0")
    bench.add_argument("--method", default="echo")
    bench.add_argument("--json", action="store_true", help="print the result as JSON")
    bench.set_defaults(func=_bench)

    mock = sub.add_parser("mock", help="mock peers for an installed RPC codec")
    msub = mock.add_subparsers(metavar="COMMAND")
    mserver = msub.add_parser("server", help="answer every request with a success response")
    mserver.add_argument("--protocol", required=True, help="an installed RPC codec (bolt ...)")
    _protocol_config_option(mserver)
    mserver.add_argument("--listen", required=True, metavar="HOST:PORT")
    mserver.add_argument("--delay", type=float, default=0.0, metavar="SECONDS")
    mserver.add_argument("--response-bytes", type=int, default=0)
    mserver.set_defaults(func=_mock_server)
    mclient = msub.add_parser("client", help="send requests and print each response's status",
                              description="Send --count requests on one connection; print "
                                          "each response's status; exit 1 unless all succeed.")
    mclient.add_argument("--protocol", required=True, help="an installed RPC codec (bolt ...)")
    _protocol_config_option(mclient)
    mclient.add_argument("--target", required=True, metavar="HOST:PORT")
    mclient.add_argument("--service", required=True)
    mclient.add_argument("--method", default="echo")
    mclient.add_argument("--count", type=int, default=1)
    mclient.add_argument("--concurrency", type=int, default=1, help="requests in flight")
    mclient.add_argument("--payload", type=int, default=16, metavar="BYTES")
    mclient.add_argument("--timeout", type=float, default=5.0, metavar="SECONDS",
                         help="for all the responses")
    mclient.add_argument("--wait", type=float, default=0.0, metavar="SECONDS",
                         help="keep trying to connect this long (a target still starting)")
    mclient.add_argument("--json", action="store_true", help="one JSON object per response")
    mclient.set_defaults(func=_mock_client)
    mock.set_defaults(func=lambda args: mock.print_help() or 2)

    plugin = sub.add_parser("plugin", help="write plugins")
    plsub = plugin.add_subparsers(metavar="COMMAND")
    pnew = plsub.add_parser("new", help="scaffold a plugin distribution",
                            description="Write DIR/NAME: the distribution mosn-plugin-NAME with "
                                        "a working extension of the kind asked for, a README "
                                        "and tests on the kind's conformance suite.")
    pnew.add_argument("name", metavar="NAME", help="lower case, e.g. acme")
    pnew.add_argument("--kind", default="codec", choices=KINDS,
                      help="what the plugin adds (default codec: an RPC protocol)")
    pnew.add_argument("--dir", default=".", metavar="DIR", help="where to put NAME/ (default .)")
    pnew.set_defaults(func=_plugin_new)
    plugin.set_defaults(func=lambda args: plugin.print_help() or 2)

    version = sub.add_parser("version", help="print the version")
    version.set_defaults(func=lambda args: print(f"mosn {__version__}\nbuild: {build_description()}")
                         or 0)
    return parser


def _protocol_config_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--protocol-config", metavar="FILE",
                        help="YAML or JSON for the codec's config (what the proxy's "
                             "extend_config.<protocol> holds; a declared protocol's "
                             "{codec: {...}} for xprotocol)")


def _load(path: str) -> LoadedConfig | None:
    try:
        loaded = load(path)
    except ConfigError as exc:
        print(f"{path}: invalid config ({len(exc.errors)} error"
              f"{'s' if len(exc.errors) != 1 else ''}):", file=sys.stderr)
        for line in exc.errors:
            print(f"  {line}", file=sys.stderr)
        return None
    for line in loaded.warnings:
        print(f"{path}: warning: {line}", file=sys.stderr)
    return loaded


def _validate(args: argparse.Namespace) -> int:
    loaded = _load(args.config)
    if loaded is None:
        return 1
    if args.strict and loaded.warnings:
        return 1
    print(f"{args.config}: ok")
    return 0


def _start(args: argparse.Namespace) -> int:
    from mosn import server

    try:
        workers = server.worker_count(args.workers)
    except ValueError as exc:
        print(f"mosn start: {exc}", file=sys.stderr)
        return 2
    server.without_grpc_fork_handlers()
    loaded = _load(args.config)
    if loaded is None:
        return 1
    first = loaded.config.servers[0] if loaded.config.servers else None
    server.configure_logging(args.log_level or (first and first.default_log_level) or "INFO",
                             first.default_log_path if first else "")
    try:
        return server.run(loaded, workers, args.run_dir)
    except server.StartError as exc:
        print(f"{args.config}: cannot start: {exc}", file=sys.stderr)
        return 1


def _plugins_list(args: argparse.Namespace) -> int:
    try:
        host = load_plugins(read_file(args.config)) if args.config else PluginHost().load()
    except ConfigError as exc:
        print("\n".join(exc.errors), file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps([p.as_dict() for p in host.plugins], indent=2))
        return 1 if host.errors else 0
    rows = [("NAME", "DISTRIBUTION", "VERSION", "ENABLED", "REGISTERS")]
    for p in host.plugins:
        registers = "; ".join(f"{kind}: {', '.join(names)}" for kind, names in p.registers.items())
        if p.error:
            registers = f"ERROR {p.error}"
        rows.append((p.name, p.distribution, p.version, "yes" if p.enabled else "no",
                     registers or "-"))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[4])
    for err in host.errors:
        print(f"error: {err}", file=sys.stderr)
    return 1 if host.errors else 0


def _codec(command: str, protocol: str, config_path: str | None = None) -> FrameCodec | None:
    """The installed codec named ``protocol``, built from the config in ``config_path``
    if given; None once why it cannot be had is printed (prefixed with ``command``)."""
    from mosn.rpc import tools

    try:
        config = read_file(config_path) if config_path else None
        return tools.codec_named(protocol, config=config)
    except ConfigError as exc:
        print(f"{command}: {'; '.join(exc.errors)}", file=sys.stderr)
    except (LookupError, ValueError) as exc:  # pydantic's ValidationError is a ValueError
        print(f"{command}: {exc}", file=sys.stderr)
    return None


def _can_build(command: str, codec: FrameCodec, service: str, method: str,
               payload: int) -> bool:
    """Whether ``codec`` can make the request the tool would send; if not, why is
    printed (a declared protocol whose fields cannot hold ``service`` ...)."""
    try:
        codec.request(service, method, b"x" * payload)
    except ValueError as exc:
        print(f"{command}: {exc}", file=sys.stderr)
        return False
    return True


def _bench(args: argparse.Namespace) -> int:
    import anyio

    from mosn.config import parse_address
    from mosn.rpc import tools

    codec = _codec("mosn bench", args.protocol, args.protocol_config)
    if codec is None:
        return 2
    if not _can_build("mosn bench", codec, args.service, args.method, args.payload):
        return 2
    try:
        result = anyio.run(lambda: tools.bench(
            codec, parse_address(args.target), connections=args.connections,
            concurrency=args.concurrency, payload=args.payload, duration=args.duration,
            warmup=args.warmup, service=args.service, method=args.method), **_uvloop())
    except OSError as exc:
        print(f"mosn bench: cannot connect to {args.target}: {exc.strerror or exc}",
              file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps({"requests": result.requests, "errors": result.errors,
                          "seconds": result.seconds, "rate": result.rate,
                          **{f"p{p:g}_us": result.percentile(p) for p in tools.PERCENTILES}}))
    else:
        print(result.report())
    return 0 if result.requests else 1


def _mock_server(args: argparse.Namespace) -> int:
    import anyio

    from mosn.config import parse_address
    from mosn.rpc import tools

    codec = _codec("mosn mock server", args.protocol, args.protocol_config)
    if codec is None:
        return 2
    listen = parse_address(args.listen)

    def ready(server) -> None:
        print(f"mock {args.protocol} server listening on {listen}", flush=True)

    try:
        anyio.run(lambda: tools.serve_mock(codec, listen, args.delay, args.response_bytes, ready),
                  **_uvloop())
    except KeyboardInterrupt:
        pass
    except OSError as exc:
        print(f"mosn mock server: cannot listen on {listen}: {exc.strerror or exc}",
              file=sys.stderr)
        return 1
    return 0


def _mock_client(args: argparse.Namespace) -> int:
    import anyio

    from mosn.config import parse_address
    from mosn.rpc import tools

    if args.count < 1:
        print("mosn mock client: --count must be at least 1", file=sys.stderr)
        return 2
    codec = _codec("mosn mock client", args.protocol, args.protocol_config)
    if codec is None:
        return 2
    if not _can_build("mosn mock client", codec, args.service, args.method, args.payload):
        return 2
    try:
        results = anyio.run(lambda: tools.call(
            codec, parse_address(args.target), service=args.service, method=args.method,
            body=b"x" * args.payload, count=args.count, concurrency=args.concurrency,
            timeout=args.timeout, wait=args.wait), **_uvloop())
    except OSError as exc:
        print(f"mosn mock client: cannot connect to {args.target}: {exc.strerror or exc}",
              file=sys.stderr)
        return 1
    for r in results:
        if args.json:
            print(json.dumps({"request_id": r.request_id, "ok": r.ok,
                              "status": r.frame.status if r.frame else None,
                              "http_status": r.http_status or None, "seconds": r.seconds,
                              "bytes": len(r.frame.data) if r.frame else 0,
                              "error": r.error or None}))
        elif r.frame is not None:
            print(f"request {r.request_id}: status {r.frame.status} (http {r.http_status}), "
                  f"{len(r.frame.data)} bytes in {r.seconds * 1000:.1f} ms")
        else:
            print(f"request {r.request_id}: {r.error}")
    ok = sum(r.ok for r in results)
    if not args.json:
        print(f"{len(results)} requests: {ok} succeeded, {len(results) - ok} failed")
    return 0 if ok == len(results) else 1


def _plugin_new(args: argparse.Namespace) -> int:
    from mosn.testing import scaffold

    try:
        root = scaffold.create(args.name, args.dir, args.kind)
    except scaffold.ScaffoldError as exc:
        print(f"mosn plugin new: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {root}: the distribution mosn-plugin-{args.name} (package mosn_{args.name}), "
          f"a {scaffold.KIND_TITLES[args.kind]}")
    print(f"next: pip install -e {_local(root)}  then  mosn plugins list  then  "
          f"pytest {_local(root)}")
    return 0


def _local(path: Path) -> str:
    """``path`` as pip must be given a directory: a relative one starts with ``./``
    (``pip install -e acme`` would look ``acme`` up on the package index)."""
    text = str(path)
    return text if path.is_absolute() or text.startswith(".") else f"./{text}"


def _uvloop() -> dict:
    from mosn.server import anyio_backend

    return anyio_backend()
