/* A client connection, owned here from accept to free: the session task runs the
 * connectors, then the relay owns the sockets; every end is marked by np_conn_close and
 * carried out by the reaper, after the callback that decided it has returned. */
#include "conn.h"
#include "defer.h"
#include "dial.h"
#include "errtoken.h"
#include "hook.h"
#include "idle.h"
#include "log.h"
#include "loop.h"
#include "luavm.h"
#include "pool.h"
#include "proxy.h"
#include "relay.h"
#include "sock.h"
#include "task.h"

#include <event2/buffer.h>
#include <errno.h>
#include <event2/event.h>
#include <lauxlib.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define HANDLE_MT "netproxy.conn_handle"

/* What a connection holds only while its connectors negotiate: their coroutine, or, for
 * a routed proxy (proxy.h), the connect the core makes itself and the client's socket;
 * for a sniffing one, also the bytes it has read to choose the route by. */
struct session {
    struct np_task task;
    struct event deadline;      /* negotiation timeout */
    int routed;
    struct np_dial dial;
    int client_fd[2];           /* read, write; -1 once the relay has them */
    int sniffing;               /* wait is assigned */
    struct event wait;          /* for the client's bytes, until its deadline */
    double heard;               /* when its first bytes came; 0: silent so far */
    char *ahead;                /* what was read, for the server first */
    size_t ahead_len;
};

struct np_conn {
    uint64_t id;
    struct np_proxy *proxy;
    struct session *session;    /* while the connectors negotiate */
    struct np_deferred session_over;    /* lets the session go once it has returned */
    struct np_relay *relay;     /* once they are done */
    const struct np_route *route;       /* the server conn.c reaches itself (proxy.h), if any */
    enum np_end end;            /* NP_END_NONE while it runs */
    char *detail;               /* of the end, for its log line */
    int negotiating;            /* counted in proxy->negotiating until the relay or the end */
    double started;
    uint64_t bytes[2];          /* client->server, server->client */
    char *client;               /* as the log line names them */
    char *target;
    int pool_row;               /* the pool server it holds (active count), or -1 */
    int handle_ref;             /* registry anchor of the Lua handle */
    int hook_ref[2], hook_conn_ref;
    int closed_ref;             /* np_conn_when_closed's function, or LUA_NOREF */
    struct np_idle idle;        /* a served connection's idle_timeout */
    struct event *total;        /* its total_timeout, when the proxy sets one */
    double hook_budget;
    np_conn_done_fn *done;
    void *done_arg;
    void (*attached)(void *arg);        /* released with the connection (a UDP association) */
    void *attached_arg;
    struct np_conn *next_reaped;
    struct np_conn *next, **pprev;  /* in proxy->conns */
};

/* What Lua holds to name a connection: cleared when the connection is freed, so a stale
 * handle can never reach freed memory. */
struct handle {
    struct np_conn *conn;
};

static uint64_t next_id = 1;
static struct np_conn *in_hook;         /* the connection whose hook is running */
static struct np_conn *reaped;          /* ended, waiting for the reaper */
static struct event reaper;
static int reaper_ready;

static const struct np_task_ops session_ops;
static void negotiated(struct np_conn *c);
static void start_routed(struct np_conn *c, int rfd, int wfd);
static void start_sniffing(struct np_conn *c, int rfd, int wfd);

/* ---------------------------------------------------------------- who is running */

struct np_conn *np_conn_current(void)
{
    struct np_task *t = np_task_running();

    if (in_hook) return in_hook;
    return t && t->ops == &session_ops ? t->arg : NULL;
}

uint64_t np_conn_id(const struct np_conn *c) { return c->id; }
uint64_t np_conn_new_id(void) { return next_id++; }
lua_State *np_conn_lua(const struct np_conn *c) { return c->proxy->L; }

void np_conn_attach(struct np_conn *c, void (*release)(void *arg), void *arg)
{
    c->attached = release;
    c->attached_arg = arg;
    negotiated(c);
    if (c->session) event_del(&c->session->deadline);
}
const char *np_conn_proxy_name(const struct np_conn *c) { return c->proxy->name; }
int np_conn_ended(const struct np_conn *c) { return c->end != NP_END_NONE; }

lua_State *np_conn_session(const struct np_conn *c)
{
    return c->end == NP_END_NONE && c->session ? c->session->task.owner.co : NULL;
}

