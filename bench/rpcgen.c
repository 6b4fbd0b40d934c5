/* Bolt v1 or Dubbo server and load generator of bench/rpc.py, in one process and one
 * epoll loop (like bench/loadgen.c for bench/tcp.py): a Python client capped near
 * haproxy's rate in the TCP benchmark, too slow to tell fast proxies apart.
 *
 *   rpcgen [--protocol bolt|dubbo] REQUEST_FILE RESPONSE_FILE
 *       --protocol (default bolt) says which frames are spoken (see "Frames" below).
 *       REQUEST_FILE holds one whole two-way request frame and RESPONSE_FILE one whole
 *       success response (bench/rpc.py builds both with the protocol plugin's codec:
 *       the sofarpc plugin's BoltCodec, the dubbo plugin's DubboCodec). Starts the
 *       server on 127.0.0.1 and prints "PROTOCOL PORT" ("bolt PORT", "dubbo PORT");
 *       then reads commands on stdin, one at a time, and exits at the end of stdin.
 *
 *   The server reads whole frames and answers each two-way request with RESPONSE_FILE's
 *   frame, the request's id patched in, and each heartbeat with a heartbeat reply.
 *   Oneway requests and any other frame of the protocol get no answer; a connection
 *   whose bytes are not the protocol's frames, or whose frame is over MAX_FRAME, is
 *   closed.
 *
 *   pingpong PORT CONNECTIONS WARMUP SECONDS
 *       each connection sends REQUEST_FILE's frame with its next id (1, 2, ...), reads
 *       the whole response, records the latency, and sends the next.
 *       Prints "start" once WARMUP seconds have passed, then after SECONDS:
 *       "rt COUNT ELAPSED_NS P50_NS P99_NS CPU_NS ERRORS". ERRORS counts responses,
 *       over the warm-up and the window, that are not a success response with the id
 *       of the request they answer; the run carries on past them. Bytes that are not a
 *       response of the protocol end the run with "error WHAT".
 *
 * Frames (struct protocol; big-endian):
 *   bolt v1 (the sofarpc plugin's frames.py): a 22-byte request header, then class
 *       name, header map and content, their lengths at offsets 14, 16 and 18; a 20-byte
 *       response header, the lengths at 12, 14 and 16. The id is a u32 at offset 5. A
 *       heartbeat is command code 0 in a request or oneway; its reply is a response
 *       header with status SUCCESS and nothing after it. A success response has
 *       command code 2 and status 0.
 *   dubbo (the dubbo plugin's frames.py): a 16-byte header (magic 0xdabb; flag at
 *       offset 2: bit 7 request, bit 6 two-way, bit 5 event, bits 0-4 serialization;
 *       status at 3; the id a u64 at 4; the body's length a u32 at 12), then the body.
 *       A heartbeat is a two-way request event; its reply is the same frame as a
 *       response event with status OK (20), as the dubbo plugin answers one. A success
 *       response is a response that is not an event, with status OK.
 *
 * CPU_NS is this process's user + system time over the measured window: the server's
 * and the clients' together, the whole load side. A run whose connection fails prints
 * "error WHAT" instead of its figures; the server carries on either way.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_EVENTS 256
#define READ_CHUNK (64 * 1024)    /* free room asked of a buffer before each read */
#define MAX_FRAME (1024 * 1024)   /* larger frames close the connection: the sofarpc plugin's default limit */
#define RESPONSE_BUFFER (64 * 1024) /* a client's whole response must fit */
#define MAX_CLIENTS 1024          /* connections of one command */

/* bolt v1 */
#define PROTOCOL_V1 0x01
#define TYPE_RESPONSE 0
#define TYPE_REQUEST 1
#define CMD_HEARTBEAT 0
#define CMD_REQUEST 1
#define CMD_RESPONSE 2
#define BOLT_REQUEST_HEADER 22
#define BOLT_RESPONSE_HEADER 20
#define BOLT_ID_OFFSET 5
#define BOLT_CODEC_OFFSET 9
#define BOLT_STATUS_OFFSET 10

/* dubbo */
#define DUBBO_MAGIC "\xda\xbb"
#define DUBBO_HEADER 16
#define DUBBO_FLAG_OFFSET 2
#define DUBBO_STATUS_OFFSET 3
#define DUBBO_ID_OFFSET 4
#define DUBBO_LENGTH_OFFSET 12
#define FLAG_REQUEST 0x80
#define FLAG_TWO_WAY 0x40
#define FLAG_EVENT 0x20
#define SERIALIZATION_MASK 0x1f
#define DUBBO_OK 20

