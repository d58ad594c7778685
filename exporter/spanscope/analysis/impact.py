"""Feature impact over a sliding window: contribution, cache savings, what-if, breakdown.

Read from the rollups (analysis.rollups): the window is the last `window` seconds in whole minutes,
the current minute and the ones before it (300 s: 5 minutes), every service and mode merged, so the
numbers are means over the requests that finished in them.

Definitions (docs/features.md):
- contribution of a feature = mean critical-path seconds per request spent in its spans;
- saving of a caching feature = hit ratio × (mean latency of misses − mean latency of hits);
- what-if latency = current mean − Σ contribution of features turned off
  + Σ saving of caching features turned off + Σ last measured contribution of features turned on
  − Σ saving of caching features turned on.
"""
from __future__ import annotations

import math

from .features import Features
from .window import MinuteStats


class Impact:
    def __init__(self, features: Features, rollups, window: float):  # analysis.rollups.Rollups
        self.features = features
        self.rollups = rollups
        self.minutes = max(math.ceil(window / 60), 1)
        self.window = self.minutes * 60  # seconds, as reported
        self.last_contribution: dict[str, float] = {}  # kept after a feature is turned off

    # --- reading -------------------------------------------------------------------------------

    def totals(self) -> MinuteStats:
        return self.rollups.merged(self.minutes)

    @staticmethod
    def mean_latency(t: MinuteStats) -> float:
        return t.latency.mean or 0.0

    def contributions(self, t: MinuteStats) -> dict[str, float]:
        n = t.requests
        out = {}
        for name in self.features.catalogue:
            if n and name in t.features:
                out[name] = t.features[name] / n
                self.last_contribution[name] = out[name]
            else:
                out[name] = 0.0
        return out

    @staticmethod
    def hit_ratio(t: MinuteStats, name: str) -> float | None:
        hits, misses = t.feature_hits.get(name, 0), t.feature_misses.get(name, 0)
        return hits / (hits + misses) if hits + misses else None

    def cache_saving(self, t: MinuteStats, name: str) -> float:
        ratio = self.hit_ratio(t, name)
        hit, miss = t.cache_latency.get("hit"), t.cache_latency.get("miss")
        if ratio is None or hit is None or miss is None:
            return 0.0
        return ratio * max(miss.mean - hit.mean, 0.0)

    def what_if(self, disable=(), enable=(), t: MinuteStats | None = None) -> dict:
        """Projected mean latency for turning `disable` off and `enable` on, with its inputs; `t`: the
        window's totals when the caller has them."""
        for name in (*disable, *enable):
            self.features.get(name)  # 404 for an unknown name
        t = self.totals() if t is None else t
        current = self.mean_latency(t)
        contrib = self.contributions(t)
        projected = current
        steps = []
        for name in disable:
            feature = self.features.catalogue[name]
            if feature.required:
                steps.append({"feature": name, "action": "disable", "effect_ms": 0.0,
                              "note": "required feature: cannot be disabled, not applied"})
                continue
            if not self.features.enabled(name):
                steps.append({"feature": name, "action": "disable", "effect_ms": 0.0, "note": "already off"})
                continue
            effect = -contrib[name]
            note = "removes its measured critical-path contribution"
            if feature.caching:
                saving = self.cache_saving(t, name)
                effect += saving
                note += f" and adds back its cache saving of {saving * 1000:.1f} ms"
            projected += effect
            steps.append({"feature": name, "action": "disable", "effect_ms": effect * 1000, "note": note})
        for name in enable:
            if self.features.enabled(name):
                steps.append({"feature": name, "action": "enable", "effect_ms": 0.0, "note": "already on"})
                continue
            effect = self.last_contribution.get(name, 0.0)
            note = ("adds its last measured contribution" if name in self.last_contribution
                    else "no measurement while it was on: effect unknown, counted as 0")
            if self.features.catalogue[name].caching:
                saving = self.cache_saving(t, name)
                effect -= saving
            projected += effect
            steps.append({"feature": name, "action": "enable", "effect_ms": effect * 1000, "note": note})
        projected = max(projected, 0.0)
        return {
            "current_latency_ms": current * 1000,
            "projected_latency_ms": projected * 1000,
            "delta_ms": (projected - current) * 1000,
            "delta_percent": ((projected - current) / current * 100) if current else 0.0,
            "requests_in_window": t.requests,
            "window_seconds": self.window,
            "steps": steps,
        }

    def scenario_toggles(self, spec: dict) -> tuple[list, list]:
        cat = self.features.catalogue.values()
        disable = set(spec.get("disable", []))
        enable = set(spec.get("enable", []))
        if spec.get("disable_category"):
            disable |= {f.name for f in cat if f.category == spec["disable_category"] and not f.required}
        if spec.get("enable_category"):
            enable |= {f.name for f in cat if f.category == spec["enable_category"]}
        if spec.get("disable_caching"):
            disable |= {f.name for f in cat if f.caching}
        disable = [n for n in sorted(disable) if self.features.enabled(n)]
        enable = [n for n in sorted(enable) if not self.features.enabled(n)]
        return disable, enable

    def scenarios(self, specs: dict, t: MinuteStats | None = None) -> dict:
        t = self.totals() if t is None else t  # the window merged once for every scenario
        out = {}
        for name, spec in specs.items():
            disable, enable = self.scenario_toggles(spec)
            out[name] = {**self.what_if(disable, enable, t), "toggles": {"disable": disable, "enable": enable}}
        return out

    def breakdown(self) -> dict:
        t = self.totals()
        n = t.requests
        total = self.mean_latency(t)
        components = sorted(((c, s / n) for c, s in t.critical.items()), key=lambda x: -x[1]) if n else []
        return {
            "requests_in_window": n,
            "window_seconds": self.window,
            "total_ms": total * 1000,
            "components": [{"component": c, "mean_ms": s * 1000, "share_percent": s / total * 100 if total else 0.0}
                           for c, s in components],
        }

    def collector(self, metrics, scenarios: dict):
        """The collector of the feature gauges (registered on the metrics store)."""

        def collect():
            t = self.totals()
            contrib = self.contributions(t)
            enabled, rollout, stage, contribution, hit = {}, {}, {}, {}, {}
            for f in self.features.catalogue.values():
                s = self.features.state[f.name]
                enabled[(f.name, f.category, str(f.required).lower())] = 1.0 if self.features.enabled(f.name) else 0.0
                rollout[(f.name,)] = (s.rollout_percentage / 100) if s.enabled else 0.0
                stage[(f.name,)] = s.step + 1.0
                contribution[(f.name,)] = contrib[f.name]
                ratio = self.hit_ratio(t, f.name) if f.caching else None
                if ratio is not None:
                    hit[(f.name,)] = ratio
            yield metrics.feature_enabled, enabled
            yield metrics.feature_rollout, rollout
            yield metrics.rollout_stage, stage
            yield metrics.feature_contribution, contribution
            yield metrics.feature_hit_ratio, hit
            if t.requests:  # without traffic the last projections stay
                yield metrics.whatif, {(name,): v["projected_latency_ms"] / 1000
                                       for name, v in self.scenarios(scenarios, t).items()}

        return collect
