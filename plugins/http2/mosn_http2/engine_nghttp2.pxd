# The compiled build's declarations for engine_nghttp2.py (Cython's augmenting .pxd):
# the engine's session handle is a C field, the event loop's offsets C integers.

cimport cython

cdef class Nghttp2Engine:
    cdef object _h

    @cython.locals(pos=Py_ssize_t, start=Py_ssize_t, kind=int, buf=bytes)
    cdef _report(self, list handlers, Py_ssize_t n)
