/* The running configs and the accept path: the guards every new client passes (allow/deny,
 * limits), the count of live connections, the drain of a replaced config, and when the
 * process is done. */
#include "server.h"
#include "budget.h"
#include "checker.h"
#include "conn.h"
#include "call.h"
#include "dial.h"
#include "limits.h"
#include "tickets.h"
#include "listener.h"
#include "log.h"
#include "logsink.h"
#include "metrics.h"
#include "loop.h"
#include "luavm.h"
#include "shdict.h"
#include "udp.h"
#include "timer.h"

#include <event2/event.h>
#include <fcntl.h>
#include <lauxlib.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/un.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define DEFAULT_BACKLOG 4096

struct np_server np_server;

static int next_generation;

/* ---------------------------------------------------------------- configs */

static void release_listeners(struct np_config *g, int say)
{
    for (int i = 0; i < g->nproxies; i++) {
        struct np_proxy *p = &g->proxies[i];
        for (int j = 0; j < p->nlisteners; j++) np_listener_put(p->listeners[j], say);
        p->nlisteners = 0;
        np_udp_release(p, say);
    }
}

static void serve_waiting(struct np_proxy *p, int gone);
static void arm_slot_tick(double seconds);
static int waiting_total;               /* clients waiting for a slot, over every proxy */

static void config_free(struct np_config *g)
{
    for (int i = 0; i < g->nproxies; i++) serve_waiting(&g->proxies[i], 1);
    release_listeners(g, 0);
    for (int i = 0; i < g->nproxies; i++) np_proxy_free(&g->proxies[i]);
    free(g->proxies);
    np_acl_free(&g->acl);
    event_del(&g->drain_deadline);
    if (g->L) {
        np_timer_cancel_all(g->L);
        np_checker_stop(g->L);
        np_budget_close(g->L);
    }
    if (np_L == g->L) np_L = NULL;
    free(g);
}

static void unlink_draining(struct np_config *g)
{
    for (struct np_config **pp = &np_server.draining; *pp; pp = &(*pp)->next) {
        if (*pp == g) {
            *pp = g->next;
            np_server.ndraining--;
            return;
        }
    }
}

static void close_config(struct np_config *g, enum np_end how, const char *why)
{
    for (int i = 0; i < g->nproxies; i++) {
        np_conn_close_all(&g->proxies[i], how, why);
        np_udp_close_all(&g->proxies[i], how, why);
    }
}

/* A retired config whose last connection has gone: its Lua state goes with it. */
static void config_done(struct np_config *g)
{
    np_log(NP_INFO, "config generation %d: drained", g->generation);
    unlink_draining(g);
    config_free(g);
}

static void on_drain_deadline(evutil_socket_t fd, short what, void *arg)
{
    struct np_config *g = arg;

    np_log(NP_NOTICE, "config generation %d: %llu connections still open after drain_timeout %gs: closing them",
           g->generation, (unsigned long long)g->live, g->drain_timeout);
    close_config(g, NP_END_DRAINED, "drain_timeout");
}

/* g no longer serves new clients; its connections finish on its code. */
static void retire(struct np_config *g)
{
    g->draining = 1;
    np_timer_cancel_all(g->L);          /* a retired generation's timers stop with it */
    release_listeners(g, 1);            /* the addresses the new config shares stay open */
    if (g->live == 0) {
        config_free(g);
        return;
    }
    g->next = np_server.draining;
    np_server.draining = g;
    np_server.ndraining++;
    np_log(NP_NOTICE, "config generation %d: %llu connections finish on it", g->generation,
           (unsigned long long)g->live);
    if (g->drain_timeout > 0) {
        struct timeval tv = np_tv(g->drain_timeout);
        evtimer_add(&g->drain_deadline, &tv);
    }
}

/* Past max_draining retired configs, the oldest ones are closed now. */
static void bound_draining(int max)
{
    while (np_server.ndraining > max) {
        struct np_config *oldest = np_server.draining;
        while (oldest->next) oldest = oldest->next;
        np_log(NP_WARNING, "config generation %d: %d generations draining (max_draining %d): closing its %llu connections",
               oldest->generation, np_server.ndraining, max, (unsigned long long)oldest->live);
        close_config(oldest, NP_END_DRAINED, "max_draining");
        unlink_draining(oldest);        /* freed when its last connection is */
        oldest->next = NULL;
    }
}

/* ---------------------------------------------------------------- the end of the process */

