/*
 * spanscope._otlpwire: reads an OTLP ExportTraceServiceRequest straight from the protobuf wire
 * format into the raw-span tuples of spanscope.wire (see RawSpan and Reader.from_message there).
 *
 *     reader = Reader(span_keys: dict[str, int], event_names: frozenset[str], event_keys: frozenset[str])
 *     reader.read(body) -> [(service_name, [(trace_id, span_id, parent_span_id, flags, name,
 *                                             start, end, status_code, attributes, groups, events,
 *                                             scope_name)])]
 *
 * events: [(name, time_unix_nano, {key: value})]; scope_name: the name of the span's
 * instrumentation scope ("" when absent), one str object per scope group.
 *
 * The reader never decides validity. It walks every message of the schema (opentelemetry-proto
 * trace/v1, common/v1, resource/v1) checking what upb checks (varints, lengths, wire types, UTF-8
 * of string fields, nesting depth), and raises ValueError for anything it does not handle exactly
 * as upb would -- malformed input, but also valid input it chooses not to handle: groups, a known
 * field with an unexpected wire type, a singular message or an AnyValue oneof occurring twice
 * (upb merges / replaces), deep nesting, non-canonical 10-byte varints. The caller then decodes
 * the body with upb, which decides.
 *
 * No Python code runs while a body is read (only str/bytes/int/float/dict/list/tuple creation);
 * the body's buffer is held for the whole read.
 *
 * Schema: OTLP as the `opentelemetry-proto` the exporter depends on defines it (>= 1.30, < 2).
 * tests/exporter/test_wire_schema.py checks SCHEMA below against that package's descriptors.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>
#include <string.h>

/* upb's Python binding allows 100 nested messages; give up well before that. */
#define MAX_DEPTH 64

typedef const uint8_t *ptr_t;

/* ---------------------------------------------------------------------------------------------
 * Wire primitives. Every function returning int gives 0 on success and -1 with an exception set.
 * ------------------------------------------------------------------------------------------- */

static int
give_up(const char *why)
{
    PyErr_SetString(PyExc_ValueError, why);
    return -1;
}

enum { WT_VARINT = 0, WT_I64 = 1, WT_LEN = 2, WT_I32 = 5 };

static inline int
rd_varint(ptr_t *pp, ptr_t end, uint64_t *out)
{
    ptr_t p = *pp;
    if (p < end && *p < 0x80) {
        *out = *p;
        *pp = p + 1;
        return 0;
    }
    uint64_t v = 0;
    for (int i = 0; i < 10; i++) {
        if (p >= end)
            return give_up("truncated varint");
        uint8_t b = *p++;
        /* upb drops the excess bits of a 10th byte; such varints are left to upb */
        if (i == 9 && b > 1)
            return give_up("overlong varint");
        v |= (uint64_t)(b & 0x7f) << (7 * i);
        if (!(b & 0x80)) {
            *out = v;
            *pp = p;
            return 0;
        }
    }
    return give_up("overlong varint"); /* not reached */
}

/* A tag: field number >= 1, wire type 0, 1, 2 or 5 (groups are left to upb). */
static inline int
rd_tag(ptr_t *pp, ptr_t end, uint32_t *field, int *wt)
{
    ptr_t p = *pp;
    uint64_t t;
    if (p < end && *p < 0x80) {
        t = *p;
        *pp = p + 1;
    }
    else {
        if (rd_varint(pp, end, &t) < 0)
            return -1;
        if (*pp - p > 5 || t > UINT32_MAX)
            return give_up("invalid tag");
    }
    *field = (uint32_t)(t >> 3);
    *wt = (int)(t & 7);
    if (*field == 0)
        return give_up("field number 0");
    if (*wt != WT_VARINT && *wt != WT_I64 && *wt != WT_LEN && *wt != WT_I32)
        return give_up("group or invalid wire type");
    return 0;
}

/* A length-delimited payload: [*sub, *sub + *n) inside the buffer. */
static inline int
rd_len(ptr_t *pp, ptr_t end, ptr_t *sub, size_t *n)
{
    uint64_t v;
    if (rd_varint(pp, end, &v) < 0)
        return -1;
    if (v >= INT32_MAX || v > (uint64_t)(end - *pp))
        return give_up("length past the end");
    *sub = *pp;
    *n = (size_t)v;
    *pp += v;
    return 0;
}

static inline int
rd_fixed64(ptr_t *pp, ptr_t end, uint64_t *out)
{
    ptr_t p = *pp;
    if (end - p < 8)
        return give_up("truncated fixed64");
    *out = (uint64_t)p[0] | (uint64_t)p[1] << 8 | (uint64_t)p[2] << 16 | (uint64_t)p[3] << 24 |
           (uint64_t)p[4] << 32 | (uint64_t)p[5] << 40 | (uint64_t)p[6] << 48 | (uint64_t)p[7] << 56;
    *pp = p + 8;
    return 0;
}

static inline int
rd_fixed32(ptr_t *pp, ptr_t end, uint32_t *out)
{
    ptr_t p = *pp;
    if (end - p < 4)
        return give_up("truncated fixed32");
    *out = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
    *pp = p + 4;
    return 0;
}

/* An unknown field (upb keeps it as unknown bytes without looking inside). */
static int
skip_field(ptr_t *pp, ptr_t end, int wt)
{
    uint64_t v;
    uint32_t v32;
    ptr_t sub;
    size_t n;
    switch (wt) {
    case WT_VARINT:
        return rd_varint(pp, end, &v);
    case WT_I64:
        return rd_fixed64(pp, end, &v);
    case WT_I32:
        return rd_fixed32(pp, end, &v32);
    case WT_LEN:
        return rd_len(pp, end, &sub, &n);
    default:
        return give_up("invalid wire type");
    }
}

/* Well-formed UTF-8 as the Unicode standard (table 3-7), utf8_range (upb) and Python's strict
 * decoder define it: no overlong forms, no surrogates, nothing above U+10FFFF. */
