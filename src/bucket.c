/* Token buckets: tokens are bytes, refilled at `rate` per second from the monotonic clock
 * (lazily, when asked), capped at `burst` (CATCH_UP seconds' worth) while in use: readers
 * wait on it or took from it within CATCH_UP, so a loop or a sender held up on a loaded
 * machine loses nothing, the next reads catch up; at two slices once idle, so an idle
 * bucket saves up no burst for the next comer. A reader that found the bucket short waits
 * for a whole slice (rate / 50: about 50 reads a second, never a trickle of tiny ones), so
 * waiting is one timer per bucket, not a busy loop. A reader that finds others queued queues too, in
 * order of the bytes each has read (bucket.h), so the connections sharing a bucket get
 * equal shares in bytes, a slice or so per turn. */
#include "bucket.h"
#include "limits.h"
#include "loop.h"

#include <event2/event.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define SLICE_MIN 1024.0
#define SLICE_MAX (256 * 1024.0)
#define SOURCE_HEADS 1024           /* chains of the per-source table */
#define KEY_LEN 64
#define CATCH_UP 0.5                /* seconds of budget kept while the bucket is in use */

struct np_bucket {
    double rate, slice, burst;
    double tokens, stamp;           /* bytes at `stamp` (monotonic seconds) */
    double used;                    /* when a reader last took from it */
    int refs;
    struct np_bucket_waiter *head, *tail;     /* in order of served */
    double served;                  /* the last served waiter's `served` */
    const struct np_bucket_waiter *serving;    /* whose turn it is (inside on_refill) */
    struct event *timer;            /* wakes the waiters once a slice is in */
    struct np_shaper *shaper;       /* a shared bucket's; NULL for a connection's own */
    struct np_bucket *next;         /* a source bucket: its chain in the shaper's table */
    char key[KEY_LEN];
    int dir;
    int source;                     /* in the shaper's table of sources */
};

struct np_shaper {
    int refs;                       /* the proxy's, and one per shared bucket alive */
    double per_source;
    struct np_bucket *proxy[2];     /* per_proxy, each direction; NULL: none */
    struct np_bucket *sources[SOURCE_HEADS];
};

