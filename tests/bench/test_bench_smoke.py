"""Smoke test of the benchmark harness: `bench/run.py --quick` on a tiny configuration.

It checks that one run produces every field with sane values and that the ratios are computed from
the measured rates. It does not assert any performance target: those are benchmarks (see
docs/performance.md), and a shared machine makes timings no test verdict.
"""
from __future__ import annotations

import json
import platform
import subprocess
import sys
from pathlib import Path

import pytest
import spanscope

REPO = Path(__file__).resolve().parents[2]
RUN = REPO / "bench" / "run.py"
TARGETS = ["ceiling", "baseline_http", "exporter_http", "reference_http", "baseline_grpc", "exporter_grpc",
           "reference_grpc"]


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bench")
    out = tmp / "latest.json"
    cmd = [sys.executable, str(RUN), "--quick", "--duration", "1", "--warmup", "0.3", "--batches", "8",
           "--concurrency", "2", "--scrape-series", "10000", "--scrapes", "3",
           "--attack-values", "50000", "--attack-time-limit", "30",
           "--reference", sys.executable,  # this venv again: the target's plumbing, not another build
           "--out", str(out), "--workdir", str(tmp / "work")]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=150)
    assert proc.returncode == 0, proc.stderr[-4000:]
    doc = json.loads(out.read_text())
    doc["_stdout"] = proc.stdout
    doc["_markdown"] = out.with_suffix(".md").read_text()
    return doc


pytestmark = pytest.mark.slow


