/* UDP flows: one per client address:port of a listening socket, and the life of each: its
 * connected socket towards the server (chosen by the `to`'s pool, when it has one), its
 * hooks, its end (one log line, counters); and core.flow_send/flow_close. Datagrams are
 * carried one by one, never merged or split; nothing is buffered except a bounded queue
 * while the server's name resolves and, in a pool, until the server's first reply (to send
 * again to the next server when this one refuses). */
#include "udp_impl.h"
#include "addr.h"
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
#include <lauxlib.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_DATAGRAM 65535
#define READS_PER_WAKEUP 64
#define MAX_QUEUED 16           /* datagrams held per flow: while resolving, in a pool until the first reply */

struct queued {
    struct queued *next;
    size_t len;
    int sent;                   /* counted as carried (a pool's failover sends it again) */
    char data[];
};

static char buf[MAX_DATAGRAM + 1];

/* ---------------------------------------------------------------- Lua handles */

static struct np_flow *flow_of(struct np_ended *e)
{
    return (struct np_flow *)((char *)e - offsetof(struct np_flow, ended));
}

/* The flow a handle names, while it runs; NULL once it has ended. */
static struct np_flow *from_handle(lua_State *L, int idx)
{
    struct np_ended *e = np_ended_from_handle(L, idx, NP_ENDED_FLOW);

    return e && e->end == NP_END_NONE ? flow_of(e) : NULL;
}

/* ---------------------------------------------------------------- the end of a flow */

/* Its log line (it was counted when it ended). */
static void log_end(struct np_flow *f)
{
    struct np_udp *u = f->u;
    char client[NP_ADDRSTRLEN];

    np_addr_format((struct sockaddr *)&f->peer, f->peerlen, client, sizeof client);
    np_clog(NP_NOTICE, f->ended.id, "%s: udp %s -> %s%s%s%s%s%s%s in=%llu out=%llu datagrams_in=%llu datagrams_out=%llu dropped=%llu " NP_ENDED_LOG_TAIL,
            u->p->name, client, f->target[0] ? f->target : "-", f->failed ? " failed=" : "", f->failed ? f->failed : "",
            f->sni ? " sni=" : "", f->sni ? f->sni : "", f->alpn ? " alpn=" : "", f->alpn ? f->alpn : "",
            (unsigned long long)f->bytes[0], (unsigned long long)f->bytes[1],
            (unsigned long long)f->dgrams[0], (unsigned long long)f->dgrams[1],
            (unsigned long long)f->dropped, NP_ENDED_LOG_ARGS(&f->ended));
}

static void free_queue(struct np_flow *f)
{
    while (f->queue) {
        struct queued *q = f->queue;
        f->queue = q->next;
        free(q);
    }
    f->qtail = &f->queue;
    f->nqueued = 0;
}

/* Tears an ended flow down, from the reaper (its handle is cleared already). */
static void flow_free(struct np_ended *e)
{
    struct np_flow *f = flow_of(e);
    struct np_udp *u = f->u;
    lua_State *L = u->p->L;

    if (f->resolving) np_resolve_cancel(f->resolving);
    if (f->fd >= 0) {
        event_del(&f->ev);
        close(f->fd);
    }
    np_flow_probe_end(f);
    free_queue(f);
    if (f->row >= 0) {                  /* its server was not refused: reached, as far as UDP tells */
        if (!f->counted) np_pool_count(f->row);
        np_pool_release(f->row);
    }
    np_lua_unref(L, &f->conn_ref);
    log_end(f);
    u->nflows--;
    u->ops->done(u->arg, u->p);         /* may free u's config: nothing of u after this */
    free(f->ended.detail);
    free(f->server_host);
    free(f->failed);
    free(f->sni);
    free(f->alpn);
    free(f);
}

/* The one way a flow ends: it leaves the table at once (the client's next datagram starts
 * a new flow), and the reaper frees it once the running callback has returned. */
