/* netproxy.core: the whole C surface that Lua sees: cosockets (sock.c), sleep (timer.c),
 * logging, the clock, and the hand-off of a negotiated connection to the relay. */
#include "binding.h"
#include "conn.h"
#include "log.h"
#include "loop.h"
#include "relay.h"
#include "server.h"
#include "sock.h"
#include "timer.h"

#include <lauxlib.h>
#include <string.h>

static struct np_conn *session_conn(lua_State *L, const char *what)
{
    struct np_conn *c = np_conn_current();

    if (!c || c->co != L) luaL_error(L, "%s: only from a connection's coroutine", what);
    return c;
}

static int check_level(lua_State *L, int idx)
{
    int level = lua_type(L, idx) == LUA_TNUMBER ? (int)lua_tointeger(L, idx)
                                                : np_log_level_parse(luaL_checkstring(L, idx));

    luaL_argcheck(L, level >= 0 && level <= 4, idx, "log level must be 0..4 or err..debug");
    return level;
}

/* core.log(level, message): about the running connection when there is one. */
static int core_log(lua_State *L)
{
    int level = check_level(L, 1);
    const char *msg = luaL_checkstring(L, 2);
    struct np_conn *c = np_conn_current();

    if (level <= np_log_level) np_log_conn(level, c ? c->id : 0, "%s", msg);
    return 0;
}

/* core.log_enabled(level) -> boolean: skip building messages nobody will see. */
static int core_log_enabled(lua_State *L)
{
    lua_pushboolean(L, check_level(L, 1) <= np_log_level);
    return 1;
}

static int core_now(lua_State *L)
{
    lua_pushnumber(L, np_now());
    return 1;
}

/* core.set_target(text): what the connection's log line names as its destination. */
static int core_set_target(lua_State *L)
{
    struct np_conn *c = session_conn(L, "set_target");
    const char *t = luaL_checkstring(L, 1);

    snprintf(c->target, sizeof c->target, "%s", t);
    return 0;
}

/* core.relay(client, server): the C relay takes both sockets; the session is over.
 * Returns true, or nil and why when the connection could not be handed over. */
static int core_relay(lua_State *L)
{
    struct np_sock *client = np_sock_check(L, 1), *server = np_sock_check(L, 2);
    struct np_conn *c = session_conn(L, "relay");
    struct evbuffer *client_ahead, *server_ahead;
    int cfd, sfd;

    luaL_argcheck(L, client != server, 2, "client and server are the same socket");
    if (c->ended || c->relay || client->fd < 0 || server->fd < 0) {
        lua_pushnil(L);
        lua_pushliteral(L, "closed");
        return 2;
    }
    cfd = np_sock_detach(client, &client_ahead);
    sfd = np_sock_detach(server, &server_ahead);
    np_relay_start(c, c->proxy->relay_mode, cfd, client_ahead, sfd, server_ahead);
    lua_pushboolean(L, 1);
    return 1;
}

static const luaL_Reg core_funcs[] = {
    { "log", core_log },
    { "log_enabled", core_log_enabled },
    { "now", core_now },
    { "set_target", core_set_target },
    { "relay", core_relay },
    { NULL, NULL },
};

int luaopen_netproxy_core(lua_State *L)
{
    lua_newtable(L);
    luaL_register(L, NULL, core_funcs);
    np_sock_open(L);
    np_timer_open(L);
    lua_pushstring(L, NP_VERSION);
    lua_setfield(L, -2, "version");
    return 1;
}
