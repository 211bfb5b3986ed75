/* core.sleep(): a task waits without blocking the loop. The sleep is the task's pending
 * operation on its timer, so ending the task cancels it. */
#include "sleep.h"
#include "loop.h"
#include "task.h"

#include <event2/event.h>
#include <lauxlib.h>

static void on_wake(evutil_socket_t fd, short what, void *arg)
{
    struct np_task *t = arg;

    lua_pushboolean(t->owner.co, 1);
    np_task_wake(t, 1);
}

/* core.sleep(seconds) -> true, or nil, "closed" once the task's owner has ended */
static int core_sleep(lua_State *L)
{
    double seconds = luaL_checknumber(L, 1);
    struct timeval tv = np_tv(seconds);
    struct np_task *t;

    luaL_argcheck(L, seconds >= 0, 1, "must be >= 0");
    t = np_task_of(L, "sleep");
    if (t->owner.closed) {
        lua_pushnil(L);
        lua_pushliteral(L, "closed");
        return 2;
    }
    evtimer_assign(&t->timer, np_base, on_wake, t);
    evtimer_add(&t->timer, &tv);
    return np_task_wait(t, L, NULL);    /* (the task stops its timer itself) */
}

void np_sleep_open(lua_State *L)
{
    lua_pushcfunction(L, core_sleep);
    lua_setfield(L, -2, "sleep");
}
