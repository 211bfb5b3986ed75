/* Limits per client, shared by the workers (per_source, per_user): one anonymous shared
 * mapping made before fork, a fixed number of entries, each a key's live connections (in
 * total and per worker slot, so that a dead worker's are dropped) and its token bucket of
 * new connections. A key lives in one of WINDOW entries from its hash (open addressing,
 * never deleted: an entry is taken over in place). When none of them is free or holds the
 * key, the one without live connections seen longest ago is taken over (its rate is
 * forgotten); when every one holds live connections, the client is refused (NP_LIMIT_FULL):
 * the table never grows and never lets a client past uncounted. The lock is a robust
 * process-shared mutex, as shdict.c's: a worker killed holding it blocks no one. */
#include "limits.h"
#include "shm.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#define WINDOW 16

struct entry {
    uint64_t key;               /* 0: never used */
    double tokens, last;        /* the rate's bucket, and when it was last filled */
    uint32_t conns;             /* live connections, all workers */
    uint32_t held[NP_MAX_SLOTS];        /* of them, each worker slot's */
};

struct table {
    pthread_mutex_t lock;
    uint32_t n;
    struct entry e[];
};

static struct table *t;

int np_limits_init(size_t entries, char *err, size_t errlen)
{
    pthread_mutexattr_t attr;
    size_t n = (entries + WINDOW - 1) / WINDOW * WINDOW, size;

    if (t) return 0;
    if (n < WINDOW) n = WINDOW;
    size = sizeof *t + n * sizeof(struct entry);
    t = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (t == MAP_FAILED) {
        t = NULL;
        snprintf(err, errlen, "limits_table: mmap %zu bytes: %s", size, strerror(errno));
        return -1;
    }
    t->n = (uint32_t)n;
    pthread_mutexattr_init(&attr);
    pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
    pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST);
    pthread_mutex_init(&t->lock, &attr);
    pthread_mutexattr_destroy(&attr);
    return 0;
}

static void lock(void)
{
    if (pthread_mutex_lock(&t->lock) == EOWNERDEAD) pthread_mutex_consistent(&t->lock);
}

static void unlock(void)
{
    pthread_mutex_unlock(&t->lock);
}

static double now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);    /* the same clock in every process */
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* ---------------------------------------------------------------- keys */

/* The key texts are written by hand: snprintf and inet_ntop cost more than the rest of a
 * connection's check together (bench/limits.sh counts the instructions). */
static char *put_dec(char *o, unsigned v)
{
    if (v >= 100) *o++ = (char)('0' + v / 100);
    if (v >= 10) *o++ = (char)('0' + v / 10 % 10);
    *o++ = (char)('0' + v % 10);
    return o;
}

static size_t v6_key(const unsigned char *b, int prefix, char *out, size_t outlen)
{
    static const char hex[] = "0123456789abcdef";
    char *o = out;

    if (outlen < 8 * 5 + 4) return 0;
    for (int i = 0; i < 16; i++) {
        int keep = prefix - 8 * i;
        unsigned m = keep <= 0 ? 0 : keep >= 8 ? b[i] : b[i] & (unsigned)(0xff << (8 - keep)) & 0xff;
        *o++ = hex[m >> 4];
        *o++ = hex[m & 15];
        if (i % 2 && i < 15) *o++ = ':';
    }
    *o++ = '/';
    o = put_dec(o, (unsigned)prefix);
    *o = '\0';
    return (size_t)(o - out);
}

static size_t v4_key(const unsigned char *b, char *out, size_t outlen)
{
    char *o = out;

    if (outlen < 16) return 0;
    for (int i = 0; i < 4; i++) {
        o = put_dec(o, b[i]);
        if (i < 3) *o++ = '.';
    }
    *o = '\0';
    return (size_t)(o - out);
}

static size_t key_of(int family, const unsigned char *b, int prefix, char *out, size_t outlen)
{
    static const unsigned char mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };

    if (family == AF_INET) return v4_key(b, out, outlen);
    if (memcmp(b, mapped, 12) == 0) return v4_key(b + 12, out, outlen);
    return v6_key(b, prefix, out, outlen);
}

