"""The simulated world: who sends requests, what they ask, and which models answer.

All randomness comes from one `random.Random`, so a `--seed` replays the same traffic.
"""
from __future__ import annotations

import bisect
import hashlib
import itertools
import random
from dataclasses import dataclass

# Tenants with traffic weights; premium tenants get the stronger model for hard questions.
TENANTS = {"acme": 0.35, "globex": 0.25, "initech": 0.2, "umbrella": 0.12, "hooli": 0.08}
PREMIUM_TENANTS = {"acme", "globex"}

MODES = {"chat": 0.5, "search": 0.25, "voice": 0.15, "agent": 0.10}

# What users ask, per mode. "general" needs no retrieval; "smart_home" needs Home Assistant.
INTENTS_BY_MODE = {
    "chat": {"weather": 0.25, "sports": 0.2, "airport": 0.15, "general": 0.3, "smart_home": 0.1},
    "search": {"weather": 0.3, "sports": 0.35, "airport": 0.25, "general": 0.1},
    "voice": {"smart_home": 0.4, "weather": 0.3, "sports": 0.1, "general": 0.2},
    "agent": {"airport": 0.4, "weather": 0.2, "sports": 0.2, "smart_home": 0.2},
}
# The RAG intents and the seed feature that switches each one's lookup on.
RAG_FEATURES = {"weather": "rag_weather", "sports": "rag_sports", "airport": "rag_airports"}
RAG_INTENTS = tuple(RAG_FEATURES)
# What a caller's question is about, by the words in it (the first intent found is the primary).
INTENT_WORDS = {
    "weather": ("weather", "rain", "snow", "forecast", "temperature", "sunny"),
    "sports": ("play", "game", "match", "score", "win", "team"),
    "airport": ("flight", "airport", "delayed", "gate", "departure"),
    "smart_home": ("light", "thermostat", "turn on", "turn off", "heating"),
}
MULTI_INTENT_SHARE = 0.25
AMBIGUOUS_SHARE = 0.03

USERS = 5000
# A share of questions is popular and repeats (Zipf), the rest is long tail that never repeats:
# that is what gives a response cache its 30-60 % hit ratio in practice.
POPULAR_QUERIES = 3000
POPULAR_SHARE = 0.6
ZIPF_EXPONENT = 1.1


@dataclass(frozen=True)
class Model:
    provider: str          # gen_ai.provider.name
    request: str           # gen_ai.request.model
    response: str          # gen_ai.response.model (providers answer with the dated snapshot)
    ttft_s: float          # median time to first token
    tokens_per_s: float    # output speed
    reasoning: bool = False


GPT_4O_MINI = Model("openai", "gpt-4o-mini", "gpt-4o-mini-2024-07-18", 0.25, 140.0)
GPT_4O = Model("openai", "gpt-4o", "gpt-4o-2024-08-06", 0.4, 100.0)
O4_MINI = Model("openai", "o4-mini", "o4-mini-2025-04-16", 0.6, 220.0, reasoning=True)
CLAUDE_HAIKU = Model("anthropic", "claude-haiku-4-5", "claude-haiku-4-5-20251001", 0.35, 120.0)

# Routes the gateway picks between (pipeline.route.name -> model behind it).
ROUTES = {"fast": GPT_4O_MINI, "quality": GPT_4O, "reasoning": O4_MINI}
FALLBACK = CLAUDE_HAIKU

TOOLS = {
    "weather": "get_weather_forecast",
    "sports": "get_team_schedule",
    "airport": "search_flights",
    "smart_home": "home_assistant.call_service",
}


@dataclass(frozen=True)
class Query:
    user: str
    tenant: str
    mode: str
    intents: tuple[str, ...]   # primary first
    cache_key: str
    complexity: float          # 0..1, drives routing and output length
    ambiguous: bool


def _weighted(weights: dict[str, float]):
    names = list(weights)
    cum = list(itertools.accumulate(weights.values()))
    return names, cum


class World:
    """Draws requests: user, tenant, mode, intents and the (cacheable) question."""

    def __init__(self, rng: random.Random):
        self.rng = rng
        self._tenants = _weighted(TENANTS)
        self._modes = _weighted(MODES)
        self._intents = {m: _weighted(w) for m, w in INTENTS_BY_MODE.items()}
        zipf = [1.0 / (k ** ZIPF_EXPONENT) for k in range(1, POPULAR_QUERIES + 1)]
        self._popular_cum = list(itertools.accumulate(zipf))
        self._unique = itertools.count()

    def _pick(self, table) -> str:
        names, cum = table
        return self.rng.choices(names, cum_weights=cum)[0]

    def popular_keys(self) -> list[str]:
        """Cache keys of the popular questions (what a warm cache would hold)."""
        return [f"q{k}" for k in range(POPULAR_QUERIES)]

    def next_query(self) -> Query:
        rng = self.rng
        mode = self._pick(self._modes)
        primary = self._pick(self._intents[mode])
        intents = [primary]
        if rng.random() < MULTI_INTENT_SHARE:
            second = self._pick(self._intents[mode])
            if second != primary:
                intents.append(second)
        if rng.random() < POPULAR_SHARE:
            rank = bisect.bisect_left(self._popular_cum, rng.random() * self._popular_cum[-1])
            key = f"q{rank}"
        else:
            key = f"u{next(self._unique)}"
        # Users are skewed too: a few heavy users, a long tail of occasional ones.
        user = f"user-{int(USERS * rng.random() ** 2)}"
        return Query(user=user, tenant=self._pick(self._tenants), mode=mode, intents=tuple(intents),
                     cache_key=key, complexity=rng.random(),
                     ambiguous=rng.random() < AMBIGUOUS_SHARE)

    def query_for(self, question: str, user: str, tenant: str | None = None, mode: str | None = None) -> Query:
        """A caller's question: the cache key is the normalised text, so the same question asked
        again can hit; intents come from its words (INTENT_WORDS, else drawn); tenant (by default a
        stable pick per user), mode and complexity are drawn."""
        drawn = self.next_query()
        text = " ".join(question.lower().split())
        if tenant is None:
            names, cum = self._tenants
            share = int.from_bytes(hashlib.blake2b(user.encode(), digest_size=4).digest()) / 2**32
            tenant = names[bisect.bisect_left(cum, share * cum[-1])]
        mode = mode or drawn.mode
        intents = tuple(i for i, words in INTENT_WORDS.items() if any(word in text for word in words))
        if not intents:
            intents = drawn.intents if drawn.mode == mode else (self._pick(self._intents[mode]),)
        return Query(user=user, tenant=tenant, mode=mode, intents=intents,
                     cache_key="t:" + hashlib.blake2b(text.encode(), digest_size=8).hexdigest(),
                     complexity=drawn.complexity, ambiguous=drawn.ambiguous)
