"""The rules of grafana/dashboard-linter (not installable here), as plain functions over dashboard JSON.

Each rule returns a list of problems (strings naming dashboard, panel and query); empty means clean.
Also: walking panels/queries and expanding template variables, shared with the live test.
"""
from __future__ import annotations

import re
from collections.abc import Iterator

DATASOURCE_UID = "${datasource}"
RATE_INTERVAL = "$__rate_interval"
COUNTER_SUFFIXES = ("_total", "_count", "_sum", "_bucket")
RATE_FUNCTIONS = ("rate", "increase", "irate")
# Grafana's own variables, always defined.
BUILTIN_VARIABLES = {"__rate_interval", "__interval", "__interval_ms", "__range", "__range_s", "__range_ms",
                     "__from", "__to", "__dashboard", "__org", "__user", "__name"}
GRID_COLUMNS = 24


# ------------------------------------------------------------------------------------------------
# Walking
# ------------------------------------------------------------------------------------------------

def panels(dash: dict) -> Iterator[dict]:
    """Every non-row panel, also those nested in collapsed rows."""
    for p in dash.get("panels", []):
        if p.get("type") == "row":
            yield from (c for c in p.get("panels", []) if c.get("type") != "row")
        else:
            yield p


def all_panels_with_rows(dash: dict) -> Iterator[dict]:
    for p in dash.get("panels", []):
        yield p
        if p.get("type") == "row":
            yield from p.get("panels", [])


def queries(dash: dict) -> Iterator[tuple[dict, dict]]:
    """(panel, target) for every query of every panel."""
    for p in panels(dash):
        for t in p.get("targets", []):
            yield p, t


def where(dash: dict, panel: dict | None = None, target: dict | None = None) -> str:
    out = f"{dash.get('uid')}"
    if panel is not None:
        out += f" / panel {panel.get('id')} {panel.get('title')!r}"
    if target is not None:
        out += f" / query {target.get('refId')}"
    return out


# ------------------------------------------------------------------------------------------------
# PromQL scanning (enough of the lexical structure for the rules; not a parser)
# ------------------------------------------------------------------------------------------------

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_BRACES = re.compile(r"\{[^{}]*\}")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_NAME = re.compile(r"(?<![\w:$.])([a-zA-Z_:][a-zA-Z0-9_:]*)(?![\w:])")
_RANGE = re.compile(r"\[([^\]]*)\]")


def _blank(text: str, pattern: re.Pattern, keep_ends: bool = False) -> str:
    def repl(m):
        s = m.group(0)
        if keep_ends and len(s) >= 2:
            return s[0] + " " * (len(s) - 2) + s[-1]
        return " " * len(s)
    return pattern.sub(repl, text)


def scrub(expr: str) -> str:
    """The expression with strings, label matchers and grouping label lists blanked out, so that
    only metric names, functions, operators and ranges are left (same length as `expr`)."""
    s = _blank(expr, _STRING)
    s = _blank(s, _BRACES, keep_ends=True)
    return _blank(s, _GROUPING)


def metric_names(expr: str) -> list[tuple[int, int, str]]:
    """(start, end, name) of each metric name in `expr` (identifiers not followed by `(`, not
    keywords, not numbers)."""
    s = scrub(expr)
    out = []
    keywords = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or",
                "unless", "offset", "inf", "nan", "Inf", "NaN"}
    for m in _NAME.finditer(s):
        name = m.group(1)
        rest = s[m.end():].lstrip()
        if name in keywords or rest.startswith("("):
            continue
        out.append((m.start(), m.end(), name))
    return out


def is_counter_series(name: str) -> bool:
    return name.endswith(COUNTER_SUFFIXES) and ":" not in name  # recording-rule outputs are exempt


