"""Build of the optional native reader spanscope._otlpwire (project metadata: pyproject.toml).

optional=True: without a C compiler the install still succeeds, and spanscope.wire falls back to
reading upb's decoded messages in Python (same results, slower).
"""
import sys

from setuptools import Extension, setup

setup(ext_modules=[
    Extension(
        "spanscope._otlpwire",
        ["spanscope/_otlpwire.c"],
        optional=True,
        extra_compile_args=[] if sys.platform == "win32" else ["-Wall", "-Wextra"],
    ),
])