static int
utf8_valid(ptr_t s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        uint8_t c = s[i];
        if (c < 0x80) {
            while (i + 8 <= n) {
                uint64_t w;
                memcpy(&w, s + i, 8);
                if (w & 0x8080808080808080ULL)
                    break;
                i += 8;
            }
            while (i < n && s[i] < 0x80)
                i++;
            continue;
        }
        if (c >= 0xC2 && c <= 0xDF) {
            if (n - i < 2 || (s[i + 1] & 0xC0) != 0x80)
                return 0;
            i += 2;
        }
        else if (c >= 0xE0 && c <= 0xEF) {
            uint8_t lo = c == 0xE0 ? 0xA0 : 0x80, hi = c == 0xED ? 0x9F : 0xBF;
            if (n - i < 3 || s[i + 1] < lo || s[i + 1] > hi || (s[i + 2] & 0xC0) != 0x80)
                return 0;
            i += 3;
        }
        else if (c >= 0xF0 && c <= 0xF4) {
            uint8_t lo = c == 0xF0 ? 0x90 : 0x80, hi = c == 0xF4 ? 0x8F : 0xBF;
            if (n - i < 4 || s[i + 1] < lo || s[i + 1] > hi || (s[i + 2] & 0xC0) != 0x80 ||
                (s[i + 3] & 0xC0) != 0x80)
                return 0;
            i += 4;
        }
        else
            return 0;
    }
    return 1;
}

/* A proto3 string field: length-delimited, valid UTF-8 (upb rejects the body otherwise). */
static inline int
rd_string(ptr_t *pp, ptr_t end, ptr_t *s, size_t *n)
{
    if (rd_len(pp, end, s, n) < 0)
        return -1;
    if (!utf8_valid(*s, *n))
        return give_up("invalid UTF-8 in a string field");
    return 0;
}

#define EXPECT(wt_, want_)                                                                     \
    do {                                                                                       \
        if ((wt_) != (want_)) {                                                                \
            give_up("unexpected wire type for a known field");                                 \
            goto error;                                                                        \
        }                                                                                      \
    } while (0)

#define TRY(expr)                                                                              \
    do {                                                                                       \
        if ((expr) < 0)                                                                        \
            goto error;                                                                        \
    } while (0)

/* ---------------------------------------------------------------------------------------------
 * Validation of the messages whose content is not read (scope, links, entity refs, kvlists, the
 * values of unknown attributes): a table of each message's fields, checked as upb checks them.
 * ------------------------------------------------------------------------------------------- */

enum { K_NONE = 0, K_VARINT, K_I64, K_I32, K_STRING, K_BYTES, K_MESSAGE };
enum { F_SINGULAR = 1, F_ONEOF = 2 }; /* F_SINGULAR: a singular message field */
enum { M_KEYVALUE, M_ANYVALUE, M_ARRAYVALUE, M_KVLIST, M_SCOPE, M_LINK, M_ENTITYREF, M_COUNT };

#define MAX_FIELD 8

typedef struct {
    uint8_t kind, flags, sub;
} FieldDef;

/* Indexed by field number; numbers above MAX_FIELD or with kind K_NONE are unknown fields. */
static const FieldDef SCHEMA[M_COUNT][MAX_FIELD + 1] = {
    [M_KEYVALUE] = {
        [1] = {K_STRING, 0, 0},                          /* key */
        [2] = {K_MESSAGE, F_SINGULAR, M_ANYVALUE},       /* value */
        [3] = {K_VARINT, 0, 0},                          /* key_strindex (int32) */
    },
    [M_ANYVALUE] = {
        [1] = {K_STRING, F_ONEOF, 0},                    /* string_value */
        [2] = {K_VARINT, F_ONEOF, 0},                    /* bool_value */
        [3] = {K_VARINT, F_ONEOF, 0},                    /* int_value */
        [4] = {K_I64, F_ONEOF, 0},                       /* double_value */
        [5] = {K_MESSAGE, F_ONEOF | F_SINGULAR, M_ARRAYVALUE},
        [6] = {K_MESSAGE, F_ONEOF | F_SINGULAR, M_KVLIST},
        [7] = {K_BYTES, F_ONEOF, 0},                     /* bytes_value */
        [8] = {K_VARINT, F_ONEOF, 0},                    /* string_value_strindex (int32) */
    },
    [M_ARRAYVALUE] = {
        [1] = {K_MESSAGE, 0, M_ANYVALUE},                /* values */
    },
    [M_KVLIST] = {
        [1] = {K_MESSAGE, 0, M_KEYVALUE},                /* values */
    },
    [M_SCOPE] = {                                        /* InstrumentationScope */
        [1] = {K_STRING, 0, 0},                          /* name */
        [2] = {K_STRING, 0, 0},                          /* version */
        [3] = {K_MESSAGE, 0, M_KEYVALUE},                /* attributes */
        [4] = {K_VARINT, 0, 0},                          /* dropped_attributes_count */
    },
    [M_LINK] = {                                         /* Span.Link */
        [1] = {K_BYTES, 0, 0},                           /* trace_id */
        [2] = {K_BYTES, 0, 0},                           /* span_id */
        [3] = {K_STRING, 0, 0},                          /* trace_state */
        [4] = {K_MESSAGE, 0, M_KEYVALUE},                /* attributes */
        [5] = {K_VARINT, 0, 0},                          /* dropped_attributes_count */
        [6] = {K_I32, 0, 0},                             /* flags */
    },
    [M_ENTITYREF] = {
        [1] = {K_STRING, 0, 0},                          /* schema_url */
        [2] = {K_STRING, 0, 0},                          /* type */
        [3] = {K_STRING, 0, 0},                          /* id_keys (repeated) */
        [4] = {K_STRING, 0, 0},                          /* description_keys (repeated) */
    },
};

