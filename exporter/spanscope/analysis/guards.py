"""The guards of a rollout stage: judge the new variant against the control on the stage's requests.

A stage compares the requests that evaluated the feature's flag to its treatment variant (`on`,
the users the stage let in) with those that evaluated it to the control (`off`), counting only
requests started since the stage began and randomly assigned: a request a cohort or targeting rule
forced into its variant (reason TARGETING_MATCH), or whose evaluation failed (ERROR), is left out
(store.feature_states counts the stage). Each guard is a bound on the treatment, tested with the
always-valid evidence of analysis.sequential, so the guard may look after every request:

- max_error_ratio_increase (absolute, 0.02 = two points): breached when the confidence sequence of
  error ratio(on) − error ratio(off) lies wholly above it;
- max_p95_latency_increase (relative, 0.25 = 25 % slower): breached when more than 5 % of the
  treatment's requests are slower than (1 + x) × the control's p95, with evidence (the lower bound
  of that share's confidence sequence above 5 %) — a p95 increase beyond x means exactly that;
  the control's p95 is taken as known, which needs the control's requests (min_requests_per_stage);
- min_quality_score: breached when the confidence sequence of the treatment's mean quality score
  lies wholly below it.

A breach rolls the feature back to 0 % at once. A stage advances when it has lasted `stage_seconds`,
both variants have `min_requests_per_stage` requests, and no guard is breached ("no evidence of
harm", not "proof of safety": the stage's duration and request floor set how much harm could hide).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

from . import sequential
from .stats import Moments

P95_SHARE = 0.05
# τ of each test (analysis.sequential): the size of harm past the limit it finds quickest. Harm
# worth a rollback is several points of error ratio, of the share of slow requests, or of quality
# (scores 0-1); for tens to thousands of requests the confidence sequence varies little around these.
ERROR_TAU = 0.05
MIN_TO_JUDGE = 10  # requests per arm before a guard may roll back
SHARE_TAU = 0.1
QUALITY_TAU = 0.1


@dataclass(frozen=True)
class Guard:
    max_error_ratio_increase: float | None = None
    max_p95_latency_increase: float | None = None
    min_quality_score: float | None = None
    min_requests_per_stage: int = 100
    alpha: float = 0.05
    control: str = "off"
    treatment: str = "on"

    def as_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, doc: dict | None) -> Guard:
        known = cls.__dataclass_fields__
        return cls(**{k: v for k, v in (doc or {}).items() if k in known})


@dataclass
class Arm:
    """One variant's requests in the stage."""

    requests: int = 0
    errors: int = 0
    latency: Moments = field(default_factory=Moments)
    quality: Moments = field(default_factory=Moments)

    def summary(self) -> dict:
        return {"requests": self.requests, "errors": self.errors,
                "error_ratio": self.errors / self.requests if self.requests else None,
                "mean_latency_seconds": self.latency.mean, "mean_quality": self.quality.mean}


    @classmethod
    def from_sums(cls, sums: tuple | None) -> Arm:
        """From (count, errors, Σ latency, Σ latency², quality count, Σ quality, Σ quality²)."""
        arm = cls()
        if sums:
            n, errors, lat, lat2, nq, q, q2 = sums
            arm.requests, arm.errors = int(n), int(errors or 0)
            arm.latency.n, arm.latency.total, arm.latency.squares = int(n), float(lat or 0), float(lat2 or 0)
            arm.quality.n, arm.quality.total, arm.quality.squares = int(nq), float(q or 0), float(q2 or 0)
        return arm


@dataclass
class StageSample:
    """What the store counted for a stage: both arms, the control's p95 and how many treatment
    requests were slower than (1 + max_p95_latency_increase) × that p95."""

    control: Arm
    treatment: Arm
    control_p95: float | None = None
    treatment_slower: int = 0

    @classmethod
    def from_store(cls, guard: Guard, arms: dict, p95: float | None, slower: int | None) -> StageSample:
        return cls(Arm.from_sums(arms.get(guard.control)), Arm.from_sums(arms.get(guard.treatment)),
                   p95, slower or 0)


