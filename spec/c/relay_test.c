/* The relay on its own: driven over real loopback TCP pairs (so that splice works) with
 * the test playing client and server, no conn, no Lua. `relay-test NAME` runs one case and
 * exits 0 when it holds; `relay-test` lists the cases. Run by spec/01-unit/04-relay_spec.lua. */
#include "../../src/end.h"
#include "../../src/log.h"
#include "../../src/loop.h"
#include "../../src/pipepool.h"
#include "../../src/relay.h"

#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MIB (1024 * 1024)

/* ---------------------------------------------------------------- the harness */

static int failures;

#define CHECK(cond, ...) do { if (!(cond)) { fail_at(__LINE__, #cond, __VA_ARGS__); return; } } while (0)

static void fail_at(int line, const char *what, const char *fmt, ...)
{
    va_list ap;

    fprintf(stderr, "relay_test.c:%d: failed: %s: ", line, what);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    failures++;
}

static double clock_now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* A connected loopback TCP pair, both ends nonblocking: *mine for the test, *its for the relay. */
static void tcp_pair(int *mine, int *its)
{
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t len = sizeof a;
    int l = socket(AF_INET, SOCK_STREAM, 0);

    if (l < 0 || bind(l, (struct sockaddr *)&a, sizeof a) < 0 || listen(l, 1) < 0 ||
        getsockname(l, (struct sockaddr *)&a, &len) < 0) {
        perror("listen");
        exit(2);
    }
    *mine = socket(AF_INET, SOCK_STREAM, 0);
    if (connect(*mine, (struct sockaddr *)&a, sizeof a) < 0 || (*its = accept(l, NULL, NULL)) < 0) {
        perror("connect");
        exit(2);
    }
    close(l);
    fcntl(*mine, F_SETFL, O_NONBLOCK);
    fcntl(*its, F_SETFL, O_NONBLOCK);
}

/* What the owner of the relay sees. */
struct owner {
    int ended;
    enum np_end how;
    char detail[200];
    int filter_calls, filter_eofs;
    enum np_filter_rc (*filter)(struct owner *o, int dir, const char *data, size_t len, int eof,
                                const char **out, size_t *outlen);
    char replacement[64 * 1024];
};

static enum np_filter_rc on_filter(void *arg, int dir, const char *data, size_t len, int eof,
                                   const char **out, size_t *outlen)
{
    struct owner *o = arg;

    o->filter_calls++;
    o->filter_eofs += eof;
    return o->filter ? o->filter(o, dir, data, len, eof, out, outlen) : NP_FILTER_KEEP;
}

static void on_filter_done(void *arg) {}

static void on_ended(void *arg, enum np_end how, const char *detail)
{
    struct owner *o = arg;

    o->ended++;
    o->how = how;
    snprintf(o->detail, sizeof o->detail, "%s", detail);
}

static const struct np_relay_ops ops = { on_filter, on_filter_done, on_ended };

/* A relay between two pairs: c is the test's client end, s its server end. */
struct rig {
    struct owner owner;
    struct np_relay *relay;
    int c, s;
    uint64_t bytes[2], more[2];
    char path[96];
};

static void rig_start(struct rig *g, enum np_relay_mode mode, int filtered_up, int filtered_down,
                      size_t buffer_size, double idle, const char *ahead)
{
    struct np_relay_side client = { 0 }, server = { 0 };
    struct np_relay_config cfg = {
        .mode = mode, .filtered = { filtered_up, filtered_down }, .buffer_size = buffer_size,
        .idle_timeout = idle, .log_name = "test",
    };

    memset(g, 0, sizeof *g);
    cfg.bytes[0] = &g->bytes[0];
    cfg.bytes[1] = &g->bytes[1];
    cfg.more_bytes[0] = &g->more[0];
    cfg.more_bytes[1] = &g->more[1];
    tcp_pair(&g->c, &client.rfd);
    tcp_pair(&g->s, &server.rfd);
    client.wfd = client.rfd;
    server.wfd = server.rfd;
    if (ahead) {
        client.ahead = ahead;
        client.ahead_len = strlen(ahead);
    }
    g->relay = np_relay_new(&cfg, &ops, &g->owner, &client, &server);
    if (!g->relay) {
        fprintf(stderr, "np_relay_new failed\n");
        exit(2);
    }
    np_relay_describe(g->relay, g->path, sizeof g->path);
}

