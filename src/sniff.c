/* The sniffer: a proxy that chooses its server by the client's first bytes (np_sniff)
 * reads them as they come, asks the config's pick function, and then connects and relays
 * as a routed proxy does (conn_routed.c); silence and no match have routes of their own. */
#include "conn_impl.h"
#include "call.h"
#include "log.h"
#include "loop.h"
#include "proxy.h"
#include "errtoken.h"
#include "sock.h"

#include <errno.h>
#include <event2/event.h>
#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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
    np_conn_dial_route(c);
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
    struct np_conn *outer = np_conn_in_hook;
    lua_State *L = c->proxy->L;
    char err[256];
    int rc, i;

    lua_rawgeti(L, LUA_REGISTRYINDEX, sn->pick_ref);
    lua_pushlstring(L, s->ahead, s->ahead_len);
    np_conn_in_hook = c;
    rc = np_call(L, 1, 1, &c->proxy->limits, err, sizeof err);
    np_conn_in_hook = outer;
    if (rc < 0) {
        np_clog(NP_ERR, c->ended.id, "%s: lua error: %s", c->proxy->name, err);
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
    if (*chosen) np_clog(NP_INFO, c->ended.id, "%s: %s after %zu bytes", c->proxy->name, sn->notes[i - 1], s->ahead_len);
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
        sniff_wait(s, s->heard ? s->heard + sn->probe_timeout - np_now() : c->ended.started + sn->silence - np_now());
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
void np_conn_start_sniffing(struct np_conn *c, int rfd, int wfd)
{
    struct session *s = c->session;

    s->routed = s->sniffing = 1;
    s->client_fd[0] = rfd;
    s->client_fd[1] = wfd;
    event_assign(&s->wait, np_base, rfd, EV_READ, on_client_bytes, c);
    np_conn_arm_deadline(c);
    sniff_heard(c);                     /* its bytes are often there already */
}
