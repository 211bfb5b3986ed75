/* UDP proxies: the listening sockets (shared by address, with references, so a reload
 * keeps them), the flow table of each socket (client address:port -> flow), and the life
 * of a flow: its connected socket towards the server (chosen by the `to`'s pool, when it
 * has one), its hooks, its end (one log line, counters). Datagrams are carried one by one,
 * never merged or split; nothing is buffered except a bounded queue while the server's name
 * resolves and, in a pool, until the server's first reply (to send again to the next server
 * when this one refuses). */
#include "udp.h"
#include "udp_group.h"
#include "addr.h"
#include "budget.h"
#include "conn.h"
#include "hook.h"
#include "idle.h"
#include "log.h"
#include "loop.h"
#include "pool.h"
#include "proxy.h"
#include "resolve.h"
#include "luavm.h"

#include <errno.h>
#include <event2/event.h>
#include <event2/event_struct.h>
#include <fcntl.h>
#include <lauxlib.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_DATAGRAM 65535
#define READS_PER_WAKEUP 64
#define MAX_QUEUED 16           /* datagrams held per flow: while resolving, in a pool until the first reply */
#define HANDLE_MT "netproxy.flow_handle"

struct flow;

/* A listening UDP address and its flows. The master holds its group (udp_group.h: a
 * socket per worker index); a serving process keeps the socket of its index. */
struct usock {
    int fd;                     /* the socket this process reads and answers from; -1 once closed */
    struct np_udp_group group;  /* every socket of the address this process holds ([0] is fd) */
    char addr[NP_ADDRSTRLEN];
    int refs;                   /* proxies using it, and the hold of a hand-over */
    int passed;                 /* handed over by an upgrade: held until np_udp_adopted_done */
    char *passed_by;            /* the name of the proxy that had it, until one takes it */
    struct event ev;
    int armed, reading;
    struct np_udp *serve;       /* whose new flows */
    struct flow **buckets;
    size_t nbuckets, nflows;
    struct usock *next;
};

/* A proxy's UDP side. */
struct np_udp {
    struct np_proxy *p;
    const struct np_udp_ops *ops;
    void *arg;
    char *host;                 /* the server; NULL for a service */
    int port;
    double idle_timeout, hook_budget;
    uint64_t max_flows, nflows;
    int hook_ref[2];            /* toward the server, toward the client */
    int datagram_ref;           /* a service's datagram function */
    int start_ref;              /* netproxy.udp.start, when a flow needs a Lua conn */
    int pooled;                 /* the `to` has servers: netproxy.udp.pick and .failed choose */
    int pick_ref, failed_ref;
    struct usock **socks;
    int nsocks;
    struct flow *lru_head, *lru_tail;   /* its flows, longest idle first */
    int released;
    double warned;              /* rate of the eviction and refusal warnings */
    uint64_t unlogged;
};

struct queued {
    struct queued *next;
    size_t len;
    int sent;                   /* counted as carried (a pool's failover sends it again) */
    char data[];
};

struct flow {
    uint64_t id;
    struct np_udp *u;
    struct usock *ls;
    struct sockaddr_storage peer;
    socklen_t peerlen;
    int fd;                     /* connected to the server; -1 while resolving or for a service */
    struct event ev;
    struct np_resolve *resolving;
    struct queued *queue, **qtail;
    int nqueued;
    struct np_idle idle;
    struct flow *hnext;                 /* in ls->buckets */
    struct flow *lprev, *lnext;         /* in u's LRU list */
    uint64_t dgrams[2], bytes[2];       /* carried: toward the server, toward the client */
    uint64_t dropped;
    double started;
    char target[NP_ADDRSTRLEN];
    /* a pool flow: its server (held in the shared table from its choice to the flow's end or
     * the server's failure), the servers that failed before it, whether it replied */
    int row;                            /* -1: none */
    char *server_host;
    int server_port;
    char *failed;                       /* "a,b", or NULL */
    int replied, counted;
    unsigned attempt;                   /* a new one for each server tried */
    enum np_end end;
    char *detail;
    int conn_ref, handle_ref;
    struct flow *next_reaped;
};

struct handle {
    struct flow *f;
};

static struct usock *socks;
static struct flow *reaped;
static struct event reaper;
static int reaper_ready, started;
static char buf[MAX_DATAGRAM + 1];

