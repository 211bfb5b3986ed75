/* The accept path: the guards every new client passes (allow/deny, max_clients,
 * max_negotiating, per_source), waiting for a slot, the clients of listeners, of UDP flows
 * and of standard input. */
#include "server_impl.h"
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

static void arm_slot_tick(double seconds);
static int waiting_total;               /* clients waiting for a slot, over every proxy */

static void conn_done(void *arg, struct np_conn *c)
{
    struct np_config *g = arg;

    np_server.active--;
    if (waiting_total) arm_slot_tick(0);    /* a slot is free: the clients waiting for one */
    if (--g->live == 0 && g->draining && g != np_server.config) np_server_config_done(g);
    np_server_maybe_finish();
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
    np_server_maybe_finish();
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
void np_server_serve_waiting(struct np_proxy *p, int gone)
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
            np_server_serve_waiting(&g->proxies[i], 0);
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
void np_server_on_client(void *arg, struct np_listener *l, int fd, const struct sockaddr *sa, socklen_t len)
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

const struct np_udp_ops np_server_udp_ops = { .admit = udp_admit, .done = udp_done };

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
