/* A client connection's life, from accept to free: it is made and counted (then started
 * one of three ways by conn_session.c), served by a service or relayed (conn_relay.c); every
 * end is marked by np_conn_close and carried out by the reaper (end.c), after the callback
 * that decided it has returned. The conn files stand in one line: conn_session.c, sniff.c,
 * conn_routed.c, conn_relay.c, each calling those after it and this one. */
#include "conn_impl.h"
#include "accesslog.h"
#include "call.h"
#include "log.h"
#include "loop.h"
#include "luavm.h"
#include "pool.h"
#include "proxy.h"
#include "relay.h"
#include "sock.h"
#include "tls.h"

#include <event2/buffer.h>
#include <event2/event.h>
#include <lauxlib.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct np_conn *np_conn_in_hook;

/* ---------------------------------------------------------------- what it is */

uint64_t np_conn_id(const struct np_conn *c) { return c->ended.id; }
lua_State *np_conn_lua(const struct np_conn *c) { return c->proxy->L; }

void np_conn_attach(struct np_conn *c, void (*release)(void *arg), void *arg)
{
    c->attached = release;
    c->attached_arg = arg;
    np_conn_negotiated(c);
    np_conn_disarm_deadline(c);
}
const char *np_conn_proxy_name(const struct np_conn *c) { return c->proxy->name; }
int np_conn_ended(const struct np_conn *c) { return c->ended.end != NP_END_NONE; }


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
    if (c->pool_row == row) {           /* its slot taken before the connect (max_conns) */
        np_pool_count(row);
        return;
    }
    if (c->pool_row >= 0) np_pool_release(c->pool_row);
    c->pool_row = row;
    np_pool_acquire(row);
}

int np_conn_take_pool_row(struct np_conn *c, int row, int max)
{
    np_conn_give_pool_row(c);
    if (!np_pool_take(row, max)) return 0;
    c->pool_row = row;
    return 1;
}

void np_conn_give_pool_row(struct np_conn *c)
{
    if (c->pool_row >= 0) np_pool_release(c->pool_row);
    c->pool_row = -1;
}

int np_conn_pool_wait(struct np_conn *c, int q, int max)
{
    np_conn_pool_unwait(c);
    if (!np_pool_wait(q, max)) return 0;
    c->pool_queue = q;
    return 1;
}

void np_conn_pool_unwait(struct np_conn *c)
{
    if (c->pool_queue >= 0) np_pool_unwait(c->pool_queue);
    c->pool_queue = -1;
}

void np_conn_hold_limit(struct np_conn *c, uint32_t token)
{
    if (!token) return;                 /* no limit took an entry: the common case */
    for (int i = 0; i < 4; i++) {
        if (c->limit_tokens[i]) continue;
        c->limit_tokens[i] = token;
        return;
    }
    np_limits_put(token);               /* (never: 2 per_source and 2 per_user at most) */
}


void np_conn_set_target(struct np_conn *c, const char *text)
{
    set_text(&c->target, text);
}

void np_conn_set_client(struct np_conn *c, const char *text)
{
    set_text(&c->client, text);
}

void np_conn_set_tls(struct np_conn *c, const struct np_tls_identity *id)
{
    if (!c->tls && !(c->tls = malloc(sizeof *c->tls))) return;
    *c->tls = *id;
}

void np_conn_set_ja4(struct np_conn *c, const char *ja4)
{
    if (!c->tls && !(c->tls = calloc(1, sizeof *c->tls))) return;
    snprintf(c->tls->ja4, sizeof c->tls->ja4, "%s", ja4);
}


void np_conn_refused_for(struct np_conn *c, const char *reason)
{
    c->ended.refusal = reason;
}

void np_conn_set_user(struct np_conn *c, const char *name)
{
    set_text(&c->user, name);
}

/* ---------------------------------------------------------------- the end */

void np_conn_negotiated(struct np_conn *c)
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

/* " tls=TLSv1.3 sni=a.example alpn=h2 cert="CN=client" verified=yes ja4=t13d..." of what
 * the client's TLS said, for the log line; "" for a connection without. */