static const int KIND_WIRE_TYPE[] = {
    [K_VARINT] = WT_VARINT, [K_I64] = WT_I64, [K_I32] = WT_I32,
    [K_STRING] = WT_LEN, [K_BYTES] = WT_LEN, [K_MESSAGE] = WT_LEN,
};

static int
validate(int msg, ptr_t p, ptr_t end, int depth)
{
    if (depth > MAX_DEPTH)
        return give_up("nesting too deep");
    uint32_t seen = 0; /* singular message fields seen, by field number */
    int oneof = 0;
    while (p < end) {
        uint32_t field;
        int wt;
        if (rd_tag(&p, end, &field, &wt) < 0)
            return -1;
        const FieldDef *fd = field <= MAX_FIELD ? &SCHEMA[msg][field] : NULL;
        if (fd == NULL || fd->kind == K_NONE) {
            if (skip_field(&p, end, wt) < 0)
                return -1;
            continue;
        }
        if (wt != KIND_WIRE_TYPE[fd->kind])
            return give_up("unexpected wire type for a known field");
        if (fd->flags & F_ONEOF) {
            if (oneof)
                return give_up("oneof set twice");
            oneof = 1;
        }
        if (fd->flags & F_SINGULAR) {
            if (seen & (1u << field))
                return give_up("singular message field twice");
            seen |= 1u << field;
        }
        uint64_t v;
        uint32_t v32;
        ptr_t s;
        size_t n;
        switch (fd->kind) {
        case K_VARINT:
            if (rd_varint(&p, end, &v) < 0)
                return -1;
            break;
        case K_I64:
            if (rd_fixed64(&p, end, &v) < 0)
                return -1;
            break;
        case K_I32:
            if (rd_fixed32(&p, end, &v32) < 0)
                return -1;
            break;
        case K_STRING:
            if (rd_string(&p, end, &s, &n) < 0)
                return -1;
            break;
        case K_BYTES:
            if (rd_len(&p, end, &s, &n) < 0)
                return -1;
            break;
        case K_MESSAGE:
            if (rd_len(&p, end, &s, &n) < 0 || validate(fd->sub, s, s + n, depth + 1) < 0)
                return -1;
            break;
        }
    }
    return 0;
}

/* ---------------------------------------------------------------------------------------------
 * Key tables: UTF-8 bytes -> the caller's str object (and group bit), open addressing.
 * ------------------------------------------------------------------------------------------- */

typedef struct {
    PyObject *obj; /* owned; NULL marks an empty slot */
    const char *s; /* obj's UTF-8 (cached in obj, alive as long as obj) */
    Py_ssize_t n;
    uint64_t hash;
    long long group;
} Entry;

typedef struct {
    Entry *slots;
    size_t mask;
    Py_ssize_t count;
} Table;

/* A hash of a short byte string in constant time: its length and its first, middle and last 8
 * bytes (only speed depends on its quality: lookups always compare the bytes). */
static inline uint64_t
hash_bytes(ptr_t s, size_t n)
{
    uint64_t a = 0, b = 0, c = 0;
    if (n >= 8) {
        memcpy(&a, s, 8);
        memcpy(&b, s + n - 8, 8);
        if (n > 16)
            memcpy(&c, s + n / 2 - 4, 8);
    }
    else
        memcpy(&a, s, n);
    uint64_t h = (a ^ 0x9E3779B97F4A7C15ULL) * 0xff51afd7ed558ccdULL ^
                 (b ^ (uint64_t)n) * 0xc4ceb9fe1a85ec53ULL ^ (c ^ 0x2545F4914F6CDD1DULL) * 0xbf58476d1ce4e5b9ULL;
    return h ^ (h >> 29);
}

static inline const Entry *
table_get(const Table *t, ptr_t s, size_t n)
{
    if (t->count == 0)
        return NULL;
    uint64_t h = hash_bytes(s, n);
    size_t i = (size_t)h & t->mask;
    for (;;) {
        const Entry *e = &t->slots[i];
        if (e->obj == NULL)
            return NULL;
        if (e->hash == h && (size_t)e->n == n && memcmp(e->s, s, n) == 0)
            return e;
        i = (i + 1) & t->mask;
    }
}

static void
table_clear(Table *t)
{
    if (t->slots != NULL) {
        for (size_t i = 0; i <= t->mask; i++)
            Py_XDECREF(t->slots[i].obj);
        PyMem_Free(t->slots);
    }
    t->slots = NULL;
    t->mask = 0;
    t->count = 0;
}

/* Fills `t` from a list of (str, group) pairs (groups = 1) or of str (groups = 0). Keys that are
 * not str, or have no UTF-8 form (lone surrogates), can never equal a decoded protobuf string and
 * are left out; so are span keys whose group is None (Reader._span treats them as unknown). */
