/* core.sleep(): a connector waits without blocking the loop. The timer lives in the
 * connection, so ending the connection cancels it. */
#include "timer.h"
#include "conn.h"
#include "loop.h"

#include <event2/event.h>
#include <lauxlib.h>

static void on_wake(evutil_socket_t fd, short what, void *arg)
{
    struct np_conn *c = arg;

    lua_pushboolean(c->co, 1);
    np_conn_resume(c, 1);
}

/* core.sleep(seconds) -> true */
static int core_sleep(lua_State *L)
{
    double seconds = luaL_checknumber(L, 1);
    struct np_conn *c = np_conn_current();
    struct timeval tv = np_tv(seconds);

    luaL_argcheck(L, seconds >= 0, 1, "must be >= 0");
    if (!c || c->co != L) return luaL_error(L, "sleep: only from a connection's coroutine");
    if (c->ended) {
        lua_pushnil(L);
        lua_pushliteral(L, "closed");
        return 2;
    }
    evtimer_assign(&c->sleep_ev, np_base, on_wake, c);
    evtimer_add(&c->sleep_ev, &tv);
    c->waiting = 1;
    return lua_yield(L, 0);
}

void np_timer_open(lua_State *L)
{
    lua_pushcfunction(L, core_sleep);
    lua_setfield(L, -2, "sleep");
}