static void tls_words(const struct np_tls_identity *t, char *out, size_t size)
{
    size_t n = 0;

    out[0] = '\0';
    if (!t) return;
#define WORD(cond, ...) \
    if ((cond) && n < size) n += (size_t)snprintf(out + n, size - n, __VA_ARGS__)
    WORD(t->version[0], " tls=%s", t->version);
    WORD(t->sni[0], " sni=%s", t->sni);
    WORD(t->alpn[0], " alpn=%s", t->alpn);
    WORD(t->has_cert, " cert=\"%s\" verified=%s", t->subject, t->verified ? "yes" : "no");
    WORD(t->ja4[0], " ja4=%s", t->ja4);
#undef WORD
}

/* Its log line (it was counted when it ended). */
static void log_end(struct np_conn *c)
{
    char tls[800];

    tls_words(c->tls, tls, sizeof tls);
    np_clog(NP_NOTICE, c->ended.id, "%s: %s -> %s in=%llu out=%llu%s " NP_ENDED_LOG_TAIL, c->proxy->name,
            c->client ? c->client : "?", target_of(c) ? target_of(c) : "-", (unsigned long long)c->bytes[0],
            (unsigned long long)c->bytes[1], tls, NP_ENDED_LOG_ARGS(&c->ended));
}

/* The fields every line of c has: who, where to, as who. */
static void access_fields(const struct np_conn *c, struct np_access_record *r)
{
    np_access_record_init(r);
    r->text[NP_AF_PROXY] = c->proxy->name;
    r->num[NP_AF_ID] = (double)c->ended.id;
    r->text[NP_AF_CLIENT] = c->client;
    r->text[NP_AF_TARGET] = target_of(c);
    r->text[NP_AF_SERVER] = c->server;
    r->text[NP_AF_USER] = c->user;
    if (c->tls) {                       /* what the client's TLS said (tls.h); "" is absent */
        r->text[NP_AF_SNI] = c->tls->sni[0] ? c->tls->sni : NULL;
        r->text[NP_AF_ALPN] = c->tls->alpn[0] ? c->tls->alpn : NULL;
        r->text[NP_AF_TLS_VERSION] = c->tls->version[0] ? c->tls->version : NULL;
        r->text[NP_AF_CLIENT_CERT] = c->tls->has_cert ? c->tls->subject : NULL;
        r->text[NP_AF_JA4] = c->tls->ja4[0] ? c->tls->ja4 : NULL;
    }
}

void np_conn_access_request(struct np_conn *c, const struct np_access_request *q)
{
    struct np_access_record r;

    if (!c->proxy->access) return;
    access_fields(c, &r);
    r.text[NP_AF_METHOD] = q->method;
    r.text[NP_AF_URL] = q->url;
    r.num[NP_AF_STATUS] = q->status;
    if (q->server) r.text[NP_AF_SERVER] = q->server;
    r.num[NP_AF_BYTES_OUT] = q->bytes_out;
    r.num[NP_AF_DURATION] = q->duration;
    np_accesslog_write(c->proxy->access, &r);
}

/* Its access log line, when the proxy has an access log: what the connection knows. */
static void access_log(struct np_conn *c)
{
    struct np_access_record r;
    double now = np_clock();

    access_fields(c, &r);
    r.num[NP_AF_BYTES_IN] = (double)c->bytes[0];
    r.num[NP_AF_BYTES_OUT] = (double)c->bytes[1];
    r.num[NP_AF_DURATION] = now - c->ended.started;
    r.num[NP_AF_CONNECT_TIME] = c->connect_time;
    r.num[NP_AF_NEGOTIATION_TIME] = c->relayed_at > 0 ? c->relayed_at - c->ended.started : -1;
    r.text[NP_AF_END] = np_end_name(c->ended.end);
    r.text[NP_AF_DETAIL] = c->ended.detail;
    np_accesslog_write(c->proxy->access, &r);
}

