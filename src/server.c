/* The running config: the proxies and their listeners, the guards every new client passes
 * (allow/deny, limits), the count of live connections, and when the process is done. */
#include "server.h"
#include "conn.h"
#include "listener.h"
#include "log.h"
#include "loop.h"
#include "luavm.h"
#include "sock.h"

#include <event2/event.h>
#include <fcntl.h>
#include <lauxlib.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define DEFAULT_BACKLOG 4096

struct np_server np_server;

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
    np_server.active--;
    maybe_finish();
}

void np_server_stop_accepting(void)
{
    np_listeners_close_all();
}

void np_server_stop(void)
{
    np_server.stopping = 1;
    np_server_stop_accepting();
    maybe_finish();
}

/* ---------------------------------------------------------------- the accept path */

/* A client turned away at accept: closed at once, counted, logged (at most one line a
 * second per proxy, so a flood cannot flood the log too). */
static void refuse(struct np_proxy *p, int fd, const struct sockaddr *sa, socklen_t len, const char *why)
{
    char who[NP_ADDRSTRLEN];

    close(fd);
    NP_COUNTERS(p)->refused++;
    if (np_now() - p->refused_warned < 1.0) {
        p->refused_unlogged++;
        return;
    }
    p->refused_warned = np_now();
    np_addr_format(sa, len, who, sizeof who);
    if (p->refused_unlogged)
        np_log(NP_NOTICE, "%s: refused %s: %s (and %llu more since the last such line)", p->name,
               who, why, (unsigned long long)p->refused_unlogged);
    else
        np_log(NP_NOTICE, "%s: refused %s: %s", p->name, who, why);
    p->refused_unlogged = 0;
}

static uint64_t all_active(void)
{
    uint64_t n = 0;

    for (int i = 0; i < np_server.nproxies; i++) n += np_shm_sum(np_server.proxies[i].row).active;
    return n;
}

/* Why a new client may not be served now, or NULL. Too many still negotiating (a flood of
 * silent clients on a sniffing port) is refused rather than let memory and fds run out. */
static const char *turned_away(struct np_proxy *p, const struct sockaddr *sa)
{
    static char why[96];
    const char *rule;

    if ((rule = np_acl_refuses(&np_server.acl, sa))) {
        snprintf(why, sizeof why, "%s (server)", rule);
        return why;
    }
    if ((rule = np_acl_refuses(&p->acl, sa))) return rule;
    /* the limits count every worker's connections (shared counters) */
    if (p->max_clients && np_shm_sum(p->row).active >= p->max_clients) return "max_clients";
    if (np_server.max_clients && all_active() >= np_server.max_clients) return "max_clients (server)";
    if (p->negotiating >= p->max_negotiating) {
        snprintf(why, sizeof why, "%llu connections negotiating (max_negotiating)",
                 (unsigned long long)p->negotiating);
        return why;
    }
    return NULL;
}

static void on_client(void *arg, int fd, const struct sockaddr *sa, socklen_t len)
{
    struct np_proxy *p = arg;
    char client[NP_ADDRSTRLEN];
    const char *why = turned_away(p, sa);

    if (why) {
        refuse(p, fd, sa, len, why);
        return;
    }
    np_server.accepted++;
    np_server.active++;
    if (np_server.max_connections && np_server.accepted >= np_server.max_connections)
        np_server_stop_accepting();
    np_addr_format(sa, len, client, sizeof client);
    np_conn_start(p, fd, fd, client, conn_done, NULL);
}

/* ---------------------------------------------------------------- setup */

static int add_listener(struct np_proxy *p, struct np_listener *l)
{
    struct np_listener **grown = realloc(p->listeners, (p->nlisteners + 1) * sizeof *grown);

    if (!grown) return -1;
    p->listeners = grown;
    p->listeners[p->nlisteners++] = l;
    np_listener_serve(l, on_client, p);
    return 0;
}

/* Binds every address a listen entry's host resolves to (both for "localhost"). */
static int bind_entry(struct np_proxy *p, const char *host, int port, int backlog,
                      char *err, size_t errlen)
{
    struct np_listen_opts o = { .backlog = backlog, .reuseport = np_server.reuseport,
                                .nworkers = np_server.nworkers };
    struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE };
    struct addrinfo *res, *ai;
    char service[16], why[256];
    int rc;

    snprintf(service, sizeof service, "%d", port);
    rc = getaddrinfo(host, service, &hints, &res);
    if (rc != 0) {
        snprintf(err, errlen, "%s: cannot resolve listen host '%s': %s", p->name, host, gai_strerror(rc));
        return -1;
    }
    for (ai = res; ai; ai = ai->ai_next) {
        struct np_listener *l = np_listener_get(ai->ai_addr, ai->ai_addrlen, &o, why, sizeof why);
        if (!l || add_listener(p, l) < 0) {
            if (l) np_listener_put(l, 0);
            snprintf(err, errlen, "%s: %s", p->name, l ? "out of memory" : why);
            freeaddrinfo(res);
            return -1;
        }
        if (l->refs == 1) np_log(NP_NOTICE, "%s: listening on %s", p->name, l->addr);
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
        const char *host = np_lua_string(L, -1, "host");
        if (host)
            rc = bind_entry(p, host, (int)np_lua_number(L, -1, "port", 0),
                            (int)np_lua_number(L, -1, "backlog", DEFAULT_BACKLOG), err, errlen);
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    return rc;
}