static void flow_close(struct flow *f, enum np_end how, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void on_listen_readable(evutil_socket_t fd, short what, void *arg);

/* ---------------------------------------------------------------- the flow table */

static int same_peer(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
    if (a->ss_family != b->ss_family) return 0;
    if (a->ss_family == AF_INET) {
        const struct sockaddr_in *x = (const void *)a, *y = (const void *)b;
        return x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;
    }
    const struct sockaddr_in6 *x = (const void *)a, *y = (const void *)b;
    return x->sin6_port == y->sin6_port && !memcmp(&x->sin6_addr, &y->sin6_addr, 16) &&
           x->sin6_scope_id == y->sin6_scope_id;
}

static size_t hash_peer(const struct sockaddr_storage *a)
{
    const unsigned char *p;
    size_t n, h = 2166136261u;
    uint16_t port;

    if (a->ss_family == AF_INET) {
        p = (const void *)&((const struct sockaddr_in *)a)->sin_addr;
        n = 4;
        port = ((const struct sockaddr_in *)a)->sin_port;
    } else {
        p = (const void *)&((const struct sockaddr_in6 *)a)->sin6_addr;
        n = 16;
        port = ((const struct sockaddr_in6 *)a)->sin6_port;
    }
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 16777619u;
    h = (h ^ (port & 0xff)) * 16777619u;
    return (h ^ (port >> 8)) * 16777619u;
}

static struct flow *lookup(struct usock *ls, const struct sockaddr_storage *peer)
{
    if (!ls->nbuckets) return NULL;
    for (struct flow *f = ls->buckets[hash_peer(peer) & (ls->nbuckets - 1)]; f; f = f->hnext)
        if (same_peer(&f->peer, peer)) return f;
    return NULL;
}

/* Doubles the buckets once there are more flows than buckets. 0, or -1 (kept as it was). */
static int grow(struct usock *ls)
{
    size_t n = ls->nbuckets ? ls->nbuckets * 2 : 64;
    struct flow **b = calloc(n, sizeof *b);

    if (!b) return ls->nbuckets ? 0 : -1;
    for (size_t i = 0; i < ls->nbuckets; i++) {
        for (struct flow *f = ls->buckets[i], *next; f; f = next) {
            next = f->hnext;
            size_t j = hash_peer(&f->peer) & (n - 1);
            f->hnext = b[j];
            b[j] = f;
        }
    }
    free(ls->buckets);
    ls->buckets = b;
    ls->nbuckets = n;
    return 0;
}

static int insert(struct usock *ls, struct flow *f)
{
    if (ls->nflows >= ls->nbuckets && grow(ls) < 0) return -1;
    size_t j = hash_peer(&f->peer) & (ls->nbuckets - 1);
    f->hnext = ls->buckets[j];
    ls->buckets[j] = f;
    ls->nflows++;
    return 0;
}

static void unhash(struct flow *f)
{
    struct usock *ls = f->ls;

    if (!ls || !ls->nbuckets) return;
    for (struct flow **pp = &ls->buckets[hash_peer(&f->peer) & (ls->nbuckets - 1)]; *pp; pp = &(*pp)->hnext) {
        if (*pp == f) {
            *pp = f->hnext;
            ls->nflows--;
            return;
        }
    }
}

/* ---------------------------------------------------------------- LRU, per proxy */

static void lru_unlink(struct flow *f)
{
    struct np_udp *u = f->u;

    if (f->lprev) f->lprev->lnext = f->lnext;
    else if (u->lru_head == f) u->lru_head = f->lnext;
    else return;                        /* not a member */
    if (f->lnext) f->lnext->lprev = f->lprev;
    else u->lru_tail = f->lprev;
    f->lprev = f->lnext = NULL;
}

static void lru_append(struct flow *f)
{
    struct np_udp *u = f->u;

    f->lnext = NULL;
    f->lprev = u->lru_tail;
    if (u->lru_tail) u->lru_tail->lnext = f;
    else u->lru_head = f;
    u->lru_tail = f;
}

/* A datagram either way: the flow is the most recently active. */
static void touch(struct flow *f)
{
    np_idle_touch(&f->idle);
    if (f->u->lru_tail != f) {
        lru_unlink(f);
        lru_append(f);
    }
}

/* ---------------------------------------------------------------- Lua handles */

static void push_handle(lua_State *L, struct flow *f)
{
    struct handle *h = lua_newuserdata(L, sizeof *h);

    h->f = f;
    if (luaL_newmetatable(L, HANDLE_MT)) {
        lua_pushliteral(L, "netproxy flow");
        lua_setfield(L, -2, "__metatable");
    }
    lua_setmetatable(L, -2);
    lua_pushvalue(L, -1);
    f->handle_ref = luaL_ref(L, LUA_REGISTRYINDEX);
}

static struct flow *from_handle(lua_State *L, int idx)
{
    struct flow *f = ((struct handle *)luaL_checkudata(L, idx, HANDLE_MT))->f;

    return f && f->end == NP_END_NONE ? f : NULL;
}

static void unref(lua_State *L, int *ref)
{
    if (*ref != LUA_NOREF && *ref != LUA_REFNIL) luaL_unref(L, LUA_REGISTRYINDEX, *ref);
    *ref = LUA_NOREF;
}

/* ---------------------------------------------------------------- the end of a flow */

static void count_and_log(struct flow *f)
{
    struct np_udp *u = f->u;
    struct np_counters *n = NP_COUNTERS(u->p);
    char client[NP_ADDRSTRLEN];

    n->flows_closed++;
    n->flows_active--;
    switch (np_end_class(f->end)) {
    case NP_END_REFUSAL: n->refused++; break;
    case NP_END_FAILURE: if (f->end != NP_END_IDLE_TIMEOUT) n->errors++; break;
    case NP_END_CLEAN: break;
    }
    np_addr_format((struct sockaddr *)&f->peer, f->peerlen, client, sizeof client);
    np_clog(NP_NOTICE, f->id, "%s: udp %s -> %s%s%s in=%llu out=%llu datagrams_in=%llu datagrams_out=%llu dropped=%llu time=%.3fs end=%s%s%s",
            u->p->name, client, f->target[0] ? f->target : "-", f->failed ? " failed=" : "", f->failed ? f->failed : "",
            (unsigned long long)f->bytes[0], (unsigned long long)f->bytes[1],
            (unsigned long long)f->dgrams[0], (unsigned long long)f->dgrams[1],
            (unsigned long long)f->dropped, np_now() - f->started, np_end_name(f->end),
            f->detail && f->detail[0] ? ": " : "", f->detail ? f->detail : "");
}

static void free_queue(struct flow *f)
{
    while (f->queue) {
        struct queued *q = f->queue;
        f->queue = q->next;
        free(q);
    }
    f->qtail = &f->queue;
    f->nqueued = 0;
}

static void flow_free(struct flow *f)
{
    struct np_udp *u = f->u;
    lua_State *L = u->p->L;

    if (f->resolving) np_resolve_cancel(f->resolving);
    if (f->fd >= 0) {
        event_del(&f->ev);
        close(f->fd);
    }
    free_queue(f);
    if (f->row >= 0) {                  /* its server was not refused: reached, as far as UDP tells */
        if (!f->counted) np_pool_count(f->row);
        np_pool_release(f->row);
    }
    if (f->handle_ref != LUA_NOREF) {
        lua_rawgeti(L, LUA_REGISTRYINDEX, f->handle_ref);
        ((struct handle *)lua_touserdata(L, -1))->f = NULL;
        lua_pop(L, 1);
        unref(L, &f->handle_ref);
    }
    unref(L, &f->conn_ref);
    count_and_log(f);
    u->nflows--;
    u->ops->done(u->arg, u->p);         /* may free u's config: nothing of u after this */
    free(f->detail);
    free(f->server_host);
    free(f->failed);
    free(f);
}

static void on_reap(evutil_socket_t fd, short what, void *arg)
{
    while (reaped) {
        struct flow *f = reaped;
        reaped = f->next_reaped;
        flow_free(f);
    }
}

/* The one way a flow ends: it leaves the table at once (the client's next datagram starts
 * a new flow), and the reaper frees it once the running callback has returned. */
static void flow_close(struct flow *f, enum np_end how, const char *fmt, ...)
{
    va_list ap;

    if (f->end != NP_END_NONE) return;
    f->end = how;
    va_start(ap, fmt);
    if (vasprintf(&f->detail, fmt, ap) < 0) f->detail = NULL;
    va_end(ap);
    unhash(f);
    lru_unlink(f);
    np_idle_leave(&f->idle);
    if (f->fd >= 0) event_del(&f->ev);
    f->next_reaped = reaped;
    reaped = f;
    event_active(&reaper, EV_TIMEOUT, 0);
}

static void on_idle(struct np_idle *m)
{
    struct flow *f = (struct flow *)((char *)m - offsetof(struct flow, idle));

    flow_close(f, NP_END_IDLE_TIMEOUT, "%gs", f->u->idle_timeout);
}

/* ---------------------------------------------------------------- carrying datagrams */

static void to_client(struct flow *f, const char *data, size_t len)
{
    if (f->ls->fd >= 0 && sendto(f->ls->fd, data, len, 0, (struct sockaddr *)&f->peer, f->peerlen) >= 0) {
        f->dgrams[1]++;
        f->bytes[1] += len;
        NP_COUNTERS(f->u->p)->datagrams_out++;
        NP_COUNTERS(f->u->p)->bytes_out += len;
        return;
    }
    f->dropped++;                       /* the client's buffer is full: UDP drops */
    NP_COUNTERS(f->u->p)->datagrams_dropped++;
}

static void sent_to_server(struct flow *f, size_t len)
{
    f->dgrams[0]++;
    f->bytes[0] += len;
    NP_COUNTERS(f->u->p)->datagrams_in++;
    NP_COUNTERS(f->u->p)->bytes_in += len;
}

static void drop(struct flow *f)
{
    f->dropped++;
    NP_COUNTERS(f->u->p)->datagrams_dropped++;
}

/* Runs fn(data, conn) under the hook budget: -1 (the flow is closed), 0 keep, 1 replaced
 * by *out (np_hook_done after use; an empty one drops). */
static int call_lua(struct flow *f, int fn_ref, const char *data, size_t len,
                    const char **out, size_t *outlen)
{
    char err[256];
    lua_State *L = f->u->p->L;
    int rc = np_hook_call(L, fn_ref, f->conn_ref, data, len, 0, f->u->hook_budget, f->u->p->call_memory, out, outlen,
                          err, sizeof err);

    if (rc < 0) {
        np_clog(NP_ERR, f->id, "%s: hook: %s", f->u->p->name, err);
        flow_close(f, NP_END_LUA_ERROR, "%s", err);
        return -1;
    }
    if (f->end != NP_END_NONE) {        /* conn:close() from Lua */
        if (rc == 1) np_hook_done(L);
        return -1;
    }
    return rc;
}

/* A pool flow keeps what it sends until its server first replies: a server that refuses
 * (ICMP port unreachable) before that is replaced, and the next one gets the same
 * datagrams. */
static int holding(const struct flow *f)
{
    return f->u->pooled && !f->replied;
}

/* Keeps a copy of a datagram at the end of the flow's queue; NULL when it is full
 * (MAX_QUEUED) or memory is short. */
static struct queued *hold(struct flow *f, const char *data, size_t len)
{
    struct queued *q = f->nqueued < MAX_QUEUED ? malloc(sizeof *q + len) : NULL;

    if (!q) return NULL;
    q->next = NULL;
    q->len = len;
    q->sent = 0;
    memcpy(q->data, data, len);
    *f->qtail = q;
    f->qtail = &q->next;
    f->nqueued++;
    return q;
}

/* One datagram on the flow's connected socket: 1 sent, 0 not (the kernel's buffer is full:
 * dropped, as UDP does), -1 refused while holding. Linux reports an ICMP port unreachable
 * (for an earlier datagram) on the next send instead of sending: outside a pool's first
 * exchange the error is then cleared and the datagram is sent after all. */
static int put(struct flow *f, const char *data, size_t len)
{
    if (send(f->fd, data, len, 0) >= 0) return 1;
    if (errno != ECONNREFUSED) return 0;
    if (holding(f)) return -1;
    return send(f->fd, data, len, 0) >= 0;
}

static void server_failed(struct flow *f, const char *why);

/* Sends a held datagram; it is counted the first time it goes. */
static void put_held(struct flow *f, struct queued *q)
{
    int rc = put(f, q->data, q->len);

    if (rc > 0 && !q->sent) sent_to_server(f, q->len);
    if (rc > 0) q->sent = 1;
    else if (rc < 0) server_failed(f, "refused");       /* q goes to the next server */
    else if (!q->sent) drop(f);
}

static void to_server(struct flow *f, const char *data, size_t len)
{
    struct queued *q;
    int rc;

    if (f->u->datagram_ref != LUA_NOREF) {     /* a service: its answer goes back */
        const char *reply;
        size_t rlen;
        sent_to_server(f, len);
        /* netproxy.udp_service made "no reply" an empty string: "keep" is the datagram itself */
        if ((rc = call_lua(f, f->u->datagram_ref, data, len, &reply, &rlen)) == 0) to_client(f, data, len);
        else if (rc == 1 && rlen > 0) to_client(f, reply, rlen);
        if (rc == 1) np_hook_done(f->u->p->L);
        return;
    }
    if (f->fd < 0) {                    /* resolving: held, up to MAX_QUEUED */
        if (!hold(f, data, len)) drop(f);
        return;
    }
    if (holding(f) && (q = hold(f, data, len))) {
        put_held(f, q);
        return;
    }
    if ((rc = put(f, data, len)) > 0) sent_to_server(f, len);
    else drop(f);                       /* (past MAX_QUEUED a refused one is not sent again) */
    if (rc < 0) server_failed(f, "refused");
}

/* One datagram in direction dir (0: from the client), through its hook. */
static void carry(struct flow *f, int dir, const char *data, size_t len)
{
    const char *out = data;
    size_t outlen = len;
    int rc = 0;

    touch(f);
    if (f->u->hook_ref[dir] != LUA_NOREF &&
        (rc = call_lua(f, f->u->hook_ref[dir], data, len, &out, &outlen)) < 0)
        return;
    if (rc == 0 || outlen > 0) {        /* "" from a hook drops; an empty datagram goes */
        if (dir == 0) to_server(f, out, outlen);
        else if (f->end == NP_END_NONE) to_client(f, out, outlen);
    }
    if (rc == 1) np_hook_done(f->u->p->L);
}

/* The server's first reply: it is reached (counted), and what was held for a failover goes. */
static void first_reply(struct flow *f)
{
    f->replied = 1;
    free_queue(f);
    if (f->row >= 0 && !f->counted) np_pool_count(f->row);
    f->counted = 1;
}

static void on_server_readable(evutil_socket_t fd, short what, void *arg)
{
    struct flow *f = arg;

    for (int i = 0; i < READS_PER_WAKEUP && f->end == NP_END_NONE; i++) {
        ssize_t n = recv(f->fd, buf, MAX_DATAGRAM, MSG_TRUNC);
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) return;
            if (errno == ECONNREFUSED && holding(f)) {   /* before any reply: the next server */
                server_failed(f, "refused");
                return;
            }
            if (errno == ECONNREFUSED || errno == EINTR) continue;  /* ICMP: the idle timeout decides */
            flow_close(f, NP_END_SERVER_ERROR, "recv: %s", strerror(errno));
            return;
        }
        if (n > MAX_DATAGRAM) continue;         /* cannot be: UDP's own bound */
        if (!f->replied) first_reply(f);
        carry(f, 1, buf, (size_t)n);
    }
}