enum kind { LISTENER, SERVER, COMMAND, CLIENT };

struct conn {
    int fd;
    enum kind kind;
    char *in; /* bytes read and not yet taken as whole frames */
    size_t in_len, in_cap;
    char *out; /* server: replies the peer has not taken yet */
    size_t out_len, out_cap;
    uint64_t id; /* client: the id of the request in flight */
    uint64_t sent_at;
};

static struct {
    int active, failed, count_conns;
    struct conn *conns[MAX_CLIENTS];
    size_t count, cap, errors;
    uint32_t *latencies;
    uint64_t start, end, cpu;
    double seconds;
} run;

enum frame_kind { FRAME_OTHER, FRAME_REQUEST, FRAME_HEARTBEAT }; /* to the server */

/* What the server and the clients need to know of a protocol's frames. */
struct protocol {
    const char *name, *frames; /* --protocol's word; the frames' name in messages */
    size_t id_offset, id_size; /* the request id: big-endian, at the same place in every frame */
    /* The size of the whole frame starting at p (avail bytes there), 0 if its header is
     * not all there yet, -1 if it is not one of the protocol's frames. */
    long (*frame_size)(const char *p, size_t avail);
    enum frame_kind (*kind)(const char *frame); /* a two-way request, a heartbeat, or neither */
    int (*is_response)(const char *frame);
    int (*is_success)(const char *response); /* a success response to a request */
    void (*heartbeat_reply)(struct conn *c, const char *heartbeat, size_t size); /* queues it on c */
};

static const struct protocol *proto;
static int epoll;
static char *request, *response; /* the templates */
static size_t request_len, response_len;

static void die(const char *what) {
    fprintf(stderr, "rpcgen: %s: %s\n", what, errno ? strerror(errno) : "invalid");
    exit(1);
}

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + ts.tv_nsec;
}

static uint64_t cpu_ns(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (uint64_t)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000000u
           + (uint64_t)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1000u;
}

static uint32_t get16(const char *p) {
    const unsigned char *u = (const unsigned char *)p;
    return (uint32_t)u[0] << 8 | u[1];
}

static uint32_t get32(const char *p) {
    const unsigned char *u = (const unsigned char *)p;
    return (uint32_t)u[0] << 24 | (uint32_t)u[1] << 16 | (uint32_t)u[2] << 8 | u[3];
}

static uint64_t get_id(const char *frame) {
    uint64_t id = 0;
    for (size_t i = 0; i < proto->id_size; i++)
        id = id << 8 | (unsigned char)frame[proto->id_offset + i];
    return id;
}

static void put_id(char *frame, uint64_t id) {
    for (size_t i = proto->id_size; i--; id >>= 8)
        frame[proto->id_offset + i] = (char)id;
}

static void set_events(struct conn *c, uint32_t events, int op) {
    struct epoll_event ev = {.events = events, .data.ptr = c};
    if (epoll_ctl(epoll, op, c->fd, &ev) < 0)
        die("epoll_ctl");
}

static struct conn *watch(int fd, enum kind kind, uint32_t events) {
    struct conn *c = calloc(1, sizeof *c);
    if (!c)
        die("calloc");
    c->fd = fd;
    c->kind = kind;
    set_events(c, events, EPOLL_CTL_ADD);
    return c;
}

static void drop(struct conn *c) {
    close(c->fd); /* also leaves the epoll set */
    free(c->in);
    free(c->out);
    free(c);
}

static void reserve(char **buf, size_t *cap, size_t want) {
    if (*cap >= want)
        return;
    size_t n = *cap ? *cap : READ_CHUNK;
    while (n < want)
        n *= 2;
    if (!(*buf = realloc(*buf, n)))
        die("realloc");
    *cap = n;
}

static void queue(struct conn *c, const char *data, size_t len) {
    reserve(&c->out, &c->out_cap, c->out_len + len);
    memcpy(c->out + c->out_len, data, len);
    c->out_len += len;
}

static char *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f)
        die(path);
    char *data = malloc(MAX_FRAME);
    if (!data)
        die("malloc");
    *len = fread(data, 1, MAX_FRAME, f);
    fclose(f);
    return data;
}

/* --- protocols ------------------------------------------------------------------- */

static long bolt_frame_size(const char *p, size_t avail) {
    if (avail < 2)
        return avail && p[0] != PROTOCOL_V1 ? -1 : 0;
    if (p[0] != PROTOCOL_V1 || (unsigned char)p[1] > 2)
        return -1;
    size_t header = p[1] == TYPE_RESPONSE ? BOLT_RESPONSE_HEADER : BOLT_REQUEST_HEADER;
    if (avail < header)
        return 0;
    return (long)(header + get16(p + header - 8) + get16(p + header - 6) + get32(p + header - 4));
}

