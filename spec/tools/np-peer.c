/* np-peer: the real peer (servers: echo, source, sink, banner, silent; and a load-generating,
 * verifying client) that end-to-end specs and benchmarks run through the proxy over loopback.
 * Data is a deterministic, position-addressable byte stream, so both ends verify exact bytes. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <endian.h>
#include <errno.h>
#include <getopt.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/listener.h>

#define BUF (256 * 1024)
#define MAX_REASONS 20

static const char USAGE[] =
    "usage: np-peer MODE [options]\n"
    "servers (print 'PORT <n>' once listening; run until SIGTERM/SIGINT or --max-conns):\n"
    "  np-peer echo   --listen HOST:PORT           echo bytes; on EOF flush, shut down, close\n"
    "  np-peer source --listen HOST:PORT --bytes N send N stream bytes, shut down, drain, close\n"
    "  np-peer sink   --listen HOST:PORT           verify until EOF; reply OK <n> or BAD <off>\n"
    "  np-peer banner --listen HOST:PORT --text S  send S\\n, then echo\n"
    "  np-peer silent --listen HOST:PORT           accept, read and discard, never answer\n"
    "  np-peer blackhole --listen HOST:PORT        never accept: connecting to it hangs\n"
    "  np-peer reply  --listen HOST:PORT --text S [--delay SEC] [--close]\n"
    "                 read a request header (up to a blank line), wait SEC, send S (\\r \\n\n"
    "                 decoded), then echo, or close with --close: a fake HTTP proxy or server;\n"
    "                 --save FILE keeps the last request header received\n"
    "  server options: --port-file FILE  --max-conns N  --seed S\n"
    "client:\n"
    "  np-peer client --connect HOST:PORT [--expect echo|source|sink] [--bytes N[K|M]]\n"
    "         [--seed S] [--conns C] [--parallel P] [--barrier] [--half-close] [--timeout SEC]\n"
    "         [--socks5 HOST:PORT]  (--connect is then a SOCKS5 proxy, no authentication, asked\n"
    "         for HOST:PORT, an IP address, before the stream starts)\n"
    "  prints: ok= failed= bytes_sent= bytes_recv= seconds= MBps= conns_per_sec=\n"
    "  exits 0 iff every connection succeeded.\n"
    "  np-peer client --connect HOST:PORT --pingpong N [--bytes N] [--timeout SEC]\n"
    "         one connection to an echo server: N times, send --bytes (default 64) of the stream\n"
    "         and wait for their verified echo before the next; --timeout bounds each wait\n"
    "  prints: ok= failed= rounds= seconds= min_us= p50_us= p99_us= max_us= mean_us=\n"
    "HOST:PORT is 127.0.0.1:0 or [::1]:0 style; PORT 0 picks an ephemeral port.\n";

enum mode { M_ECHO, M_SOURCE, M_SINK, M_BANNER, M_SILENT, M_CLIENT, M_BLACKHOLE, M_REPLY };

static struct {
    enum mode mode;
    enum mode expect; /* client: M_ECHO, M_SOURCE or M_SINK */
    const char *listen, *port_file, *connect, *text, *save, *socks5;
    uint64_t bytes, seed;
    long max_conns, conns, parallel, pingpong;
    int barrier, half_close, close_after;
    double timeout, delay;
} opt = {.expect = M_ECHO, .seed = 1, .conns = 1, .timeout = 60};

static struct event_base *base;
static uint8_t rxbuf[BUF]; /* shared read scratch: one thread, data is consumed at once */

