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

/* The task waits seconds on its timer: true, or nil, "closed" once its owner has ended. */
static int sleep_task(lua_State *L, struct np_task *t, double seconds)
{
    struct timeval tv = np_tv(seconds);

    if (t->owner.closed) {
        lua_pushnil(L);
        lua_pushliteral(L, "closed");
        return 2;
    }
    evtimer_assign(&t->timer, np_base, on_wake, t);
    evtimer_add(&t->timer, &tv);
    return np_task_wait(t, L, NULL);    /* (the task stops its timer itself) */
}

/* core.sleep(seconds) -> true, or nil, "closed" once the task's owner has ended */
static int core_sleep(lua_State *L)
{
    double seconds = luaL_checknumber(L, 1);

    luaL_argcheck(L, seconds >= 0, 1, "must be >= 0");
    return sleep_task(L, np_task_of(L, "sleep"), seconds);
}

/* A resume runs at most this long before core.turn gives the loop a turn (or a quarter of
 * its hook_budget, when that is less), so that a stretch of small calls stays well inside
 * the budget and the worker's other connections wait at most this long. */
#define TURN_SLICE 0.01

/* core.turn() -> true: when the running task has run its slice since it was resumed, waits
 * for the loop's next turn (as sleep(0)); else returns at once. A loop over cosockets whose
 * data is always there (a busy service) calls it: such a coroutine would otherwise never be
 * suspended, one resume would span the whole stream under one budget, and the worker's
 * other connections would wait for it. */
static int core_turn(lua_State *L)
{
    struct np_task *t = np_task_of(L, "turn");
    double slice = TURN_SLICE;

    if (t->limits.seconds > 0 && t->limits.seconds / 4 < slice) slice = t->limits.seconds / 4;
    if (np_clock() - t->resumed_at < slice) {
        lua_pushboolean(L, 1);
        return 1;
    }
    return sleep_task(L, t, 0);
}

void np_sleep_open(lua_State *L)
{
    lua_pushcfunction(L, core_sleep);
    lua_setfield(L, -2, "sleep");
    lua_pushcfunction(L, core_turn);
    lua_setfield(L, -2, "turn");
}