static enum frame_kind bolt_kind(const char *frame) {
    if (frame[1] == TYPE_REQUEST && get16(frame + 2) == CMD_REQUEST)
        return FRAME_REQUEST;
    if (frame[1] != TYPE_RESPONSE && get16(frame + 2) == CMD_HEARTBEAT)
        return FRAME_HEARTBEAT;
    return FRAME_OTHER;
}

static int bolt_is_response(const char *frame) {
    return frame[1] == TYPE_RESPONSE;
}

static int bolt_is_success(const char *response) {
    return get16(response + 2) == CMD_RESPONSE && get16(response + BOLT_STATUS_OFFSET) == 0;
}

static void bolt_heartbeat_reply(struct conn *c, const char *heartbeat, size_t size) {
    (void)size;
    /* proto, type response, cmdcode heartbeat, ver2, id, codec, status 0, no lengths */
    char ack[BOLT_RESPONSE_HEADER] = {PROTOCOL_V1, TYPE_RESPONSE, 0, CMD_HEARTBEAT, 1};
    memcpy(ack + BOLT_ID_OFFSET, heartbeat + BOLT_ID_OFFSET, 4);
    ack[BOLT_CODEC_OFFSET] = heartbeat[BOLT_CODEC_OFFSET];
    queue(c, ack, sizeof ack);
}

static long dubbo_frame_size(const char *p, size_t avail) {
    if (memcmp(p, DUBBO_MAGIC, avail < 2 ? avail : 2))
        return -1;
    if (avail < DUBBO_HEADER)
        return 0;
    return (long)(DUBBO_HEADER + get32(p + DUBBO_LENGTH_OFFSET));
}

static enum frame_kind dubbo_kind(const char *frame) {
    unsigned char flag = frame[DUBBO_FLAG_OFFSET];
    if (!(flag & FLAG_REQUEST) || !(flag & FLAG_TWO_WAY))
        return FRAME_OTHER;
    return flag & FLAG_EVENT ? FRAME_HEARTBEAT : FRAME_REQUEST;
}

static int dubbo_is_response(const char *frame) {
    return !(frame[DUBBO_FLAG_OFFSET] & FLAG_REQUEST);
}

static int dubbo_is_success(const char *response) {
    return !(response[DUBBO_FLAG_OFFSET] & FLAG_EVENT)
           && (unsigned char)response[DUBBO_STATUS_OFFSET] == DUBBO_OK;
}

/* The heartbeat's own frame turned into a response event with status OK, carrying what
 * the heartbeat carried (hessian2 null from a Dubbo client), as the dubbo plugin's
 * heartbeat_reply() answers. */
static void dubbo_heartbeat_reply(struct conn *c, const char *heartbeat, size_t size) {
    queue(c, heartbeat, size);
    char *ack = c->out + c->out_len - size;
    ack[DUBBO_FLAG_OFFSET] = (char)(FLAG_EVENT | (heartbeat[DUBBO_FLAG_OFFSET] & SERIALIZATION_MASK));
    ack[DUBBO_STATUS_OFFSET] = DUBBO_OK;
}

static const struct protocol protocols[] = {
    {"bolt", "bolt v1", BOLT_ID_OFFSET, 4, bolt_frame_size, bolt_kind, bolt_is_response,
     bolt_is_success, bolt_heartbeat_reply},
    {"dubbo", "dubbo", DUBBO_ID_OFFSET, 8, dubbo_frame_size, dubbo_kind, dubbo_is_response,
     dubbo_is_success, dubbo_heartbeat_reply},
};

/* --- server ---------------------------------------------------------------------- */

static int listener(void) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof addr;
    if (fd < 0 || bind(fd, (struct sockaddr *)&addr, len) < 0 || listen(fd, 4096) < 0
        || getsockname(fd, (struct sockaddr *)&addr, &len) < 0)
        die("listen");
    watch(fd, LISTENER, EPOLLIN);
    return ntohs(addr.sin_port);
}