/* *field becomes a copy of text (kept as it was when out of memory). */
static void set_text(char **field, const char *text)
{
    char *copy = strdup(text);

    if (!copy) return;
    free(*field);
    *field = copy;
}

void np_conn_hold_pool_row(struct np_conn *c, int row)
{
    if (c->pool_row >= 0) np_pool_release(c->pool_row);
    c->pool_row = row;
    np_pool_acquire(row);
}

void np_conn_set_target(struct np_conn *c, const char *text)
{
    set_text(&c->target, text);
}

void np_conn_set_client(struct np_conn *c, const char *text)
{
    set_text(&c->client, text);
}

/* ---------------------------------------------------------------- Lua handles */

static void push_handle(lua_State *L, struct np_conn *c)
{
    struct handle *h = lua_newuserdata(L, sizeof *h);

    h->conn = c;
    if (luaL_newmetatable(L, HANDLE_MT)) {
        lua_pushliteral(L, "netproxy connection");
        lua_setfield(L, -2, "__metatable");
    }
    lua_setmetatable(L, -2);
    lua_pushvalue(L, -1);
    c->handle_ref = luaL_ref(L, LUA_REGISTRYINDEX);
}

struct np_conn *np_conn_from_handle(lua_State *L, int idx)
{
    return ((struct handle *)luaL_checkudata(L, idx, HANDLE_MT))->conn;
}

/* ---------------------------------------------------------------- the end */

static void negotiated(struct np_conn *c)
{
    if (!c->negotiating) return;
    c->negotiating = 0;
    c->proxy->negotiating--;
}


/* What the log line names as the target: set by the session, or fixed by the route. */
static const char *target_of(const struct np_conn *c)
{
    if (c->target) return c->target;
    return c->route ? c->route->label : NULL;
}

static void count_and_log(struct np_conn *c)
{
    struct np_proxy *p = c->proxy;
    struct np_counters *n = NP_COUNTERS(p);

    n->closed++;
    n->active--;
    switch (np_end_class(c->end)) {
    case NP_END_REFUSAL: n->refused++; break;
    case NP_END_FAILURE: n->errors++; break;
    case NP_END_CLEAN: break;
    }
    np_clog(NP_NOTICE, c->id, "%s: %s -> %s in=%llu out=%llu time=%.3fs end=%s%s%s", p->name,
            c->client ? c->client : "?", target_of(c) ? target_of(c) : "-", (unsigned long long)c->bytes[0],
            (unsigned long long)c->bytes[1], np_clock() - c->started, np_end_name(c->end),
            c->detail && c->detail[0] ? ": " : "", c->detail ? c->detail : "");
}

/* The session is over (or the connection): its coroutine, cosockets and deadline go. */
static void session_free(struct np_conn *c)
{
    struct session *s = c->session;

    if (!s) return;
    if (s->routed) {
        np_dial_cancel(&s->dial);
        if (s->sniffing) {
            event_del(&s->wait);
            event_del(&s->deadline);
        }
        free(s->ahead);
        if (s->client_fd[1] != s->client_fd[0] && s->client_fd[1] >= 0) close(s->client_fd[1]);
        if (s->client_fd[0] >= 0) close(s->client_fd[0]);
    } else {
        event_del(&s->deadline);
        np_task_release(&s->task);
    }
    free(s);
    c->session = NULL;
    np_defer_cancel(&c->session_over);
}

static void on_session_over(struct np_deferred *d)
{
    session_free((struct np_conn *)((char *)d - offsetof(struct np_conn, session_over)));
}

/* np_conn_when_closed's function, told how it went, under the proxy's call budget. */
static void tell_closed(struct np_conn *c)
{
    lua_State *L = c->proxy->L;
    char err[512];

    if (c->closed_ref == LUA_NOREF) return;
    lua_rawgeti(L, LUA_REGISTRYINDEX, c->closed_ref);
    lua_createtable(L, 0, 6);
    lua_pushnumber(L, (lua_Number)c->bytes[0]);
    lua_setfield(L, -2, "bytes_in");
    lua_pushnumber(L, (lua_Number)c->bytes[1]);
    lua_setfield(L, -2, "bytes_out");
    lua_pushnumber(L, np_clock() - c->started);
    lua_setfield(L, -2, "duration");
    lua_pushstring(L, np_end_name(c->end));
    lua_setfield(L, -2, "reason");
    lua_pushstring(L, c->detail ? c->detail : "");
    lua_setfield(L, -2, "detail");
    if (target_of(c)) {
        lua_pushstring(L, target_of(c));
        lua_setfield(L, -2, "server");
    }
    if (np_hook_pcall(L, 1, 0, c->proxy->budget, c->proxy->call_memory, err, sizeof err) < 0)
        np_clog(NP_ERR, c->id, "%s: on_close: %s", c->proxy->name, err);
    np_lua_unref(L, &c->closed_ref);
}