static int
table_fill(Table *t, PyObject *items, int groups)
{
    Py_ssize_t count = PyList_GET_SIZE(items);
    size_t size = 8;
    while (size < (size_t)count * 2 + 2)
        size <<= 1;
    t->slots = PyMem_Calloc(size, sizeof(Entry));
    if (t->slots == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    t->mask = size - 1;
    t->count = 0;
    for (Py_ssize_t k = 0; k < PyList_GET_SIZE(items); k++) {
        PyObject *item = PyList_GET_ITEM(items, k), *key = item;
        long long group = 0;
        if (groups) {
            /* items of PyDict_Items: exact 2-tuples */
            key = PyTuple_GET_ITEM(item, 0);
            PyObject *value = PyTuple_GET_ITEM(item, 1);
            if (value == Py_None)
                continue;
            if (!PyLong_Check(value)) {
                PyErr_SetString(PyExc_TypeError, "span_keys values must be int (group bits)");
                return -1;
            }
            group = PyLong_AsLongLong(value);
            if (group == -1 && PyErr_Occurred())
                return -1;
        }
        if (!PyUnicode_Check(key))
            continue;
        Py_ssize_t n;
        const char *s = PyUnicode_AsUTF8AndSize(key, &n);
        if (s == NULL) {
            if (!PyErr_ExceptionMatches(PyExc_UnicodeEncodeError))
                return -1;
            PyErr_Clear();
            continue;
        }
        uint64_t h = hash_bytes((ptr_t)s, (size_t)n);
        size_t i = (size_t)h & t->mask;
        while (t->slots[i].obj != NULL &&
               !(t->slots[i].n == n && memcmp(t->slots[i].s, s, (size_t)n) == 0))
            i = (i + 1) & t->mask;
        Entry *e = &t->slots[i];
        if (e->obj == NULL)
            t->count++;
        Py_INCREF(key);
        Py_XSETREF(e->obj, key);
        e->s = s;
        e->n = n;
        e->hash = h;
        e->group = group;
    }
    return 0;
}

/* ---------------------------------------------------------------------------------------------
 * The Reader object.
 * ------------------------------------------------------------------------------------------- */

typedef struct {
    PyObject_HEAD
    Table span_keys;
    Table event_names;
    Table event_keys;
    PyObject *unknown_service;
} ReaderObject;

/* State of one read: the reader, and a cache of the short ASCII strings made so far (attribute
 * values and span names repeat a lot: components, models, operations, cache results...), so
 * that equal strings of one request share one str object. */
#define STR_CACHE_SLOTS 512 /* a power of 2 */
#define STR_CACHE_MAX_LEN 64

typedef struct {
    ReaderObject *r;
    PyObject *str[STR_CACHE_SLOTS]; /* owned references, or NULL */
    uint64_t hash[STR_CACHE_SLOTS];
} Ctx;

static inline int
is_ascii(ptr_t s, size_t n)
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, s + i, 8);
        if (w & 0x8080808080808080ULL)
            return 0;
    }
    for (; i < n; i++)
        if (s[i] & 0x80)
            return 0;
    return 1;
}

/* A str of valid UTF-8 (checked by rd_string). */
static PyObject *
new_str(Ctx *cx, ptr_t s, size_t n)
{
    if (n > STR_CACHE_MAX_LEN || !is_ascii(s, n))
        return PyUnicode_DecodeUTF8((const char *)s, (Py_ssize_t)n, NULL);
    uint64_t h = hash_bytes(s, n);
    size_t i = (size_t)h & (STR_CACHE_SLOTS - 1);
    PyObject *o = cx->str[i];
    if (o != NULL && cx->hash[i] == h && (size_t)PyUnicode_GET_LENGTH(o) == n &&
        memcmp(PyUnicode_1BYTE_DATA(o), s, n) == 0)
        return Py_NewRef(o);
    o = PyUnicode_New((Py_ssize_t)n, 127);
    if (o == NULL)
        return NULL;
    memcpy(PyUnicode_1BYTE_DATA(o), s, n);
    Py_XSETREF(cx->str[i], Py_NewRef(o));
    cx->hash[i] = h;
    return o;
}

static void
ctx_clear(Ctx *cx)
{
    for (size_t i = 0; i < STR_CACHE_SLOTS; i++)
        Py_CLEAR(cx->str[i]);
}

static PyObject *any_value(Ctx *cx, ptr_t p, ptr_t end, int depth);

/* KeyValue: key (last occurrence), value (at most once), key_strindex. The value is not looked at,
 * and the last key's UTF-8 is left to the caller (see key_valid): a key equal to a known key's
 * bytes needs no check. */
typedef struct {
    ptr_t key, value;
    size_t key_n, value_n;
    int has_value, has_key;
} KV;

static inline int
key_valid(const KV *kv)
{
    if (!utf8_valid(kv->key, kv->key_n))
        return give_up("invalid UTF-8 in a string field");
    return 0;
}

static int
read_kv(ptr_t p, ptr_t end, KV *kv)
{
    kv->key = p;
    kv->key_n = 0;
    kv->value = p;
    kv->value_n = 0;
    kv->has_value = 0;
    kv->has_key = 0;
    while (p < end) {
        uint32_t field;
        int wt;
        uint64_t v;
        TRY(rd_tag(&p, end, &field, &wt));
        switch (field) {
        case 1:
            EXPECT(wt, WT_LEN);
            if (kv->has_key && !utf8_valid(kv->key, kv->key_n))
                return give_up("invalid UTF-8 in a string field"); /* an overwritten key */
            kv->has_key = 1;
            TRY(rd_len(&p, end, &kv->key, &kv->key_n));
            break;
        case 2:
            EXPECT(wt, WT_LEN);
            if (kv->has_value)
                return give_up("singular message field twice");
            kv->has_value = 1;
            TRY(rd_len(&p, end, &kv->value, &kv->value_n));
            break;
        case 3:
            EXPECT(wt, WT_VARINT);
            TRY(rd_varint(&p, end, &v));
            break;
        default:
            TRY(skip_field(&p, end, wt));
        }
    }
    return 0;
error:
    return -1;
}

/* ArrayValue -> list of converted values. */
static PyObject *
array_value(Ctx *cx, ptr_t p, ptr_t end, int depth)
{
    if (depth > MAX_DEPTH) {
        give_up("nesting too deep");
        return NULL;
    }
    PyObject *list = PyList_New(0);
    if (list == NULL)
        return NULL;
    while (p < end) {
        uint32_t field;
        int wt;
        TRY(rd_tag(&p, end, &field, &wt));
        if (field == 1) {
            ptr_t s;
            size_t n;
            EXPECT(wt, WT_LEN);
            TRY(rd_len(&p, end, &s, &n));
            PyObject *item = any_value(cx, s, s + n, depth + 1);
            if (item == NULL)
                goto error;
            int rc = PyList_Append(list, item);
            Py_DECREF(item);
            TRY(rc);
        }
        else
            TRY(skip_field(&p, end, wt));
    }
    return list;
error:
    Py_DECREF(list);
    return NULL;
}