static void maybe_finish(void)
{
    int quota_done = np_server.max_connections &&
                     np_server.accepted >= np_server.max_connections;

    if ((quota_done || np_server.stopping) && np_server.active == 0)
        event_base_loopbreak(np_base);
}

static void conn_done(void *arg, struct np_conn *c)
{
    struct np_config *g = arg;

    np_server.active--;
    if (waiting_total) arm_slot_tick(0);    /* a slot is free: the clients waiting for one */
    if (--g->live == 0 && g->draining && g != np_server.config) config_done(g);
    maybe_finish();
}

void np_server_stop_accepting(void)
{
    np_listeners_close_all();
    np_udp_stop_reading();
}

void np_server_close_all(enum np_end how, const char *why)
{
    if (np_server.config) close_config(np_server.config, how, why);
    for (struct np_config *g = np_server.draining; g; g = g->next) close_config(g, how, why);
}

void np_server_each_conn(const char *proxy, np_conn_view_fn *fn, void *arg)
{
    for (struct np_config *g = np_server.config; g; g = g == np_server.config ? np_server.draining : g->next)
        for (int i = 0; i < g->nproxies; i++)
            if (!proxy || !strcmp(proxy, g->proxies[i].name)) np_conn_each(&g->proxies[i], fn, arg);
}

int np_server_kill_conn(uint64_t id, const char *why)
{
    for (struct np_config *g = np_server.config; g; g = g == np_server.config ? np_server.draining : g->next)
        for (int i = 0; i < g->nproxies; i++)
            if (np_conn_kill(&g->proxies[i], id, why)) return 1;
    return 0;
}

static void on_stop_deadline(evutil_socket_t fd, short what, void *arg)
{
    np_log(NP_WARNING, "stop: %llu connections still open after stop_timeout: closing them",
           (unsigned long long)np_server.active);
    np_server_close_all(NP_END_STOPPED, "stop_timeout");
}

static void close_flows(struct np_config *g)
{
    for (int i = 0; g && i < g->nproxies; i++) np_udp_close_all(&g->proxies[i], NP_END_STOPPED, "stop");
}

void np_server_stop(void)
{
    double timeout = np_server.config ? np_server.config->stop_timeout : 10;
    struct timeval tv = np_tv(timeout);

    np_server.stopping = 1;
    np_server_stop_accepting();
    close_flows(np_server.config);      /* a UDP flow has nothing in flight to finish */
    for (struct np_config *g = np_server.draining; g; g = g->next) close_flows(g);
    if (np_server.config) np_timer_cancel_all(np_server.config->L);
    evtimer_assign(&np_server.stop_deadline, np_base, on_stop_deadline, NULL);
    evtimer_add(&np_server.stop_deadline, &tv);
    maybe_finish();
}

void np_server_drain(void)
{
    struct np_config *g = np_server.config;

    if (np_server.stopping) {           /* told again: too many generations draining */
        np_server_close_all(NP_END_DRAINED, "max_draining");
        return;
    }
    np_server.stopping = 1;
    np_server_stop_accepting();
    if (g) np_timer_cancel_all(g->L);
    if (g && g->drain_timeout > 0) {
        struct timeval tv = np_tv(g->drain_timeout);
        evtimer_add(&g->drain_deadline, &tv);
    }
    maybe_finish();
}

/* ---------------------------------------------------------------- lifecycle hooks */

/* server{}'s on_start, on_stop or on_bound, under the server's limits: a loop in one is
 * stopped at hook_budget and logged with its file:line, and the process goes on. */
static void run_hook(struct np_config *g, int ref, const char *what, int nargs)
{
    char err[512];

    lua_rawgeti(g->L, LUA_REGISTRYINDEX, ref);
    lua_insert(g->L, -1 - nargs);
    if (np_call(g->L, nargs, 0, &g->limits, err, sizeof err) < 0) np_log(NP_ERR, "%s: %s", what, err);
}

void np_server_run_start(int index)
{
    struct np_config *g = np_server.config;

    if (!g || g->started) return;
    g->started = 1;
    np_logsink_use(g->L, g->log_ref, &g->limits);  /* this config's on_log, or none */
    if (g->on_start_ref == LUA_NOREF) return;
    lua_createtable(g->L, 0, 2);
    lua_pushinteger(g->L, index);
    lua_setfield(g->L, -2, "id");
    lua_pushinteger(g->L, getpid());
    lua_setfield(g->L, -2, "pid");
    run_hook(g, g->on_start_ref, "on_start", 1);
}