/* ---------------------------------------------------------------- the server side */

/* Sends what the flow holds, in order: what came while the server's name resolved and, in a
 * pool before the first reply, what an earlier server was sent. Held datagrams stay (the
 * next server gets them if this one refuses); the others are freed once sent. A failover
 * inside (this server refused at once) has sent them all to the next server already. */
static void flush_queue(struct flow *f)
{
    unsigned attempt = f->attempt;

    for (struct queued *q = f->queue, *next; q && f->end == NP_END_NONE && f->attempt == attempt; q = next) {
        next = q->next;
        if (holding(f)) {
            put_held(f, q);
            continue;
        }
        f->queue = next;
        f->nqueued--;
        put_held(f, q);
        free(q);
    }
    if (!f->queue) f->qtail = &f->queue;
}

static void connected(struct flow *f, const struct sockaddr *sa, socklen_t len)
{
    int fd = socket(sa->sa_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), e;

    if (!f->u->pooled) np_addr_format(sa, len, f->target, sizeof f->target);  /* a pool's: the server's name */
    if (fd < 0) {
        flow_close(f, NP_END_CONNECT_FAILED, "%s", strerror(errno));
        return;
    }
    if (connect(fd, sa, len) < 0) {
        e = errno;
        close(fd);
        if (f->u->pooled) server_failed(f, strerror(e));
        else flow_close(f, NP_END_CONNECT_FAILED, "%s", strerror(e));
        return;
    }
    f->fd = fd;
    event_assign(&f->ev, np_base, fd, EV_READ | EV_PERSIST, on_server_readable, f);
    event_add(&f->ev, NULL);
    flush_queue(f);
}

