/* A proxy's UDP side: its settings (read once from its Lua table), its listening addresses
 * (bound or taken over by address, udp_sock.c), the proxy their new flows (udp.c) go to
 * after a reload, and its release. */
#include "udp_impl.h"
#include "log.h"
#include "luavm.h"
#include "proxy.h"

#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- the proxy's side */

static int ref_field(lua_State *L, int t, const char *sub, const char *name)
{
    int ref = LUA_NOREF;

    lua_getfield(L, t, sub);
    if (lua_istable(L, -1)) ref = np_lua_ref_function(L, -1, name);
    lua_pop(L, 1);
    return ref;
}

static int read_settings(struct np_udp *u, lua_State *L, char *err, size_t errlen)
{
    int t;
    const char *type, *host;

    lua_rawgeti(L, LUA_REGISTRYINDEX, u->p->lua_ref);
    t = lua_gettop(L);
    u->idle_timeout = np_lua_setting(L, t, "udp_idle_timeout");
    u->max_flows = (uint64_t)np_lua_setting(L, t, "max_flows");
    u->hook_ref[0] = ref_field(L, t, "from", "hook");
    u->hook_ref[1] = ref_field(L, t, "to", "hook");
    u->datagram_ref = ref_field(L, t, "to", "datagram");
    lua_getfield(L, t, "from");
    lua_getfield(L, -1, "probes");
    u->quic = lua_istable(L, -1);       /* quic probes: every flow picks its server (udp_probe.c) */
    u->probe_timeout = np_lua_number(L, -2, "probe_timeout", 0);   /* connectors/udp.lua's check fills it */
    lua_pop(L, 2);
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
                    u->hook_ref[1] != LUA_NOREF || u->datagram_ref != LUA_NOREF || u->pooled || u->quic;
    lua_settop(L, t - 1);
    if (!u->host && !u->pooled && u->datagram_ref == LUA_NOREF && !u->quic) {
        snprintf(err, errlen, "%s: a udp from wants to = { type = \"udp\", host =, port = } or a datagram service", u->p->name);
        return -1;
    }
    if (wants_lua) {
        if (np_lua_require(L, "netproxy.udp") < 0) {
            snprintf(err, errlen, "cannot load netproxy.udp");
            return -1;
        }
        lua_getfield(L, -1, "start");
        u->start_ref = luaL_ref(L, LUA_REGISTRYINDEX);
        if (u->pooled || u->quic) {     /* (a probe's `to` may be a pool too) */
            lua_getfield(L, -1, "pick");
            u->pick_ref = luaL_ref(L, LUA_REGISTRYINDEX);
            lua_getfield(L, -1, "failed");
            u->failed_ref = luaL_ref(L, LUA_REGISTRYINDEX);
        }
        if (u->quic) {
            lua_getfield(L, -1, "route");
            u->route_ref = luaL_ref(L, LUA_REGISTRYINDEX);
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
    u->pick_ref = u->failed_ref = u->route_ref = LUA_NOREF;
    p->udp = u;
    if (read_settings(u, p->L, err, errlen) < 0) return NULL;    /* freed by np_udp_release */
    return u;
}

/* The first user of a socket in this process says so; n sockets when a group. */
static void say_listening(const struct np_proxy *p, const struct np_usock *ls)
{
    char what[64] = "";

    if (ls->b->refs != 1 + ls->b->passed) return;
    if (ls->b->passed) snprintf(what, sizeof what, ", %d socket%s passed by the previous binary", ls->b->n,
                                ls->b->n == 1 ? "" : "s");
    else if (ls->b->n > 1) snprintf(what, sizeof what, ", %d sockets", ls->b->n);
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
    int n = np_udp_started || workers < 1 ? 1 : workers, rc;

    if (!u) return -1;
    snprintf(service, sizeof service, "%d", port);
    if ((rc = getaddrinfo(host, service, &hints, &res)) != 0) {
        snprintf(err, errlen, "%s: cannot resolve listen host '%s': %s", p->name, host, gai_strerror(rc));
        return -1;
    }
    for (ai = res; ai; ai = ai->ai_next) {
        struct np_usock *ls = np_usock_get(ai->ai_addr, ai->ai_addrlen, n, p->name, why, sizeof why);
        struct np_usock **grown = ls ? realloc(u->socks, (u->nsocks + 1) * sizeof *grown) : NULL;
        if (!grown) {
            if (ls) np_usock_put(ls, 0);
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
        struct np_usock *ls = p->udp->socks[i];
        ls->serve = p->udp;
        if (np_udp_started && ls->reading) np_usock_arm(ls);     /* a single process's reload: a new address */
    }
}

void np_udp_release(struct np_proxy *p, int say)
{
    struct np_udp *u = p->udp;
    lua_State *L = p->L;

    if (!u) return;
    for (int i = 0; i < u->nsocks; i++) {
        if (u->socks[i]->serve == u) u->socks[i]->serve = NULL;
        np_usock_put(u->socks[i], say);
    }
    free(u->socks);
    u->socks = NULL;
    u->nsocks = 0;
    if (u->nflows) {            /* its flows run on; freed with the proxy's config */
        u->released = 1;
        return;
    }
    if (L) {
        np_lua_unref(L, &u->hook_ref[0]);
        np_lua_unref(L, &u->hook_ref[1]);
        np_lua_unref(L, &u->datagram_ref);
        np_lua_unref(L, &u->start_ref);
        np_lua_unref(L, &u->pick_ref);
        np_lua_unref(L, &u->failed_ref);
        np_lua_unref(L, &u->route_ref);
    }
    free(u->host);
    free(u);
    p->udp = NULL;
}

void np_udp_close_all(struct np_proxy *p, enum np_end how, const char *why)
{
    struct np_udp *u = p->udp;

    while (u && u->lru_head) np_flow_close(u->lru_head, how, "%s", why);
}
