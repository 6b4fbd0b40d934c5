# Augmenting declarations for stream.py (docs/extensions.md): the compiled build makes
# DownstreamStream an extension type with C-level attributes and C calls between its
# own steps; the .py is the source and the pure twin. Every attribute stays public:
# stream filters, observers and variables read and set them as before.

cimport cython

from mosn.proxy.filter_manager cimport FilterManager
from mosn.proxy.upstream_request cimport UpstreamRequest

cdef class DownstreamStream:
    cdef public object ctx
    cdef public object conn
    cdef public object server_stream
    cdef public object request
    cdef public bint request_complete
    cdef public object route
    cdef public object cluster
    cdef public object host
    cdef public object upstream
    cdef public list response_flags
    cdef public bint response_started
    cdef public bint done
    cdef public bint upgrade
    cdef public object semantics
    cdef public FilterManager _filter_manager
    cdef public object _phase
    cdef public object _body
    cdef public Py_ssize_t _body_size
    cdef public object _retry_body
    cdef public bint _retry_ok
    cdef public Py_ssize_t _request_bytes
    cdef public object _max_request_bytes
    cdef public object _retry_state
    cdef public object _tried
    cdef public object _timer
    cdef public bint _read_disabled
    cdef public object _shadows
    cdef public object _trailers
    cdef public object protocol
    cdef public object _lb_context
    cdef public Py_ssize_t _replays
    cdef public object observers
    cdef public double start_time
    cdef public double start_monotonic
    cdef public double end_monotonic
    cdef public object response_code
    cdef public Py_ssize_t bytes_sent
    cdef public double response_monotonic
    cdef public object response_headers
    cdef public object span
    cdef public Py_ssize_t _held
    cdef public bint ended_by_reset
    cdef public Py_ssize_t _quiet
    cdef public object dynamic_metadata
    cdef public object _set_cookies
    cdef public object _response_transforms
    cdef public object mirror_copies
    cdef public bint mirror_every_host
    cdef public object response_trailers
    cdef public object _at_end
    cdef public object _on_complete

    cpdef _hold(self, Py_ssize_t delta)
    @cython.locals(manager=FilterManager)
    cpdef continue_request(self)
    cpdef bint _route(self) except -1
    cpdef bint _choose_host(self) except -1
    cpdef _send_upstream(self)
    cpdef _finish(self, bint reset_upstream)
