"""The stress scenario's load curve and its breaking-point analysis, on series made up here with a
known answer (the analysis runs after every stress run, on real series; these check its arithmetic)."""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "loadtest"))

import breaking  # noqa: E402
from scenarios import SCENARIOS, users_at  # noqa: E402

START = 1_000_000.0
LIMITS = {"max_connections": 1000, "ingest_queue": 64, "sdk_queue": 65536, "cpus": 2}


def test_stress_curve_ramps_holds_then_goes_beyond():
    s = SCENARIOS["stress"].overridden(users=1000, duration_s=600, ramp_s=120, beyond_users=3000, beyond_s=300)
    assert s.stages() == [(0.0, 0), (120.0, 1000), (600.0, 1000), (900.0, 3000)]
    assert s.total_s == 900
    assert [users_at(s.stages(), t) for t in (60, 120, 400, 750, 900)] == [500, 1000, 1000, 2000, 3000]
    assert SCENARIOS["stress"].overridden(beyond_users=0).stages()[-1] == (1200.0, 1000)   # 0: no step beyond
    assert SCENARIOS["baseline"].total_s == SCENARIOS["baseline"].duration_s


def users(t: float) -> float:
    """0 -> 1000 over 100 s, held to 200 s, then 1000 -> 2000 at 300 s."""
    return users_at([(0, 0), (100, 1000), (200, 1000), (300, 2000)], t)


def run(p95_over_users: float = 1500, connections_per_user: float = 0.8, refused_from: float | None = 260):
    ts = [START + i for i in range(0, 301)]
    history = [{"t": t, "users": int(users(t - START)), "rps": users(t - START) / 7, "failures_per_s": 0.0,
                "chat_p95_ms": 4000 if users(t - START) > p95_over_users else 2500} for t in ts]
    # The machine is busy throughout with other work: shown, never the stack's first resource.
    samples = [{"t": t, "machine_busy": 0.99, "cpu": {"demo": users(t - START) / 2000, "exporter": 0.05},
                "fds": {"exporter": 20 + connections_per_user * users(t - START)},
                "demo": {"spans": {"ended": 10, "exported": 10, "export_failed": 0}}} for t in ts[::2]]
    prom = {"timeline": {"refused": [(t, 0.0 if refused_from is None or t - START < refused_from else 5.0)
                                     for t in ts[::5]]}}
    s = breaking.series(history, samples, prom)
    return breaking.analyse(s, START, (100, 200), LIMITS)


def test_breaking_point_and_first_resource():
    r = run()
    # Client p95 over 3 s from the first second with more than 1 500 users: 1 000 + 10 a second from 200 s.
    assert r["breaking"]["why"] == "client p95"
    assert r["breaking"]["t_s"] == 251 and r["breaking"]["users"] == 1510
    assert r["criteria"]["failures"] is None and r["criteria"]["client p95"] == r["breaking"]
    # Then (251-271 s, 1 510-1 710 users) the connections were furthest past their saturation level.
    assert r["breaking"]["resources_vs_saturation"][0][0] == "connections.exporter"
    # Connections (the first 20 descriptors are the idle exporter's) reach 95 % of 1 000 when the users
    # reach 950 / 0.8 = 1 187.5, at 218.75 s: the first sample (every 2 s) after is at 220 s.
    first = r["first_resource"]
    assert "connections" in first["what"] and first["t_s"] == 220 and first["users"] == 1200
    by_key = {x["key"]: x for x in r["resources"]}
    assert by_key["connections.exporter"]["at_scenario_load"] == 800
    # The demo's CPU reaches 0.8 cores (a busy event loop) at 1 600 users, at 260 s, after the break.
    assert by_key["cpu.demo"]["hit_s"] == 260
    assert by_key["cpu.exporter"]["hit_s"] is None
    assert by_key["cpu.stack"]["hit_s"] is None and by_key["cpu.stack"]["peak"] == 1.05   # 2 000 users
    assert by_key["machine"]["hit_s"] == 0
    refused = {e["key"]: e for e in r["events"]}["refused"]
    assert refused["first_s"] == 260 and refused["users"] == 1600
    assert r["scenario_load"]["users"] == 1000 and r["scenario_load"]["client_p95_s"] == 2.5


def test_nothing_broken_names_the_resource_nearest_its_limit():
    r = run(p95_over_users=10**9, connections_per_user=0.5, refused_from=None)
    assert r["breaking"] is None
    # At 1 000 users: connections 500 of 1 000 (50 %, saturated at 95 %), demo CPU 0.5 of 1 core (at 80 %).
    assert "CPU of the demo" in r["nearest_at_scenario_load"]["what"]
    # The demo's CPU still reaches 0.8 cores beyond the scenario's load (1 600 users), before the
    # connections reach 950 (1 900 users).
    assert "CPU of the demo" in r["first_resource"]["what"]