void np_server_run_stop(void)
{
    struct np_config *g = np_server.config;

    if (!g || g->on_stop_ref == LUA_NOREF) return;
    run_hook(g, g->on_stop_ref, "on_stop", 0);
}

void np_server_free(void)
{
    while (np_server.draining) {
        struct np_config *g = np_server.draining;
        np_server.draining = g->next;
        config_free(g);
    }
    np_server.ndraining = 0;
    np_metrics_serve(NULL, 0);
    if (np_server.config) config_free(np_server.config);
    np_server.config = NULL;
}

/* ---------------------------------------------------------------- the accept path */

/* A client turned away at accept: closed at once, counted, logged (at most one line a
 * second per proxy, so a flood cannot flood the log too). */
static void refuse(struct np_proxy *p, int fd, const struct sockaddr *sa, socklen_t len, const char *why,
                   const char *reason)
{
    char who[NP_ADDRSTRLEN];

    close(fd);
    NP_COUNTERS(p)->refused++;
    np_shm_count_refusal(p->row, reason);
    if (np_now() - p->refused_warned < 1.0) {
        p->refused_unlogged++;
        return;
    }
    p->refused_warned = np_now();
    if (sa) np_addr_format(sa, len, who, sizeof who);
    else snprintf(who, sizeof who, "stdio");
    if (p->refused_unlogged)
        np_log(NP_NOTICE, "%s: refused %s: %s (and %llu more since the last such line)", p->name,
               who, why, (unsigned long long)p->refused_unlogged);
    else
        np_log(NP_NOTICE, "%s: refused %s: %s", p->name, who, why);
    p->refused_unlogged = 0;
}

static uint64_t all_active(const struct np_config *g)
{
    uint64_t n = 0;

    for (int i = 0; i < g->nproxies; i++) n += np_shm_sum(g->proxies[i].row).active;
    return n;
}

/* Why a new client may not be served now, or NULL; *reason is the word /metrics counts it
 * by. Too many still negotiating (a flood of silent clients on a sniffing port) is refused
 * rather than let memory and fds run out. */
static const char *turned_away(struct np_proxy *p, const struct sockaddr *sa, const char **reason)
{
    static char why[96];
    const struct np_config *g = p->config;
    const char *rule;

    *reason = "acl";
    if (sa && (rule = np_acl_refuses(&g->acl, sa))) {
        snprintf(why, sizeof why, "%s (server)", rule);
        return why;
    }
    if (sa && (rule = np_acl_refuses(&p->acl, sa))) return rule;
    /* the limits count every worker's connections (shared counters) */
    *reason = "max_clients";
    if (p->max_clients && np_shm_sum(p->row).active >= p->max_clients) return "max_clients";
    if (g->max_clients && all_active(g) >= g->max_clients) return "max_clients (server)";
    *reason = "max_negotiating";
    if (p->negotiating >= p->max_negotiating) {
        snprintf(why, sizeof why, "%llu connections negotiating (max_negotiating)",
                 (unsigned long long)p->negotiating);
        return why;
    }
    return NULL;
}

/* Net::Server's request_denied_hook: server{ on_denied } then the proxy's, each given
 * { proxy, client, reason } once the client is closed, under the proxy's call budget; an
 * error is logged and changes nothing. */
static void tell_denied(struct np_proxy *p, const char *client, const char *why)
{
    const int refs[2] = { p->config->denied_ref, p->denied_ref };
    lua_State *L = p->L;
    char err[256];

    for (int i = 0; i < 2; i++) {
        if (refs[i] == LUA_NOREF) continue;
        lua_rawgeti(L, LUA_REGISTRYINDEX, refs[i]);
        lua_createtable(L, 0, 3);
        lua_pushstring(L, p->name);
        lua_setfield(L, -2, "proxy");
        lua_pushstring(L, client);
        lua_setfield(L, -2, "client");
        lua_pushstring(L, why);
        lua_setfield(L, -2, "reason");
        if (np_call(L, 1, 0, &p->limits, err, sizeof err) < 0)
            np_log(NP_ERR, "%s: on_denied: %s", p->name, err);
    }
}

/* per_source, server{}'s then the proxy's, for a client at sa: NULL and the entries taken
 * in tokens (0: none), or why not (nothing held then). A PROXY header or a protocol's own
 * answer (429, 0x02) has the session check instead (netproxy.gate.admit). */