/* Tears an ended connection down; nothing of it is on the C stack any more. */
static void conn_free(struct np_conn *c)
{
    lua_State *L = c->proxy->L;

    if (c->attached) c->attached(c->attached_arg);
    session_free(c);
    np_idle_leave(&c->idle);
    if (c->total) event_free(c->total);
    if (c->relay) np_relay_free(c->relay);
    np_lua_unref(L, &c->hook_ref[0]);
    np_lua_unref(L, &c->hook_ref[1]);
    np_lua_unref(L, &c->hook_conn_ref);
    if (c->handle_ref != LUA_NOREF) {
        lua_rawgeti(L, LUA_REGISTRYINDEX, c->handle_ref);
        ((struct handle *)lua_touserdata(L, -1))->conn = NULL;
        lua_pop(L, 1);
        np_lua_unref(L, &c->handle_ref);
    }
    count_and_log(c);
    tell_closed(c);
    if (c->pool_row >= 0) np_pool_release(c->pool_row);
    if (c->next) c->next->pprev = c->pprev;
    *c->pprev = c->next;
    if (c->done) c->done(c->done_arg, c);
    free(c->client);
    free(c->target);
    free(c->detail);
    free(c);
}

static void on_reap(evutil_socket_t fd, short what, void *arg)
{
    while (reaped) {
        struct np_conn *c = reaped;
        reaped = c->next_reaped;
        conn_free(c);
    }
}

void np_conn_close(struct np_conn *c, enum np_end how, const char *fmt, ...)
{
    va_list ap;

    if (c->end != NP_END_NONE) return;
    c->end = how == NP_END_NONE ? NP_END_CLOSED : how;
    va_start(ap, fmt);
    if (!strcmp(fmt, "%s")) {           /* the common case, often empty: no formatting */
        const char *detail = va_arg(ap, const char *);
        c->detail = detail && detail[0] ? strdup(detail) : NULL;
    } else if (vasprintf(&c->detail, fmt, ap) < 0) {
        c->detail = NULL;
    }
    va_end(ap);
    negotiated(c);
    if (c->session && c->session->routed) {
        np_dial_cancel(&c->session->dial);
        if (c->session->sniffing) event_del(&c->session->wait);
    } else if (c->session) {
        event_del(&c->session->deadline);
        np_task_halt(&c->session->task);
    }
    if (c->relay) np_relay_halt(c->relay);
    c->next_reaped = reaped;
    reaped = c;
    event_active(&reaper, EV_TIMEOUT, 0);
}

void np_conn_close_all(struct np_proxy *p, enum np_end how, const char *detail)
{
    for (struct np_conn *c = p->conns; c; c = c->next) np_conn_close(c, how, "%s", detail);
}

/* ---------------------------------------------------------------- the session */

static void on_deadline(evutil_socket_t fd, short what, void *arg)
{
    np_conn_close(arg, NP_END_NEGOTIATION_TIMEOUT, "%s", "");
}

/* The session returned: relayed (nothing to do but let the coroutine go), or ended without
 * a relay, saying how: ("refused" | "connect failed" | "closed" ..., detail). */
static void session_returned(struct np_conn *c, lua_State *co, int nresults)
{
    const char *name = nresults >= 1 ? lua_tostring(co, -nresults) : NULL;
    const char *detail = nresults >= 2 ? lua_tostring(co, 1 - nresults) : NULL;
    enum np_end how = name ? np_end_parse(name) : NP_END_NONE;

    if (c->relay && !name) {                /* its coroutine has returned: let it go */
        np_task_halt(&c->session->task);
        np_defer(&c->session_over, on_session_over);
        return;
    }
    if (name && how == NP_END_NONE) {
        np_clog(NP_ERR, c->id, "%s: the session ended with an unknown reason '%s'", c->proxy->name, name);
        how = NP_END_LUA_ERROR;
    }
    if (!name) np_conn_close(c, NP_END_CLOSED, "%s", "by the connector");
    else np_conn_close(c, how, "%s", detail ? detail : "");
}

