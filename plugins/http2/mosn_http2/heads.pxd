# The compiled build's declarations for heads.py (Cython's augmenting .pxd): the watch
# runs over every frame header of every read a server codec takes, so its state is C
# fields and its loop C integers over the read's bytes.

cimport cython

ctypedef const unsigned char *byte_ptr  # a bytes object's data, read in place

cdef class HeaderBlockWatch:
    cdef public Py_ssize_t _skip
    cdef public bytes _header
    cdef public Py_ssize_t _block_sid
    cdef public bint _block_ends
    cdef public Py_ssize_t highest
    cdef public bint _refusing
    cdef public Py_ssize_t refused

    @cython.locals(buf=bytes, p=byte_ptr, n=Py_ssize_t, skip=Py_ssize_t,
                   i=Py_ssize_t, length=Py_ssize_t, kind=int, sid=Py_ssize_t)
    cpdef Py_ssize_t feed(self, data)
