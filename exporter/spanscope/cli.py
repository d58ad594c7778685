"""`spanscope-exporter`: run the exporter, or check a configuration and exit."""
from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import sys

from . import __version__, logs
from .config import ConfigError, load

FLAG_ENV = {  # flag -> (environment variable, config path)
    "--otlp-grpc": ("SPANSCOPE_OTLP_GRPC", "listen.otlp_grpc"),
    "--otlp-http": ("SPANSCOPE_OTLP_HTTP", "listen.otlp_http"),
    "--web": ("SPANSCOPE_WEB", "listen.web"),
    "--web-config-file": ("SPANSCOPE_WEB_CONFIG_FILE", "listen.web_config_file"),
}
LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("text", "json")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="spanscope-exporter",
        description="OpenTelemetry spans in (OTLP gRPC/HTTP), Prometheus metrics out, for LLM and RAG pipelines.",
        epilog="`spanscope-exporter insights --url URL` prints insights and recommendations. "
               "Every option of the config file can also be set with --set PATH=VALUE or the environment "
               "variable SPANSCOPE__PATH (parts joined by __), e.g. SPANSCOPE__LIMITS__SERIES_TTL=10m.",
    )
    p.add_argument("--config", default=os.environ.get("SPANSCOPE_CONFIG"),
                   help="YAML config file (env SPANSCOPE_CONFIG); embedded defaults when absent")
    for flag, (env, path) in FLAG_ENV.items():
        p.add_argument(flag, metavar="FILE" if flag.endswith("file") else "HOST:PORT", default=os.environ.get(env),
                       help=f"config {path} (env {env})")
    p.add_argument("--set", action="append", default=[], metavar="PATH=VALUE",
                   help="override one config option (repeatable)")
    p.add_argument("--check-config", action="store_true", help="validate the configuration and exit")
    p.add_argument("--log-level", default=os.environ.get("SPANSCOPE_LOG_LEVEL", "info"),
                   choices=LOG_LEVELS, help="env SPANSCOPE_LOG_LEVEL")
    p.add_argument("--log-format", default=os.environ.get("SPANSCOPE_LOG_FORMAT", "text"), choices=LOG_FORMATS,
                   help="json: one object per line (ts, level, logger, msg, exc); env SPANSCOPE_LOG_FORMAT")
    p.add_argument("--version", action="version", version=f"spanscope-exporter {__version__}")
    return p


def build_config(args):
    # quoted: an address like [::]:4317 is no YAML list
    overrides = [f"{path}={json.dumps(getattr(args, flag[2:].replace('-', '_')))}"
                 for flag, (_, path) in FLAG_ENV.items() if getattr(args, flag[2:].replace('-', '_'))]
    return load(args.config, overrides + args.set)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["insights"]:
        from .client.insights_cli import main as insights
        return insights(argv[1:])
    p = parser()
    args = p.parse_args(argv)
    for option, choices in (("log_level", LOG_LEVELS), ("log_format", LOG_FORMATS)):
        if getattr(args, option) not in choices:  # argparse checks a flag's choices, not its env default
            p.error(f"{option.replace('_', '-')} {getattr(args, option)!r} (from the environment): "
                    f"choose from {', '.join(choices)}")
    logs.configure(args.log_level, args.log_format)
    try:
        config = build_config(args)
        from .app import (
            Exporter,  # imported late: --check-config needs no network stack
        )
        if args.check_config:
            Exporter.check(config)
            print(f"configuration OK{' (' + args.config + ')' if args.config else ' (embedded defaults)'}")
            return 0
    except ConfigError as exc:
        print(f"spanscope-exporter: configuration error: {exc}", file=sys.stderr)
        return 2
    try:
        import uvloop  # a faster event loop when installed (the `fast` extra)
        run = uvloop.run
    except ImportError:
        run = asyncio.run

    async def serve():
        exporter = Exporter(config)
        # Ingest allocates many objects that live until their trace is finished; with the default
        # gen-0 threshold (700) the collector traversed each of them several times, about a quarter
        # of the CPU. At 500 000 most are gone before a collection (+15 % throughput against 50 000
        # in bench/, same RSS). At full load a gen-0 pass then holds the GIL for 150-450 ms, a few
        # times a minute (bench/gcprobe); 100 000 cost throughput and did not lower request p99.
        # Startup objects are frozen.
        gc.freeze()
        gc.set_threshold(500_000, 20, 100)
        await exporter.run()

    try:
        run(serve())
    except ConfigError as exc:
        print(f"spanscope-exporter: configuration error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"spanscope-exporter: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