static void session_failed(struct np_conn *c, lua_State *co)
{
    const char *msg = lua_tostring(co, -1);
    lua_State *L = c->proxy->L;

    np_clog(NP_ERR, c->id, "%s: lua error: %s", c->proxy->name, msg);
    if (np_log_level >= NP_DEBUG) {     /* the traceback, kept on one line */
        luaL_traceback(L, co, NULL, 0);
        luaL_gsub(L, lua_tostring(L, -1), "\n\t", " | ");
        np_clog(NP_DEBUG, c->id, "%s: %s", c->proxy->name, lua_tostring(L, -1));
        lua_pop(L, 2);
    }
    np_conn_close(c, NP_END_LUA_ERROR, "%s", msg);
}

static void session_finished(struct np_task *t, int ok, int nresults)
{
    struct np_conn *c = t->arg;

    if (ok) session_returned(c, t->owner.co, nresults);
    else session_failed(c, t->owner.co);
}

static const struct np_task_ops session_ops = { .finished = session_finished };

static void on_total_timeout(evutil_socket_t fd, short what, void *arg)
{
    struct np_conn *c = arg;

    np_conn_close(c, NP_END_TOTAL_TIMEOUT, "%gs", c->proxy->total_timeout);
}

/* total_timeout: one timer from accept to the end, on libevent's common queue for its
 * length (every connection of the proxy has the same), so adding one costs no heap work.
 * Without the memory for it the connection goes on unbounded, which is said. */
static void arm_total_timeout(struct np_conn *c)
{
    struct timeval tv = np_tv(c->proxy->total_timeout);
    const struct timeval *common = event_base_init_common_timeout(np_base, &tv);

    c->total = evtimer_new(np_base, on_total_timeout, c);
    if (!c->total) {
        np_clog(NP_WARNING, c->id, "%s: out of memory for total_timeout's timer: not bounded", c->proxy->name);
        return;
    }
    evtimer_add(c->total, common ? common : &tv);
}

static void init_reaper(void)
{
    if (reaper_ready) return;
    event_assign(&reaper, np_base, -1, 0, on_reap, NULL);
    reaper_ready = 1;
}

/* A new connection, counted and logged; NULL (the fds closed, done told) when out of memory. */
static struct np_conn *conn_new(struct np_proxy *p, int rfd, int wfd, const char *client,
                                np_conn_done_fn *done, void *done_arg)
{
    struct np_conn *c = calloc(1, sizeof *c);

    if (c) c->session = calloc(1, sizeof *c->session);
    if (c && c->session) c->client = strdup(client);
    if (!c || !c->session || !c->client) {
        if (c) free(c->session);
        free(c);
        np_log(NP_ERR, "%s: out of memory for a new connection from %s", p->name, client);
        close(rfd);
        if (wfd != rfd) close(wfd);
        if (done) done(done_arg, NULL);
        return NULL;
    }
    init_reaper();
    c->id = next_id++;
    c->proxy = p;
    c->started = np_now();        /* the loop's time, as its timers count */
    c->handle_ref = c->hook_ref[0] = c->hook_ref[1] = c->hook_conn_ref = c->closed_ref = LUA_NOREF;
    c->pool_row = -1;
    c->done = done;
    c->done_arg = done_arg;
    c->next = p->conns;
    if (p->conns) p->conns->pprev = &c->next;
    p->conns = c;
    c->pprev = &p->conns;
    NP_COUNTERS(p)->opened++;
    NP_COUNTERS(p)->active++;
    p->negotiating++;
    c->negotiating = 1;
    evtimer_assign(&c->session->deadline, np_base, on_deadline, c);
    if (p->total_timeout > 0) arm_total_timeout(c);
    np_clog(NP_INFO, c->id, "%s: accepted %s", p->name, c->client);
    return c;
}

/* The negotiation's deadline (negotiation_timeout), when the proxy has one. */
static void arm_deadline(struct np_conn *c)
{
    struct timeval tv = np_tv(c->proxy->negotiation_timeout);

    if (c->proxy->negotiation_timeout > 0) evtimer_add(&c->session->deadline, &tv);
}

