"""User behaviour for the load scenarios (scenarios.py), against the demo's chat API.

ChatUser: sessions of questions (10 by default) with think time between them; after reading an
answer a user sometimes rates it through the exporter's feedback API, naming the answer by its
`interaction_id`; 30 % of users also look at the exporter's metrics API now and then. A finished
session starts a new one (a new session id), as the same person coming back.
BatchUser: batch requests of 10 popular questions, the kind of workload a response cache is for.

Settings come from the environment (loadtest/run.py sets them):
  LOADTEST_EXPORTER   the exporter's web URL (feedback, metrics API); empty: neither is used
  LOADTEST_QUESTIONS  questions per session (10)      LOADTEST_BATCH_ITEMS  items per batch (10)
  LOADTEST_SEED       seeds the question draws    LOADTEST_FEEDBACK_SHARE  answers rated (0.2)
  LOADTEST_STAGES     a load curve instead of --users/--spawn-rate: JSON [[seconds, users], ...]
                      (scenarios.Scenario.stages), straight lines between the corners; the run
                      stops at the last one
"""
from __future__ import annotations

import itertools
import json
import os
import random
import uuid

from locust import FastHttpUser, LoadTestShape, between, task

EXPORTER = os.environ.get("LOADTEST_EXPORTER", "").rstrip("/")
QUESTIONS_PER_SESSION = int(os.environ.get("LOADTEST_QUESTIONS", "10"))
BATCH_ITEMS = int(os.environ.get("LOADTEST_BATCH_ITEMS", "10"))
RNG = random.Random(os.environ.get("LOADTEST_SEED", "26"))

METRICS_CHECKERS = 0.3      # share of users who also look at the metrics API
METRICS_EVERY = 4           # those look every few questions
FEEDBACK_SHARE = float(os.environ.get("LOADTEST_FEEDBACK_SHARE", "0.2"))   # share of answers rated
UNIQUE_SHARE = 0.4          # questions nobody asked before (a cache can never hit them)

CITIES = ["Paris", "Berlin", "Madrid", "Rome", "Oslo", "Lisbon", "Vienna", "Prague", "Dublin", "Warsaw"]
TEAMS = ["Arsenal", "Celtics", "Lakers", "Bayern", "Juventus", "Yankees", "Real Madrid", "Ajax"]
TEMPLATES = [
    "What is the weather in {city} tomorrow?",
    "Will it rain in {city} this weekend?",
    "When do {team} play next?",
    "Did {team} win last night?",
    "Are flights from {city} delayed today?",
    "Turn on the lights and tell me the weather in {city}",
]
# 46 popular questions: every city in the city templates, the first three teams in the team ones.
POPULAR = list(dict.fromkeys(t.format(city=c, team=tm) for t in TEMPLATES for c in CITIES for tm in TEAMS[:3]))
# A few questions are asked far more than others (Zipf-like weights by rank).
POPULAR_WEIGHTS = list(itertools.accumulate(1.0 / (rank + 1) for rank in range(len(POPULAR))))
BATCH_POOL = POPULAR[:20]   # batch jobs re-ask a small set: the 80 %+ cache hit target is about these


def question(rng: random.Random) -> str:
    if rng.random() < UNIQUE_SHARE:
        return f"{rng.choice(POPULAR)} (context {uuid.UUID(int=rng.getrandbits(128)).hex[:12]})"
    return rng.choices(POPULAR, cum_weights=POPULAR_WEIGHTS)[0]


def rating_for(answer: dict, rng: random.Random) -> int:
    """A reader's rating: poor for failures, mostly good for answers with sources."""
    if answer.get("status") != "ok":
        return 1
    return rng.choice([3, 4, 5, 5] if answer.get("sources") else [2, 3, 4, 5])


class ChatUser(FastHttpUser):
    wait_time = between(2, 8)   # reading the answer, typing the next question

    def on_start(self) -> None:
        self.rng = random.Random(RNG.random())
        self.user_id = f"load-{uuid.UUID(int=self.rng.getrandbits(128)).hex[:10]}"
        self.checks_metrics = self.rng.random() < METRICS_CHECKERS
        self.to_rate: dict | None = None
        self._new_session()

    def _new_session(self) -> None:
        self.session_id = uuid.UUID(int=self.rng.getrandbits(128)).hex
        self.asked = 0

    @task
    def ask(self) -> None:
        # The previous answer has been read (the think time): rate it before asking on.
        if self.to_rate is not None:
            self._rate(self.to_rate)
            self.to_rate = None
        body = {"question": question(self.rng), "user_id": self.user_id, "session_id": self.session_id}
        with self.client.post("/api/v1/chat", json=body, name="chat", catch_response=True) as resp:
            answer = _json(resp)
            if resp.status_code == 200 and answer.get("interaction_id"):
                resp.success()
            elif resp.status_code == 503 and answer.get("interaction_id"):
                resp.failure("the pipeline failed (503)")   # counted, and still rateable
            else:
                resp.failure(f"HTTP {resp.status_code}")
                answer = {}
        if answer.get("interaction_id") and EXPORTER and self.rng.random() < FEEDBACK_SHARE:
            self.to_rate = answer
        self.asked += 1
        if self.checks_metrics and self.asked % METRICS_EVERY == 0 and EXPORTER:
            self.client.get(f"{EXPORTER}/api/metrics/dashboard?time_window_minutes=5", name="metrics api")
        if self.asked >= QUESTIONS_PER_SESSION:
            self._new_session()

    def _rate(self, answer: dict) -> None:
        body = {"interaction_id": answer["interaction_id"], "rating": rating_for(answer, self.rng)}
        self.client.post(f"{EXPORTER}/api/v1/feedback", json=body, name="feedback")


class BatchUser(FastHttpUser):
    wait_time = between(1, 3)

    def on_start(self) -> None:
        self.rng = random.Random(RNG.random())
        self.user_id = f"batch-{uuid.UUID(int=self.rng.getrandbits(128)).hex[:10]}"

    @task
    def batch(self) -> None:
        items = [{"question": self.rng.choice(BATCH_POOL), "user_id": self.user_id} for _ in range(BATCH_ITEMS)]
        with self.client.post("/api/v1/chat/batch", json={"items": items}, name="chat batch",
                              catch_response=True) as resp:
            results = _json(resp).get("results") or []
            if resp.status_code != 200 or len(results) != len(items):
                resp.failure(f"HTTP {resp.status_code}, {len(results)} of {len(items)} results")


def _json(resp) -> dict:
    try:
        body = resp.json()
    except Exception:  # an HTML error page, an empty body: the status code tells what happened
        return {}
    return body if isinstance(body, dict) else {}


STAGES = json.loads(os.environ.get("LOADTEST_STAGES") or "null")

if STAGES:   # defined only then: Locust uses any shape class it finds in the locustfile
    class Stages(LoadTestShape):
        """Towards each corner of the curve at the slope that reaches it on time."""

        def tick(self):
            t = self.get_run_time()
            for (t0, u0), (t1, u1) in zip(STAGES, STAGES[1:]):
                if t < t1:
                    return u1, max(1.0, abs(u1 - u0) / max(t1 - t0, 1e-9))
            return None
