#!/usr/bin/env python3
"""Write the provisioned spanscope dashboards: grafana/dashboards/<uid>.json.

    python grafana/generate.py           # (re)write the JSON files (`make dashboards`)
    python grafana/generate.py --check   # exit 1 when a committed file differs from the generator

Dashboards are built with grafana-foundation-sdk; the SDK build must match the Grafana image that
docker-compose runs (GRAFANA_VERSION). Output is deterministic: sorted keys, two-space indent, a
trailing newline, and no file that the generator does not write.
"""
from __future__ import annotations

import argparse
import json
import sys
from importlib import metadata
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from boards import (  # noqa: E402 (after HERE is on sys.path)
    cache,
    circuit_breakers,
    cost,
    experiments,
    exporter,
    latency_breakdown,
    performance,
    quality,
    system_health,
)
from grafana_foundation_sdk.cog.encoder import JSONEncoder  # noqa: E402

#: The Grafana release the dashboards target: docker-compose runs grafana/grafana:<this>, and the
#: grafana-foundation-sdk build installed must be the one for this release ("<epoch>!11.6.0").
GRAFANA_VERSION = "11.6.0"

OUT_DIR = HERE / "dashboards"

#: In display order; one module per dashboard.
DASHBOARDS = [performance, cache, cost, latency_breakdown, quality, experiments, circuit_breakers,
              system_health, exporter]


def sdk_version() -> str:
    """The Grafana release of the installed SDK build (the part after the epoch `!`)."""
    return metadata.version("grafana-foundation-sdk").split("!")[-1]


def render(model) -> str:
    """The one canonical serialisation of a dashboard."""
    data = json.loads(json.dumps(model, cls=JSONEncoder))
    return json.dumps(data, sort_keys=True, indent=2, ensure_ascii=False) + "\n"


def generate() -> dict[str, str]:
    """File name -> JSON text, for every dashboard."""
    files = {}
    for module in DASHBOARDS:
        model = module.build()
        if model.uid != module.UID:
            raise ValueError(f"{module.__name__}: uid {model.uid!r} != UID {module.UID!r}")
        name = f"{module.UID}.json"
        if name in files:
            raise ValueError(f"duplicate dashboard uid {module.UID}")
        files[name] = render(model)
    return files


def diff(out_dir: Path = OUT_DIR) -> list[str]:
    """Problems that `--check` reports: files missing, differing or not generated."""
    files = generate()
    problems = []
    for name, text in files.items():
        path = out_dir / name
        if not path.exists():
            problems.append(f"{name}: missing")
        elif path.read_text(encoding="utf-8") != text:
            problems.append(f"{name}: differs from the generator")
    for path in sorted(out_dir.glob("*.json")):
        if path.name not in files:
            problems.append(f"{path.name}: not written by the generator")
    return problems


def write(out_dir: Path = OUT_DIR) -> list[Path]:
    files = generate()
    out_dir.mkdir(parents=True, exist_ok=True)
    for path in out_dir.glob("*.json"):
        if path.name not in files:
            path.unlink()
    written = []
    for name, text in files.items():
        path = out_dir / name
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    parser.add_argument("--out", type=Path, default=OUT_DIR, help="output directory")
    args = parser.parse_args(argv)
    if sdk_version() != GRAFANA_VERSION:
        print(f"grafana-foundation-sdk is built for Grafana {sdk_version()}, the stack runs "
              f"{GRAFANA_VERSION}: install grafana-foundation-sdk==<epoch>!{GRAFANA_VERSION}", file=sys.stderr)
        return 2
    if args.check:
        problems = diff(args.out)
        for p in problems:
            print(p, file=sys.stderr)
        if problems:
            print("run `make dashboards` and commit the result", file=sys.stderr)
        return 1 if problems else 0
    for path in write(args.out):
        print(path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
