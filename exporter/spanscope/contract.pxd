# Type declarations for the Cython build (setup.py), beside contract.py, whose code they leave as it
# is: a SpanRecord becomes a C struct in the compiled modules, so code that knows a variable holds one
# reads and writes its fields directly instead of through Python's attribute lookup. Run from source
# (no Cython, SPANSCOPE_NO_COMPILED=1), SpanRecord is the class with __slots__ of contract.py.
cimport cython

cdef class SpanRecord:
    cdef public object trace_id, span_id, parent_id, is_root, service, name, component, start, end
    cdef public object error, error_type, feature, mode, tenant, user, rag_source
    cdef public object genai, cache, quality, resilience, flags, breaker_events, cost

@cython.locals(r=SpanRecord)
cpdef read_span(raw, service, span_names)