@dataclass(frozen=True)
class Verdict:
    decision: str           # "rollback", "advance" or "hold"
    reason: str
    evidence: dict


def _breaches(guard: Guard, s: StageSample) -> tuple[list[str], dict]:
    """The guards the evidence says are breached, and the evidence of every guard that could be tested."""
    alpha, c, t = guard.alpha, s.control, s.treatment
    evidence, breached = {}, []
    if guard.max_error_ratio_increase is not None:
        e = sequential.difference_of_proportions(c.errors, c.requests, t.errors, t.requests,
                                                 null=guard.max_error_ratio_increase,
                                                 tau=max(2 * guard.max_error_ratio_increase, ERROR_TAU), alpha=alpha)
        if e is not None:
            evidence["error_ratio_increase"] = {**e.as_json(), "limit": guard.max_error_ratio_increase}
            if e.lower > guard.max_error_ratio_increase:
                breached.append(f"error ratio {e.estimate:+.3f} against the control (at least {e.lower:+.3f}) "
                                f"exceeds the allowed {guard.max_error_ratio_increase:+.3f}")
    if guard.max_p95_latency_increase is not None and s.control_p95 is not None:
        limit = s.control_p95 * (1 + guard.max_p95_latency_increase)
        e = sequential.proportion(s.treatment_slower, t.requests, null=P95_SHARE, tau=SHARE_TAU, alpha=alpha)
        if e is not None:
            evidence["p95_latency"] = {**e.as_json(), "control_p95_seconds": s.control_p95,
                                       "limit_seconds": limit, "share_slower_than_limit": e.estimate}
            if e.lower > P95_SHARE:
                breached.append(f"{e.estimate:.0%} of the new variant's requests (at least {e.lower:.0%}) are "
                                f"slower than {limit:.3f} s, the control's p95 "
                                f"+{guard.max_p95_latency_increase:.0%}: its p95 rose more than allowed")
    if guard.min_quality_score is not None:
        e = sequential.mean(t.quality, null=guard.min_quality_score, tau=QUALITY_TAU, alpha=alpha)
        if e is not None:
            evidence["quality"] = {**e.as_json(), "limit": guard.min_quality_score}
            if e.upper < guard.min_quality_score:
                breached.append(f"mean quality {e.estimate:.3f} (at most {e.upper:.3f}) is below the required "
                                f"{guard.min_quality_score:.3f}")
    return breached, evidence


def judge(guard: Guard, sample: StageSample, stage_age: float, stage_seconds: float, auto_advance: bool) -> Verdict:
    """The decision on a stage `stage_age` seconds old."""
    breached, evidence = _breaches(guard, sample)
    if min(sample.control.requests, sample.treatment.requests) < MIN_TO_JUDGE:
        breached = []  # the normal approximation behind the evidence needs a few requests per arm
    evidence = {"arms": {guard.control: sample.control.summary(), guard.treatment: sample.treatment.summary()},
                "stage_age_seconds": round(stage_age, 3), "guards": evidence}
    if breached:
        return Verdict("rollback", "; ".join(breached), evidence)
    short = [f"{name} has {arm.requests} of {guard.min_requests_per_stage} requests"
             for name, arm in ((guard.control, sample.control), (guard.treatment, sample.treatment))
             if arm.requests < guard.min_requests_per_stage]
    if not auto_advance:
        return Verdict("hold", "no guard breached; the rollout advances when told to", evidence)
    if stage_age < stage_seconds:
        return Verdict("hold", f"the stage has run {stage_age:.0f} of {stage_seconds:.0f} s", evidence)
    if short:
        return Verdict("hold", "; ".join(short), evidence)
    return Verdict("advance", f"{stage_age:.0f} s and at least {guard.min_requests_per_stage} requests per variant "
                              f"with no guard breached", evidence)