static void on_resolved(int err, struct evutil_addrinfo *res, void *arg)
{
    struct flow *f = arg;

    f->resolving = NULL;
    if (f->end != NP_END_NONE) {
        if (res) evutil_freeaddrinfo(res);
        return;
    }
    if (err || !res) {
        const char *why = evutil_gai_strerror(err);
        if (res) evutil_freeaddrinfo(res);
        if (f->u->pooled) {
            server_failed(f, why);
            return;
        }
        snprintf(f->target, sizeof f->target, "%s:%d", f->u->host, f->u->port);
        flow_close(f, NP_END_CONNECT_FAILED, "%s: %s", f->u->host, why);
        return;
    }
    connected(f, res->ai_addr, (socklen_t)res->ai_addrlen);
    evutil_freeaddrinfo(res);
}

/* Resolves the flow's server. The answer may come before this returns (an IP literal) and
 * start a failover whose own lookup is then the one pending: only a pending lookup is kept. */
static void resolve(struct flow *f, const char *host, int port)
{
    struct np_resolve *r = np_resolve_start(host, port, on_resolved, f);

    if (r) f->resolving = r;
}

/* ---------------------------------------------------------------- a pool's choice */

/* Calls netproxy.udp's fn(conn, ...) (nargs pushed after fn) under the hook budget, with
 * nresults. 0, or -1 (the flow is closed: a Lua error). */
static int call_pool(struct flow *f, int nargs, int nresults)
{
    struct np_budget saved;
    int rc;

    np_budget_begin(&saved, f->u->hook_budget, f->u->p->call_memory);
    rc = np_lua_pcall(f->u->p->L, nargs + 1, nresults, f->u->p->name);
    np_budget_end(&saved);
    if (rc < 0) flow_close(f, NP_END_LUA_ERROR, "%s", "balance");
    return rc;
}

/* The pool chooses the flow's server (netproxy.udp.pick: the balance, the servers up, those
 * this flow tried), which is resolved next. None: the flow ends at once. */
static void choose_server(struct flow *f)
{
    struct np_udp *u = f->u;
    lua_State *L = u->p->L;
    int base = lua_gettop(L);
    const char *failed;

    lua_rawgeti(L, LUA_REGISTRYINDEX, u->pick_ref);
    lua_rawgeti(L, LUA_REGISTRYINDEX, f->conn_ref);
    if (call_pool(f, 0, 5) < 0) return;
    /* name, host, port, row, failed | nil, why, failed */
    failed = lua_tostring(L, lua_isnil(L, base + 1) ? base + 3 : base + 5);
    free(f->failed);
    f->failed = failed ? strdup(failed) : NULL;
    if (lua_isnil(L, base + 1)) {
        const char *why = lua_tostring(L, base + 2) ? lua_tostring(L, base + 2) : "no server";
        snprintf(f->target, sizeof f->target, "none");
        if (!f->failed) np_clog(NP_WARNING, f->id, "%s: no server: %s", u->p->name, why);
        flow_close(f, NP_END_CONNECT_FAILED, "no server: %s", why);
        lua_settop(L, base);
        return;
    }
    snprintf(f->target, sizeof f->target, "%s", lua_tostring(L, base + 1));
    free(f->server_host);
    f->server_host = strdup(lua_tostring(L, base + 2));
    f->server_port = (int)lua_tointeger(L, base + 3);
    f->row = lua_isnumber(L, base + 4) ? (int)lua_tointeger(L, base + 4) : -1;
    lua_settop(L, base);
    if (f->row >= 0) np_pool_hold(f->row);
    f->counted = 0;
    if (!f->server_host) {
        flow_close(f, NP_END_NO_MEMORY, "%s", "the server's name");
        return;
    }
    resolve(f, f->server_host, f->server_port);
}

