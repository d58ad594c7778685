"""How bench/run.py combines rounds of throughput targets into what it reports: per target its median
round, per ratio the median of the ratios within each round, and the verdicts drawn from them. On
made-up rounds, so the arithmetic is checked without timing anything."""
from __future__ import annotations

import statistics
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import run  # noqa: E402


def rounds_of(rates: dict[str, list[float | None]]) -> list[dict]:
    """Rounds as throughput() returns them; None: the target failed in that round."""
    n = len(next(iter(rates.values())))
    return [{key: ({"spans_per_core_s": values[i], "p99": 10 * i} if values[i] else {"error": "refused"})
             for key, values in rates.items()} for i in range(n)]


RATES = {
    "ceiling": [100.0, 130.0, 120.0],
    "baseline_http": [300.0, 240.0, 330.0],
    "exporter_http": [30.0, 36.0, 27.0],
    "reference_http": [25.0, None, 30.0],
    "baseline_grpc": [250.0, 260.0, 200.0],
    "exporter_grpc": [40.0, 39.0, 41.0],
    "reference_grpc": [38.0, 40.0, None],
}


def test_each_target_is_reported_by_its_median_round_with_every_rate():
    tp = run.median_rounds(rounds_of(RATES))
    assert tp["exporter_http"] == {"spans_per_core_s": 30.0, "p99": 0, "spans_per_core_rounds": [30.0, 36.0, 27.0]}
    assert tp["ceiling"]["spans_per_core_s"] == 120.0 and tp["ceiling"]["p99"] == 20  # the whole round's result
    # a failed round is left out; of two, the lower median
    assert tp["reference_http"]["spans_per_core_s"] == 25.0
    assert tp["reference_http"]["spans_per_core_rounds"] == [25.0, None, 30.0]


def test_a_target_failing_in_every_round_keeps_its_error():
    tp = run.median_rounds(rounds_of({"exporter_http": [None, None]}))
    assert tp["exporter_http"]["error"] == "refused" and tp["exporter_http"]["spans_per_core_rounds"] == [None, None]


def test_each_ratio_is_the_median_of_the_ratios_within_each_round():
    rounds = rounds_of(RATES)
    per_round = run.ratio_rounds(rounds)
    for name, (a, b) in run.RATIOS.items():
        expected = [round(RATES[a][i] / RATES[b][i], 4) if RATES[a][i] and RATES[b][i] else None for i in range(3)]
        assert per_round[name] == expected
        measured = [v for v in expected if v is not None]
        assert run.ratios(rounds)[name] == round(statistics.median(measured), 4)
    # not the ratio of the medians: exporter http's and the ceiling's median rounds differ
    assert run.ratios(rounds)["exporter_vs_ceiling_http"] != round(30.0 / 120.0, 4)


@pytest.mark.parametrize("duration, judged", [(10.0, True), (run.MIN_JUDGED_DURATION, True), (2.0, False)])
def test_throughput_targets_are_judged_on_the_median_ratios_of_long_enough_runs(duration, judged):
    rounds = rounds_of(RATES)
    result = {"options": {"duration": duration}, "throughput": run.median_rounds(rounds), "ratios": run.ratios(rounds)}
    verdicts = {v["target"]: v for v in run.verdicts(result)}
    ratios = result["ratios"]
    ceiling = verdicts["throughput_vs_ceiling"]
    assert ceiling["value"] == {"http": ratios["exporter_vs_ceiling_http"], "grpc": ratios["exporter_vs_ceiling_grpc"]}
    if judged:
        assert ceiling["met"] == (min(ceiling["value"].values()) >= 0.5)
        assert verdicts["throughput_vs_baseline"]["met"] is False  # 0.12-0.2 of the baseline
        assert ceiling["detail"] == ""
    else:
        assert ceiling["met"] is None and verdicts["throughput_vs_baseline"]["met"] is None
        assert "not judged" in ceiling["detail"]


def test_every_other_round_runs_the_targets_backwards():
    targets = ["ceiling", "baseline-http", "exporter-http"]
    assert [run.round_order(targets, n) for n in range(3)] == [targets, targets[::-1], targets]


@pytest.mark.parametrize("reference", run.REFERENCES)
def test_the_reference_runs_only_when_given(reference):
    assert reference not in run.parse_args([]).targets
    args = run.parse_args(["--reference", "/venv/bin/python"])
    assert args.targets == run.ALL_TARGETS and args.reference == "/venv/bin/python"
    assert run.parse_args(["--targets", "exporter-http"]).targets == ["exporter-http"]
    with pytest.raises(SystemExit):  # asked for, without the reference's python
        run.parse_args(["--targets", f"exporter-http,{reference}"])