static void die(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("np-peer: ", stderr), vfprintf(stderr, fmt, ap), fputc('\n', stderr);
    va_end(ap), exit(2);
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* ---- the stream: word i = T[i % 8192] ^ mask(i / 8192), stored little-endian ----
 * T is 64 KiB of splitmix64 output from the seed; the per-block mask (splitmix64 of a second
 * key derived from the seed) makes it aperiodic.
 * Any offset can be generated directly, at memory speed. */

#define TWORDS 8192
static uint64_t table_key, mask_key, table[TWORDS];

static inline uint64_t splitmix(uint64_t z) {
    z += 0x9e3779b97f4a7c15ULL;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static void stream_init(uint64_t seed) {
    table_key = splitmix(seed);
    mask_key = splitmix(table_key ^ 0x6a09e667f3bcc908ULL);
    for (uint64_t i = 0; i < TWORDS; i++)
        table[i] = splitmix(table_key + i * 0x9e3779b97f4a7c15ULL);
}

static inline uint64_t block_mask(uint64_t block) {
    return splitmix(mask_key + block * 0x9e3779b97f4a7c15ULL);
}

static inline uint64_t stream_word(uint64_t i) {
    return htole64(table[i % TWORDS] ^ block_mask(i / TWORDS));
}

/* Write stream bytes [off, off+n) to dst. */
static void stream_fill(uint64_t off, uint8_t *dst, size_t n) {
    uint64_t w;
    if ((off & 7) && n) {
        size_t k = off & 7, m = 8 - k < n ? 8 - k : n;
        w = stream_word(off >> 3);
        memcpy(dst, (uint8_t *)&w + k, m);
        dst += m, off += m, n -= m;
    }
    while (n >= 8) { /* whole words, one table run per block */
        uint64_t i = off >> 3, mask = block_mask(i / TWORDS);
        size_t j = i % TWORDS, cnt = TWORDS - j < n / 8 ? TWORDS - j : n / 8;
        for (size_t k = 0; k < cnt; k++) {
            w = htole64(table[j + k] ^ mask);
            memcpy(dst + 8 * k, &w, 8);
        }
        dst += 8 * cnt, off += 8 * cnt, n -= 8 * cnt;
    }
    if (n) {
        w = stream_word(off >> 3);
        memcpy(dst, &w, n);
    }
}

/* A generated window of the stream, reused while callers stay inside it. */
struct cache { uint64_t off; size_t len; uint8_t buf[BUF]; };
static struct cache txc, rxc;

/* Pointer to stream bytes at off; *got (<= want) is how many are available there. */
static const uint8_t *stream_at(struct cache *c, uint64_t off, uint64_t want, size_t *got) {
    uint64_t end = c->off + c->len;
    if (off < c->off || off >= end || (end - off < want && end - off < BUF / 2)) {
        size_t len = want > BUF ? BUF : want < 65536 ? 65536 : want;
        stream_fill(off, c->buf, len);
        c->off = off, c->len = len;
    }
    size_t avail = c->off + c->len - off;
    *got = want < avail ? want : avail;
    return c->buf + (off - c->off);
}

/* Compare p[0..n) with the stream at off: index of the first mismatch, or -1. */
static int64_t verify(struct cache *c, uint64_t off, const uint8_t *p, size_t n) {
    size_t done = 0, got, i;
    while (done < n) {
        const uint8_t *e = stream_at(c, off + done, n - done, &got);
        if (memcmp(e, p + done, got) != 0) {
            for (i = 0; e[i] == p[done + i]; i++) {}
            return (int64_t)(done + i);
        }
        done += got;
    }
    return -1;
}

/* ---- addresses and sockets ---- */

static struct addrinfo *resolve(const char *hp, int passive) {
    char host[256];
    const char *port, *end;
    if (hp[0] == '[') {
        end = strchr(hp, ']');
        if (!end || end[1] != ':') die("bad address '%s' (want [v6addr]:port)", hp);
        port = end + 2, hp++;
    } else {
        end = strrchr(hp, ':');
        if (!end) die("bad address '%s' (want host:port)", hp);
        port = end + 1;
    }
    if ((size_t)(end - hp) >= sizeof host) die("host name too long");
    memcpy(host, hp, end - hp);
    host[end - hp] = 0;

    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_NUMERICSERV | (passive ? AI_PASSIVE : 0)};
    struct addrinfo *res;
    int rc = getaddrinfo(host[0] ? host : NULL, port, &hints, &res);
    if (rc != 0) die("resolve %s: %s", hp, gai_strerror(rc));
    return res;
}

static void set_nodelay(int fd) {
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

static int would_block(void) {
    return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR;
}

/* ---- servers ---- */

struct sconn {
    int fd;
    struct event *rd, *wr;
    uint64_t off; /* source: bytes sent; sink: bytes received */
    int64_t bad;  /* sink: first mismatching offset, or -1 */
    uint8_t *pend;
    size_t plen, ppos;
    int eof, shut;
    int hdr_match, replied; /* reply mode: progress through "\r\n\r\n", reply sent */
    FILE *saved;            /* reply mode with --save: the request header goes there */
    struct event *delay;
};

static struct evconnlistener *listener;
static struct event *pause_ev;
static long n_accepted, n_done;

static void srv_close(struct sconn *s) {
    event_free(s->rd), event_free(s->wr);
    if (s->delay) event_free(s->delay);
    if (s->saved) fclose(s->saved);
    close(s->fd);
    free(s->pend);
    free(s);
    if (opt.max_conns && ++n_done >= opt.max_conns) event_base_loopbreak(base);
}

/* Send now what the socket takes; keep the rest and wait for writability (reading paused).
 * Returns 0 if all was sent, 1 if some is pending, -1 if s was closed. */
static int srv_send(struct sconn *s, const uint8_t *p, size_t n) {
    ssize_t w = send(s->fd, p, n, MSG_NOSIGNAL);
    if (w < 0 && !would_block()) {
        srv_close(s);
        return -1;
    }
    if (w < 0) w = 0;
    if ((size_t)w == n) return 0;
    s->plen = n - w, s->ppos = 0;
    s->pend = malloc(s->plen);
    if (!s->pend) die("out of memory");
    memcpy(s->pend, p + w, s->plen);
    event_del(s->rd);
    event_add(s->wr, NULL);
    return 1;
}

/* source: push stream bytes until N are out, then shut down and drain the client (10 s idle). */
static void srv_source_write(struct sconn *s) {
    size_t got;
    while (s->off < opt.bytes) {
        const uint8_t *p = stream_at(&txc, s->off, opt.bytes - s->off, &got);
        ssize_t w = send(s->fd, p, got, MSG_NOSIGNAL);
        if (w < 0) {
            if (!would_block()) srv_close(s);
            return;
        }
        s->off += w;
        if ((size_t)w < got) return;
    }
    event_del(s->wr);
    shutdown(s->fd, SHUT_WR);
    s->shut = 1;
    struct timeval tv = {10, 0};
    if (s->eof) srv_close(s);
    else event_add(s->rd, &tv);
}

static void srv_write_cb(evutil_socket_t fd, short what, void *arg) {
    struct sconn *s = arg;
    (void)what;
    if (opt.mode == M_SOURCE) {
        srv_source_write(s);
        return;
    }
    ssize_t w = send(fd, s->pend + s->ppos, s->plen - s->ppos, MSG_NOSIGNAL);
    if (w < 0) {
        if (!would_block()) srv_close(s);
        return;
    }
    s->ppos += w;
    if (s->ppos < s->plen) return;
    free(s->pend), s->pend = NULL;
    event_del(s->wr);
    if (opt.mode == M_REPLY && opt.close_after) {
        shutdown(s->fd, SHUT_WR);
        srv_close(s);
    } else if (opt.mode != M_SINK) event_add(s->rd, NULL);
    else srv_close(s); /* reply fully handed to the kernel; the client's EOF was already read */
}

static void srv_eof(struct sconn *s) {
    char line[64];
    s->eof = 1;
    event_del(s->rd);
    switch (opt.mode) {
    case M_ECHO:
    case M_REPLY:
    case M_BANNER: /* reading is paused while data is pending, so nothing is left to flush */
        shutdown(s->fd, SHUT_WR);
        srv_close(s);
        break;
    case M_SOURCE:
        if (s->shut) srv_close(s);
        break;
    case M_SINK:
        if (s->bad >= 0) snprintf(line, sizeof line, "BAD %lld\n", (long long)s->bad);
        else snprintf(line, sizeof line, "OK %llu\n", (unsigned long long)s->off);
        if (srv_send(s, (uint8_t *)line, strlen(line)) == 0) srv_close(s);
        break;
    default:
        srv_close(s);
    }
}

/* reply mode: the canned answer, escapes decoded, once the request header has arrived. */
static void srv_reply_send(evutil_socket_t fd, short what, void *arg) {
    struct sconn *s = arg;
    uint8_t out[4096];
    size_t n = 0;
    (void)fd, (void)what;
    for (const char *t = opt.text; *t && n < sizeof out; t++) {
        if (t[0] == '\\' && (t[1] == 'r' || t[1] == 'n')) out[n++] = *++t == 'r' ? '\r' : '\n';
        else out[n++] = (uint8_t)*t;
    }
    s->replied = 1;
    int rc = srv_send(s, out, n);
    if (rc == 0 && opt.close_after) {
        shutdown(s->fd, SHUT_WR);
        srv_close(s);
    } else if (rc == 0) {
        event_add(s->rd, NULL);
    }
}

static void srv_reply_scan(struct sconn *s, ssize_t n) {
    static const char end[] = "\r\n\r\n";
    ssize_t i;
    for (i = 0; i < n && s->hdr_match < 4; i++)
        s->hdr_match = rxbuf[i] == end[s->hdr_match] ? s->hdr_match + 1 : rxbuf[i] == '\r';
    if (opt.save && !s->saved) s->saved = fopen(opt.save, "w");
    if (s->saved) fwrite(rxbuf, 1, (size_t)i, s->saved);
    if (s->hdr_match < 4) return;
    if (s->saved) fclose(s->saved), s->saved = NULL;
    struct timeval tv = {(time_t)opt.delay, (suseconds_t)((opt.delay - (time_t)opt.delay) * 1e6)};
    event_del(s->rd);
    s->delay = evtimer_new(base, srv_reply_send, s);
    event_add(s->delay, &tv);
}

static void srv_read_cb(evutil_socket_t fd, short what, void *arg) {
    struct sconn *s = arg;
    ssize_t n = (what & EV_TIMEOUT) ? -1 : recv(fd, rxbuf, BUF, 0);
    if (n < 0 && ((what & EV_TIMEOUT) || !would_block())) srv_close(s); /* idle 10 s, or error */
    if (n <= 0) {
        if (n == 0) srv_eof(s);
        return;
    }
    if (opt.mode == M_REPLY && !s->replied) {
        srv_reply_scan(s, n);
    } else if (opt.mode == M_ECHO || opt.mode == M_BANNER || opt.mode == M_REPLY) {
        srv_send(s, rxbuf, n);
    } else if (opt.mode == M_SINK) {
        if (s->bad < 0) {
            int64_t m = verify(&rxc, s->off, rxbuf, n);
            if (m >= 0) s->bad = s->off + m;
        }
        s->off += n;
    } /* source, silent: discard */
}

static void on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int len,
                      void *arg) {
    (void)sa, (void)len, (void)arg;
    if (opt.max_conns && ++n_accepted >= opt.max_conns) evconnlistener_disable(l);
    set_nodelay(fd);
    struct sconn *s = calloc(1, sizeof *s);
    if (!s) die("out of memory");
    s->fd = fd;
    s->bad = -1;
    s->rd = event_new(base, fd, EV_READ | EV_PERSIST, srv_read_cb, s);
    s->wr = event_new(base, fd, EV_WRITE | EV_PERSIST, srv_write_cb, s);
    if (opt.mode == M_SOURCE) event_add(s->wr, NULL);
    if (opt.mode == M_BANNER) {
        char line[4096];
        int n = snprintf(line, sizeof line, "%s\n", opt.text);
        if (srv_send(s, (uint8_t *)line, (size_t)n < sizeof line ? (size_t)n : sizeof line - 1))
            return; /* pending (reading resumes once flushed) or closed */
    }
    event_add(s->rd, NULL);
}

static void on_resume(evutil_socket_t fd, short what, void *arg) {
    (void)fd, (void)what, (void)arg;
    if (!opt.max_conns || n_accepted < opt.max_conns) evconnlistener_enable(listener);
}

/* accept() failed (typically EMFILE): pause accepting for 100 ms instead of spinning. */
static void on_accept_error(struct evconnlistener *l, void *arg) {
    static int warned;
    struct timeval tv = {0, 100000};
    (void)arg;
    if (!warned++) fprintf(stderr, "np-peer: accept: %s (pausing)\n", strerror(errno));
    evconnlistener_disable(l);
    event_add(pause_ev, &tv);
}

static void report_port_of(int fd) {
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0)
        die("getsockname: %s", strerror(errno));
    int port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                              : ((struct sockaddr_in *)&ss)->sin_port);
    printf("PORT %d\n", port);
    fflush(stdout);
    if (!opt.port_file) return;
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp.%d", opt.port_file, (int)getpid());
    FILE *f = fopen(tmp, "w");
    if (!f || fprintf(f, "%d", port) < 0 || fclose(f) != 0 || rename(tmp, opt.port_file) < 0)
        die("write port file %s: %s", opt.port_file, strerror(errno));
}

