"""Circuit Breakers & Routing: which dependencies are cut off, how often do we fall back, and where
do requests get routed?"""
from .common import (
    BREAKER,
    SERVICE,
    Q,
    Row,
    agg,
    bargauge,
    dashboard,
    or_zero,
    ratio,
    sel,
    stat,
    state_timeline,
    sum_increase,
    sum_rate,
    timeseries,
)

UID = "spanscope-circuit-breakers"

STATE = "circuit_breaker_state"
CALLS = "circuit_breaker_calls_total"
FALLBACKS = "pipeline_fallbacks_total"
ROUTES = "pipeline_routing_decisions_total"

# The one-hot gauge as one number per breaker: closed 0, half_open 1, open 2 (max wins, so a
# missing state series does not hide the others; max across replicas, never sum).
def _state(state: str) -> str:
    return sel(STATE, SERVICE, BREAKER, f'state="{state}"')


STATE_CODE = ("max by (service, breaker) (\n"
              f"    ({_state('open')} * 2)\n"
              f"  or ({_state('half_open')} * 1)\n"
              f"  or ({_state('closed')} * 0)\n)")


def breakers_in(state: str) -> str:
    one_hot = agg("max", _state(state), ("service", "breaker"))
    return f"sum({one_hot})"


def build():
    overview = Row("Overview", [
        stat("Open breakers", "Breakers currently open (calls are not permitted).", "short",
             Q(breakers_in("open")), steps=((None, "green"), (1, "red"))),
        stat("Half-open breakers", "Breakers probing whether the dependency recovered.", "short",
             Q(breakers_in("half_open")), steps=((None, "green"), (1, "orange"))),
        stat("Calls not permitted", "Share of breaker-guarded calls rejected by an open breaker.", "percentunit",
             Q(ratio(or_zero(sum_rate(CALLS, SERVICE, BREAKER, 'outcome="not_permitted"')),
                     sum_rate(CALLS, SERVICE, BREAKER))),
             steps=((None, "green"), (0.01, "orange"), (0.1, "red"))),
        stat("Fallback ratio", "Fallbacks taken / requests.", "percentunit",
             Q(ratio(or_zero(sum_rate(FALLBACKS, SERVICE)), sum_rate("pipeline_requests_total", SERVICE))),
             steps=((None, "green"), (0.05, "orange"), (0.2, "red"))),
        state_timeline("Breaker state", "State of each circuit breaker over time (from the one-hot "
                       "circuit_breaker_state gauge): closed, half_open, open.",
                       Q(STATE_CODE, "{{service}} {{breaker}}"),
                       {0: ("closed", "green"), 1: ("half_open", "orange"), 2: ("open", "red")}),
    ])
    breakers = Row("Breakers", [
        timeseries("Calls by outcome", "Breaker-guarded calls per second: success, failure, not_permitted.",
                   "ops", Q(sum_rate(CALLS, SERVICE, BREAKER, by=("breaker", "outcome")),
                            "{{breaker}} {{outcome}}"), stack=True),
        timeseries("State transitions", "State changes per breaker in each interval (from -> to).", "short",
                   Q(sum_increase("circuit_breaker_transitions_total", SERVICE, BREAKER,
                                  by=("breaker", "from", "to")), "{{breaker}}: {{from}} -> {{to}}"), bars=True),
        timeseries("Failure ratio by breaker", "Failed calls / permitted calls per breaker: what drives it "
                   "towards open.", "percentunit",
                   Q(ratio(sum_rate(CALLS, SERVICE, BREAKER, 'outcome="failure"', by=("breaker",)),
                           sum_rate(CALLS, SERVICE, BREAKER, 'outcome!="not_permitted"', by=("breaker",))),
                     "{{breaker}}"), min_val=0, max_val=1),
    ])
    routing = Row("Fallbacks and routing", [
        timeseries("Fallbacks", "Fallbacks taken per second, from -> to.", "ops",
                   Q(sum_rate(FALLBACKS, SERVICE, by=("from", "to")), "{{from}} -> {{to}}"), stack=True),
        timeseries("Routing decisions", "Routing decisions per second by route and reason.", "ops",
                   Q(sum_rate(ROUTES, SERVICE, by=("route", "reason")), "{{route}} ({{reason}})"), stack=True),
        bargauge("Traffic share by route", "Share of routing decisions per route now.", "percentunit",
                 Q(f"{sum_rate(ROUTES, SERVICE, by=('route',))}\n/ scalar({sum_rate(ROUTES, SERVICE)})",
                   "{{route}}", instant=True), max_val=1),
    ])
    return dashboard(
        UID, "spanscope · Circuit Breakers & Routing",
        "Circuit breaker states and transitions, calls by outcome, fallbacks and routing decisions.",
        tags=["resilience"], variables=["service", "breaker"], rows=[overview, breakers, routing])