/* The connectors run in a session coroutine (netproxy.session.serve). */
static void start_session(struct np_conn *c, int rfd, int wfd)
{
    struct np_proxy *p = c->proxy;
    lua_State *co;
    int reused;

    arm_deadline(c);
    co = np_task_init(&c->session->task, p->L, &session_ops, c, c->id, &reused);
    c->session->task.budget = p->budget;
    c->session->task.max_alloc = p->call_memory;
    /* a pooled coroutine waits in netproxy.session.serve for the next connection's arguments */
    if (!reused) lua_rawgeti(co, LUA_REGISTRYINDEX, p->session_ref);
    lua_rawgeti(co, LUA_REGISTRYINDEX, p->lua_ref);
    np_sock_push(co, &c->session->task.owner, rfd, wfd, c->client);
    lua_pushnumber(co, (lua_Number)c->id);
    lua_pushstring(co, c->client);
    push_handle(co, c);
    np_task_resume(&c->session->task, 5);
}

void np_conn_start(struct np_proxy *p, int rfd, int wfd, const char *client,
                   np_conn_done_fn *done, void *done_arg)
{
    struct np_conn *c = conn_new(p, rfd, wfd, client, done, done_arg);

    if (!c) return;
    if (p->route) {
        c->route = p->route;
        start_routed(c, rfd, wfd);
    } else if (p->sniff) {
        start_sniffing(c, rfd, wfd);
    } else {
        start_session(c, rfd, wfd);
    }
}

/* ---------------------------------------------------------------- served here */

static void on_idle(struct np_idle *m)
{
    struct np_conn *c = (struct np_conn *)((char *)m - offsetof(struct np_conn, idle));

    np_conn_close(c, NP_END_IDLE_TIMEOUT, "%s", "");
}

void np_conn_serving(struct np_conn *c, struct np_sock *client)
{
    struct np_proxy *p = c->proxy;

    size_t ahead = client->inbuf ? evbuffer_get_length(client->inbuf) : 0;

    negotiated(c);
    if (c->session) event_del(&c->session->deadline);
    c->bytes[0] += ahead;               /* read ahead (a probe's peek): the service reads them */
    NP_COUNTERS(p)->bytes_in += ahead;
    client->bytes[0] = &c->bytes[0];
    client->bytes[1] = &c->bytes[1];
    client->more_bytes[0] = &NP_COUNTERS(p)->bytes_in;
    client->more_bytes[1] = &NP_COUNTERS(p)->bytes_out;
    if (p->idle_timeout > 0 && !c->idle.list && np_idle_join(&c->idle, p->idle_timeout, on_idle) == 0)
        client->idle = &c->idle;
}

void np_conn_when_closed(struct np_conn *c, int fn_ref)
{
    np_lua_unref(c->proxy->L, &c->closed_ref);
    c->closed_ref = fn_ref;
}

/* ---------------------------------------------------------------- the relay */

/* "addr:port" (or the unix path) of fd's peer into out. */
static const char *peer_of(int fd, char *out, size_t outlen)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;

    if (getpeername(fd, (struct sockaddr *)&ss, &len) < 0) snprintf(out, outlen, "?");
    else np_addr_format((struct sockaddr *)&ss, len, out, outlen);
    return out;
}

/* A routed proxy's hooks get their conn object at their first call, from session.route's
 * conn(id, client, handle, server): what a session would have handed them. 0, or -1 with err. */
static int make_hook_conn(struct np_conn *c, char *err, size_t errlen)
{
    const struct np_route *r = c->route;
    lua_State *L = c->proxy->L;
    char server[NP_ADDRSTRLEN];

    lua_rawgeti(L, LUA_REGISTRYINDEX, r->conn_ref);
    lua_pushnumber(L, (lua_Number)c->id);
    lua_pushstring(L, c->client);
    push_handle(L, c);
    lua_pushstring(L, r->server[0] ? r->server : peer_of(np_relay_server_fd(c->relay), server, sizeof server));
    if (lua_pcall(L, 4, 1, 0) != 0) {
        snprintf(err, errlen, "the hooks' conn: %s", lua_tostring(L, -1));
        lua_pop(L, 1);
        return -1;
    }
    c->hook_conn_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    return 0;
}

/* The hooks' conn object: a session's, or a routed proxy's made at the first call; none
 * when no hook takes one. 0, or -1 with err. */
