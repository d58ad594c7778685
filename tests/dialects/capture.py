"""Refresh the dialect captures: `python tests/dialects/capture.py [--repin] [setup...]`.

Each setup runs one script (run_<library>.py) inside its own virtualenv, built with uv under
.venv-dialects/ (or $DIALECTS_VENVS) from the pinned requirements file setups/<venv>.txt; several
setups share a virtualenv when their libraries install together. The script talks to the fake
providers server that this driver starts on loopback and writes captures/<setup>.json.

--repin installs the newest releases of setups/<venv>.in into a fresh virtualenv and writes what
uv chose to setups/<venv>.txt: run it to move the pins to what the registry serves today.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from uv import find_uv_bin

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
# As tests/conftest.py does: the test helpers, and scripts/processes.py that they use.
sys.path[:0] = [str(ROOT / "tests" / "support"), str(ROOT / "scripts")]

from fake_providers import FakeProviders  # noqa: E402

VENVS = Path(os.environ.get("DIALECTS_VENVS", ROOT / ".venv-dialects"))
LATEST = {"OTEL_SEMCONV_STABILITY_OPT_IN": "gen_ai_latest_experimental"}


@dataclass(frozen=True)
class Setup:
    venv: str  # setups/<venv>.txt
    script: str  # run_<library>.py
    env: dict = field(default_factory=dict)
    reason: str = ""  # why the setup is skipped, when it is


SETUPS = {
    "openai-openllmetry": Setup("openllmetry", "run_openai.py"),
    "openai-openinference": Setup("openinference", "run_openai.py"),
    "openai-otel-v2": Setup("otel-v2", "run_openai.py"),
    "openai-otel-v2-latest": Setup("otel-v2", "run_openai.py", LATEST),
    "openai-openlit": Setup("openlit", "run_openai.py"),
    # The anthropic SDK (2.x) traces its own calls to the global tracer provider unless told not to.
    "anthropic-openllmetry": Setup("openllmetry", "run_anthropic.py", {"ANTHROPIC_OPEN_TELEMETRY": "false"}),
    "anthropic-native": Setup("openllmetry", "run_anthropic.py"),
    "anthropic-both": Setup("openllmetry", "run_anthropic.py"),
    "anthropic-openlit": Setup("openlit", "run_anthropic.py"),
    "langchain-openllmetry": Setup("langchain", "run_langchain.py"),
    "langchain-openinference": Setup("langchain", "run_langchain.py"),
    "litellm-otel": Setup("litellm", "run_litellm.py"),
    "litellm-otel-latest": Setup("litellm", "run_litellm.py", LATEST),
    "llamaindex-openinference": Setup("llamaindex", "run_llamaindex.py"),
}


class VenvError(RuntimeError):
    """A setup's virtualenv could not be built; the message ends with uv's own output."""


def _uv(*args: str) -> str:
    """Run uv (pinned in requirements-test.txt): it installs a venv's wheels from its shared cache in
    seconds where pip takes about 30 s per venv, and several uv processes share that cache safely."""
    result = subprocess.run([find_uv_bin(), *args], capture_output=True, text=True)
    if result.returncode:
        raise VenvError(f"uv {' '.join(args)} failed ({result.returncode}):\n{result.stdout}{result.stderr}")
    return result.stdout


def ensure_venv(name: str, repin: bool) -> Path:
    """The setup's virtualenv, rebuilt when its pinned requirements changed."""
    path, pins = VENVS / name, HERE / "setups" / f"{name}.txt"
    python, stamp = path / "bin" / "python", path / ".pins"
    if repin:
        shutil.rmtree(path, ignore_errors=True)
        _uv("venv", "-q", "--python", sys.executable, str(path))
        _uv("pip", "install", "-q", "--python", str(python), "-r", str(HERE / "setups" / f"{name}.in"))
        frozen = _uv("pip", "freeze", "-q", "--exclude-editable", "--python", str(python))
        pins.write_text(f"# uv pip freeze of setups/{name}.in (capture.py --repin)\n" + frozen)
    digest = hashlib.sha256(pins.read_bytes()).hexdigest()
    if not (stamp.exists() and stamp.read_text() == digest):
        if not python.exists():
            _uv("venv", "-q", "--python", sys.executable, str(path))
        _uv("pip", "sync", "-q", "--python", str(python), str(pins))  # exactly the pins, nothing else
        stamp.write_text(digest)
    return python


def ensure_venvs(names, repin: bool = False) -> dict[str, Path | VenvError]:
    """ensure_venv for each name, all at once (uv mostly waits on the network and the disk): each
    name's interpreter, or the VenvError that says why it has none."""

    def one(name):
        try:
            return ensure_venv(name, repin)
        except VenvError as e:
            return e

    names = sorted(set(names))
    with ThreadPoolExecutor(max_workers=max(1, len(names))) as pool:
        return dict(zip(names, pool.map(one, names)))


def run_setup(python: Path, name: str, providers_url: str, out: Path, env: dict | None = None,
              **kwargs) -> subprocess.CompletedProcess:
    """Run the setup's script against the fake providers at `providers_url`, its capture into `out`;
    `env` is added to the environment (test_real_libraries.py: where to export over OTLP)."""
    setup = SETUPS[name]
    # No proxy, the fake server for every SDK that reads a base URL from the environment.
    full = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    full.update(FAKE_PROVIDERS_URL=providers_url, OPENAI_BASE_URL=providers_url + "/v1",
                ANTHROPIC_BASE_URL=providers_url, OPENAI_API_KEY="sk-fake-dialects",
                ANTHROPIC_API_KEY="sk-ant-fake-dialects", NO_PROXY="*", PYTHONPATH=str(HERE),
                **setup.env, **(env or {}))
    return subprocess.run([str(python), str(HERE / setup.script), name, str(out)], env=full, timeout=600, **kwargs)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repin", action="store_true", help="re-resolve setups/<venv>.in to today's releases")
    parser.add_argument("setups", nargs="*", choices=[[], *SETUPS], help="default: all")
    args = parser.parse_args()
    names = [n for n in args.setups or SETUPS if not SETUPS[n].reason]
    for name in sorted(set(args.setups or SETUPS) - set(names)):
        print(f"{name}: skipped: {SETUPS[name].reason}")
    pythons = ensure_venvs({SETUPS[n].venv for n in names}, args.repin)
    failed = []
    with FakeProviders() as server:
        for name in names:
            python = pythons[SETUPS[name].venv]
            if isinstance(python, VenvError):
                failed.append(name)
                print(f"{name}: no virtualenv: {python}")
                continue
            out = HERE / "captures" / f"{name}.json"
            result = run_setup(python, name, server.url, out)
            if result.returncode:
                failed.append(name)
            print(f"{name}: {'failed' if result.returncode else 'captured'} -> {out.relative_to(ROOT)}")
    if failed:
        print("failed:", " ".join(failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