static void on_signal(evutil_socket_t sig, short what, void *arg) {
    (void)sig, (void)what, (void)arg;
    event_base_loopbreak(base);
}

static void report_port(void) { report_port_of(evconnlistener_get_fd(listener)); }

/* A server that never answers: its accept queue is filled by our own connections and never
 * drained, so further SYNs are dropped and connecting to it hangs (connect-timeout tests). */
static int run_blackhole(void) {
    struct addrinfo *ai = resolve(opt.listen, 1);
    int lfd = socket(ai->ai_family, SOCK_STREAM, 0), one = 1;
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (lfd < 0 || bind(lfd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(lfd, 0) < 0)
        die("listen %s: %s", opt.listen, strerror(errno));
    getsockname(lfd, (struct sockaddr *)&ss, &len);
    for (int i = 0; i < 4; i++) {  /* the queue holds backlog + 1; the rest stay in SYN_SENT */
        int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK, 0);
        if (fd < 0 || (connect(fd, (struct sockaddr *)&ss, len) < 0 && errno != EINPROGRESS))
            die("fill the queue: %s", strerror(errno));
    }
    freeaddrinfo(ai);
    report_port_of(lfd);
    event_add(evsignal_new(base, SIGTERM, on_signal, NULL), NULL);
    event_add(evsignal_new(base, SIGINT, on_signal, NULL), NULL);
    event_base_dispatch(base);
    return 0;
}

