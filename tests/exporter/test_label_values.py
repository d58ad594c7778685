"""Label caps that protect without poisoning: a flood of junk values takes every slot of a label, then
fades with its series (limits.series_ttl) instead of locking later values out until a restart; the cap
is counted per label; the interaction store keeps the values as sent (cut in length), never `__other__`."""
import asyncio

from protospans import request, tree
from spanscope.app import Exporter
from spanscope.config import load
from spanscope.metrics.recorder import OTHER, LabelValues
from spanscope.store.feedback import Rating

TTL = 600


class Tally:
    def __init__(self):
        self.counts = {}

    def inc(self, key, amount=1):
        self.counts[key] = self.counts.get(key, 0) + amount


def test_an_idle_value_gives_its_slot_back_and_a_used_one_keeps_it():
    capped = Tally()
    values = LabelValues(3, 10, capped)
    assert [values("model", v) for v in ("a", "b", "c", "d")] == ["a", "b", "c", OTHER]
    assert capped.counts == {("model",): 1}
    values.expire(TTL, 1000.0)                       # a, b and c were in use before this pass
    assert values("model", "a") == "a"               # a stays in use
    values.expire(TTL, 1000.0 + TTL / 2)
    assert values("model", "e") == OTHER             # b and c idle for less than the TTL: still full
    assert values("model", "a") == "a"
    values.expire(TTL, 1001.0 + TTL)                 # b and c idle for longer than the TTL
    assert [values("model", v) for v in ("e", "f", "g")] == ["e", "f", OTHER]
    assert values("model", "a") == "a"
    assert capped.counts == {("model",): 3}


def test_pinned_values_never_expire_and_labels_are_capped_apart():
    capped = Tally()
    values = LabelValues(2, 10, capped)
    values.pin("component", ["gateway", "llm_inference"])
    values.expire(TTL, 1000.0)
    values.expire(TTL, 1000.0 + 10 * TTL)
    assert values("component", "gateway") == "gateway" and values("component", "x") == OTHER
    assert values("model", "x") == "x"               # another label, its own slots
    assert values("component", "a-very-long-name") == OTHER and values("model", "a-very-long-name") == "a-very-lon"
    assert capped.counts == {("component",): 2}


def requests_of(exp: Exporter, service: str) -> float:
    return sum(s[0] for k, s in exp.metrics.requests.series.items() if k[0] == service)


def test_a_flood_of_services_fades_with_its_series():
    exp = Exporter(load(None, ["store.enabled=false", "traces.finish_delay=0", "limits.label_values=20",
                               f"limits.series_ttl={TTL}"]))
    ingest = exp.ingest

    def send(service):
        ingest.process(request(tree(("gateway", 0, 10)), service), "test")
        ingest.finish_traces(everything=True)

    for i in range(50):
        send(f"junk-{i}")
    send("checkout-service")
    assert requests_of(exp, "checkout-service") == 0 and requests_of(exp, OTHER) == 31
    assert exp.metrics.label_capped.value(("service",)) == 31
    now = exp.store.clock.now
    ingest.expire_series(now + 1)                    # a housekeeping pass after the flood
    ingest.expire_series(now + TTL + 2)              # the flood is idle for longer than the TTL
    send("checkout-service")
    assert requests_of(exp, "checkout-service") == 1
    assert exp.metrics.label_capped.value(("service",)) == 31
    assert exp.recorder.services == {"checkout-service"}  # the recorder forgot the junk services too


LLM = {"gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-4o-mini",
       "gen_ai.usage.input_tokens": 100, "gen_ai.usage.output_tokens": 10}