/* AnyValue -> str, bool, int, float, bytes, list, or None (unset or kvlist), as wire.any_value. */
static PyObject *
any_value(Ctx *cx, ptr_t p, ptr_t end, int depth)
{
    if (depth > MAX_DEPTH) {
        give_up("nesting too deep");
        return NULL;
    }
    uint32_t kind = 0;
    uint64_t v = 0;
    ptr_t s = NULL;
    size_t n = 0;
    PyObject *array = NULL;
    while (p < end) {
        uint32_t field;
        int wt;
        TRY(rd_tag(&p, end, &field, &wt));
        if (field >= 1 && field <= 8) {
            if (kind != 0) {
                give_up("oneof set twice");
                goto error;
            }
            kind = field;
        }
        switch (field) {
        case 1: /* string_value */
            EXPECT(wt, WT_LEN);
            TRY(rd_string(&p, end, &s, &n));
            break;
        case 7: /* bytes_value */
            EXPECT(wt, WT_LEN);
            TRY(rd_len(&p, end, &s, &n));
            break;
        case 2: /* bool_value */
        case 3: /* int_value */
        case 8: /* string_value_strindex */
            EXPECT(wt, WT_VARINT);
            TRY(rd_varint(&p, end, &v));
            break;
        case 4: /* double_value */
            EXPECT(wt, WT_I64);
            TRY(rd_fixed64(&p, end, &v));
            break;
        case 5: /* array_value */
            EXPECT(wt, WT_LEN);
            TRY(rd_len(&p, end, &s, &n));
            array = array_value(cx, s, s + n, depth + 1);
            if (array == NULL)
                goto error;
            break;
        case 6: /* kvlist_value: not read, but upb parses it */
            EXPECT(wt, WT_LEN);
            TRY(rd_len(&p, end, &s, &n));
            TRY(validate(M_KVLIST, s, s + n, depth + 1));
            break;
        default:
            TRY(skip_field(&p, end, wt));
        }
    }
    switch (kind) {
    case 1:
        return new_str(cx, s, n);
    case 2:
        return PyBool_FromLong(v != 0);
    case 3:
        return PyLong_FromLongLong((long long)(int64_t)v);
    case 4: {
        double d;
        memcpy(&d, &v, sizeof d);
        return PyFloat_FromDouble(d);
    }
    case 5:
        return array;
    case 7:
        return PyBytes_FromStringAndSize((const char *)s, (Py_ssize_t)n);
    case 8: /* int32: upb keeps the low 32 bits */
        return PyLong_FromLong((long)(int32_t)(uint32_t)v);
    default: /* unset or kvlist_value */
        Py_RETURN_NONE;
    }
error:
    Py_XDECREF(array);
    return NULL;
}

/* Reads one attribute (KeyValue) into `*dict` (created on first use) if its key is in `t`. */
static int
attribute(Ctx *cx, const Table *t, ptr_t p, ptr_t end, int depth, PyObject **dict, long long *groups)
{
    KV kv;
    if (read_kv(p, end, &kv) < 0)
        return -1;
    const Entry *e = table_get(t, kv.key, kv.key_n);
    if (e == NULL) {
        if (key_valid(&kv) < 0)
            return -1;
        return kv.has_value ? validate(M_ANYVALUE, kv.value, kv.value + kv.value_n, depth + 1) : 0;
    }
    PyObject *value;
    if (kv.has_value) {
        value = any_value(cx, kv.value, kv.value + kv.value_n, depth + 1);
        if (value == NULL)
            return -1;
    }
    else
        value = Py_NewRef(Py_None);
    if (*dict == NULL && (*dict = PyDict_New()) == NULL) {
        Py_DECREF(value);
        return -1;
    }
    int rc = PyDict_SetItem(*dict, e->obj, value);
    Py_DECREF(value);
    *groups |= e->group;
    return rc;
}

/* Span.Event: appended to `*events` as (name, {key: value}) if its name is wanted. */
static int
event(Ctx *cx, ptr_t p, ptr_t end, int depth, PyObject *events)
{
    if (depth > MAX_DEPTH)
        return give_up("nesting too deep");
    ptr_t start = p, name = p;
    size_t name_n = 0;
    uint64_t time = 0;
    while (p < end) { /* first pass: validate, find the name and time (last occurrence wins) */
        uint32_t field;
        int wt;
        uint64_t v;
        ptr_t s;
        size_t n;
        TRY(rd_tag(&p, end, &field, &wt));
        switch (field) {
        case 1: /* time_unix_nano */
            EXPECT(wt, WT_I64);
            TRY(rd_fixed64(&p, end, &time));
            break;
        case 2: /* name */
            EXPECT(wt, WT_LEN);
            TRY(rd_string(&p, end, &name, &name_n));
            break;
        case 3: /* attributes */
            EXPECT(wt, WT_LEN);
            TRY(rd_len(&p, end, &s, &n));
            TRY(validate(M_KEYVALUE, s, s + n, depth + 1));
            break;
        case 4: /* dropped_attributes_count */
            EXPECT(wt, WT_VARINT);
            TRY(rd_varint(&p, end, &v));
            break;
        default:
            TRY(skip_field(&p, end, wt));
        }
    }
    const Entry *wanted = table_get(&cx->r->event_names, name, name_n);
    if (wanted == NULL)
        return 0;
    PyObject *attrs = NULL;
    long long unused = 0;
    for (p = start; p < end;) { /* second pass (all valid): the wanted attributes */
        uint32_t field;
        int wt;
        ptr_t s;
        size_t n;
        if (rd_tag(&p, end, &field, &wt) < 0)
            goto error_attrs;
        if (field == 3) {
            if (rd_len(&p, end, &s, &n) < 0 ||
                attribute(cx, &cx->r->event_keys, s, s + n, depth + 1, &attrs, &unused) < 0)
                goto error_attrs;
        }
        else if (skip_field(&p, end, wt) < 0)
            goto error_attrs;
    }
    if (attrs == NULL && (attrs = PyDict_New()) == NULL)
        return -1;
    PyObject *when = PyLong_FromUnsignedLongLong(time);
    if (when == NULL)
        goto error_attrs;
    PyObject *triple = PyTuple_New(3);
    if (triple == NULL) {
        Py_DECREF(when);
        goto error_attrs;
    }
    PyTuple_SET_ITEM(triple, 0, Py_NewRef(wanted->obj));
    PyTuple_SET_ITEM(triple, 1, when);
    PyTuple_SET_ITEM(triple, 2, attrs);
    int rc = PyList_Append(events, triple);
    Py_DECREF(triple);
    return rc;
error_attrs:
    Py_XDECREF(attrs);
    return -1;
error:
    return -1;
}