static void free_proxies(int say)
{
    for (int i = 0; i < np_server.nproxies; i++) {
        struct np_proxy *p = &np_server.proxies[i];
        for (int j = 0; j < p->nlisteners; j++) np_listener_put(p->listeners[j], say);
        np_proxy_free(p);
    }
    free(np_server.proxies);
    np_acl_free(&np_server.acl);
    np_server.proxies = NULL;
    np_server.nproxies = 0;
}

static int load_session(lua_State *L, int *ref, char *err, size_t errlen)
{
    lua_getglobal(L, "require");
    lua_pushliteral(L, "netproxy.session");
    if (np_lua_pcall(L, 1, 1, "netproxy.session") < 0) {
        snprintf(err, errlen, "cannot load netproxy.session");
        return -1;
    }
    lua_getfield(L, -1, "run");
    lua_remove(L, -2);
    *ref = luaL_ref(L, LUA_REGISTRYINDEX);
    return 0;
}

int np_server_setup(lua_State *L, char *err, size_t errlen)
{
    int cfg = lua_gettop(L), session_ref;

    np_sock_on_fd_shortage(np_listeners_pause);
    lua_getfield(L, cfg, "server");
    np_server.max_connections = (uint64_t)np_lua_number(L, -1, "max_connections", 0);
    np_server.max_clients = (uint64_t)np_lua_number(L, -1, "max_clients", 0);
    np_server.nworkers = (int)np_lua_number(L, -1, "workers", 1);
    np_server.reuseport = np_lua_bool(L, -1, "reuseport", 0);
    if (np_proxy_read_acl(L, lua_gettop(L), &np_server.acl, err, errlen) < 0) return -1;
    lua_pop(L, 1);
    if (load_session(L, &session_ref, err, errlen) < 0) return -1;
    lua_getfield(L, cfg, "proxies");
    np_server.nproxies = (int)lua_objlen(L, -1);
    np_server.proxies = calloc(np_server.nproxies ? np_server.nproxies : 1, sizeof(struct np_proxy));
    for (int i = 0; i < np_server.nproxies; i++) {
        struct np_proxy *p = &np_server.proxies[i];
        lua_rawgeti(L, -1, i + 1);
        if (np_proxy_read(p, L, lua_gettop(L), session_ref, err, errlen) < 0 ||
            bind_proxy(L, p, lua_gettop(L), err, errlen) < 0)
            return -1;
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
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

void np_server_start_stdio(void)
{
    for (int i = 0; i < np_server.nproxies; i++) {
        struct np_proxy *p = &np_server.proxies[i];
        if (!p->stdio) continue;
        for (int fd = 0; fd < 2; fd++) {
            saved_flags[fd] = fcntl(fd, F_GETFL);
            saved_fds[fd] = fcntl(fd, F_DUPFD_CLOEXEC, 3);
            fcntl(fd, F_SETFL, saved_flags[fd] | O_NONBLOCK);
        }
        atexit(restore_stdio_flags);
        np_server.accepted++;
        np_server.active++;
        np_server.max_connections = np_server.accepted;     /* done when it is done */
        np_conn_start(p, 0, 1, "stdio", conn_done, NULL);
    }
}

void np_server_start_accepting(int index)
{
    np_listeners_start(index);
}

/* ---------------------------------------------------------------- reload (master) */

static struct np_server saved;

void np_server_prepare_reload(void)
{
    saved = np_server;
    np_server.proxies = NULL;
    np_server.nproxies = 0;
    memset(&np_server.acl, 0, sizeof np_server.acl);
}

/* The new setup runs: the old one lets its listeners go (those the new one shares stay). */
void np_server_reload_done(void)
{
    struct np_server fresh = np_server;

    np_server = saved;
    free_proxies(1);
    np_server = fresh;
}

/* The new setup failed: it lets its listeners go (its new sockets close), the old comes back. */
void np_server_reload_failed(void)
{
    free_proxies(0);
    np_server = saved;
}