static const char *over_limits(struct np_proxy *p, const struct sockaddr *sa, uint32_t tokens[2],
                               const char **reason)
{
    static char why[128];
    char key[64];

    tokens[0] = tokens[1] = 0;
    if (!sa || p->limits_in_lua) return NULL;
    for (int i = 0; i < 2; i++) {
        const struct np_limit_rule *r = &p->per_source[i];
        size_t n = r->set ? np_limits_source_key(sa, r->v6_prefix, key, sizeof key) : 0;
        if (n == 0) continue;
        enum np_limit_why w = np_limits_take(i ? p->name : "", 0, key, n, r, &tokens[i]);
        if (w == NP_LIMIT_OK) continue;
        *reason = np_limits_label(w);
        np_limits_put(tokens[0]);
        tokens[0] = 0;
        return np_limits_reason(w, r, i == 0, why, sizeof why);
    }
    return NULL;
}

/* Every client counts toward -m, served or refused. */
static void count_accepted(void)
{
    np_server.accepted++;
    if (np_server.max_connections && np_server.accepted >= np_server.max_connections)
        np_server_stop_accepting();
}

/* Turned away: closed, logged (why, or logged when given), counted by reason, told to
 * on_denied (why). */
static void refuse_client(struct np_proxy *p, int rfd, int wfd, const struct sockaddr *sa, socklen_t len,
                          const char *client, const char *why, const char *reason, const char *logged)
{
    refuse(p, rfd, sa, len, logged ? logged : why, reason);
    if (wfd != rfd) close(wfd);
    tell_denied(p, client, why);
    maybe_finish();
}

/* A client that passed the guards: per_source, then its connection starts. */
static void serve_client(struct np_proxy *p, int rfd, int wfd, const struct sockaddr *sa,
                         socklen_t len, const char *client)
{
    const char *reason = NULL, *why;
    uint32_t tokens[2] = { 0, 0 };
    struct np_conn *c;

    if ((why = over_limits(p, sa, tokens, &reason))) {
        refuse_client(p, rfd, wfd, sa, len, client, why, reason, NULL);
        return;
    }
    np_server.active++;
    p->config->live++;
    c = np_conn_start(p, rfd, wfd, client, conn_done, p->config);
    for (int i = 0; i < 2; i++) {
        if (c) np_conn_hold_limit(c, tokens[i]);
        else np_limits_put(tokens[i]);
    }
}

/* ---------------------------------------------------------------- waiting for a slot */

/* A client past max_clients, accepted and not read, until a slot frees or its deadline. A
 * connection that ends by a normal close stays counted until the server has closed its
 * side too, so a client that reconnects at once would otherwise be refused within the limit
 * (HAProxy's maxconn refuses none: the kernel queues them). */
struct np_waiter {
    int rfd, wfd;
    struct sockaddr_storage sa;
    socklen_t len;
    double deadline;
    char client[NP_ADDRSTRLEN];
    struct np_waiter *next;
};

#define MAX_WAITING 1024            /* per proxy: past them a client is refused at once */

/* A refusal that a freed slot would lift (max_clients, the proxy's or the server's). */
static int for_a_slot(const char *reason)
{
    return !strcmp(reason, "max_clients");
}
#define WAIT_TICK 0.01              /* seconds between looks at the shared counts */

static struct event slot_tick;      /* armed while a client waits (other workers' ends) */
static int slot_tick_ready;

static void on_slot_tick(evutil_socket_t fd, short what, void *arg);

static void arm_slot_tick(double seconds)
{
    struct timeval tv = np_tv(seconds);

    if (!slot_tick_ready) {
        evtimer_assign(&slot_tick, np_base, on_slot_tick, NULL);
        slot_tick_ready = 1;
    }
    evtimer_add(&slot_tick, &tv);
}

/* Holds the client for a slot: 1, or 0 when it cannot wait (no queue_timeout, the queue full,
 * out of memory). */
static int wait_for_slot(struct np_proxy *p, int rfd, int wfd, const struct sockaddr *sa,
                         socklen_t len, const char *client)
{
    struct np_waiter *w;

    if (p->queue_timeout <= 0 || p->nwaiting >= MAX_WAITING || !(w = calloc(1, sizeof *w))) return 0;
    w->rfd = rfd;
    w->wfd = wfd;
    if (sa) memcpy(&w->sa, sa, len);
    w->len = sa ? len : 0;
    w->deadline = np_now() + p->queue_timeout;
    snprintf(w->client, sizeof w->client, "%s", client);
    *p->waiting_tail = w;
    p->waiting_tail = &w->next;
    p->nwaiting++;
    waiting_total++;
    arm_slot_tick(WAIT_TICK);
    return 1;
}

static struct np_waiter *pop_waiter(struct np_proxy *p)
{
    struct np_waiter *w = p->waiting;

