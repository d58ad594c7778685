"""Which of the package's modules run compiled, and the rule that compiled code is never stale.

setup.py compiles the ingest hot path with Cython from these modules' own, unchanged source (and
the type declarations of a .pxd beside some of them), and records in MANIFEST the SHA-256 of every
source it compiled (`source_hash`: the .py and its .pxd). At import, a compiled module is used
only while its source still has that hash; otherwise its source runs (same behaviour, slower):
after an edit without a rebuild, for a module the build could not compile, for a module whose .pxd
cimports the C declarations of a module that runs from source, or for every module with
SPANSCOPE_NO_COMPILED=1 (profilers and coverage see only Python code). This module is never
compiled itself: spanscope/__init__.py installs the rule before any other module is imported.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import sys
from importlib.abc import MetaPathFinder
from importlib.machinery import EXTENSION_SUFFIXES
from importlib.util import spec_from_file_location

PACKAGE = __name__.rpartition(".")[0]
HERE = os.path.dirname(os.path.abspath(__file__))
MANIFEST = "_compiled.json"  # {"sources": {module: SHA-256 of the source compiled, or null if it failed}}
DISABLE = "SPANSCOPE_NO_COMPILED"

COMPILED = "compiled"
NOT_BUILT = "not built (no C compiler or Cython at install)"
STALE = "source changed since the build (reinstall: pip install -e exporter)"
UNRECORDED = "no record of the source it was compiled from (reinstall: pip install -e exporter)"
DISABLED = f"{DISABLE}=1"
DEPENDS = "compiled against the C declarations of {}, which runs from source"

built: dict[str, str | None] = {}  # module -> SHA-256 of the source compiled (install)
state: dict[str, str] = {}  # module -> COMPILED or why its source runs, as the modules are imported


def source_hash(name: str, directory: str = HERE) -> str:
    """SHA-256 of what a module is compiled from: its .py, then its .pxd (type declarations) if any."""
    digest = hashlib.sha256()
    for path in (os.path.join(directory, name + ".py"), os.path.join(directory, name + ".pxd")):
        if path.endswith(".py") or os.path.exists(path):
            with open(path, "rb") as f:
                digest.update(f.read())
    return digest.hexdigest()


def cimports(name: str, directory: str = HERE) -> set[str]:
    """The package's modules whose C declarations `name`'s .pxd cimports. A compiled module reads
    their objects' fields at the compiled layout: beside their source it would read the wrong memory."""
    try:
        with open(os.path.join(directory, name + ".pxd"), encoding="utf-8") as f:
            text = f.read()
    except OSError:
        return set()
    package = re.escape(PACKAGE)
    return {a or b for a, b in re.findall(rf"^\s*(?:from\s+{package}\.(\w+)\s+cimport|cimport\s+{package}\.(\w+))",
                                          text, re.M)}


def _manifest() -> dict:
    try:
        with open(os.path.join(HERE, MANIFEST), encoding="utf-8") as f:
            return json.load(f).get("sources", {})
    except (OSError, ValueError, AttributeError):
        return {}


def _has_extension(name: str) -> bool:
    return any(os.path.exists(os.path.join(HERE, name + suffix)) for suffix in EXTENSION_SUFFIXES)


class SourceUnlessCurrent(MetaPathFinder):
    """Loads a compiled module's source instead of its extension unless the extension is current.
    Ahead of the regular finders, which prefer an extension module to a source file."""

    def __init__(self, built: dict, disabled: bool):
        self.built, self.disabled = built, disabled

    def find_spec(self, fullname, path=None, target=None):
        package, _, name = fullname.rpartition(".")
        if package != PACKAGE or name not in self.built:
            return None
        source = os.path.join(HERE, name + ".py")
        if not os.path.exists(source):  # installed without its source: nothing to fall back to
            return None
        why = self.why_source(name)
        state[name] = why or COMPILED
        if why is None:
            return None  # the regular finders load the extension module
        return spec_from_file_location(fullname, source)

    def why_source(self, name: str, via: tuple = ()) -> str | None:
        """Why `name` must run from source; None when its extension is current, and so are the
        extensions of the modules it cimports."""
        if self.disabled:
            return DISABLED
        if not _has_extension(name):
            return NOT_BUILT
        if self.built.get(name) is None:
            return UNRECORDED
        if self.built[name] != source_hash(name):
            return STALE
        for dependency in sorted(cimports(name) - {name, *via}):
            if self.why_source(dependency, (*via, name)) is not None:
                return DEPENDS.format(f"{PACKAGE}.{dependency}")
        return None


def _built() -> dict:
    """The manifest's modules, and any other extension module beside its source (no recorded hash:
    UNRECORDED, so its source runs)."""
    built = _manifest()
    for entry in os.listdir(HERE):
        name, _, ext = entry.partition(".")
        if ext == "py" and name not in built and _has_extension(name):
            built[name] = None
    return built


def disabled() -> bool:
    return os.environ.get(DISABLE, "").strip().lower() in ("1", "true", "yes")


def install() -> None:
    global built
    if not any(isinstance(f, SourceUnlessCurrent) for f in sys.meta_path):
        built = _built()
        sys.meta_path.insert(0, SourceUnlessCurrent(built, disabled()))


def summary() -> str:
    """`all`, `partial` or `none` of the modules the build compiles run compiled (spanscope_build_info)."""
    for name in built:  # the state of modules not imported yet
        if name not in state:
            __import__(f"{PACKAGE}.{name}")
    running = sum(state.get(name) == COMPILED for name in built)
    return "all" if built and running == len(built) else "partial" if running else "none"


def from_source() -> dict[str, str]:
    """module -> why its source runs, for the modules the build compiles."""
    return {name: why for name, why in sorted(state.items()) if why != COMPILED}