static int hook_conn_ready(struct np_conn *c, char *err, size_t errlen)
{
    const struct np_route *r = c->route;

    if (c->hook_conn_ref != LUA_NOREF || !r || r->conn_ref == LUA_NOREF) return 0;
    return make_hook_conn(c, err, errlen);
}

static enum np_filter_rc filter(void *arg, int dir, const char *data, size_t len, int eof,
                                const char **out, size_t *outlen)
{
    struct np_conn *c = arg, *outer = in_hook;
    const struct np_route *r = c->route;
    char err[256];
    int rc = -1;

    in_hook = c;
    if (hook_conn_ready(c, err, sizeof err) == 0)
        rc = np_hook_call(c->proxy->L, r ? r->hook_ref[dir] : c->hook_ref[dir], c->hook_conn_ref,
                          data, len, eof, c->hook_budget, c->proxy->call_memory, out, outlen, err,
                          sizeof err);
    in_hook = outer;
    if (rc < 0) {
        np_clog(NP_ERR, c->id, "%s: hook: %s", c->proxy->name, err);
        np_conn_close(c, NP_END_LUA_ERROR, "%s", err);
    }
    if (c->end != NP_END_NONE) {        /* an error, or conn:close() from the hook */
        if (rc == 1) np_hook_done(c->proxy->L);
        return NP_FILTER_STOP;
    }
    return rc == 1 ? NP_FILTER_REPLACE : NP_FILTER_KEEP;
}

static void filter_done(void *arg)
{
    np_hook_done(((struct np_conn *)arg)->proxy->L);
}

static void relay_ended(void *arg, enum np_end how, const char *detail)
{
    np_conn_close(arg, how, "%s", detail);
}

static const struct np_relay_ops relay_ops = {
    .filter = filter, .filter_done = filter_done, .ended = relay_ended,
};

static void side_of(struct np_relay_side *s, struct np_conn_handoff *h, int i)
{
    struct evbuffer *ahead = h->ahead[i];

    s->rfd = h->fd[i][0];
    s->wfd = h->fd[i][1];
    s->ssl = h->ssl[i];
    s->ahead_len = ahead ? evbuffer_get_length(ahead) : 0;
    s->ahead = s->ahead_len ? (const char *)evbuffer_pullup(ahead, -1) : NULL;
}

static void drop_handoff(struct np_conn_handoff *h, lua_State *L)
{
    for (int i = 0; i < 2; i++) {
        if (h->ssl[i]) SSL_free(h->ssl[i]);
        if (h->fd[i][1] != h->fd[i][0] && h->fd[i][1] >= 0) close(h->fd[i][1]);
        if (h->fd[i][0] >= 0) close(h->fd[i][0]);
        np_lua_unref(L, &h->hook_ref[i]);
    }
    np_lua_unref(L, &h->conn_ref);
}

/* The relay over both sides, which it owns from then on; -1 when it could not start
 * (nothing taken). The negotiation is over. */
static int start_relay(struct np_conn *c, const struct np_relay_side *client,
                       const struct np_relay_side *server, const int filtered[2], int may_starttls)
{
    struct np_proxy *p = c->proxy;
    struct np_relay_config cfg = {
        .mode = p->relay_mode,
        .filtered = { filtered[0], filtered[1] },
        .may_starttls = may_starttls,
        .buffer_size = p->buffer_size,
        .idle_timeout = p->idle_timeout,
        .bytes = { &c->bytes[0], &c->bytes[1] },
        .more_bytes = { &NP_COUNTERS(p)->bytes_in, &NP_COUNTERS(p)->bytes_out },
        .log_id = c->id,
        .log_name = p->name,
    };
    char path[96];

    if (c->end == NP_END_NONE && !c->relay) c->relay = np_relay_new(&cfg, &relay_ops, c, client, server);
    if (!c->relay) return -1;
    negotiated(c);
    event_del(&c->session->deadline);
    np_clog(NP_INFO, c->id, "%s: relay: %s", p->name, np_relay_describe(c->relay, path, sizeof path));
    return 0;
}

