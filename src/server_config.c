/* A new config read from the loaded one on a Lua stack: its server{} settings, its proxies
 * with their listeners bound or taken over, routes and limits. */
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

#define DEFAULT_BACKLOG 4096

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
                      int defer_accept, char *err, size_t errlen)
{
    struct np_listen_opts o = { .backlog = backlog, .mode = -1, .reuseport = p->config->reuseport,
                                .nworkers = p->config->nworkers, .defer_accept = defer_accept };
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

/* proxy.listen: one { host, port [, backlog] [, defer_accept] } entry, or a list of them; no host: the
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
                             &np_server_udp_ops, NULL, err, errlen);
        } else if (host) {
            rc = bind_entry(p, host, (int)np_lua_number(L, -1, "port", 0), backlog,
                            (int)np_lua_number(L, -1, "defer_accept", 0), err, errlen);
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
struct np_config *np_server_config_new(lua_State *L, char *err, size_t errlen)
{
    struct np_config *g = calloc(1, sizeof *g);
    int cfg = lua_gettop(L), session_ref, session;

    if (!g) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    g->L = L;
    g->on_start_ref = g->on_stop_ref = g->denied_ref = g->bound_ref = g->log_ref = LUA_NOREF;
    evtimer_assign(&g->drain_deadline, np_base, np_server_on_drain_deadline, g);
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
    np_server_config_free(g);
    return NULL;
}