/* The session is over (or the connection): its coroutine, cosockets and deadline go. */
static void session_free(struct np_conn *c)
{
    struct session *s = c->session;

    if (!s) return;
    np_conn_disarm_deadline(c);
    if (s->routed) {
        np_dial_cancel(&s->dial);
        np_sniffer_free(&s->sniffer);
        free(s->ahead);
        if (s->client_fd[1] != s->client_fd[0] && s->client_fd[1] >= 0) close(s->client_fd[1]);
        if (s->client_fd[0] >= 0) close(s->client_fd[0]);
    } else {
        np_task_release(&s->task);
    }
    free(s);
    c->session = NULL;
    np_defer_cancel(&c->session_over);
}

void np_conn_session_over(struct np_deferred *d)
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
    lua_pushnumber(L, np_clock() - c->ended.started);
    lua_setfield(L, -2, "duration");
    lua_pushstring(L, np_end_name(c->ended.end));
    lua_setfield(L, -2, "reason");
    lua_pushstring(L, c->ended.detail ? c->ended.detail : "");
    lua_setfield(L, -2, "detail");
    if (target_of(c)) {
        lua_pushstring(L, target_of(c));
        lua_setfield(L, -2, "server");
    }
    if (c->tls) {
        np_tls_push_identity(L, c->tls);
        lua_setfield(L, -2, "tls");
    }
    if (np_call(L, 1, 0, &c->proxy->limits, err, sizeof err) < 0)
        np_clog(NP_ERR, c->ended.id, "%s: on_close: %s", c->proxy->name, err);
    np_lua_unref(L, &c->closed_ref);
}

/* Tears an ended connection down, from the reaper (its handle is cleared already). */
static void conn_free(struct np_ended *e)
{
    struct np_conn *c = (struct np_conn *)((char *)e - offsetof(struct np_conn, ended));
    lua_State *L = c->proxy->L;

    if (c->attached) c->attached(c->attached_arg);
    session_free(c);
    np_idle_leave(&c->idle);
    if (c->total) event_free(c->total);
    if (c->relay) np_relay_free(c->relay);
    np_lua_unref(L, &c->hook_ref[0]);
    np_lua_unref(L, &c->hook_ref[1]);
    np_lua_unref(L, &c->hook_conn_ref);
    log_end(c);
    if (c->connect_time >= 0)
        np_shm_observe(NP_COUNTERS(c->proxy)->connect, &NP_COUNTERS(c->proxy)->connect_sum_us,
                       np_connect_bounds, NP_CONNECT_BUCKETS, c->connect_time);
    if (c->proxy->access) access_log(c);
    tell_closed(c);
    if (c->pool_row >= 0) np_pool_release(c->pool_row);
    np_conn_pool_unwait(c);
    for (int i = 0; i < 4 && c->limit_tokens[i]; i++) np_limits_put(c->limit_tokens[i]);   /* taken in order */
    if (c->next) c->next->pprev = c->pprev;
    *c->pprev = c->next;
    if (c->done) c->done(c->done_arg, c);
    free(c->client);
    free(c->target);
    free(c->tls);
    free(c->server);
    free(c->user);
    free(c->ended.detail);
    free(c);
}

void np_conn_close(struct np_conn *c, enum np_end how, const char *fmt, ...)
{
    va_list ap;
    int first;

    va_start(ap, fmt);
    first = np_ended_mark(&c->ended, how, fmt, ap);
    va_end(ap);
    if (!first) return;
    np_conn_negotiated(c);
    if (c->session && c->session->routed) {
        np_dial_cancel(&c->session->dial);
        np_sniffer_stop(&c->session->sniffer);
    } else if (c->session) {
        np_conn_disarm_deadline(c);
        np_task_halt(&c->session->task);
    }
    if (c->relay) np_relay_halt(c->relay);
}

void np_conn_close_all(struct np_proxy *p, enum np_end how, const char *detail)
{
    for (struct np_conn *c = p->conns; c; c = c->next) np_conn_close(c, how, "%s", detail);
}