static void rig_free(struct rig *g)
{
    if (g->relay) np_relay_free(g->relay);     /* the owner frees, after the callback */
    g->relay = NULL;
    if (g->c >= 0) close(g->c);
    if (g->s >= 0) close(g->s);
}

static void turn(void)
{
    event_base_loop(np_base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
}

/* A byte stream to send and the one to expect: byte i of a stream is (i * 7 + seed) % 251. */
struct stream {
    size_t total, sent, got;
    int seed, bad;
    int shut_when_sent;         /* shutdown(SHUT_WR) once all is sent */
    int shut_done;
};

static unsigned char byte_at(const struct stream *st, size_t i)
{
    return (unsigned char)((i * 7 + st->seed) % 251);
}

static void send_some(int fd, struct stream *st)
{
    unsigned char chunk[16384];

    while (st->sent < st->total) {
        size_t n = st->total - st->sent < sizeof chunk ? st->total - st->sent : sizeof chunk;
        for (size_t i = 0; i < n; i++) chunk[i] = byte_at(st, st->sent + i);
        ssize_t w = write(fd, chunk, n);
        if (w <= 0) break;
        st->sent += w;
    }
    if (st->sent == st->total && st->shut_when_sent && !st->shut_done) {
        shutdown(fd, SHUT_WR);
        st->shut_done = 1;
    }
}

/* Reads what is there; 1 at EOF. */
static int read_some(int fd, struct stream *st)
{
    unsigned char chunk[16384];

    for (;;) {
        ssize_t n = read(fd, chunk, sizeof chunk);
        if (n == 0) return 1;
        if (n < 0) return errno == EAGAIN ? 0 : -1;
        for (ssize_t i = 0; i < n; i++)
            if (chunk[i] != byte_at(st, st->got + i)) st->bad++;
        st->got += n;
    }
}

/* Runs both directions until the relay ends or seconds pass. eof[] says which test end saw EOF. */
static void exchange(struct rig *g, struct stream *up, struct stream *down, int eof[2], double seconds)
{
    double deadline = clock_now() + seconds;

    while (clock_now() < deadline && !(g->owner.ended && eof[0] && eof[1])) {
        send_some(g->c, up);
        send_some(g->s, down);
        turn();
        if (!eof[1] && read_some(g->s, up) != 0) eof[1] = 1;
        if (!eof[0] && read_some(g->c, down) != 0) eof[0] = 1;
        if (g->owner.ended) break;
    }
    /* ended: the owner frees the relay, whose close sends what is left and the FINs */
    if (g->owner.ended && g->relay) {
        np_relay_free(g->relay);
        g->relay = NULL;
    }
    deadline = clock_now() + 5;
    while (!(eof[0] && eof[1]) && clock_now() < deadline) {
        if (!eof[1] && read_some(g->s, up) != 0) eof[1] = 1;
        if (!eof[0] && read_some(g->c, down) != 0) eof[0] = 1;
        turn();
    }
}

/* ---------------------------------------------------------------- the cases */

/* Both directions at once, 4 MiB each, both ends half-closing when done: byte-exact,
 * counted, ended as eof. */
static void both_ways(enum np_relay_mode mode, const char *want_path)
{
    struct rig g;
    struct stream up = { .total = 4 * MIB, .seed = 1, .shut_when_sent = 1 };
    struct stream down = { .total = 4 * MIB, .seed = 2, .shut_when_sent = 1 };
    int eof[2] = { 0, 0 };

    rig_start(&g, mode, 0, 0, 64 * 1024, 0, NULL);
    exchange(&g, &up, &down, eof, 20);
    CHECK(!strcmp(g.path, want_path), "path %s, want %s", g.path, want_path);
    CHECK(up.got == up.total && down.got == down.total, "got %zu and %zu", up.got, down.got);
    CHECK(up.bad == 0 && down.bad == 0, "%d and %d wrong bytes", up.bad, down.bad);
    CHECK(g.bytes[0] == up.total && g.bytes[1] == down.total && g.more[0] == up.total,
          "counted %llu and %llu", (unsigned long long)g.bytes[0], (unsigned long long)g.bytes[1]);
    CHECK(g.owner.ended == 1 && g.owner.how == NP_END_EOF, "ended %d times, how %s",
          g.owner.ended, np_end_name(g.owner.how));
    rig_free(&g);
}

static void test_splice_both_ways(void) { both_ways(NP_RELAY_AUTO, "splice"); }
static void test_buffered_both_ways(void) { both_ways(NP_RELAY_BUFFERED, "buffered"); }

/* One side half-closes first; the other direction keeps flowing until it ends too. */
static void half_close(enum np_relay_mode mode, int client_first)
{
    struct rig g;
    struct stream first = { .total = 100000, .seed = 3, .shut_when_sent = 1 };
    struct stream later = { .total = 2 * MIB, .seed = 4 };
    int eof[2] = { 0, 0 }, *seen_first = &eof[client_first ? 1 : 0];
    double deadline = clock_now() + 10;
    int a, b;

    rig_start(&g, mode, 0, 0, 64 * 1024, 0, NULL);
    a = client_first ? g.c : g.s;       /* the end that closes first */
    b = client_first ? g.s : g.c;
    while (!*seen_first && clock_now() < deadline) {
        send_some(a, &first);
        turn();
        if (read_some(b, &first) == 1) *seen_first = 1;
    }
    CHECK(*seen_first && first.got == first.total && first.bad == 0, "first direction: %zu of %zu",
          first.got, first.total);
    CHECK(!g.owner.ended, "%s", "ended after one direction only");
    later.shut_when_sent = 1;           /* now the other way, then its end */
    while (!g.owner.ended && clock_now() < deadline) {
        send_some(b, &later);
        turn();
        read_some(a, &later);
    }
    read_some(a, &later);
    CHECK(later.got == later.total && later.bad == 0, "second direction: %zu of %zu", later.got, later.total);
    CHECK(g.owner.ended == 1 && g.owner.how == NP_END_EOF, "how %s", np_end_name(g.owner.how));
    rig_free(&g);
}

static void test_half_close_client_first_splice(void) { half_close(NP_RELAY_AUTO, 1); }
static void test_half_close_server_first_splice(void) { half_close(NP_RELAY_AUTO, 0); }
static void test_half_close_client_first_buffered(void) { half_close(NP_RELAY_BUFFERED, 1); }
static void test_half_close_server_first_buffered(void) { half_close(NP_RELAY_BUFFERED, 0); }

/* A server that does not read: the client can only push a bounded amount (kernel buffers
 * plus the relay's bound), then everything arrives once the server reads. */
static void backpressure(enum np_relay_mode mode)
{
    struct rig g;
    struct stream up = { .total = 64 * MIB, .seed = 5 };
    int sndbuf = 64 * 1024;
    size_t stalled;
    double deadline;

    rig_start(&g, mode, 0, 0, 64 * 1024, 0, NULL);
    setsockopt(g.c, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);
    /* push until nothing more is taken for 500 turns in a row (the kernel may still grow
     * its buffers a little: autotuning), for 3 s at most */
    deadline = clock_now() + 3;
    for (int quiet = 0; quiet < 500 && clock_now() < deadline;) {
        stalled = up.sent;
        send_some(g.c, &up);
        turn();
        quiet = up.sent == stalled ? quiet + 1 : 0;
    }
    stalled = up.sent;
    CHECK(stalled < up.total, "%s", "the client could write everything: no backpressure");
    CHECK(stalled < 16 * MIB, "accepted %zu bytes from a client whose server reads nothing", stalled);
    up.total = up.sent;
    up.shut_when_sent = 1;
    deadline = clock_now() + 10;
    while (up.got < up.total && clock_now() < deadline) {
        send_some(g.c, &up);
        turn();
        read_some(g.s, &up);
    }
    CHECK(up.got == up.total && up.bad == 0, "got %zu of %zu, %d wrong", up.got, up.total, up.bad);
    rig_free(&g);
}

static void test_backpressure_splice(void) { backpressure(NP_RELAY_AUTO); }
static void test_backpressure_buffered(void) { backpressure(NP_RELAY_BUFFERED); }

/* The server resets: the relay ends at once as a server reset, and the client is closed. */
static void reset(enum np_relay_mode mode)
{
    struct rig g;
    struct linger lg = { 1, 0 };
    struct stream down = { .total = 0, .seed = 6 };
    double deadline = clock_now() + 5;
    int eof = 0;

    rig_start(&g, mode, 0, 0, 64 * 1024, 0, NULL);
    if (write(g.c, "hello", 5) != 5) exit(2);
    for (int i = 0; i < 20; i++) turn();
    setsockopt(g.s, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    close(g.s);                         /* RST */
    g.s = -1;
    while (!g.owner.ended && clock_now() < deadline) {
        if (write(g.c, "more", 4) < 0 && errno != EAGAIN) break;
        turn();
    }
    CHECK(g.owner.ended == 1, "ended %d times", g.owner.ended);
    CHECK(g.owner.how == NP_END_SERVER_RESET || g.owner.how == NP_END_SERVER_ERROR, "how %s",
          np_end_name(g.owner.how));
    np_relay_free(g.relay);             /* the owner closes both sides */
    g.relay = NULL;
    deadline = clock_now() + 5;
    while (!eof && clock_now() < deadline) eof = read_some(g.c, &down) != 0;
    CHECK(eof, "%s", "the client was not closed");
    rig_free(&g);
}

static void test_reset_splice(void) { reset(NP_RELAY_AUTO); }
static void test_reset_buffered(void) { reset(NP_RELAY_BUFFERED); }

/* A filter on client->server: it sees every byte once, and once more at EOF; the other
 * direction still splices. */
static enum np_filter_rc upper(struct owner *o, int dir, const char *data, size_t len, int eof,
                               const char **out, size_t *outlen)
{
    if (len > sizeof o->replacement) return NP_FILTER_STOP;
    for (size_t i = 0; i < len; i++)
        o->replacement[i] = data[i] >= 'a' && data[i] <= 'z' ? data[i] - 32 : data[i];
    *out = o->replacement;
    *outlen = len;
    return NP_FILTER_REPLACE;
}

static void test_filter(void)
{
    struct rig g;
    char got[64] = "";
    size_t n = 0;
    double deadline = clock_now() + 5;

    rig_start(&g, NP_RELAY_AUTO, 1, 0, 64 * 1024, 0, "ahead:");
    g.owner.filter = upper;
    CHECK(!strcmp(g.path, "client->server hook, server->client splice"), "path %s", g.path);
    if (write(g.c, "hello relay", 11) != 11) exit(2);
    shutdown(g.c, SHUT_WR);
    while (n < 17 && clock_now() < deadline) {
        turn();
        ssize_t r = read(g.s, got + n, sizeof got - 1 - n);
        if (r > 0) n += r;
    }
    got[n] = '\0';
    /* the bytes read ahead go out first, unfiltered: they were seen before the relay */
    CHECK(!strcmp(got, "ahead:HELLO RELAY"), "server got '%s'", got);
    for (int i = 0; i < 50; i++) turn();
    CHECK(g.owner.filter_eofs == 1, "filter saw EOF %d times", g.owner.filter_eofs);
    rig_free(&g);
}

static enum np_filter_rc stopper(struct owner *o, int dir, const char *data, size_t len, int eof,
                                 const char **out, size_t *outlen)
{
    return memchr(data, 'X', len) ? NP_FILTER_STOP : NP_FILTER_KEEP;
}

/* A filter that says stop ends the relay, once. */
static void test_filter_stop(void)
{
    struct rig g;
    double deadline = clock_now() + 5;

    rig_start(&g, NP_RELAY_AUTO, 1, 1, 64 * 1024, 0, NULL);
    g.owner.filter = stopper;
    if (write(g.c, "abcX", 4) != 4) exit(2);
    while (!g.owner.ended && clock_now() < deadline) turn();
    for (int i = 0; i < 20; i++) turn();
    CHECK(g.owner.ended == 1 && g.owner.how == NP_END_CLOSED, "ended %d, how %s", g.owner.ended,
          np_end_name(g.owner.how));
    rig_free(&g);
}

/* Injected bytes go out in their direction. */
static void test_inject(void)
{
    struct rig g;
    char got[32] = "";
    size_t n = 0;
    double deadline = clock_now() + 5;

    rig_start(&g, NP_RELAY_AUTO, 0, 0, 64 * 1024, 0, NULL);
    CHECK(np_relay_inject(g.relay, NP_TO_CLIENT, "injected", 8) == 0, "%s", "inject failed");
    while (n < 8 && clock_now() < deadline) {
        turn();
        ssize_t r = read(g.c, got + n, sizeof got - 1 - n);
        if (r > 0) n += r;
    }
    CHECK(n == 8 && !memcmp(got, "injected", 8), "client got '%.*s'", (int)n, got);
    rig_free(&g);
}

/* Nothing moves for the idle timeout: the relay ends, as idle timeout. */
static void test_idle_timeout(void)
{
    struct rig g;
    double start = clock_now();

    rig_start(&g, NP_RELAY_AUTO, 0, 0, 64 * 1024, 0.2, NULL);
    while (!g.owner.ended && clock_now() < start + 5) event_base_loop(np_base, EVLOOP_ONCE);
    CHECK(g.owner.ended == 1 && g.owner.how == NP_END_IDLE_TIMEOUT, "how %s", np_end_name(g.owner.how));
    CHECK(clock_now() - start >= 0.19 && clock_now() - start < 3, "after %.3f s", clock_now() - start);
    rig_free(&g);
}

/* An idle spliced connection holds no pipe and no buffer. */
static void test_idle_holds_nothing(void)
{
    struct rig g;
    char buf[8];
    int before = 0, after = 0;

    rig_start(&g, NP_RELAY_AUTO, 0, 0, 64 * 1024, 0, NULL);
    for (int fd = 0; fd < 1024; fd++) before += fcntl(fd, F_GETFD) >= 0;
    if (write(g.c, "ping", 4) != 4) exit(2);
    for (int i = 0; i < 50; i++) turn();
    CHECK(read(g.s, buf, sizeof buf) == 4, "%s", "ping did not arrive");
    for (int i = 0; i < 10; i++) turn();
    /* the pipe went back to the pool; the pool may keep it, but this connection holds none */
    np_pipepool_free();
    for (int fd = 0; fd < 1024; fd++) after += fcntl(fd, F_GETFD) >= 0;
    CHECK(after <= before, "%d descriptors open after one exchange, %d before", after, before);
    rig_free(&g);
}

static const struct {
    const char *name;
    void (*run)(void);
} cases[] = {
    { "splice_both_ways", test_splice_both_ways },
    { "buffered_both_ways", test_buffered_both_ways },
    { "half_close_client_first_splice", test_half_close_client_first_splice },
    { "half_close_server_first_splice", test_half_close_server_first_splice },
    { "half_close_client_first_buffered", test_half_close_client_first_buffered },
    { "half_close_server_first_buffered", test_half_close_server_first_buffered },
    { "backpressure_splice", test_backpressure_splice },
    { "backpressure_buffered", test_backpressure_buffered },
    { "reset_splice", test_reset_splice },
    { "reset_buffered", test_reset_buffered },
    { "filter", test_filter },
    { "filter_stop", test_filter_stop },
    { "inject", test_inject },
    { "idle_timeout", test_idle_timeout },
    { "idle_holds_nothing", test_idle_holds_nothing },
};

int main(int argc, char **argv)
{
    char err[256];

    if (argc < 2) {
        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) printf("%s\n", cases[i].name);
        return 0;
    }
    signal(SIGPIPE, SIG_IGN);
    np_log_level = NP_WARNING;
    if (np_loop_init(err, sizeof err) < 0) {
        fprintf(stderr, "%s\n", err);
        return 2;
    }
    np_pipepool_configure(64 * 1024, 16);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        if (strcmp(cases[i].name, argv[1])) continue;
        cases[i].run();
        np_pipepool_free();
        np_loop_free();
        printf("%s: %s\n", cases[i].name, failures ? "FAILED" : "ok");
        return failures ? 1 : 0;
    }
    fprintf(stderr, "no case %s\n", argv[1]);
    return 2;
}
