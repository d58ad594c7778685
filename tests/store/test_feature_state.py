"""Feature state, rollout decisions and stage evidence in the store's database (SQLite and a real
PostgreSQL): replicas share one state without losing changes, one of them decides, and a stage's
evidence is counted from its own requests only."""
from __future__ import annotations

import math
import random
import threading
import time

import pytest
from spanscope.analysis.features import Features, load_catalogue
from spanscope.analysis.guards import Guard, StageSample, judge
from spanscope.store.db import parse_url
from spanscope.store.feature_states import DatabaseStates
from test_store import opened, summary, written


def replica(url: str, clock=time.time) -> Features:
    """One exporter's feature state on the shared database (the store migrated it first)."""
    return Features(load_catalogue(None), DatabaseStates(parse_url(url)), clock=clock)


@pytest.fixture
def database(store_url):
    with opened(store_url):  # creates the tables
        pass
    return store_url


def test_a_change_on_one_replica_is_served_by_the_other_after_a_sync(database):
    a, b = replica(database), replica(database)
    try:
        a.update("conversation_context", enabled=False)
        a.start_rollout("mlx_backend", "canary", 5)
        assert b.state["conversation_context"].enabled is True  # not synced yet
        b.reload()
        assert b.state["conversation_context"].enabled is False
        assert (b.state["mlx_backend"].rollout_percentage, b.state["mlx_backend"].schedule) == (5, [5, 25, 50, 100])
        # b changes the feature from its stale copy: the change applies to the stored state, a's kept
        b.advance("mlx_backend", +1)
        a.reload()
        assert a.state["mlx_backend"].rollout_percentage == 25
        # a replica that restarts resumes where the rollout was
        restarted = replica(database)
        assert restarted.state["mlx_backend"].step == 1 and restarted.state["conversation_context"].enabled is False
        assert [d["decision"] for d in restarted.decisions("mlx_backend")] == ["manual_advance", "start"]
    finally:
        a.states.close()
        b.states.close()


def test_concurrent_changes_from_two_replicas_are_all_applied(database):
    """Each change is a read-modify-write under the row's lock: 2 × 40 increments give 80."""
    states = [DatabaseStates(parse_url(database)) for _ in range(2)]

    def bump(doc):
        doc = dict(doc or {"n": 0})
        doc["n"] += 1
        return doc

    def work(s):
        for _ in range(40):
            s.apply("counter", bump)

    threads = [threading.Thread(target=work, args=(s,)) for s in states]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    try:
        assert states[0].load()["counter"]["n"] == 80
    finally:
        for s in states:
            s.close()


def test_a_decision_refused_by_the_change_is_not_recorded(database):
    a = replica(database)
    try:
        a.start_rollout("mlx_backend", "linear", 50)
        stale = (0, a.state["mlx_backend"].stage_started_at - 1)
        with pytest.raises(Exception, match="moved since it was judged"):
            a.roll_back("mlx_backend", "guard", "breached", {}, stale)
        assert a.state["mlx_backend"].rollout_percentage == 50
        assert [d["decision"] for d in a.decisions("mlx_backend")] == ["start"]
    finally:
        a.states.close()


def stage_sample(database, stage_start: float, p95_factor: float):
    """mlx_backend's stage evidence, on / off, read by a DatabaseStates of its own."""
    states = DatabaseStates(parse_url(database))
    try:
        return states.stage_sample("mlx_backend", stage_start, "off", "on", p95_factor)
    finally:
        states.close()


