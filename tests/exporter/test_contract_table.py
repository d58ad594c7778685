"""The span contract's table (spanscope.interpret.attributes): docs/span-contract.md shows exactly its
rows, and every key in it is read (a span carrying it gives another record than the same span without)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
from protospans import request, span
from spanscope.decode.otlp import decode_protobuf
from spanscope.decode.wire import Reader
from spanscope.interpret import attributes
from spanscope.interpret.attributes import (
    ANY,
    ATTRIBUTES,
    BREAKER_TRANSITION,
    COUNT,
    ERROR_CLASS,
    FLAG,
    FLAG_EVALUATION,
    NUMBER,
    RESOURCE,
    SPAN,
    TEXT,
    TEXT_LIST,
    Attribute,
    OneOf,
    Range,
)
from spanscope.interpret.contract import (
    EVENT_KEYS,
    EVENT_NAMES,
    KNOWN_KEYS,
    READER,
    SpanRecord,
    read_span,
)

DOC = Path(__file__).resolve().parents[2] / "docs/span-contract.md"
PY_READER = Reader(KNOWN_KEYS, EVENT_NAMES, EVENT_KEYS, native=False)


def test_doc_tables_are_the_table():
    doc = DOC.read_text()
    assert attributes.render(doc) == doc, (
        "docs/span-contract.md disagrees with interpret/attributes.py: "
        "run python -m spanscope.interpret.attributes --markdown docs/span-contract.md")


def test_every_row_is_in_a_doc_table():
    tables = {m[2] for m in attributes.MARKER.finditer(DOC.read_text())}
    assert {attributes.table_of(row) for row in ATTRIBUTES} == tables - set(attributes.GENERATED)
    assert set(attributes.GENERATED) <= tables


def test_a_changed_row_makes_the_doc_disagree():
    doc = DOC.read_text()
    changed = tuple(row._replace(doc="something else") if row.field == "tenant" else row for row in ATTRIBUTES)
    assert attributes.render(doc, changed) != doc
    assert attributes.main(["--markdown", str(DOC), "--check"]) == 0


def sample(row: Attribute):
    """A value the row accepts that is not its default."""
    if isinstance(row.check, OneOf):
        return row.check.values[-1]
    if isinstance(row.check, Range):
        return (row.check.low + min(row.check.high, 1)) / 2
    return {TEXT: "x1", COUNT: 7, NUMBER: 3.5, TEXT_LIST: ["w1", "w2"], ANY: "Value", FLAG: True,
            ERROR_CLASS: "x1"}[row.type]


def context(row: Attribute) -> dict:
    """What an event needs beside `row` to be read at all."""
    if row.on == FLAG_EVALUATION and row.field != "flag.key":
        return {"feature_flag.key": "f"}
    if row.on == BREAKER_TRANSITION:
        return {other.keys[0]: sample(other) for other in ATTRIBUTES
                if other.on == BREAKER_TRANSITION and other.field != row.field}
    return {}


def record(attrs: dict, row: Attribute, reader: Reader, event: str = "") -> dict:
    """The record of one span carrying `attrs` where `row` says they are (on a resource without
    attributes when `row` is a resource's and `attrs` is empty)."""
    s = span(os.urandom(16), "op", 0, 5, span_id=b"s" * 8, attrs=attrs if row.on == SPAN else None,
             events=[(event or row.on.names[0], attrs)] if row.on not in (SPAN, RESOURCE) else ())
    req = request([s], service=attrs.get(row.keys[0], "") if row.on == RESOURCE else "svc")
    if row.on == RESOURCE and not attrs:
        del req.resource_spans[0].resource.attributes[:]
    [(service, [raw])] = reader.from_bytes(req.SerializeToString(), decode_protobuf)
    r = read_span(raw, service, ())
    return {name: getattr(r, name) for name in SpanRecord.__slots__ if name not in ("trace_id", "span_id")}


ROWS_AND_KEYS = [(row, key) for row in ATTRIBUTES for key in row.keys]


@pytest.mark.parametrize("reader", [READER, PY_READER], ids=["reader", "python"])
@pytest.mark.parametrize("row, key", ROWS_AND_KEYS, ids=[f"{row.field}:{key}" for row, key in ROWS_AND_KEYS])
def test_every_key_is_read(row, key, reader):
    base = context(row)
    with_key = record({**base, key: sample(row)}, row, reader)
    assert with_key != record(base, row, reader), f"{key} ({row.field}) changes nothing: a dead row"


@pytest.mark.parametrize("reader", [READER, PY_READER], ids=["reader", "python"])
def test_the_current_name_wins_over_older_ones(reader):
    row = next(r for r in ATTRIBUTES if r.field == "genai.usage.input")
    current, old, older = row.keys
    got = record({older: 5, old: 6, current: 7}, row, reader)["genai"].usage.input
    assert got == 7
    assert record({older: 5, old: "six", current: "seven"}, row, reader)["genai"].usage.input == 5


@pytest.mark.parametrize("row", [next(r for r in ATTRIBUTES if r.on == event) for event in
                                 (FLAG_EVALUATION, BREAKER_TRANSITION)], ids=lambda row: row.field)
def test_every_event_name_is_read(row):
    attrs = {**context(row), row.keys[0]: sample(row)}
    for name in row.on.names:
        assert record(attrs, row, READER, name) != record({}, row, READER, name), name


def test_rows_for_one_field_merge_and_must_agree():
    from spanscope.interpret.contract import _merge

    extra = Attribute("genai.usage.input", ("llm.token_count.prompt",), COUNT, "OpenInference", unit="{token}",
                      default=0)
    [field] = _merge([r for r in ATTRIBUTES if r.field == "genai.usage.input"] + [extra])
    assert field.keys[-1] == "llm.token_count.prompt" and field.keys[0] == "gen_ai.usage.input_tokens"
    with pytest.raises(ValueError, match="disagree"):
        _merge([r for r in ATTRIBUTES if r.field == "genai.usage.input"] + [extra._replace(type=TEXT)])