static int run_server(void) {
    struct addrinfo *ai = resolve(opt.listen, 1);
    listener = evconnlistener_new_bind(base, on_accept, NULL,
                                       LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_FREE, 4096,
                                       ai->ai_addr, (int)ai->ai_addrlen);
    if (!listener) die("listen %s: %s", opt.listen, strerror(errno));
    freeaddrinfo(ai);
    evconnlistener_set_error_cb(listener, on_accept_error);
    pause_ev = evtimer_new(base, on_resume, NULL);
    report_port();
    event_add(evsignal_new(base, SIGTERM, on_signal, NULL), NULL);
    event_add(evsignal_new(base, SIGINT, on_signal, NULL), NULL);
    event_base_dispatch(base);
    return 0;
}

/* ---- client ---- */

struct conn {
    int fd, used, connected, going, eof, shut;
    int socks;              /* --socks5: 1 awaiting the method reply, 2 the CONNECT reply */
    long idx;
    struct event *rd, *wr;
    uint64_t sent, recvd;
    char reply[64];
    size_t rlen;
};

static struct addrinfo *target, *socks_target;
static struct conn *slots;
static long *free_slots, n_free;
static long n_started, n_active, n_ok, n_failed, n_arrived, n_reasons;
static int released, stopping;
static uint64_t total_sent, total_recv;

