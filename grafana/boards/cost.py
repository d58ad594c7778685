"""Cost Optimization: what does the pipeline cost, who and what drives it, and what would help?"""
from .common import (
    MODE,
    MODEL,
    SERVICE,
    TENANT,
    Q,
    Row,
    dashboard,
    table,
    quantile,
    ratio,
    stat,
    sum_rate,
    timeseries,
)

UID = "spanscope-cost"

COST = "llm_cost_usd_total"
REQ_COST = "pipeline_request_cost_usd_total"
SAVED = "llm_cost_saved_usd_total"
HOUR = 3600
MONTH = 730 * 3600  # the average month, in seconds


def per_hour(expr: str) -> str:
    return f"{expr} * {HOUR}"


def build():
    overview = Row("Overview", [
        stat("Spend rate", "LLM cost in USD per hour at the current rate (priced tokens only).",
             "currencyUSD", Q(per_hour(sum_rate(COST, SERVICE, MODEL))), decimals=4),
        stat("Projected monthly cost", "The current spend rate extrapolated to an average month (730 h).",
             "currencyUSD", Q(f"{sum_rate(COST, SERVICE, MODEL)} * {MONTH}"), decimals=2),
        stat("Cost per request", "Mean LLM cost of one request (sum over its trace's LLM calls).",
             "currencyUSD",
             Q(ratio(sum_rate(REQ_COST, SERVICE, MODE), sum_rate("pipeline_requests_total", SERVICE, MODE))),
             decimals=6),
        stat("Saved by caching", "USD per hour avoided by prompt and response caching.", "currencyUSD",
             Q(per_hour(sum_rate(SAVED, SERVICE, MODEL))), decimals=4),
    ])
    breakdown = Row("Where the money goes", [
        timeseries("Cost by model", "USD per hour per response model.", "currencyUSD",
                   Q(per_hour(sum_rate(COST, SERVICE, MODEL, by=("model",))), "{{model}}"), stack=True),
        timeseries("Cost by token type", "USD per hour by priced token type: uncached input, output, "
                   "cache read, cache creation.", "currencyUSD",
                   Q(per_hour(sum_rate(COST, SERVICE, MODEL, by=("token_type",))), "{{token_type}}"), stack=True),
        timeseries("Cost by tenant", "USD per hour attributed to requests, per tenant.", "currencyUSD",
                   Q(per_hour(sum_rate(REQ_COST, SERVICE, MODE, TENANT, by=("tenant",))), "{{tenant}}"),
                   stack=True),
        timeseries("Cost by mode", "USD per hour attributed to requests, per pipeline.mode.", "currencyUSD",
                   Q(per_hour(sum_rate(REQ_COST, SERVICE, MODE, TENANT, by=("mode",))), "{{mode}}"), stack=True),
        timeseries("Cost per request by mode", "Mean LLM cost of one request per pipeline.mode.", "currencyUSD",
                   Q(ratio(sum_rate(REQ_COST, SERVICE, MODE, by=("mode",)),
                           sum_rate("pipeline_requests_total", SERVICE, MODE, by=("mode",))), "{{mode}}")),
        timeseries("Cost saved by caching", "USD per hour avoided, by source (prompt_cache, response_cache) "
                   "and model.", "currencyUSD",
                   Q(per_hour(sum_rate(SAVED, SERVICE, MODEL, by=("source", "model"))), "{{source}} {{model}}"),
                   stack=True),
    ])
    tokens = Row("Tokens", [
        timeseries("Tokens by type", "Tokens per second by type; input includes cached input, reasoning is "
                   "part of output.", "cps",
                   Q(sum_rate("llm_tokens_total", SERVICE, MODEL, by=("token_type",)), "{{token_type}}")),
        timeseries("Tokens per call (p95)", "95th percentile tokens per GenAI call (gen_ai.client.token.usage) "
                   "by token type and model.", "short",
                   Q(quantile(0.95, "gen_ai_client_token_usage", 'gen_ai_response_model=~"$model"',
                              by=("gen_ai_token_type", "gen_ai_response_model")),
                     "{{gen_ai_response_model}} {{gen_ai_token_type}}")),
        timeseries("Unpriced tokens", "Tokens per second of models without a price (in neither the price "
                   "database nor the overrides): their cost is not counted anywhere. Add them to pricing.file.", "cps",
                   Q(sum_rate("llm_unpriced_tokens_total", SERVICE, by=("model",)), "{{model}}")),
    ])
    # Every budget of the exporter's pricing.budgets_file (llm_budget_usd), day and month together;
    # not filtered by the variables: budgets are few, and a budget is a tenant's or a service's.
    both = ("scope_name_period:llm_budget_spent:ratio_increase1d{suffix} or "
            "scope_name_period:llm_budget_spent:ratio_increase30d{suffix}")
    budgets = Row("Budgets", [
        table("Budgets", "Each budget of pricing.budgets_file: USD per period, the share spent over the last day "
              "or 30 days, the burn rate over the last hour (1 spends the budget exactly over its period; "
              "LLMBudgetBurn pages at 14.4) and the time until the rest is spent at that rate.", "short",
              Q("scope_name_period:llm_budget_usd:max", "budget"),
              Q(both.format(suffix=""), "spent"),
              Q("scope_name_period:llm_budget_burn:rate1h", "burn"),
              Q(both.format(suffix=":exhaustion_seconds_rate1h"), "exhausted in"),
              columns={"Value #A": "Budget", "Value #B": "Spent", "Value #C": "Burn rate (1h)",
                       "Value #D": "Spent in"},
              units={"Budget": "currencyUSD", "Spent": "percentunit", "Burn rate (1h)": "x", "Spent in": "s"}),
        timeseries("Budget burn rate", "Spend rate over the last hour / the rate that spends the budget "
                   "exactly over its period, per budget.", "x",
                   Q("scope_name_period:llm_budget_burn:rate1h", "{{scope}} {{name}} {{period}}")),
    ])
    return dashboard(
        UID, "spanscope · Cost Optimization",
        "LLM spend by model, token type, tenant and mode; cost per request, projections and cache savings.",
        tags=["cost"], variables=["service", "mode", "tenant", "model"], rows=[overview, budgets, breakdown, tokens])
