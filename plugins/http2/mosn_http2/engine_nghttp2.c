/* The native HTTP/2 engine: one nghttp2 session per connection, driven from
 * Python through a few calls (mosn_http2/engine_nghttp2.py).
 *
 * nghttp2 calls back once per header field, frame and DATA chunk. Crossing into
 * Python for each would cost more than nghttp2's own work, so the callbacks here
 * stay in C: they append what Python needs to one event buffer, which Python
 * reads once per mem_recv/mem_send. The stream state the codecs need between
 * reads stays here too: the body queued for the peer's window (handed to
 * nghttp2 by its data provider), the trailers that follow it, and the received
 * bytes not yet acknowledged for a paused reader.
 *
 * Event record: type (1 byte), end_stream (1), padding (2), stream id (4),
 * value (4; both little-endian, which Python reads byte by byte), then `value`
 * payload bytes for the types that carry one (header blocks and DATA). A header block is NUL-separated text, which
 * nghttp2's HTTP messaging checks make safe (no field it passes on holds a NUL,
 * RFC 9113 8.2.1): a request's :method, :scheme, :authority, :path and :protocol
 * (empty when absent), or a response's :status, then the regular fields, name and
 * value after name and value.
 *
 * Field blocks to send come the same way, "name\0value\0...", pseudo-header fields
 * first; the connection-specific fields HTTP/2 forbids (RFC 9113 8.2.2) are left
 * out here.
 */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <nghttp2/nghttp2.h>

#define EV_REQUEST 1
#define EV_RESPONSE 2
#define EV_TRAILERS 3
#define EV_DATA 4
#define EV_RESET 5
#define EV_CLOSED 6
#define EV_GOAWAY 7
#define EV_SETTINGS 8
#define EV_PING_ACK 9
#define EV_DRAINED 10

#define MAX_LENGTH_DIGITS 18 /* a content-length of up to 18 digits fits an int64_t */

#define EV_HEADER_SIZE 12
#define BUF_MIN 4096 /* first allocation of a growing buffer */
#define FIELD_OVERHEAD 32 /* counted per field in a header list's size (RFC 9113 6.5.2) */
#define MAX_FIELDS 1024 /* fields in a header block handed to nghttp2 to send */
#define PSEUDO_SLOTS 5 /* :method :scheme :authority :path :protocol (or :status) */

typedef struct {
  uint8_t *data;
  size_t len;
  size_t cap;
} buf_t;

typedef struct stream {
  struct stream *prev, *next; /* every stream of the session, to free them all */
  int32_t id;
  buf_t out;                  /* body bytes waiting for the peer's window ... */
  size_t out_off;             /* ... from this offset */
  int end;                    /* the body's end is queued */
  int deferred;               /* the data provider said DEFERRED: resume on new data */
  int end_submitted;          /* the end went as a trailer block (see end_without_window) */
  int above;                  /* above the buffer limit: told, waiting to drain */
  buf_t trailers;             /* trailers to send after the body, as a field blob */
  size_t trailer_fields;
  int paused;                 /* the reader is paused: received DATA not acknowledged */
  size_t unacked;
  size_t received;            /* DATA received in this read, settled after it (mosn_h2_settle) */
  int64_t body_left;          /* a request's content-length bytes still to come; -1: none given */
} stream_t;

typedef struct mosn_h2 {
  nghttp2_session *session;
  int server;
  buf_t ev;                   /* events for Python */
  buf_t out;                  /* bytes for the peer */
  buf_t hb;                   /* the regular fields of the header block being received */
  buf_t pseudo[PSEUDO_SLOTS]; /* its pseudo-header fields' values */
  int32_t hb_sid;
  int hb_kind;
  int hb_interim;
  size_t hb_size;
  size_t last_event;          /* offset of the last event appended */
  size_t continuations;
  size_t max_continuations;
  size_t max_header_list;
  size_t buffer_limit;
  size_t queued;              /* body bytes queued over all streams */
  int32_t *received_sids;     /* streams with DATA received in this read */
  size_t nreceived, received_cap;
  uint32_t error;             /* the code of the GOAWAY ending the connection, once sent */
  stream_t *streams;
} mosn_h2;

static int buf_reserve(buf_t *b, size_t extra) {
  size_t cap;
  uint8_t *p;
  if (b->len + extra <= b->cap) {
    return 0;
  }
  cap = b->cap ? b->cap : BUF_MIN;
  while (cap < b->len + extra) {
    cap *= 2;
  }
  p = realloc(b->data, cap);
  if (p == NULL) {
    return -1;
  }
  b->data = p;
  b->cap = cap;
  return 0;
}

