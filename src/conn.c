/* A client connection from accept to close: the session coroutine runs the connectors,
 * then the relay owns the sockets; at the end, counters and one log line. */
#include "conn.h"
#include "log.h"
#include "loop.h"
#include "luavm.h"
#include "relay.h"
#include "server.h"
#include "sock.h"

#include <arpa/inet.h>
#include <event2/event.h>
#include <lauxlib.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define HANDLE_MT "netproxy.conn_handle"

static uint64_t next_id = 1;
static struct np_conn *current;

struct np_conn *np_conn_current(void)
{
    return current;
}

void np_addr_format(const struct sockaddr *sa, char *out, size_t outlen)
{
    char ip[INET6_ADDRSTRLEN] = "?";

    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &in->sin_addr, ip, sizeof ip);
        snprintf(out, outlen, "%s:%d", ip, ntohs(in->sin_port));
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &in6->sin6_addr, ip, sizeof ip);
        snprintf(out, outlen, "[%s]:%d", ip, ntohs(in6->sin6_port));
    } else {
        snprintf(out, outlen, "unix");
    }
}

int np_conn_call_as(struct np_conn *c, lua_State *L, int nargs, int errfunc)
{
    struct np_conn *outer = current;
    int rc;

    current = c;
    rc = lua_pcall(L, nargs, LUA_MULTRET, errfunc);
    current = outer;
    return rc;
}

static void push_handle(lua_State *L, struct np_conn *c)
{
    struct np_conn_handle *h = lua_newuserdata(L, sizeof *h);

    h->conn = c;
    if (luaL_newmetatable(L, HANDLE_MT)) {
        lua_pushliteral(L, "netproxy connection");
        lua_setfield(L, -2, "__metatable");
    }
    lua_setmetatable(L, -2);
    lua_pushvalue(L, -1);
    c->handle_ref = luaL_ref(L, LUA_REGISTRYINDEX);
}

struct np_conn *np_conn_from_handle(lua_State *L, int idx)
{
    struct np_conn_handle *h = luaL_checkudata(L, idx, HANDLE_MT);

    return h->conn;
}

static void conn_free(struct np_conn *c)
{
    if (c->co_ref != LUA_NOREF) luaL_unref(np_L, LUA_REGISTRYINDEX, c->co_ref);
    if (c->handle_ref != LUA_NOREF) {
        lua_rawgeti(np_L, LUA_REGISTRYINDEX, c->handle_ref);
        ((struct np_conn_handle *)lua_touserdata(np_L, -1))->conn = NULL;
        lua_pop(np_L, 1);
        luaL_unref(np_L, LUA_REGISTRYINDEX, c->handle_ref);
    }
    free(c);
}

/* The session has finished: the coroutine is no longer needed. */
static void release_session(struct np_conn *c)
{
    event_del(&c->deadline);
    event_del(&c->sleep_ev);
    while (c->socks) np_sock_close(c->socks);
    if (c->co_ref != LUA_NOREF) luaL_unref(np_L, LUA_REGISTRYINDEX, c->co_ref);
    c->co_ref = LUA_NOREF;
    c->co = NULL;
}

void np_conn_negotiated(struct np_conn *c)
{
    if (!c->negotiating) return;
    c->negotiating = 0;
    c->proxy->negotiating--;
}

void np_conn_end(struct np_conn *c, const char *fmt, ...)
{
    struct np_proxy *p = c->proxy;
    va_list ap;

    if (c->ended) return;
    c->ended = 1;
    va_start(ap, fmt);
    vsnprintf(c->reason, sizeof c->reason, fmt, ap);
    va_end(ap);
    np_conn_negotiated(c);
    event_del(&c->deadline);
    event_del(&c->sleep_ev);
    while (c->socks) np_sock_close(c->socks);
    if (c->relay) np_relay_free(c->relay);
    c->relay = NULL;
    NP_COUNTERS(p)->closed++;
    NP_COUNTERS(p)->active--;
    /* how it ended: refused by a guard or connector, cleanly, or an error of some kind */
    if (!strncmp(c->reason, "refused", 7)) NP_COUNTERS(p)->refused++;
    else if (strcmp(c->reason, "eof") && strncmp(c->reason, "closed by", 9)) NP_COUNTERS(p)->errors++;
    np_clog(NP_NOTICE, c->id, "%s: %s -> %s in=%llu out=%llu time=%.3fs end=%s", p->name,
            c->client, c->target[0] ? c->target : "-", (unsigned long long)c->bytes_in,
            (unsigned long long)c->bytes_out, np_now() - c->started, c->reason);
    if (!c->resuming) conn_free(c);
    np_server_conn_done();
}