    if (!(p->waiting = w->next)) p->waiting_tail = &p->waiting;
    p->nwaiting--;
    waiting_total--;
    return w;
}

/* p's waiting clients, in order: served while there are slots, refused past their deadline
 * (or at once: gone is set when p stops serving). */
static void serve_waiting(struct np_proxy *p, int gone)
{
    while (p->waiting) {
        struct np_waiter *w = p->waiting;
        const struct sockaddr *sa = w->len ? (const struct sockaddr *)&w->sa : NULL;
        const char *reason, *why = gone ? "stopping" : turned_away(p, sa, &reason);
        char waited[64];

        if (gone) reason = "max_clients";
        if (why && !gone && for_a_slot(reason) && np_now() < w->deadline) return;
        pop_waiter(p);
        if (!why) {
            serve_client(p, w->rfd, w->wfd, sa, w->len, w->client);
        } else {
            if (!gone && for_a_slot(reason)) snprintf(waited, sizeof waited, "%s (waited %g s)", why, p->queue_timeout);
            refuse_client(p, w->rfd, w->wfd, sa, w->len, w->client, why, reason,
                          !gone && for_a_slot(reason) ? waited : NULL);
        }
        free(w);
    }
}

/* Every proxy's waiting clients, of the running config and the draining ones. */
static void serve_all_waiting(void)
{
    int left = 0;

    for (struct np_config *g = np_server.config; g; g = g == np_server.config ? np_server.draining : g->next) {
        for (int i = 0; i < g->nproxies; i++) {
            serve_waiting(&g->proxies[i], 0);
            left |= g->proxies[i].nwaiting > 0;
        }
    }
    if (left) arm_slot_tick(WAIT_TICK);
}

static void on_slot_tick(evutil_socket_t fd, short what, void *arg)
{
    serve_all_waiting();
}

/* ---------------------------------------------------------------- a new client */

/* A client of proxy p on rfd/wfd (sa: its address, when a socket): served, held for a slot
 * (past max_clients), or refused. */
static void take_client(struct np_proxy *p, int rfd, int wfd, const struct sockaddr *sa,
                        socklen_t len, const char *client)
{
    const char *reason;
    const char *why = turned_away(p, sa, &reason);

    count_accepted();
    /* past max_clients it waits; and while others wait, it waits behind them */
    if (((why && for_a_slot(reason)) || (!why && p->waiting)) && wait_for_slot(p, rfd, wfd, sa, len, client))
        return;
    if (why) refuse_client(p, rfd, wfd, sa, len, client, why, reason, NULL);
    else serve_client(p, rfd, wfd, sa, len, client);
}

/* A unix client has no address of its own: the log names it by the listener's path. */
static void on_client(void *arg, struct np_listener *l, int fd, const struct sockaddr *sa, socklen_t len)
{
    char client[NP_ADDRSTRLEN];

    if (sa->sa_family == AF_UNIX) {
        snprintf(client, sizeof client, "%s", l->addr);
    } else {
        np_addr_format(sa, len, client, sizeof client);
        np_dial_keepalive(fd, &((struct np_proxy *)arg)->keepalive);
    }
    take_client(arg, fd, fd, sa, len, client);
}

/* A new UDP flow passes the allow/deny guards and counts as a live client of its config. */
static const char *udp_admit(void *arg, struct np_proxy *p, const struct sockaddr *sa)
{
    const char *rule;

    if ((rule = np_acl_refuses(&p->config->acl, sa)) || (rule = np_acl_refuses(&p->acl, sa))) return rule;
    np_server.active++;
    p->config->live++;
    return NULL;
}

static void udp_done(void *arg, struct np_proxy *p)
{
    conn_done(p->config, NULL);
}

static const struct np_udp_ops udp_ops = { .admit = udp_admit, .done = udp_done };

/* ---------------------------------------------------------------- setup */

static int add_listener(struct np_proxy *p, struct np_listener *l)
{
    struct np_listener **grown = realloc(p->listeners, (p->nlisteners + 1) * sizeof *grown);

    if (!grown) return -1;
    p->listeners = grown;
    p->listeners[p->nlisteners++] = l;
    return 0;
}

static int add_bound(struct np_proxy *p, const struct sockaddr *sa, socklen_t len,
                     const struct np_listen_opts *o, char *err, size_t errlen)
{
    char why[256];
    struct np_listener *l = np_listener_get(sa, len, o, why, sizeof why);

    if (!l || add_listener(p, l) < 0) {
        if (l) np_listener_put(l, 0);
        snprintf(err, errlen, "%s: %s", p->name, l ? "out of memory" : why);
        return -1;
    }
    if (np_listener_first_user(l)) np_log(NP_NOTICE, "%s: listening on %s", p->name, l->addr);
    return 0;
}

