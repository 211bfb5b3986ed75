/* The probing stage of a UDP flow whose `from` has quic probes: its first datagrams are held
 * (bounded in count and bytes) and read as QUIC Initials (quic.c) until the TLS ClientHello is
 * whole; netproxy.udp.route then picks the server from it (or the fallback: not QUIC, a hello
 * that never completes within probe_timeout, too much held), and udp.c is told (the routed()
 * callback it gave): the flow goes on as any other, the held datagrams sent first, unchanged. */
#include "udp_impl.h"
#include "call.h"
#include "log.h"
#include "loop.h"
#include "proxy.h"
#include "quic.h"

#include <event2/event.h>
#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>

#define PROBE_MAX_BYTES 32768           /* read while probing; the count held is udp.c's MAX_QUEUED */

struct np_flow_probe {
    np_flow_routed *routed;             /* udp.c's, told the server picked */
    struct np_quic_hello *hello;
    struct event timer;                 /* probe_timeout */
    size_t bytes;                       /* held so far */
};

void np_flow_probe_end(struct np_flow *f)
{
    struct np_flow_probe *pr = f->probe;

    if (!pr) return;
    event_del(&pr->timer);
    np_quic_hello_free(pr->hello);
    free(pr);
    f->probe = NULL;
}

/* Not QUIC as read here: counted as a refusal, and said at most once a second per proxy (a
 * flood of them must not flood the log); the flow's own line says where it went. */
static void say_refusal(struct np_flow *f, const char *why, int dropped)
{
    struct np_udp *u = f->u;

    NP_COUNTERS(u->p)->refused++;
    if (np_now() - u->warned < 1.0) {
        u->unlogged++;
        return;
    }
    np_clog(NP_NOTICE, f->ended.id, "%s: not a QUIC ClientHello (%s): %s (and %llu more since the last such line)",
            u->p->name, why, dropped ? "dropped" : "to the fallback", (unsigned long long)u->unlogged);
    u->warned = np_now();
    u->unlogged = 0;
}

static char *dup_field(lua_State *L, int idx)
{
    return lua_isstring(L, idx) ? strdup(lua_tostring(L, idx)) : NULL;
}

/* netproxy.udp.route(conn, hello | nil, why) -> host, port | true (conn's pool) | nil, why;
 * then sni, alpn: the flow's server, picked once, told to udp.c through routed() (probing has
 * ended by then: what it held is in the flow's queue). */
static void route(struct np_flow *f, const uint8_t *hello, size_t len, const char *why)
{
    struct np_udp *u = f->u;
    lua_State *L = u->p->L;
    int base = lua_gettop(L);
    np_flow_routed *routed = f->probe->routed;
    struct np_flow_route r = { .how = NP_END_NONE };
    char err[512], *host = NULL;

    lua_rawgeti(L, LUA_REGISTRYINDEX, u->route_ref);
    lua_rawgeti(L, LUA_REGISTRYINDEX, f->conn_ref);
    if (hello) lua_pushlstring(L, (const char *)hello, len);
    else lua_pushnil(L);
    lua_pushstring(L, why);
    np_flow_probe_end(f);               /* (hello was in it: copied onto the stack first) */
    if (np_call(L, 3, 4, &u->p->limits, err, sizeof err) < 0) {
        np_clog(NP_ERR, f->ended.id, "%s: %s", u->p->name, err);
        r.how = NP_END_LUA_ERROR;
        r.why = "quic probes";
        routed(f, &r);
        lua_settop(L, base);
        return;
    }
    f->sni = dup_field(L, base + 3);
    f->alpn = dup_field(L, base + 4);
    if (!hello) say_refusal(f, why, lua_isnil(L, base + 1));
    if (lua_isnil(L, base + 1)) {
        r.how = NP_END_REFUSED;
        r.why = lua_tostring(L, base + 2) ? lua_tostring(L, base + 2) : why;
    } else if (lua_isboolean(L, base + 1)) {
        r.pooled = 1;
    } else if (!(host = strdup(lua_tostring(L, base + 1)))) {
        r.how = NP_END_NO_MEMORY;
        r.why = "the server's name";
    } else {
        r.host = host;
        r.port = (int)lua_tointeger(L, base + 2);
    }
    routed(f, &r);                      /* (r.why may be on the stack: popped after) */
    lua_settop(L, base);
    free(host);
}

static void on_timeout(evutil_socket_t fd, short what, void *arg)
{
    struct np_flow *f = arg;

    if (f->ended.end == NP_END_NONE && f->probe) route(f, NULL, 0, "probe_timeout: no whole ClientHello");
}

int np_flow_probe_start(struct np_flow *f, np_flow_routed *routed)
{
    struct np_flow_probe *pr = calloc(1, sizeof *pr);
    struct timeval tv;

    if (!pr || !(pr->hello = np_quic_hello_new())) {
        free(pr);
        return -1;
    }
    tv.tv_sec = (time_t)f->u->probe_timeout;
    tv.tv_usec = (suseconds_t)((f->u->probe_timeout - (double)tv.tv_sec) * 1e6);
    evtimer_assign(&pr->timer, np_base, on_timeout, f);
    evtimer_add(&pr->timer, &tv);
    pr->routed = routed;
    f->probe = pr;
    return 0;
}

void np_flow_probe(struct np_flow *f, const char *data, size_t len, int held)
{
    struct np_flow_probe *pr = f->probe;
    const char *why = NULL;
    const uint8_t *hello;
    size_t hlen = 0;
    int rc;

    if (!held || pr->bytes + len > PROBE_MAX_BYTES) {
        route(f, NULL, 0, "too many datagrams before a whole ClientHello");
        return;
    }
    pr->bytes += len;
    rc = np_quic_hello_feed(pr->hello, (const uint8_t *)data, len, &why);
    if (rc == 0) return;
    hello = rc > 0 ? np_quic_hello_bytes(pr->hello, &hlen) : NULL;
    route(f, hello, hlen, why ? why : "not QUIC");
}