static int buf_append(buf_t *b, const uint8_t *p, size_t n) {
  if (buf_reserve(b, n) != 0) {
    return -1;
  }
  if (n) {
    memcpy(b->data + b->len, p, n);
  }
  b->len += n;
  return 0;
}

static void buf_free(buf_t *b) {
  free(b->data);
  b->data = NULL;
  b->len = b->cap = 0;
}

static void put_le32(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)v;
  p[1] = (uint8_t)(v >> 8);
  p[2] = (uint8_t)(v >> 16);
  p[3] = (uint8_t)(v >> 24);
}

static uint32_t get_le32(const uint8_t *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static int event(mosn_h2 *h, int type, int end, int32_t sid, uint32_t value,
                 const uint8_t *payload, size_t n) {
  uint8_t head[EV_HEADER_SIZE] = {0};
  h->last_event = h->ev.len;
  head[0] = (uint8_t)type;
  head[1] = (uint8_t)end;
  put_le32(head + 4, (uint32_t)sid);
  put_le32(head + 8, value);
  if (buf_reserve(&h->ev, EV_HEADER_SIZE + n) != 0) {
    return -1;
  }
  buf_append(&h->ev, head, EV_HEADER_SIZE);
  buf_append(&h->ev, payload, n);
  return 0;
}

static stream_t *stream_new(mosn_h2 *h) {
  stream_t *st = calloc(1, sizeof(stream_t));
  if (st == NULL) {
    return NULL;
  }
  st->next = h->streams;
  if (h->streams) {
    h->streams->prev = st;
  }
  h->streams = st;
  return st;
}

static void stream_free(mosn_h2 *h, stream_t *st) {
  if (st->prev) {
    st->prev->next = st->next;
  } else {
    h->streams = st->next;
  }
  if (st->next) {
    st->next->prev = st->prev;
  }
  h->queued -= st->out.len - st->out_off;
  buf_free(&st->out);
  buf_free(&st->trailers);
  free(st);
}

/* A client stream is nghttp2's only once its HEADERS is on its way out; until
   then it is found in the session's list (newest first: the one just submitted). */
static stream_t *stream_of(mosn_h2 *h, int32_t sid) {
  stream_t *st = nghttp2_session_get_stream_user_data(h->session, sid);
  if (st == NULL && !h->server) {
    for (st = h->streams; st != NULL && st->id != sid; st = st->next) {
    }
  }
  return st;
}

static int lower_equal(const uint8_t *p, size_t n, const char *word) {
  size_t i;
  if (strlen(word) != n) {
    return 0;
  }
  for (i = 0; i < n; i++) {
    uint8_t c = p[i];
    if ((c >= 'A' && c <= 'Z' ? (uint8_t)(c + 32) : c) != (uint8_t)word[i]) {
      return 0;
    }
  }
  return 1;
}

/* A connection-specific field (RFC 9113 8.2.2), or host (sent as :authority) or
   http2-settings (HTTP/1.1's upgrade): not sent. Names are lower-case already. */
static int connection_specific(const uint8_t *name, size_t namelen, const uint8_t *value,
                               size_t valuelen) {
  switch (namelen) {
  case 2:
    if (memcmp(name, "te", 2) == 0) {
      while (valuelen && (*value == ' ' || *value == '\t')) {
        value++;
        valuelen--;
      }
      while (valuelen && (value[valuelen - 1] == ' ' || value[valuelen - 1] == '\t')) {
        valuelen--;
      }
      return !lower_equal(value, valuelen, "trailers"); /* the one te HTTP/2 allows */
    }
    return 0;
  case 4:
    return memcmp(name, "host", 4) == 0;
  case 7:
    return memcmp(name, "upgrade", 7) == 0;
  case 10:
    return memcmp(name, "connection", 10) == 0 || memcmp(name, "keep-alive", 10) == 0;
  case 14:
    return memcmp(name, "http2-settings", 14) == 0;
  case 16:
    return memcmp(name, "proxy-connection", 16) == 0;
  case 17:
    return memcmp(name, "transfer-encoding", 17) == 0;
  }
  return 0;
}

/* A field whose value is new on every request (the proxy's x-request-id, a
   trace's traceparent): sent as a literal never indexed (RFC 7541 6.2.3, the one
   literal form nghttp2 lets a caller ask for), so it does not push the fields
   that do repeat out of the peer's dynamic table, and neither side spends an
   insertion and an eviction on it. nghttp2 leaves :path, content-length, etag
   and the like out of the table on its own. */
static int per_request(const uint8_t *name, size_t namelen) {
  return (namelen == 12 && memcmp(name, "x-request-id", 12) == 0) ||
         (namelen == 11 && memcmp(name, "traceparent", 11) == 0);
}

/* A field blob ("name\0value\0name\0value", `n` fields) as nghttp2's list,
   connection-specific fields left out; the fields kept. */
static size_t parse_fields(const uint8_t *blob, size_t len, size_t n, nghttp2_nv *nva) {
  const uint8_t *p = blob, *end = blob + len, *z;
  size_t i, kept = 0;
  for (i = 0; i < n && kept < MAX_FIELDS; i++) {
    z = memchr(p, 0, (size_t)(end - p));
    if (z == NULL) {
      break;
    }
    nva[kept].name = (uint8_t *)p;
    nva[kept].namelen = (size_t)(z - p);
    p = z + 1;
    z = (p < end) ? memchr(p, 0, (size_t)(end - p)) : NULL;
    if (z == NULL) {
      z = end;
    }
    nva[kept].value = (uint8_t *)p;
    nva[kept].valuelen = (size_t)(z - p);
    nva[kept].flags = per_request(nva[kept].name, nva[kept].namelen) ? NGHTTP2_NV_FLAG_NO_INDEX
                                                                      : NGHTTP2_NV_FLAG_NONE;
    p = (z < end) ? z + 1 : end;
    if (!connection_specific(nva[kept].name, nva[kept].namelen, nva[kept].value, nva[kept].valuelen)) {
      kept++;
    }
  }
  return kept;
}

/* -- sending bodies ------------------------------------------------------------ */

static ssize_t read_body(nghttp2_session *session, int32_t sid, uint8_t *buf, size_t length,
                         uint32_t *flags, nghttp2_data_source *source, void *user_data) {
  mosn_h2 *h = user_data;
  stream_t *st = source->ptr;
  size_t have = st->out.len - st->out_off;
  size_t n = have < length ? have : length;
  (void)session;
  if (st->end_submitted) {
    return NGHTTP2_ERR_DEFERRED; /* the stream's end went without this provider */
  }
  if (n) {
    memcpy(buf, st->out.data + st->out_off, n);
    st->out_off += n;
    h->queued -= n;
  }
  if (st->out_off == st->out.len) {
    st->out.len = st->out_off = 0;
  } else if (st->out_off > st->out.cap / 2) {
    memmove(st->out.data, st->out.data + st->out_off, st->out.len - st->out_off);
    st->out.len -= st->out_off;
    st->out_off = 0;
  }
  if (st->above && st->out.len - st->out_off <= h->buffer_limit / 2) {
    st->above = 0;
    if (event(h, EV_DRAINED, 0, sid, 0, NULL, 0) != 0) {
      return NGHTTP2_ERR_CALLBACK_FAILURE;
    }
  }
  if (st->out.len == 0 && st->end) {
    *flags |= NGHTTP2_DATA_FLAG_EOF;
    if (st->trailer_fields) {
      nghttp2_nv nva[MAX_FIELDS];
      size_t count = parse_fields(st->trailers.data, st->trailers.len, st->trailer_fields, nva);
      *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
      if (nghttp2_submit_trailer(h->session, sid, nva, count) != 0) {
        return NGHTTP2_ERR_CALLBACK_FAILURE;
      }
      st->trailer_fields = 0;
    }
  } else if (n == 0) {
    st->deferred = 1;
    return NGHTTP2_ERR_DEFERRED;
  }
  return (ssize_t)n;
}

/* -- receiving ----------------------------------------------------------------- */

static int on_begin_frame(nghttp2_session *session, const nghttp2_frame_hd *hd, void *user_data) {
  mosn_h2 *h = user_data;
  if (hd->type == NGHTTP2_HEADERS) {
    h->continuations = 0;
  } else if (hd->type == NGHTTP2_CONTINUATION && ++h->continuations > h->max_continuations) {
    /* A header block split into ever more frames (CVE-2024-28182): the rest of
       the input is ignored and GOAWAY ENHANCE_YOUR_CALM sent. */
    return nghttp2_session_terminate_session(session, NGHTTP2_ENHANCE_YOUR_CALM);
  }
  return 0;
}

static int on_begin_headers(nghttp2_session *session, const nghttp2_frame *frame, void *user_data) {
  mosn_h2 *h = user_data;
  int32_t sid = frame->hd.stream_id;
  h->hb.len = 0;
  for (size_t i = 0; i < PSEUDO_SLOTS; i++) {
    h->pseudo[i].len = 0;
  }
  h->hb_sid = sid;
  h->hb_size = 0;
  h->hb_interim = 0;
  switch (frame->headers.cat) {
  case NGHTTP2_HCAT_REQUEST: {
    stream_t *st = stream_new(h);
    if (st == NULL) {
      return NGHTTP2_ERR_CALLBACK_FAILURE;
    }
    st->id = sid;
    st->body_left = -1;
    nghttp2_session_set_stream_user_data(session, sid, st);
    h->hb_kind = EV_REQUEST;
    break;
  }
  case NGHTTP2_HCAT_RESPONSE:
    h->hb_kind = EV_RESPONSE;
    break;
  default:
    h->hb_kind = EV_TRAILERS; /* or a final response after an interim one: see on_header */
  }
  return 0;
}

/* The slot of a pseudo-header field's value: :method or :status 0, :scheme 1,
   :authority 2, :path 3, :protocol 4; -1 for another. */
static int pseudo_slot(const uint8_t *name, size_t namelen) {
  switch (namelen) {
  case 5:
    return memcmp(name, ":path", 5) == 0 ? 3 : -1;
  case 7:
    if (memcmp(name, ":method", 7) == 0 || memcmp(name, ":status", 7) == 0) {
      return 0;
    }
    return memcmp(name, ":scheme", 7) == 0 ? 1 : -1;
  case 9:
    return memcmp(name, ":protocol", 9) == 0 ? 4 : -1;
  case 10:
    return memcmp(name, ":authority", 10) == 0 ? 2 : -1;
  }
  return -1;
}

/* The header block just received, as one event (see the top of this file). */
static int block_event(mosn_h2 *h, int end, int32_t sid) {
  static const uint8_t zero = 0;
  size_t slots = h->hb_kind == EV_REQUEST ? PSEUDO_SLOTS : h->hb_kind == EV_RESPONSE ? 1 : 0;
  const uint8_t *tail = h->hb.data;
  size_t tail_len = h->hb.len, len = 0, i;
  if (slots == 0 && tail_len) {
    tail++; /* trailers: no pseudo-header field, no separator before the first field */
    tail_len--;
  }
  for (i = 0; i < slots; i++) {
    len += h->pseudo[i].len + (i ? 1 : 0);
  }
  len += tail_len;
  if (event(h, h->hb_kind, end, sid, (uint32_t)len, NULL, 0) != 0 || buf_reserve(&h->ev, len) != 0) {
    return -1;
  }
  for (i = 0; i < slots; i++) {
    if (i) {
      buf_append(&h->ev, &zero, 1);
    }
    buf_append(&h->ev, h->pseudo[i].data, h->pseudo[i].len);
  }
  buf_append(&h->ev, tail, tail_len);
  return 0;
}

static int on_header(nghttp2_session *session, const nghttp2_frame *frame, const uint8_t *name,
                     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
                     void *user_data) {
  mosn_h2 *h = user_data;
  static const uint8_t zero = 0;
  (void)flags;
  if (frame->hd.stream_id != h->hb_sid) {
    return 0;
  }
  h->hb_size += namelen + valuelen + FIELD_OVERHEAD;
  if (h->hb_size > h->max_header_list) {
    /* Past SETTINGS_MAX_HEADER_LIST_SIZE: the connection ends (GOAWAY). */
    nghttp2_session_terminate_session(session, NGHTTP2_ENHANCE_YOUR_CALM);
    return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
  }
  if (namelen && name[0] == ':') {
    /* nghttp2 let through only the pseudo-header fields of the block's kind, each
       once, before the regular ones. */
    int slot = pseudo_slot(name, namelen);
    if (slot == 0 && h->hb_kind != EV_REQUEST) { /* :status */
      if (valuelen && value[0] == '1') {
        h->hb_interim = 1; /* 1xx: not forwarded */
      } else if (h->hb_kind == EV_TRAILERS) {
        h->hb_kind = EV_RESPONSE;
      }
    }
    if (slot < 0) {
      return 0;
    }
    h->pseudo[slot].len = 0;
    return buf_append(&h->pseudo[slot], value, valuelen) ? NGHTTP2_ERR_CALLBACK_FAILURE : 0;
  }
  if (h->hb_kind == EV_REQUEST && namelen == 14 && memcmp(name, "content-length", 14) == 0) {
    /* nghttp2 refused a content-length that is not a number, or that the DATA
       does not match. */
    stream_t *st = stream_of(h, h->hb_sid);
    if (st != NULL && valuelen <= MAX_LENGTH_DIGITS) {
      st->body_left = 0;
      for (size_t i = 0; i < valuelen && st->body_left >= 0; i++) {
        st->body_left = value[i] >= '0' && value[i] <= '9' ? st->body_left * 10 + (value[i] - '0') : -1;
      }
    }
  }
  if (buf_append(&h->hb, &zero, 1) != 0 || buf_append(&h->hb, name, namelen) != 0 ||
      buf_append(&h->hb, &zero, 1) != 0 || buf_append(&h->hb, value, valuelen) != 0) {
    return NGHTTP2_ERR_CALLBACK_FAILURE;
  }
  return 0;
}

static int on_invalid_header(nghttp2_session *session, const nghttp2_frame *frame,
                             const uint8_t *name, size_t namelen, const uint8_t *value,
                             size_t valuelen, uint8_t flags, void *user_data) {
  (void)session; (void)frame; (void)name; (void)namelen; (void)value; (void)valuelen;
  (void)flags; (void)user_data;
  /* nghttp2 would drop the field and go on; RFC 9113 8.2.1 calls the block
     malformed: the stream is reset (PROTOCOL_ERROR). */
  return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
}

/* DATA is acknowledged (consumed, for nghttp2 to reopen the windows) once Python
   has handed it on, unless the stream's reader paused meanwhile: see mosn_h2_settle. */
static int on_data_chunk(nghttp2_session *session, uint8_t flags, int32_t sid,
                         const uint8_t *data, size_t len, void *user_data) {
  mosn_h2 *h = user_data;
  stream_t *st = stream_of(h, sid);
  (void)flags;
  if (event(h, EV_DATA, 0, sid, (uint32_t)len, data, len) != 0) {
    return NGHTTP2_ERR_CALLBACK_FAILURE;
  }
  if (st == NULL) {
    return nghttp2_session_consume(session, sid, len) ? NGHTTP2_ERR_CALLBACK_FAILURE : 0;
  }
  if (!st->received) {
    if (h->nreceived == h->received_cap) {
      size_t cap = h->received_cap ? 2 * h->received_cap : 16;
      int32_t *p = realloc(h->received_sids, cap * sizeof(int32_t));
      if (p == NULL) {
        return NGHTTP2_ERR_CALLBACK_FAILURE;
      }
      h->received_sids = p;
      h->received_cap = cap;
    }
    h->received_sids[h->nreceived++] = sid;
  }
  st->received += len;
  if (st->body_left > 0) {
    st->body_left -= (int64_t)len;
  }
  return 0;
}

static int on_frame_recv(nghttp2_session *session, const nghttp2_frame *frame, void *user_data) {
  mosn_h2 *h = user_data;
  int32_t sid = frame->hd.stream_id;
  int end = (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;
  (void)session;
  switch (frame->hd.type) {
  case NGHTTP2_HEADERS:
    if (sid != h->hb_sid || h->hb_interim) {
      return 0;
    }
    h->hb_sid = 0;
    return block_event(h, end, sid) ? NGHTTP2_ERR_CALLBACK_FAILURE : 0;
  case NGHTTP2_DATA:
    if (!end) {
      return 0;
    }
    if (h->last_event < h->ev.len) {
      /* Set on the last event if it is this stream's DATA (what was just read,
         or, with an empty last frame, what came before it: the same to Python). */
      uint8_t *last = h->ev.data + h->last_event;
      int32_t last_sid = (int32_t)get_le32(last + 4);
      uint32_t last_len = get_le32(last + 8);
      if (last[0] == EV_DATA && last_sid == sid &&
          h->last_event + EV_HEADER_SIZE + last_len == h->ev.len) {
        last[1] = 1;
        return 0;
      }
    }
    return event(h, EV_DATA, 1, sid, 0, NULL, 0) ? NGHTTP2_ERR_CALLBACK_FAILURE : 0;
  case NGHTTP2_RST_STREAM:
    return event(h, EV_RESET, 0, sid, frame->rst_stream.error_code, NULL, 0) ? NGHTTP2_ERR_CALLBACK_FAILURE : 0;
  case NGHTTP2_GOAWAY:
    return event(h, EV_GOAWAY, 0, frame->goaway.last_stream_id, frame->goaway.error_code, NULL, 0) ? NGHTTP2_ERR_CALLBACK_FAILURE : 0;
  case NGHTTP2_SETTINGS:
    if (frame->hd.flags & NGHTTP2_FLAG_ACK) {
      return 0;
    }
    return event(h, EV_SETTINGS, 0, 0, 0, NULL, 0) ? NGHTTP2_ERR_CALLBACK_FAILURE : 0;
  case NGHTTP2_PING:
    if (!(frame->hd.flags & NGHTTP2_FLAG_ACK)) {
      return 0;
    }
    return event(h, EV_PING_ACK, 0, 0, 0, NULL, 0) ? NGHTTP2_ERR_CALLBACK_FAILURE : 0;
  }
  return 0;
}

static int on_frame_send(nghttp2_session *session, const nghttp2_frame *frame, void *user_data) {
  mosn_h2 *h = user_data;
  int32_t sid = frame->hd.stream_id;
  if (frame->hd.type == NGHTTP2_GOAWAY) {
    if (frame->goaway.error_code) {
      h->error = frame->goaway.error_code;
    }
    return 0;
  }
  if ((frame->hd.type != NGHTTP2_DATA && frame->hd.type != NGHTTP2_HEADERS) ||
      !(frame->hd.flags & NGHTTP2_FLAG_END_STREAM)) {
    return 0;
  }
  /* A response complete before its request: RST_STREAM NO_ERROR tells the
     client to stop sending the rest (RFC 9113 8.1). Not when every byte its
     content-length announced has come: only END_STREAM is missing, which a client
     may send in a frame of its own (and would fail to, were the stream reset). */
  if (h->server && !nghttp2_session_get_stream_remote_close(session, sid)) {
    stream_t *st = stream_of(h, sid);
    if (st != NULL && st->body_left == 0) {
      return 0;
    }
    return nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, sid, NGHTTP2_NO_ERROR) ? NGHTTP2_ERR_CALLBACK_FAILURE : 0;
  }
  return 0;
}

static int on_stream_close(nghttp2_session *session, int32_t sid, uint32_t code, void *user_data) {
  mosn_h2 *h = user_data;
  stream_t *st = stream_of(h, sid);
  if (st != NULL) {
    if (st->unacked + st->received) {
      nghttp2_session_consume_connection(session, st->unacked + st->received);
    }
    nghttp2_session_set_stream_user_data(session, sid, NULL);
    stream_free(h, st);
  }
  if (code != NGHTTP2_NO_ERROR) {
    return event(h, EV_CLOSED, 0, sid, code, NULL, 0) ? NGHTTP2_ERR_CALLBACK_FAILURE : 0;
  }
  return 0;
}

/* -- the calls Python makes ---------------------------------------------------- */

void mosn_h2_del(mosn_h2 *h) {
  if (h == NULL) {
    return;
  }
  if (h->session) {
    nghttp2_session_del(h->session);
  }
  while (h->streams) {
    stream_free(h, h->streams);
  }
  buf_free(&h->ev);
  buf_free(&h->out);
  buf_free(&h->hb);
  for (size_t i = 0; i < PSEUDO_SLOTS; i++) {
    buf_free(&h->pseudo[i]);
  }
  free(h->received_sids);
  free(h);
}

mosn_h2 *mosn_h2_new(int server, const uint32_t *settings, size_t nsettings,
                     int32_t connection_window, size_t max_header_list, size_t buffer_limit,
                     size_t max_continuations, uint32_t peer_max_streams,
                     const char *upgrade, size_t upgrade_len, int upgrade_head) {
  nghttp2_session_callbacks *cbs;
  nghttp2_option *opt;
  nghttp2_settings_entry iv[16];
  size_t i;
  int rv;
  mosn_h2 *h = calloc(1, sizeof(mosn_h2));
  if (h == NULL) {
    return NULL;
  }
  h->server = server;
  h->max_header_list = max_header_list;
  h->buffer_limit = buffer_limit;
  h->max_continuations = max_continuations;
  if (nghttp2_session_callbacks_new(&cbs) != 0) {
    free(h);
    return NULL;
  }
  nghttp2_session_callbacks_set_on_begin_frame_callback(cbs, on_begin_frame);
  nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, on_begin_headers);
  nghttp2_session_callbacks_set_on_header_callback(cbs, on_header);
  nghttp2_session_callbacks_set_on_invalid_header_callback(cbs, on_invalid_header);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, on_data_chunk);
  nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, on_frame_recv);
  nghttp2_session_callbacks_set_on_frame_send_callback(cbs, on_frame_send);
  nghttp2_session_callbacks_set_on_stream_close_callback(cbs, on_stream_close);
  if (nghttp2_option_new(&opt) != 0) {
    nghttp2_session_callbacks_del(cbs);
    free(h);
    return NULL;
  }
  /* Windows reopen only as fast as what was received is handed on (see the
     data chunk callback and mosn_h2_pause). */
  nghttp2_option_set_no_auto_window_update(opt, 1);
  /* Closed streams are kept only for RFC 7540 priorities, which are ignored. */
  nghttp2_option_set_no_closed_streams(opt, 1);
  nghttp2_option_set_peer_max_concurrent_streams(opt, peer_max_streams);
  rv = server ? nghttp2_session_server_new2(&h->session, cbs, h, opt)
              : nghttp2_session_client_new2(&h->session, cbs, h, opt);
  nghttp2_option_del(opt);
  nghttp2_session_callbacks_del(cbs);
  if (rv != 0) {
    free(h);
    return NULL;
  }
  if (upgrade != NULL) {
    stream_t *st = stream_new(h);
    if (st == NULL) {
      mosn_h2_del(h);
      return NULL;
    }
    st->id = 1;
    /* nghttp2 keeps the user data it is given here for a client only. */
    if (nghttp2_session_upgrade2(h->session, (const uint8_t *)upgrade, upgrade_len, upgrade_head, NULL) != 0 ||
        nghttp2_session_set_stream_user_data(h->session, 1, st) != 0) {
      mosn_h2_del(h);
      return NULL;
    }
  }
  for (i = 0; i < nsettings && i < 16; i++) {
    iv[i].settings_id = (int32_t)settings[2 * i];
    iv[i].value = settings[2 * i + 1];
  }
  if (nghttp2_submit_settings(h->session, NGHTTP2_FLAG_NONE, iv, i) != 0 ||
      nghttp2_session_set_local_window_size(h->session, NGHTTP2_FLAG_NONE, 0, connection_window) != 0) {
    mosn_h2_del(h);
    return NULL;
  }
  return h;
}