/* A unix socket: a path, or "@name" in Linux's abstract namespace. */
static int bind_unix(struct np_proxy *p, const char *path, const struct np_listen_opts *o,
                     char *err, size_t errlen)
{
    struct sockaddr_storage ss;
    socklen_t len = np_addr_unix(path, &ss);

    if (len == 0) {
        snprintf(err, errlen, "%s: unix socket path '%s': want 1..%zu bytes", p->name, path,
                 sizeof ((struct sockaddr_un *)0)->sun_path - 1);
        return -1;
    }
    return add_bound(p, (struct sockaddr *)&ss, len, o, err, errlen);
}

/* Binds every address a listen entry's host resolves to (both for "localhost"). */
static int bind_entry(struct np_proxy *p, const char *host, int port, int backlog,
                      char *err, size_t errlen)
{
    struct np_listen_opts o = { .backlog = backlog, .mode = -1, .reuseport = p->config->reuseport,
                                .nworkers = p->config->nworkers };
    struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE };
    struct addrinfo *res, *ai;
    char service[16];
    int rc;

    snprintf(service, sizeof service, "%d", port);
    rc = getaddrinfo(host, service, &hints, &res);
    if (rc != 0) {
        snprintf(err, errlen, "%s: cannot resolve listen host '%s': %s", p->name, host, gai_strerror(rc));
        return -1;
    }
    for (ai = res; ai; ai = ai->ai_next) {
        if (add_bound(p, ai->ai_addr, ai->ai_addrlen, &o, err, errlen) < 0) {
            freeaddrinfo(res);
            return -1;
        }
    }
    freeaddrinfo(res);
    return 0;
}

/* proxy.listen: one { host, port [, backlog] } entry, or a list of them; no host: the
 * connector listens on nothing of ours (stdio). */
