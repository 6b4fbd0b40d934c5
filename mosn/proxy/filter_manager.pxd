# Augmenting declarations for filter_manager.py (docs/extensions.md): the compiled
# build makes FilterManager an extension type; the .py is the source and the pure twin.

cdef class FilterManager:
    cdef public list filters
    cdef public Py_ssize_t index
    cpdef bint run_request(self, stream, phase) except -1
    cpdef bint run_response(self, stream, head) except -1