void np_flow_close(struct np_flow *f, enum np_end how, const char *fmt, ...)
{
    va_list ap;
    int first;

    va_start(ap, fmt);
    first = np_ended_mark(&f->ended, how, fmt, ap);
    va_end(ap);
    if (!first) return;
    np_flow_unhash(f);
    np_flow_lru_unlink(f);
    np_idle_leave(&f->idle);
    if (f->fd >= 0) event_del(&f->ev);
}

static void on_idle(struct np_idle *m)
{
    struct np_flow *f = (struct np_flow *)((char *)m - offsetof(struct np_flow, idle));

    np_flow_close(f, NP_END_IDLE_TIMEOUT, "%gs", f->u->idle_timeout);
}

/* ---------------------------------------------------------------- carrying datagrams */

static void to_client(struct np_flow *f, const char *data, size_t len)
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

static void sent_to_server(struct np_flow *f, size_t len)
{
    f->dgrams[0]++;
    f->bytes[0] += len;
    NP_COUNTERS(f->u->p)->datagrams_in++;
    NP_COUNTERS(f->u->p)->bytes_in += len;
}

static void drop(struct np_flow *f)
{
    f->dropped++;
    NP_COUNTERS(f->u->p)->datagrams_dropped++;
}

/* Runs fn(data, conn) under the hook budget: -1 (the flow is closed), 0 keep, 1 replaced
 * by *out (np_hook_done after use; an empty one drops). */
static int call_lua(struct np_flow *f, int fn_ref, const char *data, size_t len,
                    const char **out, size_t *outlen)
{
    char err[256];
    lua_State *L = f->u->p->L;
    int rc = np_hook_call(L, fn_ref, f->conn_ref, data, len, 0, &f->u->p->limits, out, outlen,
                          err, sizeof err);

    if (rc < 0) {
        np_clog(NP_ERR, f->ended.id, "%s: hook: %s", f->u->p->name, err);
        np_flow_close(f, NP_END_LUA_ERROR, "%s", err);
        return -1;
    }
    if (f->ended.end != NP_END_NONE) {        /* conn:close() from Lua */
        if (rc == 1) np_hook_done(L);
        return -1;
    }
    return rc;
}

/* A pool flow keeps what it sends until its server first replies: a server that refuses
 * (ICMP port unreachable) before that is replaced, and the next one gets the same
 * datagrams. */
static int holding(const struct np_flow *f)
{
    return f->pooled && !f->replied;
}

/* Keeps a copy of a datagram at the end of the flow's queue; NULL when it is full
 * (MAX_QUEUED) or memory is short. */
static struct queued *hold(struct np_flow *f, const char *data, size_t len)
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
static int put(struct np_flow *f, const char *data, size_t len)
{
    if (send(f->fd, data, len, 0) >= 0) return 1;
    if (errno != ECONNREFUSED) return 0;
    if (holding(f)) return -1;
    return send(f->fd, data, len, 0) >= 0;
}

static void server_failed(struct np_flow *f, const char *why);

/* Sends a held datagram; it is counted the first time it goes. */
static void put_held(struct np_flow *f, struct queued *q)
{
    int rc = put(f, q->data, q->len);

    if (rc > 0 && !q->sent) sent_to_server(f, q->len);
    if (rc > 0) q->sent = 1;
    else if (rc < 0) server_failed(f, "refused");       /* q goes to the next server */
    else if (!q->sent) drop(f);
}

