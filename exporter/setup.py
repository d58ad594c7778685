"""Build of the exporter's optional native code (project metadata: pyproject.toml).

spanscope.decode._otlpwire is the C reader of the OTLP wire format (spanscope/decode/wire.py): 14 x the
spans per second of upb's Python objects. It is optional: without a C compiler the install still
succeeds, and the exporter reads decoded messages in Python, slower (spanscope_build_info{reader}).
"""
import sys

from setuptools import Extension, setup

CFLAGS = [] if sys.platform == "win32" else ["-Wall", "-Wextra"]

setup(
    ext_modules=[
        Extension("spanscope.decode._otlpwire", ["spanscope/decode/_otlpwire.c"], optional=True,
                  extra_compile_args=CFLAGS),
    ],
)
