"""The hot path compiled by Cython (exporter/setup.py) and the rule that compiled code is never stale
(spanscope/compiled.py). `make test` also runs the fast tests with SPANSCOPE_NO_COMPILED=1: the
pure-Python path is what an install without a compiler or Cython runs."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import urllib.request
from pathlib import Path

import pytest
import spanscope
from processes import start_exporter
from spanscope import compiled

PACKAGE = Path(spanscope.__file__).parent
PURE = compiled.disabled()


def test_the_hot_path_runs_compiled_where_the_build_can_compile_it():
    """The extensions are optional (an install without a compiler still works, slower); where the
    tests run with a compiler and Cython, a silent fallback would hide a broken build or stale code."""
    if PURE:
        assert compiled.summary() == "none"
        assert set(compiled.from_source().values()) == {compiled.DISABLED}
        return
    compiler = (sysconfig.get_config_var("CC") or "cc").split()[0]
    if shutil.which(compiler) is None:
        pytest.skip(f"no C compiler ({compiler}): the pure-Python modules are expected")
    assert compiled.summary() == "all", (
        f"modules running from source: {compiled.from_source()}; reinstall with `pip install -e exporter`")
    manifest = json.loads((PACKAGE / compiled.MANIFEST).read_text())["sources"]
    assert "recorder" in manifest and "contract" in manifest
    for name in manifest:
        module = sys.modules[f"spanscope.{name}"]
        assert not module.__file__.endswith(".py"), f"spanscope.{name} was loaded from {module.__file__}"


def loaded(package_parent: Path, env: dict | None = None) -> dict:
    """In a fresh interpreter on a copy of the package: where each module came from, and its state."""
    code = ("import json, spanscope.recorder, spanscope.traces, spanscope.compiled as c; "
            "print(json.dumps({'recorder': spanscope.recorder.__file__, 'traces': spanscope.traces.__file__, "
            "'edited': hasattr(spanscope.recorder, 'EDITED'), 'state': c.state, 'summary': c.summary()}))")
    out = subprocess.run([sys.executable, "-c", code], env={**os.environ, compiled.DISABLE: "0", **(env or {}),
                         "PYTHONPATH": str(package_parent)}, capture_output=True, text=True, timeout=60, check=True)
    return json.loads(out.stdout)


@pytest.fixture
def package_copy(tmp_path):
    if not (PACKAGE / compiled.MANIFEST).exists() or not any(PACKAGE.glob("recorder.*.so")):
        pytest.skip("needs the compiled modules")
    shutil.copytree(PACKAGE, tmp_path / "spanscope", ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path


def test_an_unchanged_copy_runs_compiled(package_copy):
    got = loaded(package_copy)
    assert not got["recorder"].endswith(".py") and not got["traces"].endswith(".py")
    assert got["state"]["recorder"] == compiled.COMPILED and got["summary"] == "all"


def test_an_edited_module_runs_its_source_and_the_others_stay_compiled(package_copy):
    source = package_copy / "spanscope" / "recorder.py"
    source.write_text(source.read_text() + "\nEDITED = True\n")
    got = loaded(package_copy)
    assert got["recorder"] == str(source) and got["edited"]
    assert got["state"]["recorder"] == compiled.STALE
    assert not got["traces"].endswith(".py") and got["state"]["traces"] == compiled.COMPILED
    assert got["summary"] == "partial"


def test_an_edited_pxd_makes_its_module_run_from_source(package_copy):
    declarations = package_copy / "spanscope" / "contract.pxd"
    declarations.write_text(declarations.read_text() + "\n# edited after the build\n")
    assert loaded(package_copy)["state"]["contract"] == compiled.STALE


def test_modules_compiled_against_an_edited_modules_declarations_run_from_source_too(package_copy):
    # traces.pxd cimports contract's SpanRecord: compiled traces reads its fields at the compiled
    # layout, so beside contract's source it would read the wrong memory (it crashed the process).
    assert compiled.cimports("traces", str(package_copy / "spanscope")) == {"contract"}
    source = package_copy / "spanscope" / "contract.py"
    source.write_text(source.read_text() + "\n# edited after the build\n")
    code = ("import json, spanscope.traces as t, spanscope.contract as k, spanscope.compiled as c\n"
            "root, child = k.SpanRecord(), k.SpanRecord()\n"
            "for r, sid, parent, start, end in ((root, b'r' * 8, b'', 0, 10), (child, b'c' * 8, b'r' * 8, 2, 6)):\n"
            "    r.span_id, r.parent_id, r.start, r.end, r.component, r.feature = sid, parent, start, end, 'x', None\n"
            "critical, own, _ = t.breakdown([root, child], root)\n"
            "print(json.dumps({'state': c.state, 'traces': t.__file__, 'own': own['x'], 'summary': c.summary()}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         env={**os.environ, compiled.DISABLE: "0", "PYTHONPATH": str(package_copy)})
    assert out.returncode == 0, out.stderr[-2000:]
    got = json.loads(out.stdout)
    assert got["state"]["contract"] == compiled.STALE and got["traces"].endswith("traces.py")
    assert got["state"]["traces"] == compiled.DEPENDS.format("spanscope.contract")
    assert got["own"] == 10 and got["state"]["recorder"] == compiled.COMPILED and got["summary"] == "partial"


def test_a_compiled_module_without_a_build_record_runs_its_source(package_copy):
    (package_copy / "spanscope" / compiled.MANIFEST).unlink()
    got = loaded(package_copy)
    assert got["recorder"].endswith(".py") and got["state"]["recorder"] == compiled.UNRECORDED
    assert got["summary"] == "none"


def test_the_switch_runs_every_module_from_source(package_copy):
    got = loaded(package_copy, {compiled.DISABLE: "1"})
    assert got["recorder"].endswith(".py") and got["traces"].endswith(".py")
    assert set(got["state"].values()) == {compiled.DISABLED} and got["summary"] == "none"


def test_the_exporter_logs_and_exposes_an_edited_module(package_copy, tmp_path):
    source = package_copy / "spanscope" / "rollups.py"
    source.write_text(source.read_text() + "\n# edited after the build\n")
    proc = start_exporter(tmp_path, {"store": {"enabled": False}},
                          env={"PYTHONPATH": str(package_copy), compiled.DISABLE: "0"})
    try:
        with urllib.request.urlopen(proc.urls["web"] + "/metrics", timeout=10) as resp:
            metrics = resp.read().decode()
        # logged at start-up, before /readyz answers 200
        assert f"WARNING spanscope: running from Python source ({compiled.STALE}): rollups\n" in proc.log()
    finally:
        proc.stop()
    assert 'compiled="partial"' in metrics
