/* Load generator and upstreams of bench/tcp.py, in one process and one epoll loop:
 * the echo and sink servers and the clients never wait on each other through the
 * scheduler. (A Python client and echo server saturated their core before haproxy did.)
 *
 *   loadgen
 *       Starts an echo server (writes back what it reads) and a sink (discards what
 *       it reads) on 127.0.0.1, prints "echo PORT" and "sink PORT", then reads
 *       commands on stdin, one at a time, and exits at the end of stdin:
 *
 *   pingpong PORT CONNECTIONS SIZE WARMUP SECONDS
 *       each connection sends SIZE bytes, waits for all of them back, repeats.
 *       Prints "start" once WARMUP seconds have passed, then after SECONDS:
 *       "rt COUNT ELAPSED_NS P50_NS P99_NS CPU_NS".
 *   bulk PORT CONNECTIONS SIZE WARMUP SECONDS
 *       each connection writes SIZE-byte buffers as fast as they are taken.
 *       Prints "start", then "bytes COUNT ELAPSED_NS CPU_NS".
 *
 * CPU_NS is this process's user + system time over the measured window. A run whose
 * connection fails prints "error WHAT" instead; the servers carry on either way.
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
#define READ_BUFFER (256 * 1024) /* one read takes a whole burst of loopback segments */
#define MAX_CLIENTS 1024         /* connections of one command */

enum kind { ECHO_LISTENER, SINK_LISTENER, ECHO, SINK, COMMAND, PINGPONG, BULK };

struct conn {
    int fd;
    enum kind kind;
    char *pending; /* echo: bytes the peer has not taken yet */
    size_t pending_len;
    size_t received; /* ping-pong: bytes of the current echo */
    uint64_t sent_at;
};

static struct {
    int active, failed, count_conns;
    enum kind kind;
    struct conn *conns[MAX_CLIENTS];
    char *message;
    size_t size, count, cap;
    uint32_t *latencies;
    uint64_t bytes, start, end, cpu;
    double seconds;
} run;

static int epoll;
static char buffer[READ_BUFFER];

static void die(const char *what) {
    fprintf(stderr, "loadgen: %s: %s\n", what, strerror(errno));
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
    free(c->pending);
    free(c);
}

static int listener(enum kind kind) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof addr;
    if (fd < 0 || bind(fd, (struct sockaddr *)&addr, len) < 0 || listen(fd, 4096) < 0
        || getsockname(fd, (struct sockaddr *)&addr, &len) < 0)
        die("listen");
    watch(fd, kind, EPOLLIN);
    return ntohs(addr.sin_port);
}

