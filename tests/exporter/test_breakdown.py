"""Self time and critical path on hand-constructed traces (docs: DESIGN definitions)."""
import os
from collections import defaultdict

import pytest
from hypothesis import given, settings, strategies as st

from spanscope.interpret.contract import READER, SpanRecord, read_span
from spanscope.interpret.traces import _children_index, _covered, breakdown

from protospans import span, tree

MS = 1_000_000


def records(spans):
    return [read_span(READER._span(s), "svc", []) for s in spans]


def run(spans):
    recs = records(spans)
    root = next(r for r in recs if r.is_root)
    critical, self_time, by_feature = breakdown(recs, root)
    def in_ms(nanoseconds: dict) -> dict:
        return {k: v / MS for k, v in nanoseconds.items() if v}
    return root, in_ms(critical), in_ms(self_time), by_feature


DESIGN_EXAMPLE = ("gateway", 0, 1000, {}, [
    ("cache_lookup", 0, 10),
    ("intent_classification", 10, 60),
    ("rag_lookup", 60, 260, {"pipeline.feature": "rag_weather"}),
    ("rag_lookup", 60, 360, {"pipeline.feature": "rag_sports"}),
    ("llm_inference", 360, 860),
    ("response_assembly", 860, 900),
])


def test_design_example_parallel_rag():
    root, critical, self_time, by_feature = run(tree(DESIGN_EXAMPLE))
    assert critical == {"gateway": 100, "response_assembly": 40, "llm_inference": 500, "rag_lookup": 300,
                        "intent_classification": 50, "cache_lookup": 10}
    assert sum(critical.values()) == 1000
    # rag self time counts both parallel spans in full; the gateway keeps only the uncovered 100 ms
    assert self_time["rag_lookup"] == 500 and self_time["gateway"] == 100
    # only the slower RAG source is on the critical path
    assert by_feature == {"rag_sports": 300 * MS}


def test_sequential_sum_is_exact():
    spec = ("gateway", 0, 123.456789, {}, [("a", 1.000001, 50.5), ("b", 50.5, 99.999999, {}, [("c", 60, 70)])])
    root, critical, _, _ = run(tree(spec))
    total_ns = sum(v * MS for v in critical.values())
    assert abs(total_ns - root.duration_ns) < 1e-3 * MS  # < 1 µs
    assert critical["c"] == pytest.approx(10)


def test_children_outliving_parent_are_clipped():
    spec = ("gateway", 0, 100, {}, [("worker", 50, 400, {}, [("late", 350, 500)])])
    root, critical, self_time, _ = run(tree(spec))
    assert critical == {"gateway": 50, "worker": 50}
    assert sum(critical.values()) == 100
    assert self_time["gateway"] == 50 and self_time["worker"] == 300  # worker's own window, late clipped


def test_missing_parent_orphans_hang_from_root():
    spans = tree(("gateway", 0, 200, {}, [("mid", 10, 150, {}, [("leaf", 20, 140)])]))
    without_mid = [s for s in spans if s.name != "mid"]
    root, critical, _, _ = run(without_mid)
    assert critical == {"gateway": 80, "leaf": 120}
    assert sum(critical.values()) == 200


def test_parallel_overlapping_children_take_the_last_finishing_chain():
    spec = ("gateway", 0, 600, {}, [("a", 0, 500), ("b", 400, 600)])
    _, critical, self_time, _ = run(tree(spec))
    assert critical == {"b": 200, "gateway": 400}  # a ends after b starts: not on the path (Jaeger)
    assert self_time.get("gateway", 0) == 0


def test_duplicate_span_ids_and_self_parent_do_not_break_the_sum():
    tid = os.urandom(16)
    root = span(tid, "gateway", 0, 100, attrs={"pipeline.component": "gateway"})
    dup_id = b"\x00" * 7 + b"\x09"
    a = span(tid, "a", 10, 50, root.span_id, {"pipeline.component": "a"}, span_id=dup_id)
    a2 = span(tid, "a2", 20, 90, root.span_id, {"pipeline.component": "a2"}, span_id=dup_id)
    selfish = span(tid, "loop", 60, 70, b"\x00" * 7 + b"\x0a", {"pipeline.component": "loop"},
                   span_id=b"\x00" * 7 + b"\x0a")
    _, critical, _, _ = run([root, a, a2, selfish])
    assert sum(critical.values()) == 100
    assert "a2" not in critical  # the first of duplicate ids wins


