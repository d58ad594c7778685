"""The loop that moves guarded rollouts: every `features.guards.interval`, take other replicas'
changes; then, on the one replica that decides, judge each guarded stage on its own requests
(analysis.guards) and advance it, roll it back, or keep its evaluation for the API.

Each decision names the stage it judged (step and start), so a person changing the rollout in the
meantime wins: the stale decision is refused and the stage judged again at the next look.
"""
from __future__ import annotations

import asyncio
import functools
import logging
import time

from .features import FeatureError, Features
from .guards import Guard, StageSample, judge

log = logging.getLogger("spanscope.features")


def decision_logger(counter):
    """The `on_decision` of Features: count the decision and log it as one logfmt line (an annotation
    source for Loki or Elasticsearch: feature, decision, stage and percentages as fields)."""

    def record(d: dict) -> None:
        counter.inc((d["feature"], d["decision"]))
        (log.warning if d["decision"] in ("rollback", "emergency_rollback") else log.info)(
            'rollout decision feature=%s decision=%s by=%s stage=%s from_percentage=%g to_percentage=%g reason="%s"',
            d["feature"], d["decision"], d["by"], d["stage"] if d["stage"] is not None else "-",
            d["from_percentage"], d["to_percentage"], d["reason"].replace('"', "'"))

    return record


class RolloutGuard:
    def __init__(self, features: Features, evidence, interval: float, clock=time.time):
        """`evidence`: where the stage's requests are counted (store.feature_states.DatabaseStates)."""
        self.features = features
        self.evidence = evidence
        self.interval = interval
        self.clock = clock

    async def sample(self, flag: str, since: float, guard: Guard) -> StageSample:
        factor = None if guard.max_p95_latency_increase is None else 1 + guard.max_p95_latency_increase
        e = self.evidence
        arms, p95, slower = await e.run(functools.partial(e.stage_sample, flag, since, guard.control,
                                                          guard.treatment, factor))
        return StageSample.from_store(guard, arms, p95, slower)

    async def run(self) -> None:
        while True:
            try:
                await self.tick()
            except Exception:  # the database away, a bug: judged again at the next look
                log.exception("guarded rollouts: this look failed")
            await asyncio.sleep(self.interval)

    async def tick(self) -> None:
        await self.features.sync()
        if not await self.features.states.leader():
            return
        for name, state in list(self.features.state.items()):
            if state.running and (state.guard is not None or state.auto_advance):
                await self.judge(name)

    async def judge(self, name: str) -> str:
        state = self.features.state[name]
        stage = (state.step, state.stage_started_at)
        guard = Guard.from_json(state.guard)
        sample = await self.sample(name, state.stage_started_at, guard)
        verdict = judge(guard, sample, self.clock() - state.stage_started_at, state.stage_seconds, state.auto_advance)
        f = self.features
        try:
            if verdict.decision == "rollback":
                await f.run(f.roll_back, name, "guard", verdict.reason, verdict.evidence, stage)
            elif verdict.decision == "advance":
                await f.run(f.advance, name, 1, "guard", verdict.reason, verdict.evidence, stage)
            else:
                evaluation = {"at": self.clock(), "decision": verdict.decision, "reason": verdict.reason,
                              "evidence": verdict.evidence}
                await f.run(f.record_evaluation, name, evaluation, stage)
        except FeatureError as exc:
            if exc.status != 409:
                raise
            return "moved"  # changed by hand since it was judged
        return verdict.decision