int np_conn_relay(struct np_conn *c, struct np_conn_handoff *h)
{
    struct np_relay_side client, server;
    int filtered[2] = { h->hook_ref[0] != LUA_NOREF, h->hook_ref[1] != LUA_NOREF };
    int rc;

    side_of(&client, h, NP_CLIENT);
    side_of(&server, h, NP_SERVER);
    rc = start_relay(c, &client, &server, filtered, h->may_starttls);
    for (int i = 0; i < 2; i++)
        if (h->ahead[i]) evbuffer_free(h->ahead[i]);
    if (rc < 0) {
        drop_handoff(h, c->proxy->L);
        np_conn_close(c, NP_END_NO_MEMORY, "%s", "starting the relay");
        return -1;
    }
    c->hook_ref[0] = h->hook_ref[0];
    c->hook_ref[1] = h->hook_ref[1];
    c->hook_conn_ref = h->conn_ref;
    c->hook_budget = h->hook_budget;
    return 0;
}

int np_conn_client_fd(const struct np_conn *c)
{
    return c->relay && c->end == NP_END_NONE ? np_relay_client_fd(c->relay) : -1;
}

/* ---------------------------------------------------------------- routed */

static void routed_connected(void *arg, int fd, int err, const char *why)
{
    struct np_conn *c = arg;
    const struct np_route *r = c->route;
    struct session *s = c->session;
    struct np_relay_side client = { .rfd = s->client_fd[0], .wfd = s->client_fd[1],
                                    .ahead = s->ahead, .ahead_len = s->ahead_len };
    struct np_relay_side server = { .rfd = fd, .wfd = fd };
    const int filtered[2] = { r->hook_ref[0] != LUA_NOREF, r->hook_ref[1] != LUA_NOREF };

    c->hook_budget = r->hook_budget;
    if (fd < 0 && err == ETIMEDOUT && r->on_timeout == NP_END_NEGOTIATION_TIMEOUT) {
        np_conn_close(c, NP_END_NEGOTIATION_TIMEOUT, "%s", "");
    } else if (fd < 0) {
        np_conn_close(c, NP_END_CONNECT_FAILED, "%s", why);
    } else if (start_relay(c, &client, &server, filtered, 0) < 0) {
        close(fd);
        np_conn_close(c, NP_END_NO_MEMORY, "%s", "starting the relay");
    } else {
        s->client_fd[0] = s->client_fd[1] = -1;
        np_defer(&c->session_over, on_session_over);
    }
}

/* Connects to c->route; the relay starts from routed_connected. */
static void dial_route(struct np_conn *c)
{
    const struct np_route *r = c->route;
    struct session *s = c->session;

    if (r->host) np_dial_start_name(&s->dial, r->host, r->port, &r->dial, routed_connected, c);
    else np_dial_start(&s->dial, &r->ai, &r->dial, routed_connected, c);
}

/* The config fixed the server and nothing runs before the relay: connect, then relay
 * (through the route's hooks, if it has any). */
static void start_routed(struct np_conn *c, int rfd, int wfd)
{
    struct session *s = c->session;

    s->routed = 1;
    s->client_fd[0] = rfd;
    s->client_fd[1] = wfd;
    dial_route(c);
}

/* ---------------------------------------------------------------- sniffed */

/* Reads what has arrived into s->ahead, as a session's peek does (one read of up to 64 KiB:
 * the caller stops once max_peek are held): the count read, 0 at EOF, -1 with errno
 * (EAGAIN: nothing yet). */
static ssize_t sniff_read(struct session *s)
{
    static char scratch[65536];
    ssize_t got = read(s->client_fd[0], scratch, sizeof scratch);
    char *grown;

    if (got <= 0) return got;
    if (!(grown = realloc(s->ahead, s->ahead_len + got))) {
        errno = ENOMEM;
        return -1;
    }
    memcpy(grown + s->ahead_len, scratch, got);
    s->ahead = grown;
    s->ahead_len += got;
    return got;
}

static void sniff_wait(struct session *s, double seconds)
{
    struct timeval tv = np_tv(seconds > 0 ? seconds : 0);

    event_add(&s->wait, &tv);
}

/* The route is chosen: the bytes read go to its server first. */
static void sniff_chose(struct np_conn *c, const struct np_route *r)
{
    c->route = r;
    dial_route(c);
}

/* Nothing picked a route: the fallback's, or the client is refused. */
static void sniff_gave_up(struct np_conn *c)
{
    const struct np_sniff *sn = c->proxy->sniff;

    if (sn->fallback) sniff_chose(c, sn->fallback);
    else np_conn_close(c, NP_END_REFUSED, "no probe matched the first %zu bytes", c->session->ahead_len);
}

/* pick(bytes) under the proxy's call budget: 1 with *chosen set (NULL: nothing can match),
 * 0 while it wants more bytes, -1 on a Lua error (the connection closed). */