def test_cyclic_parents_unreachable_from_root_are_ignored():
    tid = os.urandom(16)
    # fixed ids: from the shared counter the root's could be x's when other tests built 32 spans first
    root = span(tid, "gateway", 0, 100, attrs={"pipeline.component": "gateway"}, span_id=b"\xff" * 8)
    x_id, y_id = b"\x00" * 7 + b"\x21", b"\x00" * 7 + b"\x22"
    x = span(tid, "x", 10, 20, y_id, {"pipeline.component": "x"}, span_id=x_id)
    y = span(tid, "y", 30, 40, x_id, {"pipeline.component": "y"}, span_id=y_id)
    _, critical, self_time, _ = run([root, x, y])
    assert critical == {"gateway": 100}
    assert self_time == {"gateway": 100}


def test_deep_chain_of_ten_thousand_levels():
    tid = os.urandom(16)
    spans, parent = [], b""
    for i in range(10_000):
        s = span(tid, "n", i * 0.01, 200 - i * 0.01, parent, {"pipeline.component": f"level{i % 3}"})
        spans.append(s)
        parent = s.span_id
    root, critical, _, _ = run(spans)
    assert abs(sum(v * MS for v in critical.values()) - root.duration_ns) < 1e-3 * MS


def test_zero_length_children_and_root():
    _, critical, _, _ = run(tree(("gateway", 5, 5, {}, [("a", 5, 5)])))
    assert critical == {}
    _, critical, _, _ = run(tree(("gateway", 0, 10, {}, [("a", 3, 3), ("b", 4, 6)])))
    assert critical == {"gateway": 8, "b": 2}


@pytest.mark.timeout(10)
def test_a_span_reusing_the_root_id_cannot_form_a_cycle():
    # Found by the fuzz test: D shares the root's id and arrives first, B is a child of that id and
    # D's parent. Taking D for the root's id made root -> B -> D -> B ... an endless walk.
    tid = os.urandom(16)
    rid, bid = b"\x00" * 7 + b"\x01", b"\x00" * 7 + b"\x02"
    d = span(tid, "d", 0, 100, bid, {"pipeline.component": "d"}, span_id=rid)
    root = span(tid, "gateway", 0, 100, attrs={"pipeline.component": "gateway"}, span_id=rid)
    b = span(tid, "b", 0, 100, rid, {"pipeline.component": "b"}, span_id=bid)
    recs = records([d, root, b])
    critical, self_time, _ = breakdown(recs, recs[1])
    assert {k: v / MS for k, v in critical.items() if v} == {"b": 100}
    assert sum(critical.values()) == 100 * MS


# --- the fast walk against the definition, step by step ------------------------------------------

def definition(spans, root):
    """The critical path walked exactly as the docstring of breakdown() says (the test's oracle):
    at every step, scan all children for the one ending last at or before t."""
    children = _children_index(spans, root)
    critical, self_time, by_feature = defaultdict(int), defaultdict(int), defaultdict(int)
    stack = [root]
    while stack:
        s = stack.pop()
        kids = children.get(s.span_id, [])
        stack.extend(kids)
        own = s.end - s.start - (_covered(s, kids) if kids else 0)
        self_time[s.component] += max(own, 0)

    def credit(s, ns):
        if ns > 0:
            critical[s.component] += ns
            if s.feature:
                by_feature[s.feature] += ns

    frames = [(root, root.start, root.end, root.end)]
    while frames:
        s, lo, hi, t = frames.pop()
        best = None
        for k in children.get(s.span_id, ()):
            k_start, k_end = max(k.start, lo), min(k.end, hi)
            if k_start < k_end <= t and (best is None or k_end > best[2]):
                best = (k, k_start, k_end)
        if best is None:
            credit(s, t - lo)
            continue
        k, k_start, k_end = best
        credit(s, t - k_end)
        frames += [(s, lo, hi, k_start), (k, k_start, k_end, k_end)]
    return critical, self_time, by_feature


def record(i, parent, start, end, component, feature):
    r = SpanRecord()
    r.span_id, r.parent_id = bytes([0] * 7 + [i]), parent
    r.start, r.end, r.component, r.feature = start, end, component, feature
    return r


@st.composite
def traces(draw):
    """Up to 12 spans: parents among the others (or unknown, or itself), duplicate ids, children
    outside their parent's window, ties in end times, zero-length spans."""
    n = draw(st.integers(1, 12))
    ids = draw(st.lists(st.integers(1, n + 2), min_size=n, max_size=n))
    spans = []
    for i in range(n):
        start = draw(st.integers(0, 100))
        end = start + draw(st.integers(0, 60))
        parent = b"" if i == 0 else bytes([0] * 7 + [draw(st.sampled_from(ids + [99]))])
        spans.append(record(ids[i], parent, start, end, draw(st.sampled_from("abc")),
                            draw(st.sampled_from([None, "f", "g"]))))
    return spans


@settings(max_examples=400, deadline=None)
@given(traces())
def test_breakdown_matches_the_definition(spans):
    root = spans[0]
    assert breakdown(spans, root) == definition(spans, root)
    critical, _, _ = breakdown(spans, root)
    assert sum(critical.values()) == root.end - root.start
