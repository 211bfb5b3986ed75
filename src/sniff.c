/* A sniffing proxy's connection (np_sniff): the client's first bytes read by dual's timing
 * rules (sniffer.c), handed to the config's pick function, and then connected and relayed
 * as a routed proxy does (conn_routed.c); silence and no match have routes of their own. */
#include "conn_impl.h"
#include "call.h"
#include "errtoken.h"
#include "log.h"
#include "proxy.h"

#include <lauxlib.h>

/* The route is chosen: the bytes read go to its server first. */
static void chose(struct np_conn *c, const struct np_route *r)
{
    struct session *s = c->session;

    s->ahead = np_sniffer_take(&s->sniffer, &s->ahead_len);
    c->route = r;
    np_conn_dial_route(c);
}

/* pick(bytes) under the proxy's limits: the index of a route (1-based; past the last: none
 * can match), NP_SNIFF_MORE or NP_SNIFF_FAILED (the error kept in the connection's end). */
static int pick(void *arg, const char *bytes, size_t len)
{
    struct np_conn *c = arg, *outer = np_conn_in_hook;
    const struct np_sniff *sn = c->proxy->sniff;
    lua_State *L = c->proxy->L;
    char err[256];
    int rc, i;

    lua_rawgeti(L, LUA_REGISTRYINDEX, sn->pick_ref);
    lua_pushlstring(L, bytes, len);
    np_conn_in_hook = c;
    rc = np_call(L, 1, 1, &c->proxy->limits, err, sizeof err);
    np_conn_in_hook = outer;
    if (rc < 0) {
        np_clog(NP_ERR, c->ended.id, "%s: lua error: %s", c->proxy->name, err);
        np_conn_close(c, NP_END_LUA_ERROR, "%s", err);
        return NP_SNIFF_FAILED;
    }
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        return NP_SNIFF_MORE;
    }
    i = lua_type(L, -1) == LUA_TNUMBER ? (int)lua_tointeger(L, -1) : 0;
    lua_pop(L, 1);
    return i >= 1 && i <= sn->npicks ? i : NP_SNIFF_NONE;
}

static void ended(void *arg, enum np_sniff_end how, int value, int heard, size_t bytes)
{
    struct np_conn *c = arg;
    const struct np_sniff *sn = c->proxy->sniff;

    switch (how) {
    case NP_SNIFF_PICKED:
        np_clog(NP_INFO, c->ended.id, "%s: %s after %zu bytes", c->proxy->name, sn->notes[value - 1], bytes);
        chose(c, sn->picks[value - 1]);
        break;
    case NP_SNIFF_NO_MATCH:
        if (sn->fallback) chose(c, sn->fallback);
        else np_conn_close(c, NP_END_REFUSED, "no probe matched the first %zu bytes", bytes);
        break;
    case NP_SNIFF_SILENT:
        if (sn->silent) chose(c, sn->silent);
        else np_conn_close(c, NP_END_REFUSED, "client silent for %gs", sn->rules.silence);
        break;
    case NP_SNIFF_CLOSED:
        np_conn_close(c, NP_END_REFUSED, "client %s%s", value == 0 ? "closed" : np_err_token(value),
                      heard ? " while probed" : "");
        break;
    case NP_SNIFF_PICK_FAILED:          /* pick closed the connection already */
        break;
    }
}

static const struct np_sniffer_ops sniff_ops = { .pick = pick, .ended = ended };

/* The proxy chooses its server by the client's first bytes (np_sniff): read them as they
 * come, then connect and relay as a routed proxy does. */
void np_conn_start_sniffing(struct np_conn *c, int rfd, int wfd)
{
    struct session *s = c->session;

    s->routed = 1;
    s->client_fd[0] = rfd;
    s->client_fd[1] = wfd;
    np_conn_arm_deadline(c);
    np_sniffer_start(&s->sniffer, rfd, NULL, 0, c->ended.started, &c->proxy->sniff->rules, &sniff_ops, c);
}