static double mono(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void refill(struct np_bucket *b)
{
    double now = mono();
    double cap = b->head || now - b->used < CATCH_UP ? b->burst : 2 * b->slice;

    b->tokens += (now - b->stamp) * b->rate;
    if (b->tokens > cap) b->tokens = cap;
    b->stamp = now;
}

/* ---------------------------------------------------------------- one bucket */

static void on_refill(evutil_socket_t fd, short what, void *arg);

static struct np_bucket *bucket_make(double rate)
{
    struct np_bucket *b = calloc(1, sizeof *b);
    double slice = rate / 50;

    if (!b) return NULL;
    if (!(b->timer = evtimer_new(np_base, on_refill, b))) {
        free(b);
        return NULL;
    }
    if (slice < SLICE_MIN) slice = SLICE_MIN;
    if (slice > SLICE_MAX) slice = SLICE_MAX;
    b->rate = rate;
    b->slice = slice;
    /* room for CATCH_UP behind while in use; a new bucket holds one slice, not a burst:
     * the first second is not more than its rate */
    b->burst = rate * CATCH_UP > 4 * slice ? rate * CATCH_UP : 4 * slice;
    b->tokens = slice;
    b->stamp = mono();
    b->refs = 1;
    return b;
}

struct np_bucket *np_bucket_new(double rate)
{
    return bucket_make(rate);
}

size_t np_bucket_allows(struct np_bucket *b, struct np_bucket_waiter *w)
{
    /* a reader new to the bucket (or back after a pause) starts level with the others
     * before it reads, so what it reads before it ever queues counts against it too */
    if (w->served < b->served) w->served = b->served;
    if (b->head && b->serving != w) return 0;       /* others first */
    refill(b);
    /* a queued reader's turn comes with a slice (on_refill); one that has not waited may
     * take any 1 KiB or more, so a small message is not held back behind a whole slice */
    return b->tokens >= SLICE_MIN ? (size_t)b->tokens : 0;
}

void np_bucket_take(struct np_bucket *b, size_t n)
{
    b->tokens -= (double)n;
    b->used = b->stamp;             /* np_bucket_allows has just refilled it */
}

static void unlink_waiter(struct np_bucket_waiter *w)
{
    struct np_bucket *b = w->on;

    if (w->next) w->next->prev = w->prev;
    else b->tail = w->prev;
    if (w->prev) w->prev->next = w->next;
    else b->head = w->next;
    w->next = w->prev = NULL;
    w->on = NULL;
}

void np_bucket_cancel(struct np_bucket_waiter *w)
{
    if (w->on) unlink_waiter(w);
}

static void arm(struct np_bucket *b)
{
    double wait = (b->slice - b->tokens) / b->rate;
    struct timeval tv;

    if (evtimer_pending(b->timer, NULL)) return;
    if (wait < 0.001) wait = 0.001;
    tv = np_tv(wait);
    evtimer_add(b->timer, &tv);
}

/* A slice has come in: the waiters' turns, in order, while it lasts. A waiter that reads
 * nothing (its socket has nothing now) leaves the tokens to the next. */
static void on_refill(evutil_socket_t fd, short what, void *arg)
{
    struct np_bucket *b = arg;

    b->refs++;                      /* a wake may let the last other user go */
    refill(b);
    while (b->head && b->tokens >= b->slice) {
        struct np_bucket_waiter *w = b->head;
        unlink_waiter(w);
        b->served = w->served;
        b->serving = w;
        w->wake(w);
        b->serving = NULL;
    }
    if (b->head) arm(b);
    np_bucket_put(b);
}

/* Queues w in order of served, behind those with as much (most join near the tail). */
void np_bucket_wait(struct np_bucket *b, struct np_bucket_waiter *w)
{
    struct np_bucket_waiter *before;

    np_bucket_cancel(w);
    if (w->served < b->served) w->served = b->served;      /* a late joiner starts level */
    for (before = b->tail; before && before->served > w->served; before = before->prev) {}
    w->on = b;
    w->prev = before;
    w->next = before ? before->next : b->head;
    if (w->next) w->next->prev = w;
    else b->tail = w;
    if (before) before->next = w;
    else b->head = w;
    arm(b);
}

static void shaper_unref(struct np_shaper *s);

static void source_unlink(struct np_shaper *s, struct np_bucket *b);

void np_bucket_put(struct np_bucket *b)
{
    if (!b || --b->refs > 0) return;
    while (b->head) {               /* nobody should wait on a bucket nobody holds */
        struct np_bucket_waiter *w = b->head;
        unlink_waiter(w);
    }
    event_free(b->timer);
    if (b->shaper) {
        if (b->source) source_unlink(b->shaper, b);
        shaper_unref(b->shaper);
    }
    free(b);
}

/* ---------------------------------------------------------------- the shaper */

static void shaper_unref(struct np_shaper *s)
{
    if (--s->refs == 0) free(s);
}

static struct np_bucket *shared_make(struct np_shaper *s, double rate)
{
    struct np_bucket *b = bucket_make(rate);

    if (b) {
        b->shaper = s;
        s->refs++;
    }
    return b;
}

struct np_shaper *np_shaper_new(double per_proxy, double per_source)
{
    struct np_shaper *s;

    if (per_proxy <= 0 && per_source <= 0) return NULL;
    if (!(s = calloc(1, sizeof *s))) return NULL;
    s->refs = 1;
    s->per_source = per_source;
    for (int i = 0; per_proxy > 0 && i < 2; i++) {
        if (!(s->proxy[i] = shared_make(s, per_proxy))) {
            np_shaper_put(s);
            return NULL;
        }
    }
    return s;
}

void np_shaper_put(struct np_shaper *s)
{
    if (!s) return;
    for (int i = 0; i < 2; i++) {
        np_bucket_put(s->proxy[i]);
        s->proxy[i] = NULL;
    }
    shaper_unref(s);
}

/* The source's key: the client's address without its port, keyed as per_source keys it
 * (limits.c: an IPv6 address by its /64, one host's many addresses being one source);
 * anything else (a unix socket) as it is. */
static void source_key(const char *client, char *key, size_t keylen)
{
    const char *colon = strrchr(client, ':');
    char host[KEY_LEN];

    snprintf(host, sizeof host, "%s", client);
    if (client[0] == '[' && (colon = strstr(client, "]:")) && colon - client - 1 < KEY_LEN)
        snprintf(host, sizeof host, "%.*s", (int)(colon - client - 1), client + 1);
    else if (colon && colon - client < KEY_LEN && strchr(client, '.'))
        host[colon - client] = 0;                   /* a.b.c.d:port */
    if (np_limits_source_key_text(host, 64, key, keylen) == 0) snprintf(key, keylen, "%s", host);
}

static unsigned head_of(const char *key, int dir)
{
    uint32_t h = 2166136261u;           /* FNV-1a */

    for (; *key; key++) h = (h ^ (unsigned char)*key) * 16777619u;
    return (h ^ (uint32_t)dir) % SOURCE_HEADS;
}

static void source_unlink(struct np_shaper *s, struct np_bucket *b)
{
    struct np_bucket **p = &s->sources[head_of(b->key, b->dir)];

    while (*p && *p != b) p = &(*p)->next;
    if (*p) *p = b->next;
}

/* The source bucket of key in direction dir, with a reference for the caller. */
static struct np_bucket *source_get(struct np_shaper *s, const char *key, int dir)
{
    unsigned i = head_of(key, dir);
    struct np_bucket *b;

    for (b = s->sources[i]; b; b = b->next) {
        if (b->dir == dir && !strcmp(b->key, key)) {
            b->refs++;
            return b;
        }
    }
    if (!(b = shared_make(s, s->per_source))) return NULL;
    snprintf(b->key, sizeof b->key, "%s", key);
    b->dir = dir;
    b->source = 1;
    b->next = s->sources[i];
    s->sources[i] = b;
    return b;
}

int np_shaper_get(struct np_shaper *s, const char *client, struct np_bucket *out[2][2])
{
    char key[KEY_LEN];

    memset(out, 0, 4 * sizeof out[0][0]);
    if (!s) return 0;
    source_key(client ? client : "?", key, sizeof key);
    for (int dir = 0; dir < 2; dir++) {
        if (s->per_source > 0 && !(out[dir][0] = source_get(s, key, dir))) goto fail;
        if ((out[dir][1] = s->proxy[dir])) out[dir][1]->refs++;
    }
    return 0;
fail:
    for (int dir = 0; dir < 2; dir++) {
        np_bucket_put(out[dir][0]);
        np_bucket_put(out[dir][1]);
        out[dir][0] = out[dir][1] = NULL;
    }
    return -1;
}
