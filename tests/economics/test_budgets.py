"""Budgets: the file's validation, the llm_budget_usd gauges, budgeted tenants past the tenant cap,
and each budget's state in the metrics API's costs view."""
import re
from decimal import Decimal

import pytest

from protospans import request, tree
from spanscope.analysis.windows import MetricsApi
from spanscope.app import Exporter
from spanscope.config import ConfigError, load
from spanscope.interpret.budgets import load_budgets
from spanscope.metrics.recorder import OTHER

# gpt-4o-mini at its published list price: 0.15 in, 0.60 out per million tokens.
LLM = {"gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-4o-mini",
       "gen_ai.usage.input_tokens": 1000, "gen_ai.usage.output_tokens": 100}
CALL_USD = (1000 * Decimal("0.15") + 100 * Decimal("0.60")) / 1_000_000

BUDGETS = "tenants:\n  acme: {day: 0.5, month: 10}\nservices:\n  rag-api: {month: 0.01}\n"


@pytest.mark.parametrize("text, message", [
    ("tenants:\n  acme: {week: 5}\n", "tenants.acme.week: unknown key"),
    ("tenants:\n  acme: {day: -1}\n", "tenants.acme.day: expected a positive amount in USD, got -1"),
    ("tenants:\n  acme: {day: abc}\n", "tenants.acme.day: expected a positive amount in USD, got 'abc'"),
    ("services: [rag-api]\n", "services: expected a mapping"),
    ("teams: {}\n", "teams: unknown key (expected tenants, services)"),
])
def test_bad_budget_files_name_the_key(tmp_path, text, message):
    with pytest.raises(ConfigError, match=f"pricing.budgets_file {budgets_file(tmp_path, text)}: {re.escape(message)}"):
        load_budgets(budgets_file(tmp_path, text))


def test_budgets_are_exact_decimals(tmp_path):
    budgets = load_budgets(budgets_file(tmp_path, "tenants:\n  acme: {day: 0.1}\n"))
    assert [(b.scope, b.name, b.period, b.usd) for b in budgets] == [("tenant", "acme", "day", Decimal("0.1"))]


def budgets_file(tmp_path, text: str) -> str:
    f = tmp_path / "budgets.yaml"
    f.write_text(text)
    return str(f)


@pytest.fixture
def exporter(tmp_path):
    return Exporter(load(None, ["traces.finish_delay=0", "limits.tenant_values=2",
                                f"pricing.budgets_file={budgets_file(tmp_path, BUDGETS)}"]))


def test_budgets_are_exported_as_gauges(exporter):
    assert exporter.metrics.budget.series.keys() == {("tenant", "acme", "day"), ("tenant", "acme", "month"),
                                                    ("service", "rag-api", "month")}
    assert exporter.metrics.budget.series[("tenant", "acme", "month")][0] == 10


def test_a_budgeted_tenant_keeps_its_label_past_the_tenant_cap_and_its_budget_state_shows(exporter):
    for tenant in (["t-1", "t-2", "t-3", "acme"]):
        spans = tree(("gateway", 0, 10, {"tenant.id": tenant}, [("llm_inference", 1, 9, LLM)]))
        exporter.ingest.process(request(spans, "rag-api"), "test")
    exporter.ingest.finish_traces(everything=True)
    tenants = {key[2] for key in exporter.metrics.request_cost.series}
    assert "acme" in tenants and OTHER in tenants  # the cap (2) is full: t-3 is __other__, acme is not
    api = MetricsApi(exporter.rollups, exporter.metrics, started_at=0, clock=lambda: 3600, budgets=exporter.budgets)
    states = {(s["scope"], s["name"], s["period"]): s for s in api.budget_states()}
    acme_month = states[("tenant", "acme", "month")]
    assert acme_month["spent_usd_since_start"] == float(CALL_USD)
    assert acme_month["projected_period_usd"] == float(CALL_USD * 730)  # one hour of uptime, 730 h a month
    assert acme_month["state"] == "within"
    rag_api = states[("service", "rag-api", "month")]
    assert rag_api["spent_usd_since_start"] == float(4 * CALL_USD)
    assert rag_api["state"] == "over"  # 4 calls an hour: 0.0438 USD a month > 0.01
    assert rag_api["projected_ratio"] == float(4 * CALL_USD * 730 / Decimal("0.01"))
