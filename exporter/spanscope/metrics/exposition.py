"""Writing the store as Prometheus text (0.0.4) or OpenMetrics 1.0 (with exemplars).

A direct writer rather than prometheus_client's generic one: label strings are rendered once per
series and histograms are written from their bucket arrays, which keeps a scrape of 10 000 series
in milliseconds. The output is checked against prometheus_client's parsers and `promtool check
metrics` in the tests.
"""
from __future__ import annotations

import functools
import math
from decimal import Decimal

from .series import Counter, Gauge, Histogram, Store

TEXT_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
OPENMETRICS_CONTENT_TYPE = "application/openmetrics-text; version=1.0.0; charset=utf-8"


def format_value(v) -> str:
    """Go-compatible float text; Decimals stay exact."""
    if isinstance(v, Decimal):
        text = format(v.normalize(), "f")
        return text if "." in text else text + ".0"
    if isinstance(v, int):
        return f"{v}.0"
    if v != v:
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    return repr(float(v))


@functools.lru_cache(maxsize=64)
def _bounds(buckets: tuple) -> tuple[str, ...]:
    """The `le` texts of a family's buckets, made once per bucket layout rather than per scrape."""
    return (*(format_value(b) for b in buckets), "+Inf")


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def render(store: Store, openmetrics: bool = False, tail: str = "") -> bytes:
    """The store's families, collected now, then `tail` (more families, already in the same format)."""
    store.collect()
    out: list[str] = []
    w = out.append
    for fam in store.families.values():
        name = fam.name
        if isinstance(fam, Counter):
            # OpenMetrics names the counter family without `_total`; text format names the samples.
            base = name[:-6] if name.endswith("_total") else name
            w(f"# HELP {base if openmetrics else name} {_escape_help(fam.help)}\n")
            w(f"# TYPE {base if openmetrics else name} counter\n")
            for key, s in fam.series.items():
                lbl = fam.labels[key]
                w(f"{base}_total{{{lbl}}} {format_value(s[0])}\n" if lbl else f"{base}_total {format_value(s[0])}\n")
        elif isinstance(fam, Gauge):
            w(f"# HELP {name} {_escape_help(fam.help)}\n# TYPE {name} gauge\n")
            for key, s in fam.series.items():
                lbl = fam.labels[key]
                w(f"{name}{{{lbl}}} {format_value(s[0])}\n" if lbl else f"{name} {format_value(s[0])}\n")
        elif isinstance(fam, Histogram):
            w(f"# HELP {name} {_escape_help(fam.help)}\n# TYPE {name} histogram\n")
            bounds = _bounds(fam.buckets)
            for key, s in fam.series.items():
                lbl = fam.labels[key]
                prefix = f"{name}_bucket{{{lbl}," if lbl else f"{name}_bucket{{"
                counts, exemplars = s[0], s[3]
                if not openmetrics:
                    exemplars = None  # the text format has none
                cumulative = 0
                for i, bound in enumerate(bounds):
                    cumulative += counts[i]
                    if exemplars is not None and exemplars[i] is not None:
                        trace_id, value, ts = exemplars[i]
                        w(f'{prefix}le="{bound}"}} {cumulative} '
                          f'# {{trace_id="{trace_id}"}} {format_value(value)} {ts:.3f}\n')
                    else:
                        w(f'{prefix}le="{bound}"}} {cumulative}\n')
                suffix = f"{{{lbl}}}" if lbl else ""
                w(f"{name}_sum{suffix} {format_value(s[1])}\n{name}_count{suffix} {cumulative}\n")
    w(tail)
    if openmetrics:
        w("# EOF\n")
    return "".join(out).encode()