def test_stage_evidence_counts_the_stages_requests_by_variant(database):
    """Sums, the control's p95 (nearest rank) and the treatment's slow requests, against Python's own count."""
    rng = random.Random(5)
    stage_start = time.time() - 100
    rows = []
    with opened(database, flush_interval=0.05) as store:
        store.start()
        for i in range(400):
            before = i < 50  # requests of an earlier stage: not counted
            variant = ("on", "off", "other")[i % 3]
            r = dict(duration=rng.lognormvariate(-1, 0.5), error=rng.random() < (0.2 if variant == "on" else 0.05),
                     quality=rng.random() if i % 4 else None, variant=variant,
                     start=stage_start - 10 if before else stage_start + i * 0.1)
            store.observe(summary(i, start=r["start"], duration=r["duration"], error=r["error"], quality=r["quality"],
                                  variants={"mlx_backend": variant, "prompt": "v2"}))
            if not before:
                rows.append(r)
        written(store, 400)
    arms, p95, slower = stage_sample(database, stage_start, 1.5)
    sample = StageSample.from_store(Guard(), arms, p95, slower)
    for name, arm in (("off", sample.control), ("on", sample.treatment)):
        mine = [r for r in rows if r["variant"] == name]
        assert arm.requests == len(mine) and arm.errors == sum(r["error"] for r in mine)
        assert arm.latency.total == pytest.approx(sum(r["duration"] for r in mine))
        assert arm.latency.squares == pytest.approx(sum(r["duration"] ** 2 for r in mine))
        qualities = [r["quality"] for r in mine if r["quality"] is not None]
        assert arm.quality.n == len(qualities) and arm.quality.total == pytest.approx(sum(qualities))
    control = sorted(r["duration"] for r in rows if r["variant"] == "off")
    assert p95 == pytest.approx(control[math.ceil(0.95 * len(control)) - 1])
    assert slower == sum(r["duration"] > p95 * 1.5 for r in rows if r["variant"] == "on")


def test_stage_evidence_leaves_out_requests_a_cohort_or_rule_forced(database):
    """A beta cohort forced "on" (reason targeting_match) fails and is slow; the randomly assigned
    requests are healthy. Counted, the cohort alone would roll the rollout back: the stage's evidence
    leaves it out, and requests whose evaluation failed, and keeps requests of no known reason."""
    stage_start = time.time() - 100
    counted = {"on": 0, "off": 0}
    with opened(database, flush_interval=0.05) as store:
        store.start()
        for i in range(400):
            variant = ("on", "off")[i % 2]
            if i < 300:  # split: randomly assigned; another flag's reason is not this flag's
                reasons = {"mlx_backend": "split", "prompt": "targeting_match"}
            elif i < 340:  # stored before reasons were, or sent by an instrumentation without one
                reasons = {}
            elif i < 370:  # forced into the treatment by a cohort
                variant, reasons = "on", {"mlx_backend": "targeting_match"}
            else:  # the evaluation failed: the caller's default
                variant, reasons = "off", {"mlx_backend": "error"}
            forced = reasons.get("mlx_backend") in ("targeting_match", "error")
            bad = variant == "on" and forced
            store.observe(summary(i, start=stage_start + 1 + i * 0.1, error=bad, quality=0.1 if bad else 0.8,
                                  duration=5.0 if bad else 0.2 + (i % 7) * 0.01,
                                  variants={"mlx_backend": variant, "prompt": "v2"}, variant_reasons=reasons))
            if not forced:
                counted[variant] += 1
        written(store, 400)
    arms, p95, slower = stage_sample(database, stage_start, 1.25)
    guard = Guard(max_error_ratio_increase=0.02, max_p95_latency_increase=0.25, min_quality_score=0.6,
                  min_requests_per_stage=100)
    sample = StageSample.from_store(guard, arms, p95, slower)
    assert (sample.control.requests, sample.treatment.requests) == (counted["off"], counted["on"]) == (170, 170)
    assert (sample.treatment.errors, sample.treatment_slower) == (0, 0)
    assert judge(guard, sample, stage_age=100, stage_seconds=60, auto_advance=True).decision == "advance"


def test_one_postgresql_replica_decides_and_another_takes_over_when_it_goes(request, tmp_path):
    from store_backends import empty_database
    with empty_database(request, "postgres", tmp_path) as url:
        with opened(url):
            pass
        import asyncio
        first, second = DatabaseStates(parse_url(url)), DatabaseStates(parse_url(url))
        try:
            assert asyncio.run(first.leader()) is True
            assert asyncio.run(first.leader()) is True  # kept
            assert asyncio.run(second.leader()) is False
            first.close()  # its session ends: PostgreSQL releases the lock
            assert asyncio.run(second.leader()) is True
        finally:
            first.close()
            second.close()


def test_a_database_that_cannot_be_reached_is_a_503_to_retry(database):
    import asyncio
    import sqlite3

    from spanscope.store.feature_states import StateUnavailable

    states = DatabaseStates(parse_url(database))

    def locked():
        raise sqlite3.OperationalError("database is locked")

    def buggy():
        raise KeyError("a bug is not the database's fault")
    try:
        with pytest.raises(StateUnavailable, match="database is locked.*retry") as caught:
            asyncio.run(states.run(locked))
        assert caught.value.status == 503
        with pytest.raises(KeyError):
            asyncio.run(states.run(buggy))
    finally:
        states.close()