/* The flow's server refused (or its name did not resolve, or it cannot be reached) before
 * replying: a failure in its row (max_fails within fail_timeout mark it down), and the flow
 * goes on with the next server, if the pool has one left to try. */
static void server_failed(struct flow *f, const char *why)
{
    lua_State *L = f->u->p->L;
    int base = lua_gettop(L);

    lua_rawgeti(L, LUA_REGISTRYINDEX, f->u->failed_ref);
    lua_rawgeti(L, LUA_REGISTRYINDEX, f->conn_ref);
    lua_pushstring(L, why);
    if (call_pool(f, 1, 1) < 0) return;
    if (lua_isstring(L, -1)) np_clog(NP_WARNING, f->id, "%s: %s", f->u->p->name, lua_tostring(L, -1));
    lua_settop(L, base);
    if (f->fd >= 0) {
        event_del(&f->ev);
        close(f->fd);
        f->fd = -1;
    }
    if (f->row >= 0) np_pool_release(f->row);
    f->row = -1;
    f->attempt++;
    choose_server(f);
}

/* ---------------------------------------------------------------- a new flow */

/* Past max_flows the longest idle flow goes; warned at most once a second. */
static void evict(struct np_udp *u)
{
    struct flow *f = u->lru_head;

    if (!f) return;
    NP_COUNTERS(u->p)->flows_evicted++;
    flow_close(f, NP_END_EVICTED, "max_flows %llu", (unsigned long long)u->max_flows);
    if (np_now() - u->warned < 1.0) {
        u->unlogged++;
        return;
    }
    np_log(NP_WARNING, "%s: max_flows (%llu) reached: the longest idle flow goes (and %llu more since the last such line)",
           u->p->name, (unsigned long long)u->max_flows, (unsigned long long)u->unlogged);
    u->warned = np_now();
    u->unlogged = 0;
}

static void refused(struct np_udp *u, const struct sockaddr_storage *peer, socklen_t len, const char *why)
{
    char who[NP_ADDRSTRLEN];

    NP_COUNTERS(u->p)->refused++;
    if (np_now() - u->warned < 1.0) {
        u->unlogged++;
        return;
    }
    np_addr_format((const struct sockaddr *)peer, len, who, sizeof who);
    np_log(NP_NOTICE, "%s: refused udp %s: %s", u->p->name, who, why);
    u->warned = np_now();
}

/* accept(conn) hooks and the Lua conn object: 0, or -1 (the flow is closed). */
static int start_lua(struct flow *f, const char *client)
{
    lua_State *L = f->u->p->L;
    int base = lua_gettop(L), rc;
    struct np_budget saved;

    lua_rawgeti(L, LUA_REGISTRYINDEX, f->u->start_ref);
    lua_rawgeti(L, LUA_REGISTRYINDEX, f->u->p->lua_ref);
    lua_pushnumber(L, (lua_Number)f->id);
    lua_pushstring(L, client);
    push_handle(L, f);
    np_budget_begin(&saved, f->u->hook_budget, f->u->p->call_memory);   /* accept() as a hook */
    rc = np_lua_pcall(L, 4, 2, f->u->p->name);
    np_budget_end(&saved);
    if (rc < 0) {
        flow_close(f, NP_END_LUA_ERROR, "%s", "accept");
        return -1;
    }
    if (lua_isnil(L, -2)) {
        flow_close(f, NP_END_REFUSED, "%s", lua_tostring(L, -1) ? lua_tostring(L, -1) : "by accept()");
        lua_settop(L, base);
        return -1;
    }
    lua_pop(L, 1);
    f->conn_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_settop(L, base);
    return 0;
}

static struct flow *flow_new(struct usock *ls, const struct sockaddr_storage *peer, socklen_t len)
{
    struct np_udp *u = ls->serve;
    const char *why;
    char client[NP_ADDRSTRLEN];
    struct flow *f;

    if (!u) return NULL;
    if ((why = u->ops->admit(u->arg, u->p, (const struct sockaddr *)peer))) {
        refused(u, peer, len, why);
        return NULL;
    }
    if (u->max_flows && u->nflows >= u->max_flows) evict(u);
    if (!(f = calloc(1, sizeof *f))) goto no_memory;
    f->id = np_conn_new_id();
    f->u = u;
    f->ls = ls;
    f->peer = *peer;
    f->peerlen = len;
    f->fd = -1;
    f->row = -1;
    f->qtail = &f->queue;
    f->started = np_now();
    f->conn_ref = f->handle_ref = LUA_NOREF;
    if (insert(ls, f) < 0 || np_idle_join(&f->idle, u->idle_timeout > 0 ? u->idle_timeout : 1e9, on_idle) < 0) {
        unhash(f);
        free(f);
        goto no_memory;
    }
    lru_append(f);
    u->nflows++;
    NP_COUNTERS(u->p)->flows_opened++;
    NP_COUNTERS(u->p)->flows_active++;
    np_addr_format((const struct sockaddr *)peer, len, client, sizeof client);
    np_clog(NP_INFO, f->id, "%s: udp flow from %s", u->p->name, client);
    if (u->start_ref != LUA_NOREF && start_lua(f, client) < 0) return f;
    if (u->pooled) choose_server(f);
    else if (!u->host) snprintf(f->target, sizeof f->target, "service");
    else resolve(f, u->host, u->port);
    return f;
no_memory:
    u->ops->done(u->arg, u->p);
    np_log(NP_ERR, "%s: out of memory for a new udp flow", u->p->name);
    return NULL;
}

static void on_listen_readable(evutil_socket_t fd, short what, void *arg)
{
    struct usock *ls = arg;

    for (int i = 0; i < READS_PER_WAKEUP && ls->fd >= 0 && ls->reading; i++) {
        struct sockaddr_storage peer;
        socklen_t len = sizeof peer;
        ssize_t n = recvfrom(ls->fd, buf, MAX_DATAGRAM, 0, (struct sockaddr *)&peer, &len);
        struct flow *f;

        if (n < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR && errno != ECONNREFUSED)
                np_log(NP_ERR, "recvfrom on %s: %s", ls->addr, strerror(errno));
            if (errno == EINTR || errno == ECONNREFUSED) continue;
            return;
        }
        if (!(f = lookup(ls, &peer)) && !(f = flow_new(ls, &peer, len))) continue;
        if (f->end == NP_END_NONE) carry(f, 0, buf, (size_t)n);
    }
}