/* Reads `len` bytes from the peer: the bytes of events it made (in h->ev), or < 0,
   one of nghttp2's fatal errors. A connection error nghttp2 answers itself (GOAWAY,
   the rest ignored) is not one: it shows in h->error once the GOAWAY is sent. */
ssize_t mosn_h2_recv(mosn_h2 *h, const char *data, size_t len) {
  ssize_t rv = nghttp2_session_mem_recv(h->session, (const uint8_t *)data, len);
  return rv < 0 ? rv : (ssize_t)h->ev.len;
}

/* Collects what nghttp2 has to send into h->out; its length, or < 0. */
ssize_t mosn_h2_send(mosn_h2 *h) {
  const uint8_t *data;
  ssize_t n;
  h->out.len = 0;
  for (;;) {
    n = nghttp2_session_mem_send(h->session, &data);
    if (n < 0) {
      return n;
    }
    if (n == 0) {
      break;
    }
    if (buf_append(&h->out, data, (size_t)n) != 0) {
      return NGHTTP2_ERR_NOMEM;
    }
  }
  return (ssize_t)h->out.len;
}

/* Request (client: returns its stream id) or response (server: on `sid`) head;
   `end` if no body follows. < 0 is nghttp2's error. */
int32_t mosn_h2_submit(mosn_h2 *h, int32_t sid, const char *blob, size_t len, size_t n,
                       int end) {
  nghttp2_nv nva[MAX_FIELDS];
  nghttp2_data_provider prd;
  size_t count = parse_fields((const uint8_t *)blob, len, n, nva);
  stream_t *st;
  if (h->server) {
    st = stream_of(h, sid);
    if (st == NULL) {
      return NGHTTP2_ERR_STREAM_CLOSED;
    }
    prd.source.ptr = st;
    prd.read_callback = read_body;
    return nghttp2_submit_response(h->session, sid, nva, count, end ? NULL : &prd);
  }
  st = stream_new(h);
  if (st == NULL) {
    return NGHTTP2_ERR_NOMEM;
  }
  prd.source.ptr = st;
  prd.read_callback = read_body;
  sid = nghttp2_submit_request(h->session, NULL, nva, count, end ? NULL : &prd, st);
  if (sid < 0) {
    stream_free(h, st);
    return sid;
  }
  st->id = sid;
  return sid;
}

