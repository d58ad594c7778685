"""Logs every garbage collection of a Python process: put this directory on its PYTHONPATH.

    PYTHONPATH=bench/gcprobe GC_PROBE_LOG=/tmp/gc.log .venv/bin/python -m spanscope.cli ...

One line per collection: unix time, generation, wall and CPU milliseconds of the collection, objects
collected, gc.get_count() when it started, and the thread it ran in. The collection holds the GIL:
every thread, the event loop and its scrapes wait for it (docs/performance.md).
"""
import gc
import os
import threading
import time

_path = os.environ.get("GC_PROBE_LOG")
if _path:
    _log = open(_path, "a", buffering=1)  # noqa: SIM115 - open for the life of the process
    _started: dict = {}

    def _log_collection(phase: str, info: dict) -> None:
        if phase == "start":
            _started.update(wall=time.perf_counter(), cpu=time.thread_time(), count=gc.get_count())
            return
        _log.write(f"{time.time():.3f} gen{info['generation']} "
                   f"wall={1000 * (time.perf_counter() - _started['wall']):.1f}ms "
                   f"cpu={1000 * (time.thread_time() - _started['cpu']):.1f}ms collected={info['collected']} "
                   f"count={_started['count']} thread={threading.current_thread().name}\n")

    gc.callbacks.append(_log_collection)
