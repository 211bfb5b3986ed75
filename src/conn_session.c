/* How a connection starts: routed (conn_routed.c), sniffed (sniff.c) or, most often, in a
 * session: the connectors of a proxy run in a coroutine (netproxy.session.serve) that is
 * handed the client, the connection's id and its Lua handle; how it returns ends the
 * connection or lets the relay go on. Also who is running: the connection whose session or
 * hook is on the stack. */
#include "conn_impl.h"
#include "log.h"
#include "proxy.h"
#include "sock.h"

#include <lauxlib.h>
#include <stddef.h>

static const struct np_task_ops session_ops;

/* ---------------------------------------------------------------- who is running */

struct np_conn *np_conn_current(void)
{
    struct np_task *t = np_task_running();

    if (np_conn_in_hook) return np_conn_in_hook;
    return t && t->ops == &session_ops ? t->arg : NULL;
}

lua_State *np_conn_session(const struct np_conn *c)
{
    return c->ended.end == NP_END_NONE && c->session && !c->session->routed ? c->session->task.owner.co : NULL;
}

/* ---------------------------------------------------------------- Lua handles */

struct np_conn *np_conn_from_handle(lua_State *L, int idx)
{
    struct np_ended *e = np_ended_from_handle(L, idx, NP_ENDED_CONN);

    return e ? (struct np_conn *)((char *)e - offsetof(struct np_conn, ended)) : NULL;
}

/* ---------------------------------------------------------------- the session */

/* The session returned: relayed (nothing to do but let the coroutine go), or ended without
 * a relay, saying how: ("refused" | "connect failed" | "closed" ..., detail). */
static void session_returned(struct np_conn *c, lua_State *co, int nresults)
{
    const char *name = nresults >= 1 ? lua_tostring(co, -nresults) : NULL;
    const char *detail = nresults >= 2 ? lua_tostring(co, 1 - nresults) : NULL;
    enum np_end how = name ? np_end_parse(name) : NP_END_NONE;

    if (c->relay && !name) {                /* its coroutine has returned: let it go */
        np_task_halt(&c->session->task);
        np_defer(&c->session_over, np_conn_session_over);
        return;
    }
    if (name && how == NP_END_NONE) {
        np_clog(NP_ERR, c->ended.id, "%s: the session ended with an unknown reason '%s'", c->proxy->name, name);
        how = NP_END_LUA_ERROR;
    }
    if (!name) np_conn_close(c, NP_END_CLOSED, "%s", "by the connector");
    else np_conn_close(c, how, "%s", detail ? detail : "");
}

static void session_failed(struct np_conn *c, lua_State *co)
{
    const char *msg = lua_tostring(co, -1);
    lua_State *L = c->proxy->L;

    np_clog(NP_ERR, c->ended.id, "%s: lua error: %s", c->proxy->name, msg);
    if (np_log_level >= NP_DEBUG) {     /* the traceback, kept on one line */
        luaL_traceback(L, co, NULL, 0);
        luaL_gsub(L, lua_tostring(L, -1), "\n\t", " | ");
        np_clog(NP_DEBUG, c->ended.id, "%s: %s", c->proxy->name, lua_tostring(L, -1));
        lua_pop(L, 2);
    }
    np_conn_close(c, NP_END_LUA_ERROR, "%s", msg);
}

static void session_finished(struct np_task *t, int ok, int nresults)
{
    struct np_conn *c = t->arg;

    if (ok) session_returned(c, t->owner.co, nresults);
    else session_failed(c, t->owner.co);
}

static const struct np_task_ops session_ops = { .finished = session_finished };

/* The connectors run in a session coroutine (netproxy.session.serve). */
static void start_session(struct np_conn *c, int rfd, int wfd)
{
    struct np_proxy *p = c->proxy;
    lua_State *co;
    int reused;

    np_conn_arm_deadline(c);
    co = np_task_init(&c->session->task, p->L, &session_ops, c, c->ended.id, &reused);
    c->session->task.limits = p->limits;
    /* a pooled coroutine waits in netproxy.session.serve for the next connection's arguments */
    if (!reused) lua_rawgeti(co, LUA_REGISTRYINDEX, p->session_ref);
    lua_rawgeti(co, LUA_REGISTRYINDEX, p->lua_ref);
    np_sock_push(co, &c->session->task.owner, rfd, wfd, c->client);
    lua_pushnumber(co, (lua_Number)c->ended.id);
    lua_pushstring(co, c->client);
    np_ended_push_handle(co, &c->ended);
    np_task_resume(&c->session->task, 5);
}

struct np_conn *np_conn_start(struct np_proxy *p, int rfd, int wfd, const char *client,
                              np_conn_done_fn *done, void *done_arg)
{
    struct np_conn *c = np_conn_new(p, rfd, wfd, client, done, done_arg);

    if (!c) return NULL;
    if (p->route) {
        c->route = p->route;
        np_conn_start_routed(c, rfd, wfd);
    } else if (p->sniff) {
        np_conn_start_sniffing(c, rfd, wfd);
    } else {
        start_session(c, rfd, wfd);
    }
    return c;
}