/* The body's end, with nothing of it left to send, while the peer's window is
   shut: nghttp2 asks the data provider only when the window has room, so the
   END_STREAM of an empty DATA frame (which needs none, RFC 9113 6.9.1) would wait for
   a WINDOW_UPDATE a peer that has everything need not send. It goes in the trailer
   block instead (empty if there are no trailers), which needs no window either. */
static int end_without_window(mosn_h2 *h, stream_t *st) {
  nghttp2_nv nva[MAX_FIELDS];
  size_t count = 0;
  int32_t window;
  if (st->out.len != st->out_off || st->end_submitted) {
    return 0;
  }
  window = nghttp2_session_get_stream_remote_window_size(h->session, st->id);
  if (window < 0 || (window > 0 && nghttp2_session_get_remote_window_size(h->session) > 0)) {
    return 0; /* not open yet, or the data provider will be asked */
  }
  if (st->trailer_fields) {
    count = parse_fields(st->trailers.data, st->trailers.len, st->trailer_fields, nva);
    st->trailer_fields = 0;
  }
  st->end_submitted = 1;
  return nghttp2_submit_trailer(h->session, st->id, nva, count) == 0;
}

/* Queues body bytes (and the body's end); 1 when the stream is now above the
   buffer limit (its source should pause until EV_DRAINED), 0, or -1 if gone. */