/* What the control socket shows (show conns) and ends (kill conn). */
void np_conn_each(struct np_proxy *p, np_conn_view_fn *fn, void *arg)
{
    for (struct np_conn *c = p->conns; c; c = c->next) {
        if (c->ended.end != NP_END_NONE) continue;      /* ended, waiting for the reaper */
        struct np_conn_view v = {
            .id = c->ended.id, .proxy = p->name, .client = c->client ? c->client : "",
            .target = c->target ? c->target : "", .age = np_clock() - c->ended.started,
            .bytes = { c->bytes[0], c->bytes[1] },
            .state = c->negotiating ? "negotiating" : c->relay ? "relaying" : "serving",
        };
        fn(arg, &v);
    }
}

int np_conn_kill(struct np_proxy *p, uint64_t id, const char *why)
{
    for (struct np_conn *c = p->conns; c; c = c->next) {
        if (c->ended.id != id || c->ended.end != NP_END_NONE) continue;
        np_conn_close(c, NP_END_CLOSED, "%s", why);
        return 1;
    }
    return 0;
}

/* ---------------------------------------------------------------- its start */

static void on_deadline(evutil_socket_t fd, short what, void *arg)
{
    np_conn_close(arg, NP_END_NEGOTIATION_TIMEOUT, "%s", "");
}

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
        np_clog(NP_WARNING, c->ended.id, "%s: out of memory for total_timeout's timer: not bounded", c->proxy->name);
        return;
    }
    evtimer_add(c->total, common ? common : &tv);
}

struct np_conn *np_conn_new(struct np_proxy *p, int rfd, int wfd, const char *client,
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
    np_ended_begin(&c->ended, NP_ENDED_CONN, p->row, p->L, conn_free);
    c->proxy = p;
    c->hook_ref[0] = c->hook_ref[1] = c->hook_conn_ref = c->closed_ref = LUA_NOREF;
    c->pool_row = c->pool_queue = -1;
    c->connect_time = -1;
    c->done = done;
    c->done_arg = done_arg;
    c->next = p->conns;
    if (p->conns) p->conns->pprev = &c->next;
    p->conns = c;
    c->pprev = &p->conns;
    p->negotiating++;
    c->negotiating = 1;
    evtimer_assign(&c->session->deadline, np_base, on_deadline, c);
    if (p->total_timeout > 0) arm_total_timeout(c);
    np_clog(NP_INFO, c->ended.id, "%s: accepted %s", p->name, c->client);
    return c;
}

/* The negotiation's deadline (negotiation_timeout), when the proxy has one. */
void np_conn_arm_deadline(struct np_conn *c)
{
    struct timeval tv = np_tv(c->proxy->negotiation_timeout);

    if (c->proxy->negotiation_timeout <= 0) return;
    evtimer_add(&c->session->deadline, &tv);
    c->session->deadline_armed = 1;
}

void np_conn_disarm_deadline(struct np_conn *c)
{
    if (!c->session || !c->session->deadline_armed) return;
    event_del(&c->session->deadline);
    c->session->deadline_armed = 0;
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
    uint64_t *mine[2] = { &c->bytes[0], &c->bytes[1] };
    uint64_t *proxy_total[2] = { &NP_COUNTERS(p)->bytes_in, &NP_COUNTERS(p)->bytes_out };
    int idle = p->idle_timeout > 0 && (c->idle.list || np_idle_join(&c->idle, p->idle_timeout, on_idle) == 0);
    size_t ahead;

    np_conn_negotiated(c);
    c->relayed_at = np_now();
    np_conn_disarm_deadline(c);
    ahead = np_sock_serve(client, mine, proxy_total, idle ? &c->idle : NULL);
    c->bytes[0] += ahead;               /* read ahead (a probe's peek): the service reads them */
    NP_COUNTERS(p)->bytes_in += ahead;
}

void np_conn_when_closed(struct np_conn *c, int fn_ref)
{
    np_lua_unref(c->proxy->L, &c->closed_ref);
    c->closed_ref = fn_ref;
}