static void fill_slots(void);
static void barrier_arrive(long idx);

/* Finish a connection (closes it, frees its slot, starts the next). Always returns -1. */
static int cl_end(struct conn *c, int ok) {
    if (c->rd) event_free(c->rd), event_free(c->wr);
    if (c->fd >= 0) close(c->fd);
    int was_connected = c->connected;
    long idx = c->idx;
    c->used = 0;
    free_slots[n_free++] = c - slots;
    n_active--;
    n_ok += ok;
    n_failed += !ok;
    if (opt.barrier && !was_connected) barrier_arrive(idx);
    if (n_ok + n_failed < opt.conns) fill_slots();
    else event_base_loopbreak(base);
    return -1;
}

static int cl_fail(struct conn *c, const char *fmt, ...) {
    if (n_reasons++ < MAX_REASONS) {
        va_list ap;
        va_start(ap, fmt);
        fprintf(stderr, "np-peer: conn %ld: ", c->idx), vfprintf(stderr, fmt, ap);
        fputc('\n', stderr), va_end(ap);
    }
    return cl_end(c, 0);
}

/* Decide whether the connection is complete (ok or failed). Returns -1 if it ended. */
static int cl_check(struct conn *c) {
    unsigned long long n = opt.bytes, got = c->recvd;
    char want[64];
    switch (opt.expect) {
    case M_ECHO:
        if (c->sent == n && got == n && (!opt.half_close || c->eof)) return cl_end(c, 1);
        if (c->eof)
            return cl_fail(c, "EOF after %llu of %llu echoed bytes (sent %llu)", got, n,
                           (unsigned long long)c->sent);
        return 0;
    case M_SOURCE:
        if (!c->eof) return 0;
        if (got == n) return cl_end(c, 1);
        return cl_fail(c, "short data: EOF after %llu of %llu bytes", got, n);
    default: /* sink */
        if (!c->eof) return 0;
        snprintf(want, sizeof want, "OK %llu\n", n);
        c->reply[c->rlen] = 0;
        if (strcmp(c->reply, want) == 0) return cl_end(c, 1);
        c->reply[strcspn(c->reply, "\n")] = 0;
        return cl_fail(c, "sink replied '%s', want 'OK %llu' (sent %llu)", c->reply, n,
                       (unsigned long long)c->sent);
    }
}

/* Send stream bytes until the socket is full or all are sent; then half-close if asked. */
static int cl_write(struct conn *c) {
    size_t got;
    while (c->sent < opt.bytes) {
        const uint8_t *p = stream_at(&txc, c->sent, opt.bytes - c->sent, &got);
        ssize_t w = send(c->fd, p, got, MSG_NOSIGNAL);
        if (w < 0 && !would_block())
            return cl_fail(c, "write after %llu bytes: %s", (unsigned long long)c->sent,
                           strerror(errno));
        if (w > 0) {
            c->sent += w;
            total_sent += w;
        }
        if (w < 0 || (size_t)w < got) {
            event_add(c->wr, NULL);
            return 0;
        }
    }
    event_del(c->wr);
    if (!c->shut && (opt.half_close || opt.expect == M_SINK)) {
        shutdown(c->fd, SHUT_WR);
        c->shut = 1;
    }
    return cl_check(c);
}

static int cl_go(struct conn *c) {
    c->going = 1;
    if (opt.expect != M_SOURCE) return cl_write(c);
    if (opt.half_close) {
        shutdown(c->fd, SHUT_WR);
        c->shut = 1;
    }
    return cl_check(c);
}

static int cl_read(struct conn *c) {
    ssize_t n = recv(c->fd, rxbuf, BUF, 0);
    if (n < 0) {
        if (would_block()) return 0;
        return cl_fail(c, "read after %llu bytes: %s", (unsigned long long)c->recvd,
                       strerror(errno));
    }
    if (n == 0) {
        c->eof = 1;
        event_del(c->rd);
        return cl_check(c);
    }
    total_recv += n;
    if (opt.expect == M_SINK) {
        if (c->rlen + n >= sizeof c->reply) return cl_fail(c, "sink reply too long");
        memcpy(c->reply + c->rlen, rxbuf, n);
        c->rlen += n;
        return 0;
    }
    if (c->recvd + n > opt.bytes)
        return cl_fail(c, "received %llu bytes, more than the %llu expected",
                       (unsigned long long)(c->recvd + n), (unsigned long long)opt.bytes);
    int64_t m = verify(&rxc, c->recvd, rxbuf, n);
    if (m >= 0)
        return cl_fail(c, "data mismatch at offset %llu", (unsigned long long)(c->recvd + m));
    c->recvd += n;
    return cl_check(c);
}