int mosn_h2_data(mosn_h2 *h, int32_t sid, const char *data, size_t len, int end) {
  stream_t *st = stream_of(h, sid);
  if (st == NULL || st->end) {
    return -1;
  }
  if (len) {
    if (st->out_off && st->out.len + len > st->out.cap) {
      memmove(st->out.data, st->out.data + st->out_off, st->out.len - st->out_off);
      st->out.len -= st->out_off;
      st->out_off = 0;
    }
    if (buf_append(&st->out, (const uint8_t *)data, len) != 0) {
      return -1;
    }
    h->queued += len;
  }
  st->end = end;
  if (end && end_without_window(h, st)) {
    return 0;
  }
  if (st->deferred) {
    st->deferred = 0;
    nghttp2_session_resume_data(h->session, sid);
  }
  if (!st->above && st->out.len - st->out_off > h->buffer_limit) {
    st->above = 1;
  }
  return st->above;
}

/* Queues trailers after the body, ending the stream. */
int mosn_h2_trailers(mosn_h2 *h, int32_t sid, const char *blob, size_t len, size_t n) {
  stream_t *st = stream_of(h, sid);
  if (st == NULL || st->end) {
    return -1;
  }
  st->trailers.len = 0;
  if (n && buf_append(&st->trailers, (const uint8_t *)blob, len) != 0) {
    return -1;
  }
  st->trailer_fields = n;
  st->end = 1;
  if (end_without_window(h, st)) {
    return 0;
  }
  if (st->deferred) {
    st->deferred = 0;
    nghttp2_session_resume_data(h->session, sid);
  }
  return 0;
}

