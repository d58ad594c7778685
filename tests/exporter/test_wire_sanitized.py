"""The native reader's own tests (tests/exporter/test_wire.py: the fixed cases and the hypothesis
property tests against upb) run again on a build of `_otlpwire.c` with AddressSanitizer and
UndefinedBehaviorSanitizer: a C reader facing the network must not read past a buffer or overflow
an integer even where its output happens to come out right.

The sanitized extension is built into a temporary directory and loaded in place of the installed one
by a pytest plugin in the child process; the child runs with the ASan runtime preloaded (Python
itself is not built with it) and with PYTHONMALLOC=malloc, so that every bytes object, the request
bodies included, is its own allocation and a read one byte past its end is reported.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SOURCE = REPO / "exporter" / "spanscope" / "decode" / "_otlpwire.c"
FLAGS = ["-shared", "-fPIC", "-O1", "-g", "-fno-omit-frame-pointer",
         "-fsanitize=address,undefined", "-fno-sanitize-recover=undefined", "-Wall", "-Wextra"]

PLUGIN = '''
import ctypes, importlib.util, os, sys

def pytest_configure(config):
    # The sanitizers' runtime must be live, or this run would prove nothing.
    if not hasattr(ctypes.CDLL(None), "__asan_init"):
        raise RuntimeError("AddressSanitizer runtime not loaded (LD_PRELOAD)")
    import spanscope.decode as package
    path = os.environ["SANITIZED_OTLPWIRE"]
    spec = importlib.util.spec_from_file_location("spanscope.decode._otlpwire", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sys.modules[spec.name] = module
    package._otlpwire = module
    from spanscope.decode import wire
    if wire._otlpwire is not module:
        raise RuntimeError("the installed reader was imported before the sanitized one")
'''


def _runtime(cc: str, name: str) -> str | None:
    path = subprocess.run([cc, f"-print-file-name={name}"], capture_output=True, text=True).stdout.strip()
    return path if os.path.isabs(path) and os.path.exists(path) else None


@pytest.mark.slow
def test_the_native_reader_tests_pass_under_asan_and_ubsan(tmp_path):
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler: the native reader is not built here either")
    asan = _runtime(cc, "libasan.so")
    assert asan, f"{cc} has no AddressSanitizer runtime (Debian: apt-get install libasan8 / gcc)"
    target = tmp_path / f"_otlpwire{sysconfig.get_config_var('EXT_SUFFIX')}"
    build = subprocess.run([cc, *FLAGS, f"-I{sysconfig.get_paths()['include']}", str(SOURCE), "-o", str(target)],
                           capture_output=True, text=True)
    assert build.returncode == 0, build.stderr
    assert "warning" not in build.stderr, build.stderr
    (tmp_path / "sanitized_reader.py").write_text(PLUGIN)
    env = {**os.environ, "LD_PRELOAD": asan, "PYTHONMALLOC": "malloc", "SANITIZED_OTLPWIRE": str(target),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")])),
           # CPython frees little at exit: leaks are not the reader's; every other finding is fatal.
           "ASAN_OPTIONS": "detect_leaks=0:abort_on_error=0:halt_on_error=1",
           "UBSAN_OPTIONS": "halt_on_error=1:print_stacktrace=1"}
    run = subprocess.run([sys.executable, "-m", "pytest", "-p", "sanitized_reader", "-q", "-p", "no:cacheprovider",
                          str(REPO / "tests" / "exporter" / "test_wire.py")],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    report = run.stdout[-4000:] + run.stderr[-4000:]
    assert run.returncode == 0, report
    assert "AddressSanitizer" not in run.stderr and "runtime error" not in run.stderr, report
    assert " passed" in run.stdout and "skipped" not in run.stdout.splitlines()[-1], report
