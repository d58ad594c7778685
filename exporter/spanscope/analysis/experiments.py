"""A/B comparison of flag variants: latency, errors, cost, and whether a difference is real.

Per (flag, variant) the rollups keep count, sum and sum of squares of request latency, its histogram,
errors and cost (analysis.window.Variant) of the requests randomly assigned to it (a request a cohort
or targeting rule forced, or whose evaluation failed, is left out: interpret.attributes.NOT_RANDOM),
merged here over every minute since the exporter started
or over the last `minutes` minutes. Each variant is compared with the control (a variant named
control, off or false; else the most requested one) twice:
- fixed-horizon, analysis.stats: Welch's t-test on latency, the two-proportion z-test on error rate
  (`reliable: false` below 5 errors and successes per variant); valid when read once, at a sample
  size chosen in advance;
- sequential, analysis.sequential: the mSPRT of the same two differences, with always-valid p-values
  and confidence sequences; valid however often it is read (a dashboard, a pipeline polling it).
Two-sided p-values; `significant` means p < 0.05.
"""
from __future__ import annotations

import math

from . import sequential
from .stats import Moments, histogram_quantile, two_proportions, welch
from .window import Variant

CONTROL_NAMES = ("control", "off", "false", "disabled")
ALPHA = 0.05
# The differences the sequential tests are tuned to find fastest (the mixture's τ): 100 ms of mean
# latency, 2 points of error rate. Smaller ones are found too, only later.
LATENCY_TAU_MS = 100.0
ERROR_TAU = 0.02
METHOD = ("fixed-horizon: Welch's t-test on latency, two-proportion z-test on error rate (valid when read "
          "once, at a sample size chosen in advance); sequential: mSPRT of the latency difference (ms, "
          f"tau {LATENCY_TAU_MS:g}) and error-rate difference (tau {ERROR_TAU:g}) with always-valid p-values "
          "and confidence sequences (may be watched continuously); two-sided, against the control variant")


def _in_ms(m: Moments) -> Moments:
    out = Moments()
    out.n, out.total, out.squares = m.n, m.total * 1000, m.squares * 1e6
    return out


class Experiments:
    def __init__(self, rollups):  # analysis.rollups.Rollups
        self.rollups = rollups

    def by_flag(self, minutes: int | None = None) -> dict[str, dict[str, Variant]]:
        """flag -> variant -> its requests since the start, or in the last `minutes` minutes (the
        current one included)."""
        if minutes is None:
            merged = self.rollups.variants()
        else:
            merged = {}
            for _, _, m in self.rollups.window(minutes):
                for key, v in m.variants.items():
                    mine = merged.get(key)
                    if mine is None:
                        mine = merged[key] = Variant(len(v.buckets) - 1)
                    mine.merge(v)
        out: dict[str, dict[str, Variant]] = {}
        for (flag, variant), v in merged.items():
            out.setdefault(flag, {})[variant] = v
        return out

    def flags(self) -> list[str]:
        return sorted(self.by_flag())

    def _p95(self, v: Variant) -> float | None:
        q = histogram_quantile(0.95, self.rollups.bounds, v.buckets)
        return None if math.isnan(q) else q

    def compare(self, flag: str, by_flag: dict | None = None, minutes: int | None = None) -> dict | None:
        """The flag's variants against its control, since the start or over the last `minutes`
        minutes; `by_flag`: a by_flag() to reuse for several flags."""
        variants = (self.by_flag(minutes) if by_flag is None else by_flag).get(flag)
        if not variants:
            return None
        control = next((v for v in CONTROL_NAMES if v in variants), None) or \
            max(variants, key=lambda v: variants[v].latency.n)
        base = variants[control]
        rows = []
        for name, s in sorted(variants.items()):
            p95 = self._p95(s)
            n = s.latency.n
            row = {
                "variant": name, "control": name == control, "requests": n,
                "mean_latency_ms": s.latency.mean * 1000,
                "p95_latency_ms": p95 * 1000 if p95 is not None else None,
                "error_rate": s.errors / n,
                "cost_per_request_usd": float(s.cost / n),
            }
            if name != control:
                lat = welch(base.latency, s.latency)
                err = two_proportions(base.errors, base.latency.n, s.errors, n)
                row["latency_vs_control"] = lat and {**lat, "delta_ms": (s.latency.mean - base.latency.mean) * 1000,
                                                     "significant": lat["p_value"] < ALPHA}
                row["errors_vs_control"] = err and {**err, "significant": err["p_value"] < ALPHA}
                row["sequential"] = self._sequential(base, s)
            rows.append(row)
        return {"flag": flag, "control": control, "alpha": ALPHA,
                "window_seconds": None if minutes is None else minutes * 60, "variants": rows,
                "method": METHOD + ("; requests since the exporter started" if minutes is None else
                                    f"; requests of the last {minutes} minutes (the current one included)")}

    @staticmethod
    def _sequential(base: Variant, s: Variant) -> dict:
        """mSPRT evidence of the variant minus the control; null below two requests in either."""
        lat = sequential.difference_of_means(_in_ms(base.latency), _in_ms(s.latency), tau=LATENCY_TAU_MS, alpha=ALPHA)
        err = sequential.difference_of_proportions(base.errors, base.latency.n, s.errors, s.latency.n,
                                                   tau=ERROR_TAU, alpha=ALPHA)
        return {"latency_ms": lat and {**lat.as_json(), "significant": lat.p_value < ALPHA},
                "error_rate": err and {**err.as_json(), "significant": err.p_value < ALPHA}}
