"""Typed configuration: one model per section, validated once; overrides by file < environment < --set;
every error names the dotted path."""
import subprocess
import sys

import pytest
import yaml
from pydantic import ValidationError

from spanscope.config import SCHEMA, ConfigError, Limits, Traces, load, load_embedded


def test_every_embedded_default_is_a_known_option():
    def paths(options: dict, prefix: str = ""):
        for key, value in options.items():
            path = prefix + key
            if isinstance(value, dict) and path not in SCHEMA:  # a section, possibly inside a section
                yield from paths(value, path + ".")
            else:
                yield path

    assert SCHEMA == set(paths(load_embedded("config.yaml")))


def test_sections_are_typed_and_frozen():
    config = load()
    assert isinstance(config.limits, Limits) and isinstance(config.traces, Traces)
    assert config.store.retention == 30 * 86400 and config.limits.ingest_queue == 64
    with pytest.raises(ValidationError):
        config.limits.ingest_queue = 1


def test_file_then_environment_then_flags(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"limits": {"series_ttl": "2m", "ingest_queue": 7}, "traces": {"timeout": 40}}))
    env = {"SPANSCOPE__LIMITS__SERIES_TTL": "3m", "SPANSCOPE__TRACES__MAX_SPANS": "9"}
    config = load(str(path), ["traces.max_spans=11"], environ=env)
    assert config.limits.series_ttl == 180 and config.limits.ingest_queue == 7
    assert config.traces.timeout == 40 and config.traces.max_spans == 11
    assert config.traces.finish_delay == 1.0  # the rest of the section keeps its defaults


@pytest.mark.parametrize("override, message", [
    ("limits.series_ttl=soon", "limits.series_ttl: expected seconds or a duration like 30s, got 'soon'"),
    ("limits.ingest_queue=0", "limits.ingest_queue: expected a positive integer, got 0"),
    ("limits.ingest_queue=true", "limits.ingest_queue: expected a positive integer, got True"),
    ("store.enabled=maybe", "store.enabled: expected true or false, got 'maybe'"),
    ("listen.web=8889", "listen.web: expected HOST:PORT, got 8889"),
    ("histograms.duration_buckets=[1, 1]",
     "histograms.duration_buckets: bucket boundaries must be strictly increasing"),
    ("traces.finish_delay=31", "traces.finish_delay: must not exceed traces.timeout"),
    ("traces.max_span=5", "traces.max_span: unknown option (expected timeout, finish_delay, max_pending, max_spans, "
                          "max_pending_spans)"),
    ("trace.max_spans=5", "trace.max_spans: unknown option (known: auth.bearer_token"),
    ("components.span_names=[{pattern: '(', component: x}]",
     "components.span_names[0].pattern: invalid regular expression"),
    ("features.scenarios={fast: {enable: [a], speed: 2}}", "features.scenarios.fast.speed: unknown option"),
])
def test_errors_name_the_path(override, message):
    with pytest.raises(ConfigError) as err:
        load(overrides=[override], environ={})
    assert str(err.value).startswith(message), str(err.value)


def test_a_section_left_empty_keeps_its_defaults(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("store:\n  # url: sqlite:///x.db\nlimits:\n  ingest_queue: 5\n")
    config = load(str(path), environ={})
    assert config.store == load(environ={}).store and config.limits.ingest_queue == 5


def test_an_unknown_key_in_the_file_is_named(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("store:\n  urll: sqlite:///x.db\n")
    with pytest.raises(ConfigError, match=r"^store\.urll: unknown option \(expected enabled, url, "):
        load(str(path), environ={})


def test_check_config_names_a_bad_environment_variable():
    done = subprocess.run([sys.executable, "-m", "spanscope.cli", "--check-config"], capture_output=True, text=True,
                          env={"SPANSCOPE__SHUTDOWN__GRACE": "-1", "PATH": ""}, timeout=60)
    assert done.returncode == 2
    assert "shutdown.grace: expected seconds or a duration like 30s, got -1" in done.stderr


@pytest.mark.parametrize("override", ["auth.bearer_token=", "auth.bearer_token=  ", 'auth.bearer_token=""',
                                      "auth.bearer_token_file="])
def test_an_empty_token_is_an_error_not_an_open_api(override):
    with pytest.raises(ConfigError, match=r"^auth\.bearer_token(_file)?: empty"):
        load(overrides=[override], environ={})
    with pytest.raises(ConfigError, match=r"^auth\.bearer_token: empty"):
        load(environ={"SPANSCOPE__AUTH__BEARER_TOKEN": ""})


def test_an_empty_token_file_is_an_error(tmp_path):
    (tmp_path / "token").write_text(" \n")
    config = load(overrides=[f"auth.bearer_token_file={tmp_path / 'token'}"], environ={})
    with pytest.raises(ConfigError, match="auth.bearer_token_file: .* is empty"):
        config.auth.token()


def test_nested_sections_take_flags_environment_and_partial_files(tmp_path):
    """`pricing.refresh` is a section inside a section: `--set`, `SPANSCOPE__…` and a file that names
    only some of its keys reach it, and the keys not named keep their defaults."""
    f = tmp_path / "c.yaml"
    f.write_text(yaml.safe_dump({"pricing": {"refresh": {"interval": "1h"}}}))
    c = load(str(f), ["pricing.refresh.url=http://127.0.0.1:9/data.json"],
             environ={"SPANSCOPE__PRICING__REFRESH__INTERVAL": "2h"})
    assert (c.pricing.refresh.url, c.pricing.refresh.interval) == ("http://127.0.0.1:9/data.json", 7200)
    assert load(str(f), environ={}).pricing.refresh.url is None  # the file named only the interval
    with pytest.raises(ConfigError, match=r"pricing\.refresh\.nope: unknown option"):
        load(None, ["pricing.refresh.nope=1"], environ={})
    assert "pricing.refresh.url" in SCHEMA