static void accept_all(struct conn *l) {
    int fd, one = 1;
    while ((fd = accept4(l->fd, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        watch(fd, l->kind == ECHO_LISTENER ? ECHO : SINK, EPOLLIN);
    }
}

static void echo(struct conn *c, uint32_t events) {
    if (c->pending_len) { /* the peer was slow: flush, read again once it has all */
        if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
            return;
        ssize_t n = write(c->fd, c->pending, c->pending_len);
        if (n < 0 && errno != EAGAIN) {
            drop(c);
            return;
        }
        if (n > 0) {
            memmove(c->pending, c->pending + n, c->pending_len - n);
            c->pending_len -= n;
        }
        if (!c->pending_len)
            set_events(c, EPOLLIN, EPOLL_CTL_MOD);
        return;
    }
    ssize_t n = read(c->fd, buffer, sizeof buffer);
    if (n <= 0) {
        if (n == 0 || errno != EAGAIN)
            drop(c);
        return;
    }
    ssize_t w = write(c->fd, buffer, n);
    if (w < 0 && errno != EAGAIN) {
        drop(c);
        return;
    }
    if (w < n) {
        w = w < 0 ? 0 : w;
        if (!(c->pending = realloc(c->pending, n - w)))
            die("realloc");
        memcpy(c->pending, buffer + w, n - w);
        c->pending_len = n - w;
        set_events(c, EPOLLOUT, EPOLL_CTL_MOD);
    }
}

static void sink(struct conn *c) {
    ssize_t n;
    while ((n = read(c->fd, buffer, sizeof buffer)) > 0)
        ;
    if (n == 0 || errno != EAGAIN)
        drop(c);
}

/* Ends the run at the next tick (its connections may still be in this batch of events). */
static void fail(const char *what) {
    if (!run.failed)
        printf("error %s: %s\n", what, errno ? strerror(errno) : "closed by the peer");
    fflush(stdout);
    run.failed = 1;
}

static void send_message(struct conn *c) {
    if (write(c->fd, run.message, run.size) != (ssize_t)run.size) /* fits: nothing else is queued */
        fail("write");
}

static void pingpong(struct conn *c) {
    ssize_t n = read(c->fd, buffer, sizeof buffer);
    if (n <= 0) {
        if (n < 0 && errno == EAGAIN)
            return;
        if (n == 0)
            errno = 0;
        fail("read");
        return;
    }
    if ((c->received += n) < run.size)
        return;
    uint64_t done = now_ns(), took = done - c->sent_at;
    if (run.count == run.cap) {
        run.cap *= 2;
        if (!(run.latencies = realloc(run.latencies, run.cap * sizeof *run.latencies)))
            die("realloc");
    }
    run.latencies[run.count++] = took > UINT32_MAX ? UINT32_MAX : (uint32_t)took;
    c->received = 0;
    c->sent_at = done;
    send_message(c);
}

/* One write per readiness event: writing until EAGAIN kept megabytes in flight, out of
 * cache, and halved the rate of a direct run. */
static void pump(struct conn *c) {
    ssize_t n = write(c->fd, run.message, run.size);
    if (n > 0)
        run.bytes += n;
    else if (errno != EAGAIN)
        fail("write");
}

static void end_run(void) {
    for (int i = 0; i < run.count_conns; i++)
        drop(run.conns[i]);
    run.count_conns = run.active = 0;
}

static void start_run(const char *line) {
    char mode[16];
    int port, conns;
    double warmup;
    if (sscanf(line, "%15s %d %d %zu %lf %lf", mode, &port, &conns, &run.size, &warmup, &run.seconds) != 6
        || conns < 1 || conns > MAX_CLIENTS || !run.size) {
        fprintf(stderr, "loadgen: bad command: %s", line);
        exit(2);
    }
    run.kind = strcmp(mode, "bulk") ? PINGPONG : BULK;
    run.active = 1;
    run.failed = 0;
    if (!(run.message = realloc(run.message, run.size)))
        die("realloc");
    if (!run.latencies && !(run.latencies = malloc((run.cap = 1 << 20) * sizeof *run.latencies)))
        die("malloc");
    memset(run.message, 'x', run.size);
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
        struct conn *c = watch(fd, run.kind, run.kind == BULK ? EPOLLOUT : EPOLLIN);
        run.conns[run.count_conns++] = c;
        c->sent_at = now_ns();
        if (run.kind == PINGPONG)
            send_message(c);
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
        run.count = run.bytes = 0;
        run.cpu = cpu_ns();
    } else if (run.end && t >= run.end) {
        uint64_t elapsed = t - run.start, cpu = cpu_ns() - run.cpu;
        end_run();
        if (run.kind == PINGPONG) {
            qsort(run.latencies, run.count, sizeof *run.latencies, compare);
            printf("rt %zu %lu %u %u %lu\n", run.count, (unsigned long)elapsed,
                   run.count ? run.latencies[run.count / 2] : 0,
                   run.count ? run.latencies[run.count * 99 / 100] : 0, (unsigned long)cpu);
        } else {
            printf("bytes %lu %lu %lu\n", (unsigned long)run.bytes, (unsigned long)elapsed,
                   (unsigned long)cpu);
        }
        fflush(stdout);
        return -1;
    }
    return (int)(((run.end ? run.end : run.start) - t) / 1000000) + 1;
}

int main(void) {
    signal(SIGPIPE, SIG_IGN); /* a peer gone mid-write is an error return, not a kill */
    if ((epoll = epoll_create1(0)) < 0)
        die("epoll_create1");
    printf("echo %d\n", listener(ECHO_LISTENER));
    printf("sink %d\n", listener(SINK_LISTENER));
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
            case ECHO_LISTENER:
            case SINK_LISTENER: accept_all(c); break;
            case ECHO: echo(c, events[i].events); break;
            case SINK: sink(c); break;
            case PINGPONG:
                if (!run.failed)
                    pingpong(c);
                break;
            case BULK:
                if (!run.failed)
                    pump(c);
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