static void cl_established(struct conn *c) {
    c->connected = 1;
    if (!opt.barrier || released) cl_go(c);
    else barrier_arrive(c->idx); /* the release starts every waiting connection, c included */
}

/* --socks5: a few bytes each way on a fresh socket; a short write would be a broken proxy. */
static int socks_send(struct conn *c, const void *p, size_t n) {
    if (send(c->fd, p, n, MSG_NOSIGNAL) != (ssize_t)n) return cl_fail(c, "socks5: short write");
    c->rlen = 0;
    return 0;
}

static int socks_connect_request(struct conn *c) {
    uint8_t req[22] = {5, 1, 0};
    size_t n;
    if (socks_target->ai_family == AF_INET) {
        struct sockaddr_in *in = (struct sockaddr_in *)socks_target->ai_addr;
        req[3] = 1, memcpy(req + 4, &in->sin_addr, 4), memcpy(req + 8, &in->sin_port, 2), n = 10;
    } else {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)socks_target->ai_addr;
        req[3] = 4, memcpy(req + 4, &in6->sin6_addr, 16), memcpy(req + 20, &in6->sin6_port, 2), n = 22;
    }
    c->socks = 2;
    return socks_send(c, req, n);
}

/* The length of the answer awaited, as far as the bytes so far tell. */
static size_t socks_want(const struct conn *c) {
    if (c->socks == 1) return 2;
    if (c->rlen < 5) return 5;
    return c->reply[3] == 1 ? 10 : c->reply[3] == 4 ? 22 : 7 + (uint8_t)c->reply[4];
}

/* Reads the proxy's answers exactly (the target's bytes may follow the last one at once). */
static int socks_read(struct conn *c) {
    size_t want;
    while (c->rlen < (want = socks_want(c))) {
        ssize_t n = recv(c->fd, c->reply + c->rlen, want - c->rlen, 0);
        if (n < 0) return would_block() ? 0 : cl_fail(c, "socks5: read: %s", strerror(errno));
        if (n == 0) return cl_fail(c, "socks5: the proxy closed after %zu bytes", c->rlen);
        c->rlen += n;
    }
    if (c->reply[0] != 5 || c->reply[1] != 0)
        return cl_fail(c, "socks5: the proxy answered %d %d", c->reply[0], c->reply[1]);
    if (c->socks == 1) return socks_connect_request(c);
    c->socks = 0, c->rlen = 0;
    cl_established(c);
    return 0;
}

static void cl_connected(struct conn *c) {
    event_del(c->wr);
    event_add(c->rd, NULL);
    if (!opt.socks5) {
        cl_established(c);
        return;
    }
    c->socks = 1;
    socks_send(c, "\5\1\0", 3);
}

static void cl_rd_cb(evutil_socket_t fd, short what, void *arg) {
    struct conn *c = arg;
    (void)fd, (void)what;
    if (c->socks) socks_read(c);
    else cl_read(c);
}

static void cl_wr_cb(evutil_socket_t fd, short what, void *arg) {
    struct conn *c = arg;
    int err = 0;
    socklen_t len = sizeof err;
    (void)what;
    if (c->connected || c->socks) {
        if (c->connected) cl_write(c);
        return;
    }
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0) err = errno;
    if (err) cl_fail(c, "connect: %s", strerror(err));
    else cl_connected(c);
}

/* Count one of the first P connections as established (or failed); at P, release them all. */
static void barrier_arrive(long idx) {
    long need = opt.parallel < opt.conns ? opt.parallel : opt.conns;
    if (idx >= need || released || ++n_arrived < need) return;
    released = 1;
    for (long i = 0; i < opt.parallel; i++) {
        struct conn *c = &slots[i];
        if (c->used && c->connected && !c->going) cl_go(c);
    }
}

static void cl_start(long idx) {
    struct conn *c = &slots[free_slots[--n_free]];
    memset(c, 0, sizeof *c);
    c->idx = idx, c->used = 1;
    n_active++;
    c->fd = socket(target->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) {
        cl_fail(c, "socket: %s", strerror(errno));
        return;
    }
    set_nodelay(c->fd);
    c->rd = event_new(base, c->fd, EV_READ | EV_PERSIST, cl_rd_cb, c);
    c->wr = event_new(base, c->fd, EV_WRITE | EV_PERSIST, cl_wr_cb, c);
    if (connect(c->fd, target->ai_addr, target->ai_addrlen) == 0) cl_connected(c);
    else if (errno == EINPROGRESS) event_add(c->wr, NULL);
    else cl_fail(c, "connect: %s", strerror(errno));
}

/* Start connections until P are open or all C were started (not re-entrant). */
static void fill_slots(void) {
    static int busy;
    if (busy) return;
    busy = 1;
    while (!stopping && n_started < opt.conns && n_active < opt.parallel) cl_start(n_started++);
    busy = 0;
}