static int sniff_pick(struct np_conn *c, const struct np_route **chosen)
{
    const struct np_sniff *sn = c->proxy->sniff;
    struct session *s = c->session;
    struct np_conn *outer = in_hook;
    lua_State *L = c->proxy->L;
    char err[256];
    int rc, i;

    lua_rawgeti(L, LUA_REGISTRYINDEX, sn->pick_ref);
    lua_pushlstring(L, s->ahead, s->ahead_len);
    in_hook = c;
    rc = np_hook_pcall(L, 1, 1, c->proxy->budget, c->proxy->call_memory, err, sizeof err);
    in_hook = outer;
    if (rc < 0) {
        np_clog(NP_ERR, c->id, "%s: lua error: %s", c->proxy->name, err);
        np_conn_close(c, NP_END_LUA_ERROR, "%s", err);
        return -1;
    }
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        return 0;
    }
    i = lua_type(L, -1) == LUA_TNUMBER ? (int)lua_tointeger(L, -1) : 0;
    lua_pop(L, 1);
    *chosen = i >= 1 && i <= sn->npicks ? sn->picks[i - 1] : NULL;
    if (*chosen) np_clog(NP_INFO, c->id, "%s: %s after %zu bytes", c->proxy->name, sn->notes[i - 1], s->ahead_len);
    return 1;
}

/* The client's bytes have come (or its end): pick by them, or wait for more. */
static void sniff_heard(struct np_conn *c)
{
    const struct np_sniff *sn = c->proxy->sniff;
    struct session *s = c->session;
    const struct np_route *chosen;
    ssize_t got = sniff_read(s);
    int rc;

    if (got < 0 && errno == EAGAIN) {
        sniff_wait(s, s->heard ? s->heard + sn->probe_timeout - np_now() : c->started + sn->silence - np_now());
    } else if (got <= 0) {
        np_conn_close(c, NP_END_REFUSED, "client %s%s", got == 0 ? "closed" : np_err_token(errno),
                      s->heard ? " while probed" : "");
    } else {
        if (!s->heard) s->heard = np_now();
        if ((rc = sniff_pick(c, &chosen)) == 1 && chosen) sniff_chose(c, chosen);
        else if (rc == 1 || (rc == 0 && s->ahead_len >= sn->max_peek)) sniff_gave_up(c);
        else if (rc == 0) sniff_wait(s, s->heard + sn->probe_timeout - np_now());
    }
}

static void on_client_bytes(evutil_socket_t fd, short what, void *arg)
{
    struct np_conn *c = arg;
    const struct np_sniff *sn = c->proxy->sniff;

    if (!(what & EV_TIMEOUT)) sniff_heard(c);
    else if (c->session->heard) sniff_gave_up(c);
    else if (sn->silent) sniff_chose(c, sn->silent);
    else np_conn_close(c, NP_END_REFUSED, "client silent for %gs", sn->silence);
}

/* The proxy chooses its server by the client's first bytes (np_sniff): read them as they
 * come, then connect and relay as a routed proxy does. */
static void start_sniffing(struct np_conn *c, int rfd, int wfd)
{
    struct session *s = c->session;

    s->routed = s->sniffing = 1;
    s->client_fd[0] = rfd;
    s->client_fd[1] = wfd;
    event_assign(&s->wait, np_base, rfd, EV_READ, on_client_bytes, c);
    arm_deadline(c);
    sniff_heard(c);                     /* its bytes are often there already */
}

int np_conn_send(struct np_conn *c, int dir, const char *data, size_t len, const char **err)
{
    if (c->end != NP_END_NONE) *err = "closed";
    else if (!c->relay) *err = "not relaying yet: write to the socket";
    else if (np_relay_inject(c->relay, dir, data, len) < 0) *err = "out of memory";
    else return 0;
    return -1;
}

int np_conn_starttls(struct np_conn *c, int side, SSL_CTX *ctx, int server, const char *sni,
                     const char *verify_name, const char **err)
{
    if (c->end != NP_END_NONE) *err = "closed";
    else if (!c->relay) *err = "not relaying yet: use sock:tls()";
    else if (np_relay_starttls(c->relay, side, ctx, server, sni, verify_name) < 0)
        *err = side == NP_CLIENT ? "the client side already speaks TLS" : "the server side already speaks TLS";
    else return 0;
    return -1;
}