def counter_problems(expr: str) -> list[str]:
    """Counters (`_total`, `_count`, `_sum`, `_bucket`) only as `rate|increase|irate(x[$__rate_interval])`;
    every range selector is `[$__rate_interval]`."""
    s = scrub(expr)
    problems = []
    for rng in _RANGE.finditer(s):
        if rng.group(1).strip() != RATE_INTERVAL:
            problems.append(f"range [{rng.group(1)}] instead of [{RATE_INTERVAL}]")
    for start, end, name in metric_names(expr):
        if not is_counter_series(name):
            continue
        before = s[:start]
        after = s[end:]
        fn = re.search(r"\b(" + "|".join(RATE_FUNCTIONS) + r")\s*\(\s*$", before)
        rng = re.match(r"\s*(\{[^{}]*\})?\s*\[\s*" + re.escape(RATE_INTERVAL) + r"\s*\]\s*\)", after)
        if not (fn and rng):
            problems.append(f"counter {name} outside rate/increase/irate(...[{RATE_INTERVAL}])")
    return problems


_VAR = re.compile(r"\$(?:\{(\w+)(?::[^}]*)?\}|(\w+))")


def variables_used(text: str) -> set[str]:
    return {a or b for a, b in _VAR.findall(text)}


def expand(text: str, values: dict[str, str]) -> str:
    """Substitute `$var`, `${var}` and `${var:format}` like Grafana does (values are used as given)."""
    def repl(m):
        name = m.group(1) or m.group(2)
        if name not in values:
            raise KeyError(f"no value for ${name} in {text!r}")
        return values[name]
    return _VAR.sub(repl, text)


# ------------------------------------------------------------------------------------------------
# Rules
# ------------------------------------------------------------------------------------------------

def rule_panel_metadata(dash: dict) -> list[str]:
    """Every panel has a title, a description and a unit; and at least one query."""
    problems = []
    for p in panels(dash):
        if not str(p.get("title", "")).strip():
            problems.append(f"{where(dash, p)}: no title")
        if not str(p.get("description", "")).strip():
            problems.append(f"{where(dash, p)}: no description")
        if not str(p.get("fieldConfig", {}).get("defaults", {}).get("unit", "")).strip():
            problems.append(f"{where(dash, p)}: no unit (fieldConfig.defaults.unit)")
        targets = p.get("targets") or []
        if not targets or any(not str(t.get("expr", "")).strip() for t in targets):
            problems.append(f"{where(dash, p)}: missing or empty query")
    return problems


def _uses_datasource_variable(ref) -> bool:
    return isinstance(ref, dict) and ref.get("uid") == DATASOURCE_UID and ref.get("type") == "prometheus"


def rule_datasource(dash: dict) -> list[str]:
    """A `datasource` variable of type datasource (prometheus), and every panel, query, query
    variable and annotation uses it."""
    problems = []
    variables = {v.get("name"): v for v in dash.get("templating", {}).get("list", [])}
    ds = variables.get("datasource")
    if not ds or ds.get("type") != "datasource" or ds.get("query") != "prometheus":
        problems.append(f"{where(dash)}: no datasource variable of type datasource/prometheus")
    for p in panels(dash):
        if not _uses_datasource_variable(p.get("datasource")):
            problems.append(f"{where(dash, p)}: panel datasource is not {DATASOURCE_UID}")
        for t in p.get("targets", []):
            if not _uses_datasource_variable(t.get("datasource")):
                problems.append(f"{where(dash, p, t)}: query datasource is not {DATASOURCE_UID}")
    for v in variables.values():
        if v.get("type") == "query" and not _uses_datasource_variable(v.get("datasource")):
            problems.append(f"{where(dash)}: variable {v.get('name')} does not use {DATASOURCE_UID}")
    for a in dash.get("annotations", {}).get("list", []):
        if not a.get("builtIn") and not _uses_datasource_variable(a.get("datasource")):
            problems.append(f"{where(dash)}: annotation {a.get('name')!r} does not use {DATASOURCE_UID}")
    return problems


def rule_counters(dash: dict) -> list[str]:
    return [f"{where(dash, p, t)}: {problem}"
            for p, t in queries(dash) for problem in counter_problems(t.get("expr", ""))]