static void on_timeout(evutil_socket_t fd, short what, void *arg) {
    (void)fd, (void)what, (void)arg;
    stopping = 1;
    for (long i = 0; i < opt.parallel; i++)
        if (slots[i].used)
            cl_fail(&slots[i], "timeout (sent %llu, received %llu)",
                    (unsigned long long)slots[i].sent, (unsigned long long)slots[i].recvd);
    n_failed += opt.conns - n_started;
    event_base_loopbreak(base);
}

static int run_client(void) {
    if (opt.parallel <= 0 || opt.parallel > opt.conns) opt.parallel = opt.conns;
    target = resolve(opt.connect, 0);
    if (opt.socks5) socks_target = resolve(opt.socks5, 0);
    slots = calloc(opt.parallel, sizeof *slots);
    free_slots = calloc(opt.parallel, sizeof *free_slots);
    if (!slots || !free_slots) die("out of memory");
    for (long i = opt.parallel - 1; i >= 0; i--) free_slots[n_free++] = i;

    struct timeval tv = {(time_t)opt.timeout, (long)((opt.timeout - (time_t)opt.timeout) * 1e6)};
    event_add(evtimer_new(base, on_timeout, NULL), &tv);

    double t0 = now();
    fill_slots();
    if (n_ok + n_failed < opt.conns) event_base_dispatch(base);
    double secs = now() - t0;
    if (secs <= 0) secs = 1e-9;
    printf("ok=%ld failed=%ld bytes_sent=%llu bytes_recv=%llu seconds=%.3f MBps=%.1f "
           "conns_per_sec=%.1f\n",
           n_ok, n_failed, (unsigned long long)total_sent, (unsigned long long)total_recv, secs,
           (total_sent + total_recv) / 1e6 / secs, n_ok / secs);
    fflush(stdout);
    return n_failed == 0 && n_ok == opt.conns ? 0 : 1;
}

/* ---- ping-pong: one request in flight at a time, on one connection ---- */

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Nearest rank: the smallest value with at least p% of the n sorted values at or below it. */
static double percentile(const double *v, long n, double p) {
    long k = (long)(p / 100 * n + 0.999999);
    return v[k < 1 ? 0 : k > n ? n - 1 : k - 1];
}

static double *rtt; /* the round-trip times, in seconds */

static int pingpong_fail(long done, const char *what) {
    free(rtt), rtt = NULL;
    fprintf(stderr, "np-peer: ping-pong round %ld: %s\n", done + 1, what);
    printf("ok=0 failed=1 rounds=%ld\n", done);
    fflush(stdout);
    return 1;
}

/* Blocking socket with SO_RCVTIMEO/SO_SNDTIMEO: the loop does nothing but wait for the echo,
 * so the time measured is the round trip through whatever sits between client and server. */
static int run_pingpong(void) {
    long n = opt.pingpong, i;
    size_t len = opt.bytes, got;
    static uint8_t out[BUF];
    double t0, start, sum = 0;
    rtt = malloc(n * sizeof *rtt);
    if (!rtt) die("out of memory");
    target = resolve(opt.connect, 0);
    int fd = socket(target->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) die("socket: %s", strerror(errno));
    struct timeval tv = {(time_t)opt.timeout, (long)((opt.timeout - (time_t)opt.timeout) * 1e6)};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    if (connect(fd, target->ai_addr, target->ai_addrlen) < 0)
        return pingpong_fail(0, strerror(errno));
    set_nodelay(fd);
    start = now();
    for (i = 0; i < n; i++) {
        uint64_t off = (uint64_t)i * len;
        stream_fill(off, out, len);
        t0 = now();
        for (got = 0; got < len;) {
            ssize_t w = send(fd, out + got, len - got, MSG_NOSIGNAL);
            if (w < 0 && errno != EINTR) return pingpong_fail(i, strerror(errno));
            if (w > 0) got += w;
        }
        for (got = 0; got < len;) {
            ssize_t r = recv(fd, rxbuf + got, len - got, 0);
            if (r == 0) return pingpong_fail(i, "EOF before the echo");
            if (r < 0 && errno != EINTR)
                return pingpong_fail(i, would_block() ? "timeout" : strerror(errno));
            if (r > 0) got += r;
        }
        rtt[i] = now() - t0;
        if (verify(&rxc, off, rxbuf, len) >= 0) return pingpong_fail(i, "data mismatch");
        sum += rtt[i];
    }
    double secs = now() - start;
    close(fd);
    qsort(rtt, n, sizeof *rtt, cmp_double);
    printf("ok=1 failed=0 rounds=%ld bytes_sent=%llu bytes_recv=%llu seconds=%.3f min_us=%.1f "
           "p50_us=%.1f p99_us=%.1f max_us=%.1f mean_us=%.1f\n",
           n, (unsigned long long)(n * len), (unsigned long long)(n * len), secs, rtt[0] * 1e6,
           percentile(rtt, n, 50) * 1e6, percentile(rtt, n, 99) * 1e6, rtt[n - 1] * 1e6,
           sum / n * 1e6);
    fflush(stdout);
    free(rtt), rtt = NULL;
    return 0;
}