/* ---------------------------------------------------------------- sockets by address */

static void usock_disarm(struct usock *ls)
{
    if (ls->armed) event_del(&ls->ev);
    ls->armed = 0;
}

static void usock_arm(struct usock *ls)
{
    if (ls->fd < 0 || ls->armed) return;
    event_assign(&ls->ev, np_base, ls->fd, EV_READ | EV_PERSIST, on_listen_readable, ls);
    event_add(&ls->ev, NULL);
    ls->armed = 1;
}

/* "127.0.0.1:53" and "127.0.0.1:0" name the same host. */
static int same_host(const char *a, const char *b)
{
    const char *ca = strrchr(a, ':'), *cb = strrchr(b, ':');

    return ca && cb && ca - a == cb - b && !strncmp(a, b, (size_t)(ca - a));
}

/* The open socket for sa: by address; a port 0 is a new one, except the group a binary
 * upgrade passed for the same proxy (name) on the same host, which it takes over. */
static struct usock *usock_find(const char *want, const char *name)
{
    size_t n = strlen(want);
    int port0 = n >= 2 && !strcmp(want + n - 2, ":0");

    for (struct usock *ls = socks; ls; ls = ls->next) {
        if (ls->fd < 0) continue;
        if (!port0 && !strcmp(ls->addr, want)) return ls;
        if (port0 && ls->passed_by && !strcmp(ls->passed_by, name) && same_host(ls->addr, want)) {
            free(ls->passed_by);        /* taken: another port 0 of that proxy gets its own */
            ls->passed_by = NULL;
            return ls;
        }
    }
    return NULL;
}

static struct usock *usock_new(void)
{
    struct usock *ls = calloc(1, sizeof *ls);

    if (!ls) return NULL;
    ls->fd = -1;
    ls->refs = 1;
    ls->reading = 1;
    ls->next = socks;
    socks = ls;
    return ls;
}

static void usock_named(struct usock *ls)
{
    struct sockaddr_storage ss;
    socklen_t sslen = sizeof ss;

    ls->fd = ls->group.fds[0];
    if (getsockname(ls->fd, (struct sockaddr *)&ss, &sslen) == 0)
        np_addr_format((struct sockaddr *)&ss, sslen, ls->addr, sizeof ls->addr);
}

static void usock_put(struct usock *ls, int say);

/* The socket of sa for proxy name, shared (refs + 1) or bound, with its group grown to n
 * sockets and steering over n (the workers). NULL with a message in err. */
static struct usock *usock_get(const struct sockaddr *sa, socklen_t len, int n, const char *name,
                               char *err, size_t errlen)
{
    char want[NP_ADDRSTRLEN];
    struct usock *ls;

    np_addr_format(sa, len, want, sizeof want);
    if ((ls = usock_find(want, name))) {
        ls->refs++;
        if (np_udp_group_resize(&ls->group, n) == 0) return ls;
        snprintf(err, errlen, "cannot listen on udp %s with %d sockets: %s", ls->addr, n, strerror(errno));
        usock_put(ls, 0);
        return NULL;
    }
    if (!(ls = usock_new()) || np_udp_group_open(&ls->group, sa, len, n) < 0) {
        snprintf(err, errlen, "cannot listen on udp %s: %s", want, strerror(ls ? errno : ENOMEM));
        if (ls) usock_put(ls, 0);
        return NULL;
    }
    usock_named(ls);
    return ls;
}

static void usock_put(struct usock *ls, int say)
{
    if (--ls->refs > 0) return;
    if (say && ls->fd >= 0) np_log(NP_NOTICE, "no longer listening on udp %s", ls->addr);
    usock_disarm(ls);
    for (size_t i = 0; i < ls->nbuckets; i++)           /* flows cannot outlive their socket */
        while (ls->buckets[i]) flow_close(ls->buckets[i], NP_END_DRAINED, "%s", "no longer listening");
    np_udp_group_close(&ls->group);
    ls->fd = -1;
    for (struct usock **pp = &socks; *pp; pp = &(*pp)->next) {
        if (*pp == ls) {
            *pp = ls->next;
            break;
        }
    }
    free(ls->passed_by);
    free(ls->buckets);                  /* flows being reaped no longer look at it */
    free(ls);
}

/* ---------------------------------------------------------------- the hand-over (SIGUSR2) */

/* NETPROXY_UDP_FDS: "FD:INDEX:NAME,..." per socket, NAME the proxy's name in hex (any
 * byte may be in a name). */
char *np_udp_handover(void)
{
    size_t size = 1, used = 0;
    char *text;

    for (struct usock *ls = socks; ls; ls = ls->next) {
        const char *name = ls->serve ? ls->serve->p->name : "";
        size += (size_t)ls->group.n * (32 + 2 * strlen(name));
    }
    if (!(text = malloc(size))) return NULL;
    text[0] = '\0';
    for (struct usock *ls = socks; ls; ls = ls->next) {
        const char *name = ls->serve ? ls->serve->p->name : "";
        for (int i = 0; i < ls->group.n; i++) {
            if (ls->group.fds[i] < 0) continue;
            used += (size_t)snprintf(text + used, size - used, "%s%d:%d:", used ? "," : "", ls->group.fds[i], i);
            for (const unsigned char *c = (const unsigned char *)name; *c; c++)
                used += (size_t)snprintf(text + used, size - used, "%02x", *c);
        }
    }
    return text;
}

int np_udp_fds(int *fds, int max)
{
    int n = 0;

    for (struct usock *ls = socks; ls; ls = ls->next)
        for (int i = 0; i < ls->group.n; i++)
            if (ls->group.fds[i] >= 0 && n++ < max) fds[n - 1] = ls->group.fds[i];
    return n;
}

static char *unhex(const char *p, size_t n)
{
    char *name = malloc(n / 2 + 1);
    size_t i = 0;
    unsigned v;

    if (!name) return NULL;
    for (; 2 * i + 1 < n && sscanf(p + 2 * i, "%2x", &v) == 1; i++) name[i] = (char)v;
    name[i] = '\0';
    return name;
}