def test_help_documents_the_options():
    proc = subprocess.run([sys.executable, str(RUN), "--help"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0
    for option in ("--quick", "--duration", "--concurrency", "--scrape-series", "--attack-values", "--out"):
        assert option in proc.stdout


def test_run_metadata(result):
    assert result["schema"] == 1
    host = result["host"]
    assert host["cpus"] >= 1
    assert len(host["loadavg_start"]) == 3 and all(x >= 0 for x in host["loadavg_start"])
    assert result["payloads"]["batches"] == 8
    assert 500 <= result["payloads"]["spans_per_request_mean"] <= 530  # 512, whole traces
    assert result["elapsed_s"] > 0


@pytest.mark.parametrize("target", TARGETS)
def test_throughput_fields(result, target):
    r = result["throughput"][target]
    assert "error" not in r, r.get("error")
    assert r["spans"] > 0 and r["requests"] > 0
    assert r["spans_per_s"] > 0
    assert r["server_cpu_s"] > 0
    assert r["spans_per_core_s"] == pytest.approx(r["spans"] / r["server_cpu_s"], rel=1e-3)
    assert 0 < r["latency_p50_ms"] <= r["latency_p99_ms"]
    assert r["server_peak_rss_mb"] >= r["server_rss_mb"] > 0
    assert len(r["loadavg_at_start"]) == 3
    if target != "ceiling":
        assert r["errors"] == 0, r["last_error"]
        assert r["concurrency"] == 2
        loaded = r["scrape_under_load"]  # scraped every 0.5 s from the end of the warm-up
        assert loaded["scrapes"] >= 1
        assert 0 < loaded["p50_ms"] <= loaded["p99_ms"] <= loaded["max_ms"]
    if target.startswith(("exporter", "reference")):
        assert r["build"] == {"version": spanscope.__version__, "python_version": platform.python_version(),
                              "reader": r["build"]["reader"]}
        assert r["build"]["reader"] in ("native", "python")
        counters = r["exporter_counters"]
        assert counters["spanscope_spans_received_total"] >= r["spans"]
        assert counters["spanscope_spans_rejected_total"] == 0
        assert {"spanscope_interactions_written_total", "spanscope_interactions_dropped_total"} <= set(counters)
        assert "Interaction store during the run: " in result["_markdown"]
        assert counters['spanscope_traces_completed_total{reason="spans_limit"}'] >= 0
        assert counters['spanscope_traces_completed_total{reason="traces_limit"}'] >= 0
        assert "Trace assembly during the run: " in result["_markdown"]


def test_ratios_come_from_the_per_core_rates(result):
    tp, ratios = result["throughput"], result["ratios"]

    def per_core(key):
        return tp[key]["spans_per_core_s"]

    assert ratios["exporter_vs_baseline_http"] == round(per_core("exporter_http") / per_core("baseline_http"), 4)
    assert ratios["exporter_vs_baseline_grpc"] == round(per_core("exporter_grpc") / per_core("baseline_grpc"), 4)
    assert ratios["exporter_vs_ceiling_http"] == round(per_core("exporter_http") / per_core("ceiling"), 4)
    assert ratios["exporter_vs_ceiling_grpc"] == round(per_core("exporter_grpc") / per_core("ceiling"), 4)
    assert ratios["exporter_vs_reference_http"] == round(per_core("exporter_http") / per_core("reference_http"), 4)
    assert ratios["exporter_vs_reference_grpc"] == round(per_core("exporter_grpc") / per_core("reference_grpc"), 4)
    assert all(v > 0 for v in ratios.values())
    # --quick makes one round: it is the median, and each ratio's only round
    assert all(tp[key]["spans_per_core_rounds"] == [per_core(key)] for key in TARGETS)
    assert result["ratio_rounds"] == {name: [value] for name, value in ratios.items()}
    assert [list(r) for r in result["throughput_rounds"]] == [TARGETS]


def test_the_reference_is_the_installation_of_its_python(result):
    ref = result["reference"]
    assert ref["python"] == sys.executable
    assert Path(ref["path"]) == Path(spanscope.__file__).parent
    assert ref["version"] == spanscope.__version__ and ref["python_version"] == platform.python_version()
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True)
    assert ref["git"]["commit"] == (head.stdout.strip() or None)


def test_scrape_fields(result):
    s = result["scrape"]["10000"]
    assert 10_000 <= s["series"] <= 12_000
    assert 0 < s["label_sets"] < s["series"]
    for fmt in ("text", "openmetrics"):
        t = s[fmt]
        assert t["scrapes"] == 3
        assert 0 < t["min_ms"] <= t["median_ms"] <= t["p99_ms"]
        assert t["bytes"] > 100_000
    assert s["openmetrics"]["bytes"] != s["text"]["bytes"]


def test_cardinality_fields(result):
    card = result["cardinality"]
    assert card["values"] == 50_000 and card["reference_values"] == 50_000 // 2  # half of the attack
    for who in ("exporter", "baseline"):
        a = card[who]
        assert "error" not in a, a.get("error")
        assert a["values_sent"] == 50_000, a["stop_reason"]
        assert a["samples"][0]["values"] == 0
        assert [x["values"] for x in a["samples"]] == sorted(x["values"] for x in a["samples"])
        assert all(x["rss_mb"] > 0 for x in a["samples"])
        assert a["rss_at_reference_mb"] > 0 and a["rss_at_end_mb"] > 0
        expected = round((a["rss_at_end_mb"] - a["rss_at_reference_mb"]) / a["rss_at_reference_mb"] * 100, 1)
        assert a["growth_pct"] == expected
        assert a["flat"] == (a["growth_pct"] <= card["tolerance_pct"])
    # With default limits the exporter caps the tenant label: the attack's tenants were capped.
    assert card["exporter"]["exporter_counters"]["spanscope_label_values_capped_total"] > 0


def test_verdicts_and_report(result):
    by_name = {t["target"]: t for t in result["targets"]}
    assert set(by_name) == {"throughput_vs_baseline", "throughput_vs_ceiling", "scrape_10k", "cardinality_rss_flat",
                            "metrics_api_10k"}
    api = result["scrape"]["10000"]["metrics_api"]
    assert api["window_minutes"] == 1440 and api["worst_p99_ms"] == max(
        v["p99_ms"] for k, v in api.items() if isinstance(v, dict))
    assert by_name["metrics_api_10k"]["met"] == (api["worst_p99_ms"] < 50)
    for name, t in by_name.items():
        if name.startswith("throughput"):  # a 1-second run is not judged: its traces are not all finished
            assert t["met"] is None and t["detail"].startswith("not judged")
        else:
            assert isinstance(t["met"], bool)
    ratios = result["ratios"]
    assert by_name["throughput_vs_baseline"]["value"] == {"http": ratios["exporter_vs_baseline_http"],
                                                          "grpc": ratios["exporter_vs_baseline_grpc"]}
    for text in (result["_stdout"], result["_markdown"]):
        assert "| exporter http |" in text and "| cardinality attack |" in text
        build = result["throughput"]["reference_http"]["build"]
        assert "| exporter / reference |" in text
        assert (f"reference http: version {spanscope.__version__}, python_version {platform.python_version()}, "
                f"reader {build['reader']}") in text
        assert f"Reference: spanscope {spanscope.__version__} of {result['reference']['path']}" in text