int mosn_h2_reset(mosn_h2 *h, int32_t sid, uint32_t code) {
  return nghttp2_submit_rst_stream(h->session, NGHTTP2_FLAG_NONE, sid, code);
}

/* While paused, DATA received on `sid` is not acknowledged; resuming
   acknowledges what came meanwhile. */
void mosn_h2_pause(mosn_h2 *h, int32_t sid, int pause) {
  stream_t *st = stream_of(h, sid);
  if (st == NULL) {
    return;
  }
  st->paused = pause;
  if (!pause && st->unacked) {
    nghttp2_session_consume(h->session, sid, st->unacked);
    st->unacked = 0;
  }
}

/* After Python handed on the DATA of a read: acknowledge it, but for the streams
   whose reader is paused now (kept until mosn_h2_pause resumes them). */
void mosn_h2_settle(mosn_h2 *h) {
  size_t i;
  for (i = 0; i < h->nreceived; i++) {
    stream_t *st = stream_of(h, h->received_sids[i]);
    if (st == NULL || !st->received) {
      continue; /* closed meanwhile: its close consumed it */
    }
    if (st->paused) {
      st->unacked += st->received;
    } else {
      nghttp2_session_consume(h->session, st->id, st->received);
    }
    st->received = 0;
  }
  h->nreceived = 0;
}