/* Status: message, code (enum, open: int32 of the varint's low 32 bits as upb keeps it). */
static int
status(ptr_t p, ptr_t end, int32_t *code)
{
    while (p < end) {
        uint32_t field;
        int wt;
        uint64_t v;
        ptr_t s;
        size_t n;
        TRY(rd_tag(&p, end, &field, &wt));
        switch (field) {
        case 2: /* message */
            EXPECT(wt, WT_LEN);
            TRY(rd_string(&p, end, &s, &n));
            break;
        case 3: /* code */
            EXPECT(wt, WT_VARINT);
            TRY(rd_varint(&p, end, &v));
            *code = (int32_t)(uint32_t)v;
            break;
        default:
            TRY(skip_field(&p, end, wt));
        }
    }
    return 0;
error:
    return -1;
}

static inline int
set_item(PyObject *tuple, Py_ssize_t i, PyObject *item)
{
    if (item == NULL)
        return -1;
    PyTuple_SET_ITEM(tuple, i, item);
    return 0;
}

/* Span -> the 12-tuple of wire.RawSpan (`scope`: its scope's name, borrowed). */
static PyObject *
span(Ctx *cx, ptr_t p, ptr_t end, int depth, PyObject *scope)
{
    ptr_t trace_id = p, span_id = p, parent = p, name = p;
    size_t trace_id_n = 0, span_id_n = 0, parent_n = 0, name_n = 0;
    uint64_t start = 0, stop = 0;
    uint32_t flags = 0;
    int32_t code = 0;
    int has_status = 0;
    long long groups = 0;
    PyObject *attrs = NULL, *events = NULL, *tuple = NULL;

    if (depth > MAX_DEPTH) {
        give_up("nesting too deep");
        return NULL;
    }
    events = PyList_New(0);
    if (events == NULL)
        return NULL;
    while (p < end) {
        uint32_t field;
        int wt;
        uint64_t v;
        ptr_t s;
        size_t n;
        TRY(rd_tag(&p, end, &field, &wt));
        switch (field) {
        case 1:
            EXPECT(wt, WT_LEN);
            TRY(rd_len(&p, end, &trace_id, &trace_id_n));
            break;
        case 2:
            EXPECT(wt, WT_LEN);
            TRY(rd_len(&p, end, &span_id, &span_id_n));
            break;
        case 3: /* trace_state */
            EXPECT(wt, WT_LEN);
            TRY(rd_string(&p, end, &s, &n));
            break;
        case 4:
            EXPECT(wt, WT_LEN);
            TRY(rd_len(&p, end, &parent, &parent_n));
            break;
        case 5:
            EXPECT(wt, WT_LEN);
            TRY(rd_string(&p, end, &name, &name_n));
            break;
        case 6:  /* kind */
        case 10: /* dropped_attributes_count */
        case 12: /* dropped_events_count */
        case 14: /* dropped_links_count */
            EXPECT(wt, WT_VARINT);
            TRY(rd_varint(&p, end, &v));
            break;
        case 7:
            EXPECT(wt, WT_I64);
            TRY(rd_fixed64(&p, end, &start));
            break;
        case 8:
            EXPECT(wt, WT_I64);
            TRY(rd_fixed64(&p, end, &stop));
            break;
        case 9:
            EXPECT(wt, WT_LEN);
            TRY(rd_len(&p, end, &s, &n));
            TRY(attribute(cx, &cx->r->span_keys, s, s + n, depth + 1, &attrs, &groups));
            break;
        case 11:
            EXPECT(wt, WT_LEN);
            TRY(rd_len(&p, end, &s, &n));
            TRY(event(cx, s, s + n, depth + 1, events));
            break;
        case 13:
            EXPECT(wt, WT_LEN);
            TRY(rd_len(&p, end, &s, &n));
            TRY(validate(M_LINK, s, s + n, depth + 1));
            break;
        case 15:
            EXPECT(wt, WT_LEN);
            if (has_status) {
                give_up("singular message field twice");
                goto error;
            }
            has_status = 1;
            TRY(rd_len(&p, end, &s, &n));
            code = 0;
            TRY(status(s, s + n, &code));
            break;
        case 16:
            EXPECT(wt, WT_I32);
            TRY(rd_fixed32(&p, end, &flags));
            break;
        default:
            TRY(skip_field(&p, end, wt));
        }
    }
    if (attrs == NULL && (attrs = PyDict_New()) == NULL)
        goto error;
    tuple = PyTuple_New(12);
    if (tuple == NULL)
        goto error;
    if (set_item(tuple, 0, PyBytes_FromStringAndSize((const char *)trace_id, (Py_ssize_t)trace_id_n)) < 0 ||
        set_item(tuple, 1, PyBytes_FromStringAndSize((const char *)span_id, (Py_ssize_t)span_id_n)) < 0 ||
        set_item(tuple, 2, PyBytes_FromStringAndSize((const char *)parent, (Py_ssize_t)parent_n)) < 0 ||
        set_item(tuple, 3, PyLong_FromUnsignedLong(flags)) < 0 ||
        set_item(tuple, 4, new_str(cx, name, name_n)) < 0 ||
        set_item(tuple, 5, PyLong_FromUnsignedLongLong(start)) < 0 ||
        set_item(tuple, 6, PyLong_FromUnsignedLongLong(stop)) < 0 ||
        set_item(tuple, 7, PyLong_FromLong(code)) < 0)
        goto error;
    PyTuple_SET_ITEM(tuple, 8, attrs);
    attrs = NULL;
    if (set_item(tuple, 9, PyLong_FromLongLong(groups)) < 0)
        goto error;
    PyTuple_SET_ITEM(tuple, 10, events);
    PyTuple_SET_ITEM(tuple, 11, Py_NewRef(scope));
    return tuple;
error:
    Py_XDECREF(tuple);
    Py_XDECREF(attrs);
    Py_XDECREF(events);
    return NULL;
}