def rule_variables_defined(dash: dict) -> list[str]:
    """Every `$var` in a query, variable query or annotation is a dashboard or Grafana variable."""
    defined = {v.get("name") for v in dash.get("templating", {}).get("list", [])} | BUILTIN_VARIABLES
    texts = [(f"{where(dash, p, t)}", t.get("expr", "")) for p, t in queries(dash)]
    texts += [(f"{where(dash)} variable {v.get('name')}", str(v.get("query", "")))
              for v in dash.get("templating", {}).get("list", []) if v.get("type") == "query"]
    texts += [(f"{where(dash)} annotation {a.get('name')!r}", a.get("expr", ""))
              for a in dash.get("annotations", {}).get("list", [])]
    return [f"{loc}: undefined variable ${name}"
            for loc, text in texts for name in sorted(variables_used(text) - defined)]


def rule_grid(dash: dict) -> list[str]:
    """gridPos inside the 24-column grid, positive sizes, no two panels overlapping."""
    problems = []
    boxes = []
    for p in all_panels_with_rows(dash):
        g = p.get("gridPos") or {}
        x, y, w, h = (g.get(k) for k in ("x", "y", "w", "h"))
        if not all(isinstance(v, int) for v in (x, y, w, h)):
            problems.append(f"{where(dash, p)}: incomplete gridPos {g}")
            continue
        if x < 0 or y < 0 or w <= 0 or h <= 0 or x + w > GRID_COLUMNS:
            problems.append(f"{where(dash, p)}: gridPos {g} outside the {GRID_COLUMNS}-column grid")
        for other, (ox, oy, ow, oh) in boxes:
            if x < ox + ow and ox < x + w and y < oy + oh and oy < y + h:
                problems.append(f"{where(dash, p)}: overlaps panel {other.get('id')} {other.get('title')!r}")
        boxes.append((p, (x, y, w, h)))
    return problems


def rule_panel_ids(dash: dict) -> list[str]:
    ids = [p.get("id") for p in all_panels_with_rows(dash)]
    dupes = sorted({i for i in ids if ids.count(i) > 1}, key=str)
    missing = [p.get("title") for p in all_panels_with_rows(dash) if not isinstance(p.get("id"), int)]
    return ([f"{where(dash)}: duplicate panel id {i}" for i in dupes]
            + [f"{where(dash)}: panel {t!r} has no id" for t in missing])


def rule_exemplars(dash: dict) -> list[str]:
    """Latency histograms (`*_duration_seconds_bucket`) in time series and heatmaps ask for exemplars,
    so that a spike links to its trace."""
    problems = []
    for p, t in queries(dash):
        if p.get("type") not in ("timeseries", "heatmap"):
            continue
        names = [n for _, _, n in metric_names(t.get("expr", ""))]
        if any(n.endswith("_duration_seconds_bucket") for n in names) and not t.get("exemplar"):
            problems.append(f"{where(dash, p, t)}: latency histogram without exemplar: true")
    return problems


def rule_alert_annotation(dash: dict) -> list[str]:
    """Firing alerts (Prometheus ALERTS) are annotated."""
    for a in dash.get("annotations", {}).get("list", []):
        if "ALERTS" in a.get("expr", "") and a.get("enable"):
            return []
    return [f"{where(dash)}: no enabled annotation on the ALERTS metric"]


RULES = [rule_panel_metadata, rule_datasource, rule_counters, rule_variables_defined, rule_grid,
         rule_panel_ids, rule_exemplars, rule_alert_annotation]


def lint(dash: dict) -> list[str]:
    return [problem for rule in RULES for problem in rule(dash)]


def rule_unique_uids(dashboards: list[dict]) -> list[str]:
    uids = [d.get("uid") for d in dashboards]
    problems = [f"dashboard without uid: {d.get('title')!r}" for d in dashboards if not d.get("uid")]
    problems += [f"duplicate dashboard uid {u}" for u in sorted({u for u in uids if u and uids.count(u) > 1})]
    return problems