/* 1 once the local end of `sid` is sent (or the stream is gone). */
int mosn_h2_local_closed(mosn_h2 *h, int32_t sid) {
  return nghttp2_session_get_stream_local_close(h->session, sid) != 0;
}

/* GOAWAY naming the last stream taken: NO_ERROR to drain, or an error code to
   end the connection (the rest of the input is then ignored). */
int mosn_h2_goaway(mosn_h2 *h, uint32_t code) {
  if (code != NGHTTP2_NO_ERROR) {
    return nghttp2_session_terminate_session(h->session, code);
  }
  return nghttp2_submit_goaway(h->session, NGHTTP2_FLAG_NONE,
                               nghttp2_session_get_last_proc_stream_id(h->session),
                               NGHTTP2_NO_ERROR, NULL, 0);
}

int mosn_h2_ping(mosn_h2 *h) {
  return nghttp2_submit_ping(h->session, NGHTTP2_FLAG_NONE, NULL);
}

uint32_t mosn_h2_remote_setting(mosn_h2 *h, int id) {
  return nghttp2_session_get_remote_settings(h->session, (nghttp2_settings_id)id);
}

/* 1 when the session has nothing more to read or write: the connection can close. */
int mosn_h2_finished(mosn_h2 *h) {
  return !nghttp2_session_want_read(h->session) && !nghttp2_session_want_write(h->session);
}