/* InstrumentationScope: validated; its name (last occurrence wins, as upb keeps it). */
static int
scope_name(ptr_t p, ptr_t end, int depth, ptr_t *name, size_t *name_n)
{
    TRY(validate(M_SCOPE, p, end, depth));
    while (p < end) { /* valid: no checks left */
        uint32_t field;
        int wt;
        ptr_t s;
        size_t n;
        TRY(rd_tag(&p, end, &field, &wt));
        if (field == 1 && wt == WT_LEN) {
            TRY(rd_len(&p, end, &s, &n));
            *name = s;
            *name_n = n;
        }
        else
            TRY(skip_field(&p, end, wt));
    }
    return 0;
error:
    return -1;
}

/* ScopeSpans: its spans appended to `spans`. The scope may follow the spans on the wire, so it is
 * found first (a pass over the fields without reading the spans). */
static int
scope_spans(Ctx *cx, ptr_t p, ptr_t end, int depth, PyObject *spans)
{
    int has_scope = 0;
    ptr_t name = p, q = p;
    size_t name_n = 0;
    PyObject *scope = NULL;
    if (depth > MAX_DEPTH)
        return give_up("nesting too deep");
    while (q < end) { /* first pass: the scope (and every field's framing) */
        uint32_t field;
        int wt;
        ptr_t s;
        size_t n;
        TRY(rd_tag(&q, end, &field, &wt));
        if (field == 1) {
            EXPECT(wt, WT_LEN);
            if (has_scope)
                return give_up("singular message field twice");
            has_scope = 1;
            TRY(rd_len(&q, end, &s, &n));
            TRY(scope_name(s, s + n, depth + 1, &name, &name_n));
        }
        else
            TRY(skip_field(&q, end, wt));
    }
    scope = new_str(cx, name, name_n);
    if (scope == NULL)
        goto error;
    while (p < end) {
        uint32_t field;
        int wt;
        ptr_t s;
        size_t n;
        TRY(rd_tag(&p, end, &field, &wt));
        switch (field) {
        case 1: /* scope: read above */
            TRY(rd_len(&p, end, &s, &n));
            break;
        case 2: {
            EXPECT(wt, WT_LEN);
            TRY(rd_len(&p, end, &s, &n));
            PyObject *sp = span(cx, s, s + n, depth + 1, scope);
            if (sp == NULL)
                goto error;
            int rc = PyList_Append(spans, sp);
            Py_DECREF(sp);
            TRY(rc);
            break;
        }
        case 3: /* schema_url */
            EXPECT(wt, WT_LEN);
            TRY(rd_string(&p, end, &s, &n));
            break;
        default:
            TRY(skip_field(&p, end, wt));
        }
    }
    Py_DECREF(scope);
    return 0;
error:
    Py_XDECREF(scope);
    return -1;
}

/* Resource: validates it and finds the service name, the first "service.name" attribute whose
 * value is a non-empty string_value (wire.service_name). */
static int
resource(ptr_t p, ptr_t end, int depth, ptr_t *service, size_t *service_n)
{
    if (depth > MAX_DEPTH)
        return give_up("nesting too deep");
    while (p < end) {
        uint32_t field;
        int wt;
        uint64_t v;
        ptr_t s;
        size_t n;
        TRY(rd_tag(&p, end, &field, &wt));
        switch (field) {
        case 1: { /* attributes */
            KV kv;
            EXPECT(wt, WT_LEN);
            TRY(rd_len(&p, end, &s, &n));
            TRY(read_kv(s, s + n, &kv));
            TRY(key_valid(&kv));
            if (!kv.has_value)
                break;
            ptr_t q = kv.value, qend = kv.value + kv.value_n;
            TRY(validate(M_ANYVALUE, q, qend, depth + 2));
            if (*service != NULL || kv.key_n != 12 || memcmp(kv.key, "service.name", 12) != 0)
                break;
            while (q < qend) { /* valid, with at most one oneof field: is it a string? */
                uint32_t f;
                int w;
                ptr_t str;
                size_t str_n;
                TRY(rd_tag(&q, qend, &f, &w));
                if (f == 1) {
                    TRY(rd_len(&q, qend, &str, &str_n));
                    if (str_n > 0) {
                        *service = str;
                        *service_n = str_n;
                    }
                }
                else
                    TRY(skip_field(&q, qend, w));
            }
            break;
        }
        case 2: /* dropped_attributes_count */
            EXPECT(wt, WT_VARINT);
            TRY(rd_varint(&p, end, &v));
            break;
        case 3: /* entity_refs */
            EXPECT(wt, WT_LEN);
            TRY(rd_len(&p, end, &s, &n));
            TRY(validate(M_ENTITYREF, s, s + n, depth + 1));
            break;
        default:
            TRY(skip_field(&p, end, wt));
        }
    }
    return 0;
error:
    return -1;
}

