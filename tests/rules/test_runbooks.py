"""Every alert's runbook_url resolves to a section of docs/runbooks.md that says what to do."""
from __future__ import annotations

import re

from rules_support import REPO, RUNBOOKS, alert_rules, recording_rules


def github_anchor(heading: str) -> str:
    """GitHub's heading anchor: lowercase, drop punctuation except - and _, spaces become -."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def sections() -> dict[str, str]:
    text = RUNBOOKS.read_text()
    parts = re.split(r"^## (.+)$", text, flags=re.M)
    return {github_anchor(parts[i]): parts[i + 1] for i in range(1, len(parts), 2)}


def test_anchor_rule():
    assert github_anchor("PipelineHighErrorRate") == "pipelinehigherrorrate"
    assert github_anchor("What to do: first steps") == "what-to-do-first-steps"


def test_every_runbook_url_anchor_exists():
    anchors = sections()
    for rule in alert_rules():
        url = rule["annotations"]["runbook_url"]
        path, _, anchor = url.partition("#")
        assert path.endswith("/docs/runbooks.md"), url
        assert anchor in anchors, f"{rule['alert']}: no '## ' heading with anchor #{anchor} in docs/runbooks.md"


def test_every_section_has_impact_diagnosis_and_actions():
    names = {r["alert"] for r in alert_rules()}
    found = sections()
    for name in names:
        body = found[name.lower()]
        for part in ("**Impact.**", "**Diagnosis", "**Actions.**"):
            assert part in body, f"## {name}: missing {part}"
        assert "```promql" in body, f"## {name}: no PromQL to paste"
    # No stale sections for alerts that no longer exist.
    assert set(found) == {n.lower() for n in names}, set(found) ^ {n.lower() for n in names}


def test_runbook_promql_uses_known_metrics():
    """Queries in the runbooks read catalogued metrics or recorded series, so they keep working."""
    catalogue = set(re.findall(r"^\| `([a-z_:][a-z0-9_:]*)` \|", (REPO / "docs/metrics.md").read_text(), re.M))
    known = set(catalogue) | {"up", "ALERTS"} | {r["record"] for r in recording_rules()}
    for fam in catalogue:
        known |= {fam + s for s in ("_bucket", "_sum", "_count")}
    words = {"sum", "max", "by", "on", "and", "or", "rate", "increase", "histogram_quantile", "absent", "count",
             "sort_desc", "topk", "ignoring", "group_left", "offset", "unless", "without"}
    for block in re.findall(r"```promql\n(.*?)```", RUNBOOKS.read_text(), re.S):
        expr = re.sub(r'\{[^}]*\}', "", block)
        expr = re.sub(r"\b(by|on|ignoring|without|group_left) \([^)]*\)", "", expr)
        expr = re.sub(r"\[[^\]]*\]", "", expr)
        expr = re.sub(r"\b\d+(\.\d+)?[smhdwy]?\b", "", expr)
        for token in re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", expr):
            assert token in words or token in known, f"runbook PromQL reads unknown series {token}:\n{block}"


def test_alerts_doc_links_every_alert():
    doc = (REPO / "docs" / "alerts.md").read_text()
    for rule in alert_rules():
        assert f"[{rule['alert']}](runbooks.md#{rule['alert'].lower()})" in doc
