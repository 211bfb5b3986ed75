/* A task: a Lua coroutine over cosockets, resumed by the event loop when what it waits for
 * is there; its owner hears of the end through the task's ops. */
#include "task.h"
#include "budget.h"
#include "loop.h"

#include <event2/event.h>
#include <lauxlib.h>
#include <stddef.h>

static void resume_from_sock(struct np_sock_owner *o, int nresults)
{
    np_task_resume((struct np_task *)o, nresults);
}

lua_State *np_task_init(struct np_task *t, lua_State *L, const struct np_task_ops *ops,
                        void *arg, uint64_t id)
{
    t->owner = (struct np_sock_owner){ .L = L, .resume = resume_from_sock };
    t->owner.co = lua_newthread(L);
    t->co_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    t->ops = ops;
    t->arg = arg;
    t->id = id;
    evtimer_assign(&t->sleep_ev, np_base, NULL, NULL);
    return t->owner.co;
}

struct np_task *np_task_running(void)
{
    /* every cosocket owner is a task: task.c is the only maker of owners */
    return (struct np_task *)np_sock_running();
}

int np_task_wait(struct np_task *t, lua_State *co)
{
    t->owner.waiting = 1;
    return lua_yield(co, 0);
}

void np_task_resume(struct np_task *t, int nargs)
{
    struct np_sock_owner *outer = np_sock_running();
    lua_State *co = t->owner.co;
    struct np_budget outer_budget;
    int rc;

    if (t->owner.closed || !co) return;
    t->owner.waiting = 0;
    np_sock_set_running(&t->owner);
    np_budget_begin(&outer_budget, t->budget, t->max_alloc);
    rc = lua_resume(co, nargs);
    np_budget_end(&outer_budget);
    np_sock_set_running(outer);
    if (t->owner.closed) return;
    if (rc == LUA_YIELD) {
        if (t->owner.waiting) return;
        lua_pushliteral(co, "the coroutine yielded outside a netproxy call");
        t->ops->finished(t, 0, 1);
    } else if (rc == 0) {
        t->ops->finished(t, 1, lua_gettop(co));
    } else {
        if (!lua_isstring(co, -1)) lua_pushliteral(co, "(error object is not a string)");
        t->ops->finished(t, 0, 1);
    }
}

void np_task_halt(struct np_task *t)
{
    t->owner.closed = 1;
    event_del(&t->sleep_ev);
    np_sock_halt_all(&t->owner);
}

void np_task_release(struct np_task *t)
{
    if (!t->owner.co) return;
    event_del(&t->sleep_ev);
    np_sock_close_all(&t->owner);
    luaL_unref(t->owner.L, LUA_REGISTRYINDEX, t->co_ref);
    t->co_ref = LUA_NOREF;
    t->owner.co = NULL;
    t->owner.closed = 1;
}