/* One passed socket joins the group of its address (made on its first socket). */
static void adopt_one(int fd, int index, const char *hexname, size_t hexlen)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    char addr[NP_ADDRSTRLEN];
    struct usock *ls;

    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    fcntl(fd, F_SETFD, FD_CLOEXEC);
    if (index < 0 || index > 1024 || getsockname(fd, (struct sockaddr *)&ss, &len) < 0) {
        np_log(NP_WARNING, "the previous binary passed a bad udp socket (fd %d, index %d): closed", fd, index);
        close(fd);
        return;
    }
    np_addr_format((struct sockaddr *)&ss, len, addr, sizeof addr);
    for (ls = socks; ls && !(ls->passed && !strcmp(ls->addr, addr)); ls = ls->next) {}
    if (!ls && (ls = usock_new())) {
        ls->passed = 1;
        ls->passed_by = unhex(hexname, hexlen);
        snprintf(ls->addr, sizeof ls->addr, "%s", addr);
    }
    if (!ls || np_udp_group_put(&ls->group, index, fd) < 0) {
        np_log(NP_ERR, "out of memory for a passed udp socket on %s: closed", addr);
        close(fd);
    }
}

int np_udp_adopt(void)
{
    const char *list = getenv("NETPROXY_UDP_FDS");
    int n = 0;

    if (!list) return 0;
    for (const char *p = list; *p; p += strcspn(p, ",") + (p[strcspn(p, ",")] == ',')) {
        int fd, index, at = 0;
        size_t end = strcspn(p, ",");
        if (sscanf(p, "%d:%d:%n", &fd, &index, &at) < 2 || at == 0 || (size_t)at > end) continue;
        adopt_one(fd, index, p + at, end - (size_t)at);
        n++;
    }
    unsetenv("NETPROXY_UDP_FDS");       /* not for the workers to see */
    for (struct usock *ls = socks, *next; ls; ls = next) {
        int holes = 0;
        next = ls->next;
        if (!ls->passed) continue;
        for (int i = 0; i < ls->group.n; i++) holes += ls->group.fds[i] < 0;
        if (holes || ls->group.n == 0) {    /* the kernel's order of the group is unknown */
            np_log(NP_WARNING, "the previous binary passed an incomplete udp group on %s: closed", ls->addr);
            ls->passed = 0;
            usock_put(ls, 0);
            continue;
        }
        usock_named(ls);
        np_log(NP_INFO, "the previous binary passed %d udp sockets on %s", ls->group.n, ls->addr);
    }
    return n;
}

void np_udp_adopted_done(void)
{
    for (struct usock *ls = socks, *next; ls; ls = next) {
        next = ls->next;
        if (!ls->passed) continue;
        ls->passed = 0;
        if (ls->refs == 1)
            np_log(NP_WARNING, "passed udp sockets on %s are ones no proxy listens on: closed", ls->addr);
        usock_put(ls, 0);
    }
}

/* ---------------------------------------------------------------- the proxy's side */

static int ref_field(lua_State *L, int t, const char *sub, const char *name)
{
    int ref = LUA_NOREF;

    lua_getfield(L, t, sub);
    if (lua_istable(L, -1)) {
        lua_getfield(L, -1, name);
        if (lua_isfunction(L, -1)) ref = luaL_ref(L, LUA_REGISTRYINDEX);
        else lua_pop(L, 1);
    }
    lua_pop(L, 1);
    return ref;
}

static int read_settings(struct np_udp *u, lua_State *L, char *err, size_t errlen)
{
    int t;
    const char *type, *host;

    lua_rawgeti(L, LUA_REGISTRYINDEX, u->p->lua_ref);
    t = lua_gettop(L);
    u->idle_timeout = np_lua_number(L, t, "udp_idle_timeout", 30);
    u->max_flows = (uint64_t)np_lua_number(L, t, "max_flows", 10000);
    u->hook_budget = np_lua_number(L, t, "hook_budget", 1);
    u->hook_ref[0] = ref_field(L, t, "from", "hook");
    u->hook_ref[1] = ref_field(L, t, "to", "hook");
    u->datagram_ref = ref_field(L, t, "to", "datagram");
    lua_getfield(L, t, "to");
    type = np_lua_string(L, -1, "type");
    host = np_lua_string(L, -1, "host");
    u->port = (int)np_lua_number(L, -1, "port", 0);
    lua_getfield(L, -1, "_pool");       /* servers: its host and port are only the first's */
    u->pooled = type && !strcmp(type, "udp") && !lua_isnil(L, -1);
    lua_pop(L, 1);
    if (type && !strcmp(type, "udp") && host && !u->pooled) u->host = strdup(host);
    lua_pop(L, 1);
    lua_getfield(L, t, "accept");
    lua_getfield(L, t, "server_accept");
    /* a pool's balance sees the flow's conn */
    int wants_lua = !lua_isnil(L, -1) || !lua_isnil(L, -2) || u->hook_ref[0] != LUA_NOREF ||
                    u->hook_ref[1] != LUA_NOREF || u->datagram_ref != LUA_NOREF || u->pooled;
    lua_settop(L, t - 1);
    if (!u->host && !u->pooled && u->datagram_ref == LUA_NOREF) {
        snprintf(err, errlen, "%s: a udp from wants to = { type = \"udp\", host =, port = } or a datagram service", u->p->name);
        return -1;
    }
    if (wants_lua) {
        lua_getglobal(L, "require");
        lua_pushliteral(L, "netproxy.udp");
        if (np_lua_pcall(L, 1, 1, "netproxy.udp") < 0) {
            snprintf(err, errlen, "cannot load netproxy.udp");
            return -1;
        }
        lua_getfield(L, -1, "start");
        u->start_ref = luaL_ref(L, LUA_REGISTRYINDEX);
        if (u->pooled) {
            lua_getfield(L, -1, "pick");
            u->pick_ref = luaL_ref(L, LUA_REGISTRYINDEX);
            lua_getfield(L, -1, "failed");
            u->failed_ref = luaL_ref(L, LUA_REGISTRYINDEX);
        }
        lua_pop(L, 1);
    }
    return 0;
}

