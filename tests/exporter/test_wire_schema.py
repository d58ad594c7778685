"""The native reader's field table (SCHEMA in decode/_otlpwire.c) against the protobuf descriptors of
the OTLP schema it claims: the `opentelemetry-proto` the exporter depends on, as installed.

The reader validates the messages it does not read (scope, links, entity refs, key-value lists, the
values of unknown attributes) from that table, as upb validates them. A field the table lacks would be
skipped unchecked where upb checks it (a new string field's UTF-8), and a field with the wrong kind
or flags would be refused or accepted differently: either makes the two readers disagree. So every
field of every message the table covers must be there with its number, wire kind, oneof and
singular-message flags and its message type, and nothing else.
"""
import re
from pathlib import Path

import pytest
from google.protobuf.descriptor import FieldDescriptor as F
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

SOURCE = Path(__file__).resolve().parents[2] / "exporter" / "spanscope" / "decode" / "_otlpwire.c"

MESSAGES = {
    "M_KEYVALUE": common_pb2.KeyValue, "M_ANYVALUE": common_pb2.AnyValue, "M_ARRAYVALUE": common_pb2.ArrayValue,
    "M_KVLIST": common_pb2.KeyValueList, "M_SCOPE": common_pb2.InstrumentationScope,
    "M_LINK": trace_pb2.Span.Link, "M_ENTITYREF": common_pb2.EntityRef,
}
KIND = {
    F.TYPE_STRING: "K_STRING", F.TYPE_BYTES: "K_BYTES", F.TYPE_MESSAGE: "K_MESSAGE",
    F.TYPE_DOUBLE: "K_I64", F.TYPE_FIXED64: "K_I64", F.TYPE_SFIXED64: "K_I64",
    F.TYPE_FLOAT: "K_I32", F.TYPE_FIXED32: "K_I32", F.TYPE_SFIXED32: "K_I32",
    **{t: "K_VARINT" for t in (F.TYPE_INT32, F.TYPE_INT64, F.TYPE_UINT32, F.TYPE_UINT64, F.TYPE_SINT32,
                               F.TYPE_SINT64, F.TYPE_BOOL, F.TYPE_ENUM)},
}
TABLE = re.compile(r"static const FieldDef SCHEMA\[M_COUNT\]\[MAX_FIELD \+ 1\] = \{(.*?)\n\};", re.S)
MESSAGE = re.compile(r"\[(M_\w+)\] = \{(.*?)\n    \},", re.S)
FIELD = re.compile(r"\[(\d+)\] = \{(K_\w+), ([^,]+), ([^}]+)\}")


def table() -> dict[str, dict[int, tuple]]:
    """SCHEMA as written: message -> field number -> (kind, flags, sub-message)."""
    body = TABLE.search(SOURCE.read_text())
    assert body, "SCHEMA not found in _otlpwire.c"
    out = {}
    for name, fields in MESSAGE.findall(body.group(1)):
        out[name] = {}
        for number, kind, flags, sub in FIELD.findall(fields):
            flags = frozenset() if flags.strip() == "0" else frozenset(f.strip() for f in flags.split("|"))
            out[name][int(number)] = (kind, flags, None if sub.strip() == "0" else sub.strip())
    return out


def expected(message) -> dict[int, tuple]:
    """The same from the descriptor: what upb checks of each field."""
    by_type = {m.DESCRIPTOR.full_name: name for name, m in MESSAGES.items()}
    out = {}
    for f in message.DESCRIPTOR.fields:
        flags = set()
        if f.containing_oneof is not None:
            flags.add("F_ONEOF")
        if f.type == F.TYPE_MESSAGE and not f.is_repeated:
            flags.add("F_SINGULAR")
        sub = by_type[f.message_type.full_name] if f.type == F.TYPE_MESSAGE else None
        out[f.number] = (KIND[f.type], frozenset(flags), sub)
    return out


def test_the_table_covers_the_messages_it_validates():
    assert set(table()) == set(MESSAGES)


@pytest.mark.parametrize("name", sorted(MESSAGES))
def test_every_field_matches_the_descriptor(name):
    assert table()[name] == expected(MESSAGES[name]), MESSAGES[name].DESCRIPTOR.full_name


def test_a_field_missing_from_the_table_would_be_found():
    """The comparison can fail: a field taken out of a parsed table no longer matches."""
    kv = dict(table()["M_KEYVALUE"])
    del kv[3]
    assert kv != expected(common_pb2.KeyValue)
