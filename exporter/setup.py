"""Build of the exporter's optional native code (project metadata: pyproject.toml).

- spanscope._otlpwire: the C reader of the OTLP wire format (spanscope/wire.py).
- COMPILED: the ingest hot path, compiled by Cython from the modules' own Python source, unchanged:
  the same code without the interpreter's dispatch, plus, where a .pxd stands beside a module, C
  types for what it declares (docs/performance.md). The build records each compiled source's SHA-256
  (spanscope/compiled.py), so an edited module runs from its source until the next build instead
  of running stale code.

All of it is optional: without a C compiler or Cython the install still succeeds, and the exporter
runs the same Python, slower.
"""
import importlib.util
import json
import os
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

# The modules bench/profile_ingest.py finds on the path of a span: reading, recording, assembly,
# the sinks of finished requests.
COMPILED = ("wire", "contract", "recorder", "aggregate", "traces", "ingest", "rollups", "impact",
            "experiments", "features", "feedback", "interactions", "store")
CFLAGS = [] if sys.platform == "win32" else ["-Wall", "-Wextra"]


def _load_compiled():
    """spanscope/compiled.py by its path (the package is not importable while it is being built): the
    one definition of the source hash the build records and the import checks."""
    spec = importlib.util.spec_from_file_location("spanscope_compiled_at_build", "spanscope/compiled.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


compiled = _load_compiled()


def cython_extensions() -> list:
    try:
        from Cython.Build import cythonize
    except ImportError:
        print("setup.py: Cython is not installed; the hot path stays pure Python", file=sys.stderr)
        return []
    try:
        extensions = cythonize(
            [Extension(f"spanscope.{name}", [f"spanscope/{name}.py"]) for name in COMPILED],
            build_dir="build/cython",  # generated C stays out of the package
            # Annotations are documentation here, not C types: the compiled code keeps Python's semantics.
            compiler_directives={"language_level": 3, "annotation_typing": False, "binding": True},
            nthreads=os.cpu_count() or 1,
            quiet=True,
        )
    except Exception as exc:  # noqa: BLE001 - any Cython failure: install the Python, as without Cython
        print(f"setup.py: Cython failed ({exc}); the hot path stays pure Python", file=sys.stderr)
        return []
    for ext in extensions:
        ext.optional = True
    return extensions


class BuildExt(build_ext):
    """Builds the extensions in parallel, and writes the manifest: which sources were compiled (their
    hashes), beside the modules."""

    def finalize_options(self):
        super().finalize_options()
        if not self.parallel:
            self.parallel = os.cpu_count() or 1

    def run(self):
        self.built = set()
        super().run()
        sources = {name: compiled.source_hash(name, "spanscope") if f"spanscope.{name}" in self.built else None
                   for name in COMPILED}
        target = self._manifest_path()
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with open(target, "w", encoding="utf-8") as f:
            json.dump({"sources": sources}, f, indent=1, sort_keys=True)

    def build_extension(self, ext):
        super().build_extension(ext)  # an optional extension that fails raises here, and is not recorded
        self.built.add(ext.name)  # built now, or up to date with the source cythonize just translated

    def get_outputs(self):
        return [*super().get_outputs(), self._manifest_path()]

    def _manifest_path(self) -> str:
        """Beside the built modules: in the package for an in-place build, else in build_lib."""
        return os.path.join(os.path.dirname(self.get_ext_fullpath("spanscope._otlpwire")), "_compiled.json")


setup(
    ext_modules=[
        Extension("spanscope._otlpwire", ["spanscope/_otlpwire.c"], optional=True, extra_compile_args=CFLAGS),
        *cython_extensions(),
    ],
    cmdclass={"build_ext": BuildExt},
)