def test_the_interaction_store_keeps_values_as_sent_under_a_full_cap(tmp_path):
    exp = Exporter(load(None, ["traces.finish_delay=0", "limits.label_values=5", "limits.tenant_values=5",
                               f"store.url=sqlite:///{tmp_path}/interactions.db"]))
    ingest, store = exp.ingest, exp.interactions
    store.start()
    try:
        for i in range(20):
            junk = {**LLM, "gen_ai.request.model": f"junk-model-{i}"}
            ingest.process(request(tree(("gateway", 0, 10, {"pipeline.mode": f"mode-{i}", "tenant.id": f"t-{i}"},
                                         [("llm_inference", 1, 9, junk)])), f"junk-{i}"), "test")
        real = tree(("gateway", 0, 10, {"pipeline.mode": "voice", "tenant.id": "acme"}, [("llm_inference", 1, 9, LLM)]))
        long_service = "s" * 10_000
        long = tree(("gateway", 0, 10, {"pipeline.mode": "m" * 10_000}))
        ingest.process(request(real, "checkout-service"), "test")
        ingest.process(request(long, long_service), "test")
        ingest.finish_traces(everything=True)
        assert requests_of(exp, "checkout-service") == 0      # the metrics' cap is full...
        assert store.stop_writer(10.0)
        doc = store.interaction(real[0].trace_id.hex())       # ...the store keeps the values as sent
        assert (doc["service"], doc["model"], doc["mode"], doc["tenant"]) == \
            ("checkout-service", "gpt-4o-mini", "voice", "acme")
        doc = store.interaction(long[0].trace_id.hex())
        assert doc["service"] == "s" * 256 and doc["mode"] == "m" * 256
        # a rating answers with the values as sent; its metric keys by the capped ones
        status, doc = asyncio.run(exp.feedback.submit(Rating(interaction_id=real[0].trace_id.hex(), rating=1)))
        assert status == 201 and (doc["service"], doc["model"]) == ("checkout-service", "gpt-4o-mini")
        assert set(exp.metrics.feedback_low.series) == {(OTHER, OTHER, OTHER)}  # every cap is full
    finally:
        store.close()


def test_memoised_genai_and_flag_labels_stay_in_use_and_count_every_capped_use():
    """The recorder memoises a call's and a flag evaluation's label values: a value used only through
    the memo must still count as in use at each expiry pass, and each use of a capped value is counted."""
    exp = Exporter(load(None, ["store.enabled=false", "traces.finish_delay=0", "limits.label_values=3",
                               f"limits.series_ttl={TTL}"]))
    ingest, m = exp.ingest, exp.metrics
    flag = {"feature_flag.key": "rag", "feature_flag.result.variant": "on"}

    def send(model, service="checkout"):
        llm = {**LLM, "gen_ai.request.model": model}
        root = {"_events": [("feature_flag.evaluation", flag)]}
        ingest.process(request(tree(("gateway", 0, 10, root, [("llm_inference", 1, 9, llm)])), service), "test")
        ingest.finish_traces(everything=True)

    def calls(model):
        return sum(s[2] for k, s in m.genai_duration.series.items() if k[2] == model)

    send("gpt-4o-mini")
    assert calls("gpt-4o-mini") == 1
    assert sum(s[0] for k, s in m.flag_evaluations.series.items() if k[1:3] == ("rag", "on")) == 1
    now = exp.store.clock.now
    for step in range(1, 5):  # used in every pass, for four times the TTL: through the memo after the first use
        ingest.expire_series(now + step * TTL / 2)
        send("gpt-4o-mini")
    ingest.expire_series(now + 3 * TTL)
    labels = exp.recorder.label.seen
    assert "gpt-4o-mini" in labels["model"] and "rag" in labels["flag"] and "on" in labels["variant"]
    send("m1")  # the model label's three slots: gpt-4o-mini, "" (no response model) and m1
    before = m.label_capped.value(("model",))
    send("m2")
    send("m2")
    assert m.label_capped.value(("model",)) == before + 4  # each use counted (request model and model)
    assert calls(OTHER) == 2


def test_long_values_cut_to_one_label_value_are_not_memoised():
    """Values longer than a label value are cut: a flood of distinct long names admitted as one cut
    value must not fill the recorder's memo with their long keys."""
    exp = Exporter(load(None, ["store.enabled=false", "traces.finish_delay=0", "limits.label_value_length=16"]))
    for i in range(50):
        llm = {**LLM, "gen_ai.request.model": "m" * 100 + str(i)}
        exp.ingest.process(request(tree(("gateway", 0, 10, {}, [("llm_inference", 1, 9, llm)]))), "test")
    exp.ingest.process(request(tree(("gateway", 0, 10, {}, [("llm_inference", 1, 9, LLM)]))), "test")
    assert set(exp.recorder.label.seen["model"]) >= {"m" * 16, "gpt-4o-mini"}
    assert [sent[2] for sent in exp.recorder.genai_labels] == ["gpt-4o-mini"]  # (…, request model, …)