/* ResourceSpans -> (service_name, [span tuple]). */
static PyObject *
resource_spans(Ctx *cx, ptr_t p, ptr_t end, int depth)
{
    ptr_t service = NULL;
    size_t service_n = 0;
    int has_resource = 0;
    PyObject *spans = PyList_New(0), *name = NULL, *pair = NULL;
    if (spans == NULL)
        return NULL;
    if (depth > MAX_DEPTH) {
        give_up("nesting too deep");
        goto error;
    }
    while (p < end) {
        uint32_t field;
        int wt;
        ptr_t s;
        size_t n;
        TRY(rd_tag(&p, end, &field, &wt));
        switch (field) {
        case 1: /* resource */
            EXPECT(wt, WT_LEN);
            if (has_resource) {
                give_up("singular message field twice");
                goto error;
            }
            has_resource = 1;
            TRY(rd_len(&p, end, &s, &n));
            TRY(resource(s, s + n, depth + 1, &service, &service_n));
            break;
        case 2: /* scope_spans */
            EXPECT(wt, WT_LEN);
            TRY(rd_len(&p, end, &s, &n));
            TRY(scope_spans(cx, s, s + n, depth + 1, spans));
            break;
        case 3: /* schema_url */
            EXPECT(wt, WT_LEN);
            TRY(rd_string(&p, end, &s, &n));
            break;
        default:
            TRY(skip_field(&p, end, wt));
        }
    }
    if (service != NULL)
        name = new_str(cx, service, service_n);
    else
        name = Py_NewRef(cx->r->unknown_service);
    if (name == NULL)
        goto error;
    pair = PyTuple_New(2);
    if (pair == NULL)
        goto error;
    PyTuple_SET_ITEM(pair, 0, name);
    PyTuple_SET_ITEM(pair, 1, spans);
    return pair;
error:
    Py_XDECREF(name);
    Py_DECREF(spans);
    return NULL;
}

static PyObject *
Reader_read(ReaderObject *r, PyObject *body)
{
    Py_buffer view;
    if (PyObject_GetBuffer(body, &view, PyBUF_SIMPLE) < 0) {
        if (!PyErr_ExceptionMatches(PyExc_TypeError) && !PyErr_ExceptionMatches(PyExc_BufferError))
            return NULL;
        PyErr_Clear();
        return PyErr_Format(PyExc_ValueError, "expected a contiguous bytes-like body, got %.100s",
                            Py_TYPE(body)->tp_name);
    }
    PyObject *result = NULL;
    Ctx *cx = PyMem_Calloc(1, sizeof(Ctx));
    if (cx == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    cx->r = r;
    if (view.len >= INT32_MAX) {
        give_up("body too large");
        goto done;
    }
    result = PyList_New(0);
    if (result == NULL)
        goto done;
    ptr_t p = view.buf, end = p + view.len;
    while (p < end) {
        uint32_t field;
        int wt;
        ptr_t s;
        size_t n;
        TRY(rd_tag(&p, end, &field, &wt));
        if (field == 1) { /* resource_spans */
            EXPECT(wt, WT_LEN);
            TRY(rd_len(&p, end, &s, &n));
            PyObject *rs = resource_spans(cx, s, s + n, 1);
            if (rs == NULL)
                goto error;
            int rc = PyList_Append(result, rs);
            Py_DECREF(rs);
            TRY(rc);
        }
        else
            TRY(skip_field(&p, end, wt));
    }
    goto done;
error:
    Py_CLEAR(result);
done:
    if (cx != NULL) {
        ctx_clear(cx);
        PyMem_Free(cx);
    }
    PyBuffer_Release(&view);
    return result;
}

static PyObject *
Reader_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"span_keys", "event_names", "event_keys", NULL};
    PyObject *span_keys, *event_names, *event_keys;
    PyObject *items = NULL, *names = NULL, *keys = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O!OO:Reader", kwlist, &PyDict_Type, &span_keys,
                                     &event_names, &event_keys))
        return NULL;
    ReaderObject *r = (ReaderObject *)type->tp_alloc(type, 0);
    if (r == NULL)
        return NULL;
    /* snapshots: the tables are filled from lists this function owns */
    if ((items = PyDict_Items(span_keys)) == NULL || (names = PySequence_List(event_names)) == NULL ||
        (keys = PySequence_List(event_keys)) == NULL)
        goto error;
    if (table_fill(&r->span_keys, items, 1) < 0 || table_fill(&r->event_names, names, 0) < 0 ||
        table_fill(&r->event_keys, keys, 0) < 0)
        goto error;
    r->unknown_service = PyUnicode_InternFromString("unknown_service");
    if (r->unknown_service == NULL)
        goto error;
    Py_DECREF(items);
    Py_DECREF(names);
    Py_DECREF(keys);
    return (PyObject *)r;
error:
    Py_XDECREF(items);
    Py_XDECREF(names);
    Py_XDECREF(keys);
    Py_DECREF(r);
    return NULL;
}

static void
Reader_dealloc(ReaderObject *r)
{
    table_clear(&r->span_keys);
    table_clear(&r->event_names);
    table_clear(&r->event_keys);
    Py_XDECREF(r->unknown_service);
    Py_TYPE(r)->tp_free((PyObject *)r);
}

static PyMethodDef Reader_methods[] = {
    {"read", (PyCFunction)Reader_read, METH_O,
     "read(body) -> [(service_name, [span tuple])]; ValueError when the body is left to upb."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject ReaderType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "spanscope._otlpwire.Reader",
    .tp_basicsize = sizeof(ReaderObject),
    .tp_dealloc = (destructor)Reader_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Reader(span_keys, event_names, event_keys): reads OTLP trace export requests from "
              "the protobuf wire format into spanscope.wire raw spans.",
    .tp_methods = Reader_methods,
    .tp_new = Reader_new,
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "spanscope._otlpwire",
    .m_doc = "Native reader of OTLP ExportTraceServiceRequest protobuf bodies (see spanscope.wire).",
    .m_size = -1,
};

PyMODINIT_FUNC
PyInit__otlpwire(void)
{
    if (PyType_Ready(&ReaderType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    Py_INCREF(&ReaderType);
    if (PyModule_AddObject(m, "Reader", (PyObject *)&ReaderType) < 0) {
        Py_DECREF(&ReaderType);
        Py_DECREF(m);
        return NULL;
    }
    if (PyModule_AddIntConstant(m, "MAX_DEPTH", MAX_DEPTH) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
