# The compiled build's declarations for engine_nghttp2.py (Cython's augmenting .pxd):
# the engine's session handle is a C field, the event loop's offsets C integers.

cimport cython

ctypedef const unsigned char *byte_ptr  # a bytes object's data, read in place

cdef class Nghttp2Engine:
    cdef object _h

    @cython.locals(pos=Py_ssize_t, start=Py_ssize_t, kind=int, end=bint, sid=Py_ssize_t,
                   size=Py_ssize_t, buf=bytes, p=byte_ptr)
    cdef _report(self, list handlers, Py_ssize_t n)
