/* The running configs (generations, each with its Lua state; a replaced one drains), the
 * count of live connections ending the process, stop and drain deadlines and the lifecycle
 * hooks. Accepting a client is server_accept.c's; reading a config, server_config.c's. */
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

void np_server_config_free(struct np_config *g)
{
    for (int i = 0; i < g->nproxies; i++) np_server_serve_waiting(&g->proxies[i], 1);
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
void np_server_config_done(struct np_config *g)
{
    np_log(NP_INFO, "config generation %d: drained", g->generation);
    unlink_draining(g);
    np_server_config_free(g);
}

void np_server_on_drain_deadline(evutil_socket_t fd, short what, void *arg)
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
        np_server_config_free(g);
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

void np_server_maybe_finish(void)
{
    int quota_done = np_server.max_connections &&
                     np_server.accepted >= np_server.max_connections;

    if ((quota_done || np_server.stopping) && np_server.active == 0)
        event_base_loopbreak(np_base);
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
    np_server_maybe_finish();
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
    np_server_maybe_finish();
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
        np_server_config_free(g);
    }
    np_server.ndraining = 0;
    np_metrics_serve(NULL, 0);
    if (np_server.config) np_server_config_free(np_server.config);
    np_server.config = NULL;
}

int np_server_install(lua_State *L, char *err, size_t errlen)
{
    struct np_config *g, *old = np_server.config;

    if (!old) np_udp_adopt();           /* an upgraded image's UDP sockets, taken over by address */
    g = np_server_config_new(L, err, errlen);
    if (!old) np_udp_adopted_done();
    if (!g) return -1;
    np_dial_on_fd_shortage(np_listeners_pause);
    g->generation = next_generation++;
    for (int i = 0; i < g->nproxies; i++)          /* the shared sockets change hands now */
        for (int j = 0; j < g->proxies[i].nlisteners; j++)
            np_listener_serve(g->proxies[i].listeners[j], np_server_on_client, &g->proxies[i]);
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
