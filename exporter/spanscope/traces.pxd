# Type declarations for the Cython build (see contract.pxd): the breakdown's helpers read SpanRecord
# fields directly. breakdown() itself has closures, which Cython cannot compile as cpdef.
cimport cython
from spanscope.contract cimport SpanRecord

@cython.locals(s=SpanRecord)
cpdef _children_index(list spans, SpanRecord root)

@cython.locals(k=SpanRecord)
cpdef _covered(SpanRecord span, list kids)

cpdef _credit(critical, by_feature, SpanRecord span, ns)
