# The readers as extension types (Cython "augmenting .pxd": readers.py stays the
# source and the pure twin): attributes are C fields, the calls between the readers'
# own methods are C calls. httptools calls the ``on_*`` methods as Python methods.

cdef class _Reader:
    cdef object _parser, _handler, _pending, _held, _fields, _codings
    cdef object _too_large, _too_many, _special_fields
    cdef Py_ssize_t _head_bytes, _partial, _begun, _max_head, _max_fields
    cdef int _error_status, _head_status
    cdef bint _last, _fresh
    cdef public bint in_head, stopped

    cpdef _fail(self, int status, object reason)
    cpdef _head(self, bint end_stream)
    cpdef bint _special(self, str k, str v) except -1
    cpdef _end(self)


cdef class RequestReader(_Reader):
    cdef object _url, _authority, _scheme
    cdef bint _expect
    cdef public object target, host


cdef class ResponseReader(_Reader):
    cdef object _reason, _method
    cdef bint _interim, _has_length, _upgrade, _waiting, _tunnel
    cdef public bint spurious_body