static void accept_all(struct conn *l) {
    int fd, one = 1;
    while ((fd = accept4(l->fd, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        watch(fd, SERVER, EPOLLIN);
    }
}

/* Write what is queued; 0 when all or some of it went (or the socket is full), -1 on error. */
static int flush(struct conn *c) {
    ssize_t n = write(c->fd, c->out, c->out_len);
    if (n < 0)
        return errno == EAGAIN ? 0 : -1;
    memmove(c->out, c->out + n, c->out_len - n);
    c->out_len -= n;
    return 0;
}

static void reply(struct conn *c, const char *frame, size_t size) {
    switch (proto->kind(frame)) {
    case FRAME_REQUEST:
        queue(c, response, response_len);
        memcpy(c->out + c->out_len - response_len + proto->id_offset, frame + proto->id_offset,
               proto->id_size);
        break;
    case FRAME_HEARTBEAT: proto->heartbeat_reply(c, frame, size); break;
    case FRAME_OTHER: break;
    }
}

static void serve(struct conn *c, uint32_t events) {
    if (c->out_len) { /* the peer was slow: flush, read again once it has all */
        if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
            return;
        if (flush(c) < 0) {
            drop(c);
            return;
        }
        if (!c->out_len)
            set_events(c, EPOLLIN, EPOLL_CTL_MOD);
        return;
    }
    reserve(&c->in, &c->in_cap, c->in_len + READ_CHUNK);
    ssize_t n = read(c->fd, c->in + c->in_len, c->in_cap - c->in_len);
    if (n <= 0) {
        if (n == 0 || errno != EAGAIN)
            drop(c);
        return;
    }
    c->in_len += n;
    size_t off = 0;
    for (;;) {
        long size = proto->frame_size(c->in + off, c->in_len - off);
        if (size < 0 || size > MAX_FRAME) {
            drop(c);
            return;
        }
        if (!size || (size_t)size > c->in_len - off)
            break;
        reply(c, c->in + off, size);
        off += size;
    }
    memmove(c->in, c->in + off, c->in_len - off);
    c->in_len -= off;
    if (c->out_len) {
        if (flush(c) < 0) {
            drop(c);
            return;
        }
        if (c->out_len)
            set_events(c, EPOLLOUT, EPOLL_CTL_MOD);
    }
}

/* --- load generator -------------------------------------------------------------- */

/* Ends the run at the next tick (its connections may still be in this batch of events). */
static void fail(const char *what) {
    if (!run.failed)
        printf("error %s%s%s\n", what, errno ? ": " : "", errno ? strerror(errno) : "");
    fflush(stdout);
    run.failed = 1;
}

static void send_request(struct conn *c) {
    c->id++;
    put_id(request, c->id); /* one template: each write takes it whole at once */
    if (write(c->fd, request, request_len) != (ssize_t)request_len) /* fits: nothing else is queued */
        fail("write");
}

static void exchange(struct conn *c) {
    ssize_t n = read(c->fd, c->in + c->in_len, c->in_cap - c->in_len);
    if (n <= 0) {
        if (n < 0 && errno == EAGAIN)
            return;
        if (n == 0)
            errno = 0;
        fail(n ? "read" : "read: closed by the peer");
        return;
    }
    c->in_len += n;
    long size = proto->frame_size(c->in, c->in_len);
    errno = 0;
    if (size < 0 || (size && !proto->is_response(c->in))) {
        char what[64];
        snprintf(what, sizeof what, "not a %s response", proto->frames);
        fail(what);
        return;
    }
    if (size > (long)c->in_cap) {
        fail("response larger than the client's buffer");
        return;
    }
    if (!size || (size_t)size > c->in_len)
        return;
    if ((size_t)size < c->in_len) {
        fail("bytes after the one response in flight");
        return;
    }
    uint64_t done = now_ns(), took = done - c->sent_at;
    if (!proto->is_success(c->in) || get_id(c->in) != c->id)
        run.errors++;
    if (run.count == run.cap) {
        run.cap *= 2;
        if (!(run.latencies = realloc(run.latencies, run.cap * sizeof *run.latencies)))
            die("realloc");
    }
    run.latencies[run.count++] = took > UINT32_MAX ? UINT32_MAX : (uint32_t)took;
    c->in_len = 0;
    c->sent_at = done;
    send_request(c);
}

static void end_run(void) {
    for (int i = 0; i < run.count_conns; i++)
        drop(run.conns[i]);
    run.count_conns = run.active = 0;
}

static void start_run(const char *line) {
    int port, conns;
    double warmup;
    if (sscanf(line, "pingpong %d %d %lf %lf", &port, &conns, &warmup, &run.seconds) != 4
        || conns < 1 || conns > MAX_CLIENTS) {
        fprintf(stderr, "rpcgen: bad command: %s", line);
        exit(2);
    }
    run.active = 1;
    run.failed = 0;
    run.errors = 0;
    if (!run.latencies && !(run.latencies = malloc((run.cap = 1 << 20) * sizeof *run.latencies)))
        die("malloc");
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(port),
                               .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    for (run.count_conns = 0; run.count_conns < conns && !run.failed;) {
        int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
        if (fd < 0 || connect(fd, (struct sockaddr *)&addr, sizeof addr) < 0) {
            if (fd >= 0)
                close(fd);
            fail("connect");
            break;
        }
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        fcntl(fd, F_SETFL, O_NONBLOCK);
        struct conn *c = watch(fd, CLIENT, EPOLLIN);
        reserve(&c->in, &c->in_cap, RESPONSE_BUFFER);
        run.conns[run.count_conns++] = c;
        c->sent_at = now_ns();
        send_request(c);
    }
    run.start = now_ns() + (uint64_t)(warmup * 1e9);
    run.end = 0;
}

static int compare(const void *a, const void *b) {
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

/* Called at every loop turn: opens the measured window after the warm-up, closes the
 * run after it; returns the epoll timeout until the next of those, in ms. */
static int tick(void) {
    if (!run.active)
        return -1;
    if (run.failed) {
        end_run();
        return -1;
    }
    uint64_t t = now_ns();
    if (!run.end && t >= run.start) {
        printf("start\n");
        fflush(stdout);
        run.start = t;
        run.end = t + (uint64_t)(run.seconds * 1e9);
        run.count = 0;
        run.cpu = cpu_ns();
    } else if (run.end && t >= run.end) {
        uint64_t elapsed = t - run.start, cpu = cpu_ns() - run.cpu;
        end_run();
        qsort(run.latencies, run.count, sizeof *run.latencies, compare);
        printf("rt %zu %lu %u %u %lu %zu\n", run.count, (unsigned long)elapsed,
               run.count ? run.latencies[run.count / 2] : 0,
               run.count ? run.latencies[run.count * 99 / 100] : 0, (unsigned long)cpu, run.errors);
        fflush(stdout);
        return -1;
    }
    return (int)(((run.end ? run.end : run.start) - t) / 1000000) + 1;
}

/* The templates must be whole frames of the protocol: a two-way request and a success
 * response. */
static void check_templates(void) {
    char what[64];
    errno = 0;
    if (proto->frame_size(request, request_len) != (long)request_len
        || proto->kind(request) != FRAME_REQUEST) {
        snprintf(what, sizeof what, "REQUEST_FILE is not one %s request frame", proto->frames);
        die(what);
    }
    if (proto->frame_size(response, response_len) != (long)response_len
        || !proto->is_response(response) || !proto->is_success(response)) {
        snprintf(what, sizeof what, "RESPONSE_FILE is not one %s success response frame",
                 proto->frames);
        die(what);
    }
}

int main(int argc, char **argv) {
    proto = &protocols[0];
    if (argc == 5 && !strcmp(argv[1], "--protocol")) {
        proto = NULL;
        for (size_t i = 0; i < sizeof protocols / sizeof *protocols; i++)
            if (!strcmp(argv[2], protocols[i].name))
                proto = &protocols[i];
        argc -= 2;
        argv += 2;
    }
    if (argc != 3 || !proto) {
        fprintf(stderr, "usage: rpcgen [--protocol bolt|dubbo] REQUEST_FILE RESPONSE_FILE\n");
        return 2;
    }
    request = read_file(argv[1], &request_len);
    response = read_file(argv[2], &response_len);
    check_templates();
    signal(SIGPIPE, SIG_IGN); /* a peer gone mid-write is an error return, not a kill */
    if ((epoll = epoll_create1(0)) < 0)
        die("epoll_create1");
    printf("%s %d\n", proto->name, listener());
    fflush(stdout);
    watch(STDIN_FILENO, COMMAND, EPOLLIN);
    char line[256];
    struct epoll_event events[MAX_EVENTS];
    for (;;) {
        int n = epoll_wait(epoll, events, MAX_EVENTS, tick());
        if (n < 0 && errno != EINTR)
            die("epoll_wait");
        for (int i = 0; i < n; i++) {
            struct conn *c = events[i].data.ptr;
            switch (c->kind) {
            case LISTENER: accept_all(c); break;
            case SERVER: serve(c, events[i].events); break;
            case CLIENT:
                if (!run.failed)
                    exchange(c);
                break;
            case COMMAND:
                if (!fgets(line, sizeof line, stdin))
                    return 0;
                start_run(line);
                break;
            }
        }
    }
}
