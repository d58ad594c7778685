"""LLM spend budgets: USD per day and per month for tenants and services, from `pricing.budgets_file`.

    tenants:
      acme: {day: 50, month: 1000}
    services:
      rag-api: {month: 5000}

The exporter only declares them (`llm_budget_usd`); Prometheus compares the spend with them
(prometheus/generate_rules.py: spent ratio, projected exhaustion, burn-rate alerts).
"""
from __future__ import annotations

from decimal import Decimal
from typing import Annotated, NamedTuple

from pydantic import BeforeValidator, Field, ValidationError

from ..config import ConfigError, Strict, expect, explain, read_yaml

SCOPES = {"tenants": "tenant", "services": "service"}

def _exact(v):
    """A YAML number as the exact decimal it is written as (0.1 is 0.1, not its binary approximation)."""
    return Decimal(str(v)) if isinstance(v, (int, float)) and not isinstance(v, bool) else v


Usd = Annotated[Decimal, BeforeValidator(_exact), Field(gt=0, allow_inf_nan=False),
                expect("a positive amount in USD")]


class Limits(Strict):
    day: Usd | None = None
    month: Usd | None = None


Name = Annotated[str, Field(min_length=1)]


class BudgetsFile(Strict):
    tenants: dict[Name, Limits] = {}
    services: dict[Name, Limits] = {}


class Budget(NamedTuple):
    scope: str    # tenant or service
    name: str
    period: str   # day or month
    usd: Decimal


def load_budgets(path: str | None) -> list[Budget]:
    """The budgets of the file `path` names (none without a file); ConfigError naming the bad key."""
    if not path:
        return []
    doc = read_yaml(path, "pricing.budgets_file") or {}
    try:
        parsed = BudgetsFile.model_validate(doc)
    except ValidationError as exc:
        raise ConfigError(f"pricing.budgets_file {path}: "
                          f"{explain(exc, BudgetsFile, 'unknown key', 'budgets')}") from None
    return [Budget(SCOPES[section], name, period, usd)
            for section in SCOPES for name, limits in getattr(parsed, section).items()
            for period, usd in limits.model_dump(exclude_none=True).items()]

