"""Where feature state and rollout decisions are kept: memory, a JSON file, or a database.

A backend stores each feature's state as JSON (FeatureState.as_json) and the decisions of its
rollouts. `apply` is a read-modify-write of one feature: with a database shared by several
replicas it runs in one transaction holding the feature's row, so two replicas changing the same
feature one after the other never lose a change. The database backend lives with the store
(store/feature_states.py); these two need nothing but the file system.
"""
from __future__ import annotations

import collections
import json
import os
import tempfile
import threading

DECISIONS_KEPT = 100  # per feature, in memory and in the state file


class MemoryStates:
    """Nothing survives a restart (no state file, no persistent store)."""

    shared = False

    def __init__(self):
        self._docs: dict[str, dict] = {}
        self._decisions: dict[str, collections.deque] = {}
        self._lock = threading.Lock()

    def describe(self) -> str:
        return "memory"

    def load(self) -> dict[str, dict]:
        with self._lock:
            return dict(self._docs)

    def apply(self, name: str, change, decision_of=None) -> dict:
        """`change(stored doc or None) -> new doc` (may raise to refuse); `decision_of(new doc) -> decision
        or None` is recorded with it."""
        with self._lock:
            doc = change(self._docs.get(name))
            self._docs[name] = doc
            decision = decision_of(doc) if decision_of else None
            if decision:
                self._decisions.setdefault(name, collections.deque(maxlen=DECISIONS_KEPT)).append(decision)
            self._saved()
            return doc

    def decisions(self, name: str, limit: int) -> list[dict]:
        with self._lock:
            return list(self._decisions.get(name, ()))[-limit:][::-1]

    def latest_decisions(self) -> dict[str, dict]:
        """Each feature's last decision."""
        with self._lock:
            return {name: ds[-1] for name, ds in self._decisions.items() if ds}

    async def leader(self) -> bool:
        """Whether this replica decides guarded rollouts (the only one, without a shared database)."""
        return True

    async def run(self, fn):
        return fn()  # a file write of a few kB: no reason to leave the event loop

    def _saved(self) -> None:
        pass

    def close(self) -> None:
        pass


class FileStates(MemoryStates):
    """`features.state_file`: the whole state, written atomically (write, fsync, rename) after each change."""

    def __init__(self, path: str):
        super().__init__()
        self.path = path

    def describe(self) -> str:
        return f"feature state file {self.path}"

    def load(self) -> dict[str, dict]:
        """The stored states (ValueError or OSError when the file is unusable; {} when it does not exist)."""
        if not os.path.exists(self.path):
            return {}
        with open(self.path) as f:
            doc = json.load(f)
        if not isinstance(doc, dict) or not isinstance(doc.get("features"), dict):
            raise ValueError("expected {\"features\": {...}}")
        decisions = doc.get("decisions", {})
        with self._lock:
            self._docs = dict(doc["features"])
            if isinstance(decisions, dict):
                self._decisions = {n: collections.deque((d for d in ds if isinstance(d, dict)), DECISIONS_KEPT)
                                   for n, ds in decisions.items() if isinstance(ds, list)}
            return dict(self._docs)

    def _saved(self) -> None:
        doc = {"version": 2, "features": self._docs,
               "decisions": {name: list(ds) for name, ds in self._decisions.items()}}
        directory = os.path.dirname(os.path.abspath(self.path))
        fd, tmp = tempfile.mkstemp(prefix=".features-", dir=directory)
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(doc, f, indent=2, sort_keys=True)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            os.unlink(tmp)
            raise