static void on_deadline(evutil_socket_t fd, short what, void *arg)
{
    np_conn_end(arg, "negotiation timeout");
}

/* After lua_resume returned: what the session's state means for the connection. */
static void after_resume(struct np_conn *c, int rc)
{
    lua_State *co = c->co;

    if (rc == LUA_YIELD) {
        if (!c->waiting)
            np_conn_end(c, "lua error: the session yielded outside a netproxy call");
    } else if (rc == 0) {
        const char *why = lua_isstring(co, -1) ? lua_tostring(co, -1) : NULL;
        if (c->relay) release_session(c);
        else np_conn_end(c, "%s", why ? why : "closed by the connector");
    } else {
        const char *msg = lua_tostring(co, -1);
        if (!msg) msg = "(error object is not a string)";
        np_clog(NP_ERR, c->id, "%s: lua error: %s", c->proxy->name, msg);
        if (np_log_level >= NP_DEBUG) {     /* the traceback, kept on one line */
            luaL_traceback(np_L, co, NULL, 0);
            luaL_gsub(np_L, lua_tostring(np_L, -1), "\n\t", " | ");
            np_clog(NP_DEBUG, c->id, "%s: %s", c->proxy->name, lua_tostring(np_L, -1));
            lua_pop(np_L, 2);
        }
        np_conn_end(c, "lua error: %s", msg);
    }
}

void np_conn_resume(struct np_conn *c, int nargs)
{
    struct np_conn *outer = current;
    int rc;

    current = c;
    c->resuming++;
    c->waiting = 0;
    rc = lua_resume(c->co, nargs);
    current = outer;
    if (!c->ended) after_resume(c, rc);
    if (--c->resuming == 0 && c->ended) conn_free(c);
}

void np_conn_start(struct np_proxy *p, int rfd, int wfd, const char *client)
{
    struct np_conn *c = calloc(1, sizeof *c);
    lua_State *co;

    if (!c) {
        close(rfd);
        if (wfd != rfd) close(wfd);
        np_server_conn_done();
        return;
    }
    c->id = next_id++;
    c->proxy = p;
    c->started = np_now();
    c->co_ref = LUA_NOREF;
    c->handle_ref = LUA_NOREF;
    snprintf(c->client, sizeof c->client, "%s", client);
    NP_COUNTERS(p)->opened++;
    NP_COUNTERS(p)->active++;
    p->negotiating++;
    c->negotiating = 1;
    evtimer_assign(&c->deadline, np_base, on_deadline, c);
    evtimer_assign(&c->sleep_ev, np_base, NULL, NULL);
    if (p->negotiation_timeout > 0) {
        struct timeval tv = np_tv(p->negotiation_timeout);
        evtimer_add(&c->deadline, &tv);
    }
    np_clog(NP_INFO, c->id, "%s: accepted %s", p->name, c->client);

    co = lua_newthread(np_L);
    c->co = co;
    c->co_ref = luaL_ref(np_L, LUA_REGISTRYINDEX);
    lua_rawgeti(co, LUA_REGISTRYINDEX, np_server.session_ref);
    lua_rawgeti(co, LUA_REGISTRYINDEX, p->lua_ref);
    np_sock_push(co, c, rfd, wfd);
    lua_pushnumber(co, (lua_Number)c->id);
    lua_pushstring(co, c->client);
    push_handle(co, c);
    np_conn_resume(c, 5);
}

void np_conn_accept(struct np_proxy *p, int fd, const struct sockaddr *sa, socklen_t len)
{
    char client[NP_ADDRSTRLEN];

    np_addr_format(sa, client, sizeof client);
    np_conn_start(p, fd, fd, client);
}