/* ---- command line ---- */

static uint64_t parse_size(const char *s) {
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *s == '-') die("bad number '%s'", s);
    const char *units = "KMG", *u = *end ? strchr(units, *end & ~0x20) : NULL;
    if (u) v <<= 10 * (u - units + 1), end++;
    if (*end) die("bad number '%s'", s);
    return v;
}

static enum mode parse_mode(const char *s, int client_ok) {
    static const char *names[] = {"echo", "source", "sink", "banner", "silent", "client", "blackhole", "reply"};
    for (int i = 0; i < 8; i++)
        if (strcmp(s, names[i]) == 0 && (client_ok || i <= M_SINK))
            return (enum mode)i;
    die(client_ok ? "unknown mode '%s' (try --help)" : "bad --expect '%s' (echo|source|sink)", s);
    return M_ECHO;
}

static void parse_args(int argc, char **argv) {
    static const struct option longs[] = {
        {"listen", 1, 0, 'l'},   {"port-file", 1, 0, 'f'}, {"max-conns", 1, 0, 'm'},
        {"bytes", 1, 0, 'b'},    {"seed", 1, 0, 's'},      {"text", 1, 0, 't'},
        {"connect", 1, 0, 'c'},  {"expect", 1, 0, 'e'},    {"conns", 1, 0, 'n'},
        {"parallel", 1, 0, 'p'}, {"barrier", 0, 0, 'B'},   {"half-close", 0, 0, 'H'},
        {"timeout", 1, 0, 'T'},  {"help", 0, 0, 'h'},      {"delay", 1, 0, 'D'},
        {"close", 0, 0, 'C'},    {"save", 1, 0, 'S'},      {"socks5", 1, 0, 'X'},
        {"pingpong", 1, 0, 'P'}, {0, 0, 0, 0}};
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        fputs(USAGE, argc < 2 ? stderr : stdout);
        exit(argc < 2 ? 2 : 0);
    }
    opt.mode = parse_mode(argv[1], 1);
    int ch;
    while ((ch = getopt_long(argc - 1, argv + 1, "h", longs, NULL)) != -1) {
        switch (ch) {
        case 'l': opt.listen = optarg; break;
        case 'f': opt.port_file = optarg; break;
        case 'm': opt.max_conns = (long)parse_size(optarg); break;
        case 'b': opt.bytes = parse_size(optarg); break;
        case 's': opt.seed = parse_size(optarg); break;
        case 't': opt.text = optarg; break;
        case 'c': opt.connect = optarg; break;
        case 'e': opt.expect = parse_mode(optarg, 0); break;
        case 'n': opt.conns = (long)parse_size(optarg); break;
        case 'p': opt.parallel = (long)parse_size(optarg); break;
        case 'B': opt.barrier = 1; break;
        case 'H': opt.half_close = 1; break;
        case 'T': opt.timeout = atof(optarg); break;
        case 'D': opt.delay = atof(optarg); break;
        case 'C': opt.close_after = 1; break;
        case 'S': opt.save = optarg; break;
        case 'X': opt.socks5 = optarg; break;
        case 'P': opt.pingpong = (long)parse_size(optarg); break;
        case 'h': fputs(USAGE, stdout); exit(0);
        default: fputs(USAGE, stderr); exit(2);
        }
    }
    if (optind < argc - 1) die("unexpected argument '%s'", argv[optind + 1]);
    if (opt.mode == M_CLIENT ? !opt.connect : !opt.listen)
        die(opt.mode == M_CLIENT ? "client needs --connect HOST:PORT" : "needs --listen HOST:PORT");
    if ((opt.mode == M_BANNER || opt.mode == M_REPLY) && !opt.text) die("banner and reply need --text STR");
    if (opt.conns < 1 || opt.timeout <= 0) die("--conns and --timeout must be positive");
    if (opt.pingpong) {
        if (opt.mode != M_CLIENT || opt.expect != M_ECHO || opt.conns != 1 || opt.socks5)
            die("--pingpong is a client of an echo server over one connection (no --conns, --socks5)");
        if (!opt.bytes) opt.bytes = 64;
        if (opt.bytes > BUF) die("--pingpong takes --bytes up to %d", BUF);
    }
}

int main(int argc, char **argv) {
    parse_args(argc, argv);
    signal(SIGPIPE, SIG_IGN);
    stream_init(opt.seed);
    base = event_base_new();
    if (!base) die("event_base_new failed");
    if (opt.mode == M_BLACKHOLE) return run_blackhole();
    if (opt.mode == M_CLIENT && opt.pingpong) return run_pingpong();
    return opt.mode == M_CLIENT ? run_client() : run_server();
}
