# The compiled build's declarations for codec.py (Cython's augmenting .pxd): the streams
# and the codecs are extension types, their attributes C fields, and the calls between
# them on the per-request path C calls. codec.py stays the source and the pure twin.

cdef class _Codec

cdef class _Stream:
    cdef public _Codec codec
    cdef public int id
    cdef public object handler
    cdef public bint end_queued, remote_done, above, told, closed
    cdef public int disabled

    cpdef _watermark(self)


cdef class _Codec:
    cdef public object conn, limits, engine
    cdef public dict streams
    cdef public list _handlers
    cdef public bint _receiving, _scheduled, _above, _closed, _held, _going_away
    cdef public Py_ssize_t _reads, _ping_reads, _pings, _ping_acks
    cdef public object _keepalive_timer, _idle_timer
    cdef public double _idle_since

    cpdef _schedule(self)
    cpdef _flush(self)
    cpdef _close_stream(self, _Stream s)
    cpdef _drop(self, _Stream s, object reason)


cdef class ServerStream(_Stream):
    cdef public bint headers_sent, tunnel


cdef class _ServerCodec(_Codec):
    cdef public object new_stream, _scheme, _preface, _head_timeout, _heads
    cdef public object _head_timer, _drain_timer
    cdef public Py_ssize_t _opened, _premature, _head_sid, _drain_ping
    cdef public bint _read_paused, _head_stalled


cdef class ClientStream(_Stream):
    cdef public bint headers_only, answered
    cdef public object upgrade


cdef class _ClientCodec(_Codec):
    cdef public object on_idle
    cdef public list _awaiting_settings
    cdef public Py_ssize_t _active, _peer_max
    cdef public bint _connect_protocol, _settings_received