size_t np_limits_source_key(const struct sockaddr *sa, int v6_prefix, char *out, size_t outlen)
{
    if (sa->sa_family == AF_INET)
        return key_of(AF_INET, (const unsigned char *)&((const struct sockaddr_in *)sa)->sin_addr, 0, out, outlen);
    if (sa->sa_family == AF_INET6)
        return key_of(AF_INET6, ((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr, v6_prefix, out, outlen);
    return 0;
}

size_t np_limits_source_key_text(const char *ip, int v6_prefix, char *out, size_t outlen)
{
    unsigned char b[16];

    if (inet_pton(AF_INET, ip, b) == 1) return key_of(AF_INET, b, 0, out, outlen);
    if (inet_pton(AF_INET6, ip, b) == 1) return key_of(AF_INET6, b, v6_prefix, out, outlen);
    return 0;
}

/* FNV-1a over scope, kind and key; never 0 (0 marks an unused entry). */
static uint64_t hash_of(const char *scope, int user, const char *key, size_t keylen)
{
    uint64_t h = 14695981039346656037ull;
    const unsigned char kind = user ? 'u' : 's';

    for (const char *s = scope; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    h = (h ^ 0) * 1099511628211ull;
    h = (h ^ kind) * 1099511628211ull;
    for (size_t i = 0; i < keylen; i++) h = (h ^ (unsigned char)key[i]) * 1099511628211ull;
    return h ? h : 1;
}

/* ---------------------------------------------------------------- the table (under the lock) */

/* The entry of key h: its own, a never used one, or the idle one seen longest ago; NULL
 * when every entry of its window holds live connections. */
static struct entry *find(uint64_t h, const struct np_limit_rule *r, double at)
{
    uint32_t start = (uint32_t)(h % t->n) / WINDOW * WINDOW;
    struct entry *idle = NULL;

    for (uint32_t i = start; i < start + WINDOW; i++) {
        struct entry *e = &t->e[i];
        if (e->key == h) return e;
        if (e->conns == 0 && (!idle || (idle->key && (!e->key || e->last < idle->last)))) idle = e;
    }
    if (idle) {                         /* taken over: a fresh bucket */
        memset(idle, 0, sizeof *idle);
        idle->key = h;
        idle->tokens = r->rate_n;
        idle->last = at;
    }
    return idle;
}

/* The bucket refilled up to now: rate_n tokens per rate_s seconds, at most rate_n. */
static void refill(struct entry *e, const struct np_limit_rule *r, double at)
{
    if (r->rate_n && r->rate_s > 0) {
        e->tokens += (at - e->last) * r->rate_n / r->rate_s;
        if (e->tokens > r->rate_n) e->tokens = r->rate_n;
    }
    e->last = at;
}

enum np_limit_why np_limits_take(const char *scope, int user, const char *key, size_t keylen,
                                 const struct np_limit_rule *r, uint32_t *token)
{
    uint64_t h = hash_of(scope, user, key, keylen);
    double at = now();
    enum np_limit_why why = NP_LIMIT_OK;
    struct entry *e;
    int slot = np_shm_slot();

    *token = 0;
    if (!t || !r->set) return NP_LIMIT_OK;
    lock();
    e = find(h, r, at);
    if (!e) {
        why = NP_LIMIT_FULL;
    } else {
        refill(e, r, at);
        if (r->max_conns && e->conns >= r->max_conns) why = user ? NP_LIMIT_USER_CONNS : NP_LIMIT_SOURCE_CONNS;
        else if (r->rate_n && e->tokens < 1) why = user ? NP_LIMIT_USER_RATE : NP_LIMIT_SOURCE_RATE;
    }
    if (why == NP_LIMIT_OK) {
        if (r->rate_n) e->tokens -= 1;
        e->conns++;                     /* counted even without max_conns: an entry in use */
        e->held[slot]++;                /* is never taken over */
        *token = (uint32_t)(e - t->e) + 1;
    }
    unlock();
    return why;
}

void np_limits_put(uint32_t token)
{
    int slot;

    if (!t || token == 0 || token > t->n) return;      /* none taken: the common case */
    slot = np_shm_slot();
    lock();
    struct entry *e = &t->e[token - 1];
    if (e->held[slot]) {
        e->held[slot]--;
        e->conns--;
    }
    unlock();
}

void np_limits_release_slot(int slot)
{
    if (!t || slot < 0 || slot >= NP_MAX_SLOTS) return;
    lock();
    for (uint32_t i = 0; i < t->n; i++) {
        struct entry *e = &t->e[i];
        e->conns -= e->held[slot];
        e->held[slot] = 0;
    }
    unlock();
}

/* ---------------------------------------------------------------- words */

const char *np_limits_label(enum np_limit_why why)
{
    static const char *const labels[NP_LIMIT_NWHY] = {
        [NP_LIMIT_OK] = "", [NP_LIMIT_SOURCE_CONNS] = "per_source_conns",
        [NP_LIMIT_SOURCE_RATE] = "per_source_rate", [NP_LIMIT_USER_CONNS] = "per_user_conns",
        [NP_LIMIT_USER_RATE] = "per_user_rate", [NP_LIMIT_FULL] = "limits_table_full",
    };
    return why < NP_LIMIT_NWHY ? labels[why] : "";
}

const char *np_limits_reason(enum np_limit_why why, const struct np_limit_rule *r, int server,
                             char *buf, size_t len)
{
    const char *kind = why == NP_LIMIT_USER_CONNS || why == NP_LIMIT_USER_RATE ? "per_user" : "per_source";
    const char *where = server ? " (server)" : "";

    if (why == NP_LIMIT_SOURCE_CONNS || why == NP_LIMIT_USER_CONNS)
        snprintf(buf, len, "%s: max_conns %u%s", kind, (unsigned)r->max_conns, where);
    else if (why == NP_LIMIT_SOURCE_RATE || why == NP_LIMIT_USER_RATE)
        snprintf(buf, len, "%s: rate %u/%gs%s", kind, (unsigned)r->rate_n, r->rate_s, where);
    else
        snprintf(buf, len, "limits table full (server{ limits_table })");
    return buf;
}
