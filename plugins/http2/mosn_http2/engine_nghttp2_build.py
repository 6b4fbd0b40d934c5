"""cffi's builder of ``mosn_http2._nghttp2`` (API mode: compiled against libnghttp2's
headers and linked to it), from ``engine_nghttp2.c``. setup.py builds it when the
plugin is installed, where a C compiler and the headers (Debian: libnghttp2-dev) are
there; without them the plugin installs without it and runs on the pure-Python engine.

    python mosn_http2/engine_nghttp2_build.py     # builds it in place, for a try by hand
"""

from __future__ import annotations

from pathlib import Path

from cffi import FFI

MODULE = "mosn_http2._nghttp2"

CDEF = """
typedef struct { uint8_t *data; size_t len; ...; } buf_t;
typedef struct { buf_t ev; buf_t out; uint32_t error; ...; } mosn_h2;

#define EV_REQUEST ...
#define EV_RESPONSE ...
#define EV_TRAILERS ...
#define EV_DATA ...
#define EV_RESET ...
#define EV_CLOSED ...
#define EV_GOAWAY ...
#define EV_SETTINGS ...
#define EV_PING_ACK ...
#define EV_DRAINED ...
#define EV_HEADER_SIZE ...
#define MAX_FIELDS ...

mosn_h2 *mosn_h2_new(int server, const uint32_t *settings, size_t nsettings,
                     int32_t connection_window, size_t max_header_list, size_t buffer_limit,
                     size_t max_continuations, uint32_t peer_max_streams,
                     const char *upgrade, size_t upgrade_len, int upgrade_head);
void mosn_h2_del(mosn_h2 *h);
ssize_t mosn_h2_recv(mosn_h2 *h, const char *data, size_t len);
ssize_t mosn_h2_send(mosn_h2 *h);
int32_t mosn_h2_submit(mosn_h2 *h, int32_t sid, const char *blob, size_t len, size_t n,
                       int end);
int mosn_h2_data(mosn_h2 *h, int32_t sid, const char *data, size_t len, int end);
int mosn_h2_trailers(mosn_h2 *h, int32_t sid, const char *blob, size_t len, size_t n);
int mosn_h2_reset(mosn_h2 *h, int32_t sid, uint32_t code);
void mosn_h2_pause(mosn_h2 *h, int32_t sid, int pause);
void mosn_h2_settle(mosn_h2 *h);
int mosn_h2_local_closed(mosn_h2 *h, int32_t sid);
int mosn_h2_goaway(mosn_h2 *h, uint32_t code);
int mosn_h2_ping(mosn_h2 *h);
uint32_t mosn_h2_remote_setting(mosn_h2 *h, int id);
int mosn_h2_finished(mosn_h2 *h);
const char *nghttp2_strerror(int lib_error_code);
"""

ffibuilder = FFI()
ffibuilder.cdef(CDEF)
ffibuilder.set_source(MODULE, (Path(__file__).resolve().parent / "engine_nghttp2.c").read_text(),
                      libraries=["nghttp2"], extra_compile_args=["-O2"])

if __name__ == "__main__":
    ffibuilder.compile(tmpdir=str(Path(__file__).resolve().parents[1]), verbose=True)