static struct np_udp *udp_of(struct np_proxy *p, const struct np_udp_ops *ops, void *arg,
                             char *err, size_t errlen)
{
    struct np_udp *u = p->udp;

    if (u) return u;
    if (!(u = calloc(1, sizeof *u))) {
        snprintf(err, errlen, "%s: out of memory", p->name);
        return NULL;
    }
    u->p = p;
    u->ops = ops;
    u->arg = arg;
    u->hook_ref[0] = u->hook_ref[1] = u->datagram_ref = u->start_ref = LUA_NOREF;
    u->pick_ref = u->failed_ref = LUA_NOREF;
    p->udp = u;
    if (read_settings(u, p->L, err, errlen) < 0) return NULL;    /* freed by np_udp_release */
    if (!reaper_ready) {
        event_assign(&reaper, np_base, -1, 0, on_reap, NULL);
        reaper_ready = 1;
    }
    return u;
}

/* The first user of a socket in this process says so; n sockets when a group. */
static void say_listening(const struct np_proxy *p, const struct usock *ls)
{
    char what[64] = "";

    if (ls->refs != 1 + ls->passed) return;
    if (ls->passed) snprintf(what, sizeof what, ", %d socket%s passed by the previous binary", ls->group.n,
                             ls->group.n == 1 ? "" : "s");
    else if (ls->group.n > 1) snprintf(what, sizeof what, ", %d sockets", ls->group.n);
    np_log(NP_NOTICE, "%s: listening on %s (udp%s)", p->name, ls->addr, what);
}

int np_udp_bind(struct np_proxy *p, const char *host, int port, int workers,
                const struct np_udp_ops *ops, void *arg, char *err, size_t errlen)
{
    struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_DGRAM, .ai_flags = AI_PASSIVE };
    struct addrinfo *res, *ai;
    struct np_udp *u = udp_of(p, ops, arg, err, errlen);
    char service[16], why[256];
    /* a process that already reads its sockets and binds again is a single process
     * reloading (workers never load a config): one socket, whatever the config says */
    int n = started || workers < 1 ? 1 : workers, rc;

    if (!u) return -1;
    snprintf(service, sizeof service, "%d", port);
    if ((rc = getaddrinfo(host, service, &hints, &res)) != 0) {
        snprintf(err, errlen, "%s: cannot resolve listen host '%s': %s", p->name, host, gai_strerror(rc));
        return -1;
    }
    for (ai = res; ai; ai = ai->ai_next) {
        struct usock *ls = usock_get(ai->ai_addr, ai->ai_addrlen, n, p->name, why, sizeof why);
        struct usock **grown = ls ? realloc(u->socks, (u->nsocks + 1) * sizeof *grown) : NULL;
        if (!grown) {
            if (ls) usock_put(ls, 0);
            snprintf(err, errlen, "%s: %s", p->name, ls ? "out of memory" : why);
            freeaddrinfo(res);
            return -1;
        }
        u->socks = grown;
        u->socks[u->nsocks++] = ls;
        say_listening(p, ls);
    }
    freeaddrinfo(res);
    return 0;
}

void np_udp_serve(struct np_proxy *p)
{
    for (int i = 0; p->udp && i < p->udp->nsocks; i++) {
        struct usock *ls = p->udp->socks[i];
        ls->serve = p->udp;
        if (started && ls->reading) usock_arm(ls);     /* a single process's reload: a new address */
    }
}

void np_udp_release(struct np_proxy *p, int say)
{
    struct np_udp *u = p->udp;
    lua_State *L = p->L;

    if (!u) return;
    for (int i = 0; i < u->nsocks; i++) {
        if (u->socks[i]->serve == u) u->socks[i]->serve = NULL;
        usock_put(u->socks[i], say);
    }
    free(u->socks);
    u->socks = NULL;
    u->nsocks = 0;
    if (u->nflows) {            /* its flows run on; freed with the proxy's config */
        u->released = 1;
        return;
    }
    if (L) {
        unref(L, &u->hook_ref[0]);
        unref(L, &u->hook_ref[1]);
        unref(L, &u->datagram_ref);
        unref(L, &u->start_ref);
        unref(L, &u->pick_ref);
        unref(L, &u->failed_ref);
    }
    free(u->host);
    free(u);
    p->udp = NULL;
}

void np_udp_close_all(struct np_proxy *p, enum np_end how, const char *why)
{
    struct np_udp *u = p->udp;

    while (u && u->lru_head) flow_close(u->lru_head, how, "%s", why);
}

void np_udp_start(int index)
{
    started = 1;
    for (struct usock *ls = socks; ls; ls = ls->next) {
        ls->fd = np_udp_group_keep(&ls->group, index);
        usock_arm(ls);
    }
}

void np_udp_stop_reading(void)
{
    for (struct usock *ls = socks; ls; ls = ls->next) {
        usock_disarm(ls);
        ls->reading = 0;
    }
}

/* ---------------------------------------------------------------- Lua */

/* core.flow_send(handle, "client" | "server", datagram) -> true | nil, err: one datagram
 * toward that side of the flow, now. */
static int core_flow_send(lua_State *L)
{
    struct flow *f = from_handle(L, 1);
    static const char *const sides[] = { "server", "client", NULL };
    int dir = luaL_checkoption(L, 2, NULL, sides);
    size_t len;
    const char *data = luaL_checklstring(L, 3, &len);

    luaL_argcheck(L, len <= MAX_DATAGRAM - 28, 3, "longer than a UDP datagram");
    if (!f) {
        lua_pushnil(L);
        lua_pushliteral(L, "closed");
        return 2;
    }
    if (dir == 1) to_client(f, data, len);
    else if (f->u->datagram_ref != LUA_NOREF) return luaL_error(L, "flow_send: a service has no server");
    else to_server(f, data, len);
    lua_pushboolean(L, 1);
    return 1;
}

/* core.flow_close(handle): ends the flow (end=closed). */
static int core_flow_close(lua_State *L)
{
    struct flow *f = from_handle(L, 1);

    if (f) flow_close(f, NP_END_CLOSED, "%s", "by script");
    return 0;
}

void np_udp_open(lua_State *L)
{
    lua_pushcfunction(L, core_flow_send);
    lua_setfield(L, -2, "flow_send");
    lua_pushcfunction(L, core_flow_close);
    lua_setfield(L, -2, "flow_close");
}