static void to_server(struct np_flow *f, const char *data, size_t len)
{
    struct queued *q;
    int rc;

    if (f->probe) {                     /* held until its ClientHello is read */
        int held = hold(f, data, len) != NULL;
        np_flow_probe(f, data, len, held);
        if (held || f->ended.end != NP_END_NONE) return;
    }                                   /* (not held: it goes after those that were) */
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
static void carry(struct np_flow *f, int dir, const char *data, size_t len)
{
    const char *out = data;
    size_t outlen = len;
    int rc = 0;

    np_flow_touch(f);
    if (f->u->hook_ref[dir] != LUA_NOREF &&
        (rc = call_lua(f, f->u->hook_ref[dir], data, len, &out, &outlen)) < 0)
        return;
    if (rc == 0 || outlen > 0) {        /* "" from a hook drops; an empty datagram goes */
        if (dir == 0) to_server(f, out, outlen);
        else if (f->ended.end == NP_END_NONE) to_client(f, out, outlen);
    }
    if (rc == 1) np_hook_done(f->u->p->L);
}

/* The server's first reply: it is reached (counted), and what was held for a failover goes. */
static void first_reply(struct np_flow *f)
{
    f->replied = 1;
    free_queue(f);
    if (f->row >= 0 && !f->counted) np_pool_count(f->row);
    f->counted = 1;
}

static void on_server_readable(evutil_socket_t fd, short what, void *arg)
{
    struct np_flow *f = arg;

    for (int i = 0; i < READS_PER_WAKEUP && f->ended.end == NP_END_NONE; i++) {
        ssize_t n = recv(f->fd, buf, MAX_DATAGRAM, MSG_TRUNC);
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) return;
            if (errno == ECONNREFUSED && holding(f)) {   /* before any reply: the next server */
                server_failed(f, "refused");
                return;
            }
            if (errno == ECONNREFUSED || errno == EINTR) continue;  /* ICMP: the idle timeout decides */
            np_flow_close(f, NP_END_SERVER_ERROR, "recv: %s", strerror(errno));
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
static void flush_queue(struct np_flow *f)
{
    unsigned attempt = f->attempt;

    for (struct queued *q = f->queue, *next; q && f->ended.end == NP_END_NONE && f->attempt == attempt; q = next) {
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

static void connected(struct np_flow *f, const struct sockaddr *sa, socklen_t len)
{
    int fd = socket(sa->sa_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), e;

    if (!f->pooled) np_addr_format(sa, len, f->target, sizeof f->target);  /* a pool's: the server's name */
    if (fd < 0) {
        np_flow_close(f, NP_END_CONNECT_FAILED, "%s", strerror(errno));
        return;
    }
    if (connect(fd, sa, len) < 0) {
        e = errno;
        close(fd);
        if (f->pooled) server_failed(f, strerror(e));
        else np_flow_close(f, NP_END_CONNECT_FAILED, "%s", strerror(e));
        return;
    }
    f->fd = fd;
    event_assign(&f->ev, np_base, fd, EV_READ | EV_PERSIST, on_server_readable, f);
    event_add(&f->ev, NULL);
    flush_queue(f);
}

static void on_resolved(int err, struct evutil_addrinfo *res, void *arg)
{
    struct np_flow *f = arg;

    f->resolving = NULL;
    if (f->ended.end != NP_END_NONE) {
        if (res) evutil_freeaddrinfo(res);
        return;
    }
    if (err || !res) {
        const char *why = evutil_gai_strerror(err);
        if (res) evutil_freeaddrinfo(res);
        if (f->pooled) {
            server_failed(f, why);
            return;
        }
        snprintf(f->target, sizeof f->target, "%s:%d", f->server_host, f->server_port);
        np_flow_close(f, NP_END_CONNECT_FAILED, "%s: %s", f->server_host, why);
        return;
    }
    connected(f, res->ai_addr, (socklen_t)res->ai_addrlen);
    evutil_freeaddrinfo(res);
}

/* Resolves the flow's server. The answer may come before this returns (an IP literal) and
 * start a failover whose own lookup is then the one pending: only a pending lookup is kept. */
static void resolve(struct np_flow *f, const char *host, int port)
{
    struct np_resolve *r = np_resolve_start(host, port, on_resolved, f);

    if (r) f->resolving = r;
}

/* The flow's one server (not a pool's): kept for the log of a name that does not resolve. */
static void resolve_server(struct np_flow *f, const char *host, int port)
{
    free(f->server_host);
    if (!(f->server_host = strdup(host))) {
        np_flow_close(f, NP_END_NO_MEMORY, "%s", "the server's name");
        return;
    }
    f->server_port = port;
    resolve(f, f->server_host, port);
}

/* ---------------------------------------------------------------- a pool's choice */

/* Calls netproxy.udp's fn(conn, ...) (nargs pushed after fn) under the hook budget, with
 * nresults. 0, or -1 (the flow is closed: a Lua error). */
static int call_pool(struct np_flow *f, int nargs, int nresults)
{
    char err[512];

    if (np_call(f->u->p->L, nargs + 1, nresults, &f->u->p->limits, err, sizeof err) == 0) return 0;
    np_clog(NP_ERR, f->ended.id, "%s: %s", f->u->p->name, err);
    np_flow_close(f, NP_END_LUA_ERROR, "%s", "balance");
    return -1;
}

/* The pool chooses the flow's server (netproxy.udp.pick: the balance, the servers up, those
 * this flow tried), which is resolved next. None: the flow ends at once. */
static void choose_server(struct np_flow *f)
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
        if (!f->failed) np_clog(NP_WARNING, f->ended.id, "%s: no server: %s", u->p->name, why);
        np_flow_close(f, NP_END_CONNECT_FAILED, "no server: %s", why);
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
        np_flow_close(f, NP_END_NO_MEMORY, "%s", "the server's name");
        return;
    }
    resolve(f, f->server_host, f->server_port);
}

/* The flow's server refused (or its name did not resolve, or it cannot be reached) before
 * replying: a failure in its row (max_fails within fail_timeout mark it down), and the flow
 * goes on with the next server, if the pool has one left to try. */
static void server_failed(struct np_flow *f, const char *why)
{
    lua_State *L = f->u->p->L;
    int base = lua_gettop(L);

    lua_rawgeti(L, LUA_REGISTRYINDEX, f->u->failed_ref);
    lua_rawgeti(L, LUA_REGISTRYINDEX, f->conn_ref);
    lua_pushstring(L, why);
    if (call_pool(f, 1, 1) < 0) return;
    if (lua_isstring(L, -1)) np_clog(NP_WARNING, f->ended.id, "%s: %s", f->u->p->name, lua_tostring(L, -1));
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

/* A probing flow's server is picked (udp_probe.c): it goes there, or ends. */
static void routed(struct np_flow *f, const struct np_flow_route *r)
{
    if (f->ended.end != NP_END_NONE) return;
    if (r->how != NP_END_NONE) {
        snprintf(f->target, sizeof f->target, "none");
        np_flow_close(f, r->how, "%s", r->why);
    } else if (r->pooled) {
        f->pooled = 1;
        choose_server(f);
    } else {
        resolve_server(f, r->host, r->port);
    }
}

/* ---------------------------------------------------------------- a new flow */

/* Past max_flows the longest idle flow goes; warned at most once a second. */
static void evict(struct np_udp *u)
{
    struct np_flow *f = u->lru_head;

    if (!f) return;
    NP_COUNTERS(u->p)->flows_evicted++;
    np_flow_close(f, NP_END_EVICTED, "max_flows %llu", (unsigned long long)u->max_flows);
    if (np_now() - u->warned < 1.0) {
        u->unlogged++;
        return;
    }
    np_log(NP_WARNING, "%s: max_flows (%llu) reached: the longest idle flow goes (and %llu more since the last such line)",
           u->p->name, (unsigned long long)u->max_flows, (unsigned long long)u->unlogged);
    u->warned = np_now();
    u->unlogged = 0;
}

static void refuse_flow(struct np_udp *u, const struct sockaddr_storage *peer, socklen_t len, const char *why)
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
static int start_lua(struct np_flow *f, const char *client)
{
    lua_State *L = f->u->p->L;
    int base = lua_gettop(L);
    char err[512];

    lua_rawgeti(L, LUA_REGISTRYINDEX, f->u->start_ref);
    lua_rawgeti(L, LUA_REGISTRYINDEX, f->u->p->lua_ref);
    lua_pushnumber(L, (lua_Number)f->ended.id);
    lua_pushstring(L, client);
    np_ended_push_handle(L, &f->ended);
    if (np_call(L, 4, 2, &f->u->p->limits, err, sizeof err) < 0) {   /* accept() as a hook */
        np_clog(NP_ERR, f->ended.id, "%s: %s", f->u->p->name, err);
        np_flow_close(f, NP_END_LUA_ERROR, "%s", "accept");
        return -1;
    }
    if (lua_isnil(L, -2)) {
        np_flow_close(f, NP_END_REFUSED, "%s", lua_tostring(L, -1) ? lua_tostring(L, -1) : "by accept()");
        lua_settop(L, base);
        return -1;
    }
    lua_pop(L, 1);
    f->conn_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_settop(L, base);
    return 0;
}

static struct np_flow *flow_new(struct np_usock *ls, const struct sockaddr_storage *peer, socklen_t len)
{
    struct np_udp *u = ls->serve;
    const char *why;
    char client[NP_ADDRSTRLEN];
    struct np_flow *f;

    if (!u) return NULL;
    if ((why = u->ops->admit(u->arg, u->p, (const struct sockaddr *)peer))) {
        refuse_flow(u, peer, len, why);
        return NULL;
    }
    if (u->max_flows && u->nflows >= u->max_flows) evict(u);
    if (!(f = calloc(1, sizeof *f))) goto no_memory;
    f->u = u;
    f->ls = ls;
    f->peer = *peer;
    f->peerlen = len;
    f->fd = -1;
    f->row = -1;
    f->qtail = &f->queue;
    f->conn_ref = LUA_NOREF;
    f->pooled = u->pooled;
    if (np_flow_insert(ls, f) < 0 || np_idle_join(&f->idle, u->idle_timeout > 0 ? u->idle_timeout : 1e9, on_idle) < 0) {
        np_flow_unhash(f);
        free(f);
        goto no_memory;
    }
    np_flow_lru_append(f);
    u->nflows++;
    np_ended_begin(&f->ended, NP_ENDED_FLOW, u->p->row, u->p->L, flow_free);
    np_addr_format((const struct sockaddr *)peer, len, client, sizeof client);
    np_clog(NP_INFO, f->ended.id, "%s: udp flow from %s", u->p->name, client);
    if (u->start_ref != LUA_NOREF && start_lua(f, client) < 0) return f;
    if (u->quic) {                      /* the server is picked once the ClientHello is read */
        if (np_flow_probe_start(f, routed) < 0) np_flow_close(f, NP_END_NO_MEMORY, "%s", "probing");
    } else if (u->pooled) choose_server(f);
    else if (!u->host) snprintf(f->target, sizeof f->target, "service");
    else resolve_server(f, u->host, u->port);
    return f;
no_memory:
    u->ops->done(u->arg, u->p);
    np_log(NP_ERR, "%s: out of memory for a new udp flow", u->p->name);
    return NULL;
}

void np_udp_on_readable(evutil_socket_t fd, short what, void *arg)
{
    struct np_usock *ls = arg;

    for (int i = 0; i < READS_PER_WAKEUP && ls->fd >= 0 && ls->reading; i++) {
        struct sockaddr_storage peer;
        socklen_t len = sizeof peer;
        ssize_t n = recvfrom(ls->fd, buf, MAX_DATAGRAM, 0, (struct sockaddr *)&peer, &len);
        struct np_flow *f;

        if (n < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR && errno != ECONNREFUSED)
                np_log(NP_ERR, "recvfrom on %s: %s", ls->addr, strerror(errno));
            if (errno == EINTR || errno == ECONNREFUSED) continue;
            return;
        }
        if (!(f = np_flow_lookup(ls, &peer)) && !(f = flow_new(ls, &peer, len))) continue;
        if (f->ended.end == NP_END_NONE) carry(f, 0, buf, (size_t)n);
    }
}

/* ---------------------------------------------------------------- Lua */

/* core.flow_send(handle, "client" | "server", datagram) -> true | nil, err: one datagram
 * toward that side of the flow, now. */
static int core_flow_send(lua_State *L)
{
    struct np_flow *f = from_handle(L, 1);
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
    struct np_flow *f = from_handle(L, 1);

    if (f) np_flow_close(f, NP_END_CLOSED, "%s", "by script");
    return 0;
}

void np_udp_open(lua_State *L)
{
    lua_pushcfunction(L, core_flow_send);
    lua_setfield(L, -2, "flow_send");
    lua_pushcfunction(L, core_flow_close);
    lua_setfield(L, -2, "flow_close");
}
