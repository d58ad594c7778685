"""`spanscope-exporter insights --url URL`: insights and recommendations as terminal tables."""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import textwrap
import urllib.error
import urllib.parse
import urllib.request


def fetch(url: str, path: str, params: dict) -> dict:
    query = urllib.parse.urlencode({k: v for k, v in params.items() if v is not None})
    with urllib.request.urlopen(f"{url.rstrip('/')}{path}?{query}", timeout=10) as resp:
        return json.load(resp)


def table(rows: list[list[str]], headers: list[str], width: int) -> str:
    """A plain table; the last column wraps to fit the terminal (nothing is cut off)."""
    cols = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    fixed = sum(cols[:-1]) + 2 * (len(cols) - 1)
    cols[-1] = max(min(cols[-1], width - fixed), 30)
    out = []
    for cells in [headers, ["-" * w for w in cols], *rows]:
        wrapped = textwrap.wrap(cells[-1], cols[-1]) or [""]
        for n, part in enumerate(wrapped):
            lead = cells[:-1] if n == 0 else [""] * (len(cells) - 1)
            out.append("  ".join(c.ljust(w) for c, w in zip([*lead, part], cols)).rstrip())
    return "\n".join(out)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="spanscope-exporter insights",
                                description="Print the exporter's insights and recommendations.")
    p.add_argument("--url", default="http://127.0.0.1:8889", help="the exporter's web address")
    p.add_argument("--window", type=int, default=60, help="window in minutes (5-1440)")
    p.add_argument("--service")
    p.add_argument("--mode")
    p.add_argument("--json", action="store_true", help="print the raw JSON instead of tables")
    args = p.parse_args(argv)
    params = {"time_window_minutes": args.window, "service": args.service, "mode": args.mode}
    try:
        found = fetch(args.url, "/api/insights", params)
        recs = fetch(args.url, "/api/recommendations", params)
    except urllib.error.HTTPError as exc:
        print(f"spanscope-exporter insights: {exc.code} from {args.url}: {exc.read().decode(errors='replace')}",
              file=sys.stderr)
        return 1
    except (urllib.error.URLError, OSError) as exc:
        print(f"spanscope-exporter insights: cannot reach {args.url}: {getattr(exc, 'reason', exc)}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps({"insights": found["data"]["insights"], "recommendations": recs["data"]["recommendations"]},
                         indent=2))
        return 0
    width = shutil.get_terminal_size((120, 40)).columns
    window = found["window"]
    print(f"spanscope insights, {window['minutes']} min to {window['end']}\n")
    rows = [[i["severity"], i["type"], i["message"]] for i in found["data"]["insights"]]
    print(table(rows, ["SEVERITY", "TYPE", "FINDING"], width) if rows else "No trends, anomalies or patterns.")
    print()
    rows = [[str(n), f"{r['impact_ms_per_request']:.0f}", f"{r['impact_usd_per_month']:.2f}", r["message"]]
            for n, r in enumerate(recs["data"]["recommendations"], 1)]
    print(table(rows, ["#", "MS/REQ", "USD/MONTH", "RECOMMENDATION"], width) if rows else "No recommendations.")
    return 0
