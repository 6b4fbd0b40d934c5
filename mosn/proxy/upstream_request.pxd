# Augmenting declarations for upstream_request.py (docs/extensions.md): the compiled
# build makes UpstreamRequest an extension type with C-level attributes; the .py is
# the source and the pure twin.

cdef class UpstreamRequest:
    cdef public object downstream
    cdef public object stream
    cdef public object pending
    cdef public object client
    cdef public bint ended
    cdef public object try_timer
    cdef public object cluster
    cdef public object host
    cdef public bint retry
    cdef public bint live
    cdef public double start_monotonic
    cdef public object response_code
    cdef public object span
    cdef public object reset_reason
    cdef public object semantics