static int bind_proxy(lua_State *L, struct np_proxy *p, int t, char *err, size_t errlen)
{
    int rc = 0;

    lua_getfield(L, t, "listen");
    int listen = lua_gettop(L), n = lua_istable(L, listen) ? (int)lua_objlen(L, listen) : 0;
    for (int i = n ? 1 : 0; rc == 0 && i <= n && lua_istable(L, listen); i++) {
        if (i) lua_rawgeti(L, listen, i);
        else lua_pushvalue(L, listen);
        const char *host = np_lua_string(L, -1, "host"), *path = np_lua_string(L, -1, "path");
        int backlog = (int)np_lua_number(L, -1, "backlog", DEFAULT_BACKLOG);
        if (path) {
            struct np_listen_opts o = { .backlog = backlog, .mode = (int)np_lua_number(L, -1, "mode", -1) };
            rc = bind_unix(p, path, &o, err, errlen);
        } else if (host && np_lua_bool(L, -1, "udp", 0)) {
            rc = np_udp_bind(p, host, (int)np_lua_number(L, -1, "port", 0), p->config->nworkers,
                             &udp_ops, NULL, err, errlen);
        } else if (host) {
            rc = bind_entry(p, host, (int)np_lua_number(L, -1, "port", 0), backlog, err, errlen);
        }
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    return rc;
}

/* netproxy.session: *ref anchors its serve function; its table is left on the stack. */
static int load_session(lua_State *L, int *ref, char *err, size_t errlen)
{
    if (np_lua_require(L, "netproxy.session") < 0) {
        snprintf(err, errlen, "cannot load netproxy.session");
        return -1;
    }
    lua_getfield(L, -1, "serve");
    *ref = luaL_ref(L, LUA_REGISTRYINDEX);
    return 0;
}

/* Asks netproxy.session (at index session) whether p's connections may skip it. */
static void read_route(lua_State *L, int session, struct np_proxy *p, int t)
{
    lua_getfield(L, session, "route");
    lua_pushvalue(L, t);
    if (np_lua_run(L, 1, 1, "netproxy.session.route") < 0) return;
    np_proxy_read_route(p, L, lua_gettop(L));
    lua_pop(L, 1);
    if (p->route) np_log(NP_DEBUG, "%s: routed to %s: its connections run no Lua before the relay", p->name, p->route->label);
    if (p->sniff) np_log(NP_DEBUG, "%s: routed by the client's first bytes (%d probes): its connections run no Lua before the relay but pick()", p->name, p->sniff->npicks);
}

/* server{ shared = { name = bytes } } (checked and sized by netproxy.config): made now,
 * before any worker is forked; a reload keeps those it has. */
static int define_dicts(lua_State *L, int t, char *err, size_t errlen)
{
    int rc = 0;

    lua_getfield(L, t, "shared");
    if (lua_istable(L, -1)) {
        lua_pushnil(L);
        while (rc == 0 && lua_next(L, -2)) {
            rc = np_shdict_define(lua_tostring(L, -2), (size_t)lua_tonumber(L, -1), err, errlen);
            lua_pop(L, 1);
        }
        if (rc) lua_pop(L, 1);
    }
    lua_pop(L, 1);
    return rc;
}

static int read_server(struct np_config *g, lua_State *L, int cfg, char *err, size_t errlen)
{
    int rc;

    lua_getfield(L, cfg, "server");
    np_server.max_connections = (uint64_t)np_lua_setting(L, -1, "max_connections");
    g->max_clients = (uint64_t)np_lua_number(L, -1, "max_clients", 0);
    g->nworkers = (int)np_lua_number(L, -1, "workers", 1);
    g->reuseport = np_lua_bool(L, -1, "reuseport", 0);
    g->drain_timeout = np_lua_setting(L, -1, "drain_timeout");
    g->stop_timeout = np_lua_setting(L, -1, "stop_timeout");
    g->max_draining = (int)np_lua_setting(L, -1, "max_draining");
    g->watchdog = np_lua_setting(L, -1, "watchdog");
    g->limits = np_lua_limits(L, lua_gettop(L));
    np_budget_set_cap((size_t)np_lua_setting(L, -1, "lua_memory"));
    np_timer_set_limits(&g->limits);
    g->on_start_ref = np_lua_ref_function(L, -1, "on_start");
    g->denied_ref = np_lua_ref_function(L, -1, "on_denied");
    g->bound_ref = np_lua_ref_function(L, -1, "on_bound");
    g->log_ref = np_lua_ref_function(L, -1, "on_log");
    g->on_stop_ref = np_lua_ref_function(L, -1, "on_stop");
    rc = np_proxy_read_acl(L, lua_gettop(L), &g->acl, err, errlen);
    if (rc == 0) rc = define_dicts(L, lua_gettop(L), err, errlen);
    /* the per_source / per_user table, made before any fork; a reload keeps its size */
    if (rc == 0) rc = np_limits_init((size_t)np_lua_setting(L, -1, "limits_table"), err, errlen);
    np_tickets_set_rotate(np_lua_setting(L, -1, "ticket_rotate"));
    lua_pop(L, 1);
    return rc;
}

/* A rule of netproxy.config's normalised form { max_conns, rate_n, rate_s, ipv6_prefix }
 * at field name of the table at t, if any. */
static void read_rule(lua_State *L, int t, const char *name, struct np_limit_rule *r)
{
    lua_getfield(L, t, name);
    memset(r, 0, sizeof *r);
    if (lua_istable(L, -1)) {
        r->set = 1;
        r->max_conns = (uint32_t)np_lua_number(L, -1, "max_conns", 0);
        r->rate_n = (uint32_t)np_lua_number(L, -1, "rate_n", 0);
        r->rate_s = np_lua_number(L, -1, "rate_s", 0);
        r->v6_prefix = (int)np_lua_number(L, -1, "ipv6_prefix", 64);
    }
    lua_pop(L, 1);
}

static void read_limits(lua_State *L, struct np_proxy *p, int t)
{
    read_rule(L, t, "server_per_source", &p->per_source[0]);
    read_rule(L, t, "per_source", &p->per_source[1]);
    p->limits_in_lua = np_lua_bool(L, t, "limits_in_lua", 0);
    lua_getfield(L, t, "from");
    if (lua_istable(L, -1)) {
        lua_getfield(L, -1, "tcp_keepalive");
        np_keepalive_read(L, lua_gettop(L), &p->keepalive);
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
}

/* A new config from the one on L's stack top; NULL with err. */
static struct np_config *config_new(lua_State *L, char *err, size_t errlen)
{
    struct np_config *g = calloc(1, sizeof *g);
    int cfg = lua_gettop(L), session_ref, session;

    if (!g) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    g->L = L;
    g->on_start_ref = g->on_stop_ref = g->denied_ref = g->bound_ref = g->log_ref = LUA_NOREF;
    evtimer_assign(&g->drain_deadline, np_base, on_drain_deadline, g);
    if (read_server(g, L, cfg, err, errlen) < 0 || load_session(L, &session_ref, err, errlen) < 0)
        goto fail;
    session = lua_gettop(L);
    lua_getfield(L, cfg, "proxies");
    g->nproxies = (int)lua_objlen(L, -1);
    g->proxies = calloc(g->nproxies ? g->nproxies : 1, sizeof(struct np_proxy));
    for (int i = 0; g->proxies && i < g->nproxies; i++) {
        struct np_proxy *p = &g->proxies[i];
        p->config = g;
        lua_rawgeti(L, -1, i + 1);
        if (np_proxy_read(p, L, lua_gettop(L), session_ref, err, errlen) < 0 ||
            bind_proxy(L, p, lua_gettop(L), err, errlen) < 0) {
            lua_settop(L, cfg);
            goto fail;
        }
        read_route(L, session, p, lua_gettop(L));
        read_limits(L, p, lua_gettop(L));
        lua_pop(L, 1);
    }
    lua_settop(L, cfg);
    if (!g->proxies) goto fail;
    return g;
fail:
    g->L = NULL;                        /* still the caller's */
    config_free(g);
    return NULL;
}

int np_server_install(lua_State *L, char *err, size_t errlen)
{
    struct np_config *g, *old = np_server.config;

    if (!old) np_udp_adopt();           /* an upgraded image's UDP sockets, taken over by address */
    g = config_new(L, err, errlen);
    if (!old) np_udp_adopted_done();
    if (!g) return -1;
    np_dial_on_fd_shortage(np_listeners_pause);
    g->generation = next_generation++;
    for (int i = 0; i < g->nproxies; i++)          /* the shared sockets change hands now */
        for (int j = 0; j < g->proxies[i].nlisteners; j++)
            np_listener_serve(g->proxies[i].listeners[j], on_client, &g->proxies[i]);
    for (int i = 0; i < g->nproxies; i++) np_udp_serve(&g->proxies[i]);
    np_server.config = g;
    np_metrics_serve(g->proxies, g->nproxies);
    np_L = L;
    if (old) {
        retire(old);
        bound_draining(g->max_draining);
    }
    /* Net::Server's post_bind_hook: in the process that binds (the master, or the single
     * process), before any privilege is dropped */
    if (g->bound_ref != LUA_NOREF) run_hook(g, g->bound_ref, "on_bound", 0);
    return 0;
}

/* ---------------------------------------------------------------- stdio */

/* Standard input and output are shared with whoever started us (a shell, ssh): their
 * O_NONBLOCK flag is put back at exit. */
static int saved_flags[2] = { -1, -1 }, saved_fds[2] = { -1, -1 };

static void restore_stdio_flags(void)
{
    for (int i = 0; i < 2; i++)
        if (saved_fds[i] >= 0) fcntl(saved_fds[i], F_SETFL, saved_flags[i]);
}

/* inetd style: a socket on standard input is the client, with its address (logs, guards,
 * conn); anything else (a terminal, pipes, files) is standard input and output. */
void np_server_start_stdio(void)
{
    struct np_config *g = np_server.config;
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    char client[NP_ADDRSTRLEN] = "stdio";
    int is_socket = getpeername(0, (struct sockaddr *)&ss, &len) == 0;

    if (is_socket) {
        int one = 1;
        np_addr_format((struct sockaddr *)&ss, len, client, sizeof client);
        setsockopt(0, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);  /* not from our listener */
    }
    for (int i = 0; i < g->nproxies; i++) {
        struct np_proxy *p = &g->proxies[i];
        if (!p->stdio) continue;
        for (int fd = 0; fd < 2; fd++) {
            saved_flags[fd] = fcntl(fd, F_GETFL);
            saved_fds[fd] = fcntl(fd, F_DUPFD_CLOEXEC, 3);
            fcntl(fd, F_SETFL, saved_flags[fd] | O_NONBLOCK);
        }
        atexit(restore_stdio_flags);
        np_server.max_connections = np_server.accepted + 1;     /* done when it is done */
        take_client(p, 0, is_socket ? 0 : 1, is_socket ? (struct sockaddr *)&ss : NULL, len, client);
    }
}

int np_server_serves_stdio(void)
{
    const struct np_config *g = np_server.config;

    for (int i = 0; g && i < g->nproxies; i++)
        if (g->proxies[i].stdio) return 1;
    return 0;
}

void np_server_start_accepting(int index)
{
    np_listeners_start(index);
    np_udp_start(index);
}
