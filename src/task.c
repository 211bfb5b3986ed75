/* A task: a Lua coroutine over cosockets, resumed by the event loop when what it waits for
 * is there; its owner hears of the end through the task's ops. */
#include "task.h"
#include "call.h"
#include "loop.h"

#include <event2/event.h>
#include <lauxlib.h>
#include <stddef.h>

#define POOL_MAX 256                /* idle coroutines kept per Lua state */

static char pool_key, done_marker;  /* their addresses are the keys */

/* L's pool of idle coroutines, a table in its registry, on the top of L's stack. */
static void push_pool(lua_State *L)
{
    lua_pushlightuserdata(L, &pool_key);
    lua_rawget(L, LUA_REGISTRYINDEX);
    if (lua_istable(L, -1)) return;
    lua_pop(L, 1);
    lua_newtable(L);
    lua_pushlightuserdata(L, &pool_key);
    lua_pushvalue(L, -2);
    lua_rawset(L, LUA_REGISTRYINDEX);
}

void np_task_push_done(lua_State *L)
{
    lua_pushlightuserdata(L, &done_marker);
}

/* An idle coroutine from the pool, pushed on L, or 0 when there is none. */
static int take_pooled(lua_State *L)
{
    int n;

    push_pool(L);
    n = (int)lua_objlen(L, -1);
    if (n == 0) {
        lua_pop(L, 1);
        return 0;
    }
    lua_rawgeti(L, -1, n);
    lua_pushnil(L);
    lua_rawseti(L, -3, n);
    lua_remove(L, -2);
    return 1;
}

/* t's coroutine (its function yielded the done marker) back to L's pool, unless it is full. */
static void give_back(lua_State *L, struct np_task *t)
{
    int n;

    push_pool(L);
    n = (int)lua_objlen(L, -1);
    if (n < POOL_MAX) {
        lua_settop(t->owner.co, 0);     /* a clean stack for its next arguments */
        lua_rawgeti(L, LUA_REGISTRYINDEX, t->co_ref);
        lua_rawseti(L, -2, n + 1);
    }
    lua_pop(L, 1);
}

static void resume_from_sock(struct np_sock_owner *o, int nresults)
{
    np_task_resume((struct np_task *)o, nresults);
}

lua_State *np_task_init(struct np_task *t, lua_State *L, const struct np_task_ops *ops,
                        void *arg, uint64_t id, int *reused)
{
    t->owner = (struct np_sock_owner){ .L = L, .resume = resume_from_sock };
    int pooled = reused ? take_pooled(L) : 0;

    if (reused) *reused = pooled;
    t->owner.co = pooled ? lua_tothread(L, -1) : lua_newthread(L);
    t->co_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    t->reusable = 0;
    t->ops = ops;
    t->arg = arg;
    t->id = id;
    evtimer_assign(&t->timer, np_base, NULL, NULL);     /* always valid to delete */
    t->cancel = NULL;
    t->pending = NULL;
    return t->owner.co;
}

struct np_task *np_task_running(void)
{
    /* every cosocket owner is a task: task.c is the only maker of owners */
    return (struct np_task *)np_sock_running();
}

struct np_task *np_task_of(lua_State *L, const char *what)
{
    struct np_task *t = np_task_running();

    if (!t || t->owner.co != L) luaL_error(L, "%s: only from a task's coroutine", what);
    return t;
}

int np_task_wait(struct np_task *t, lua_State *co, void (*cancel)(struct np_task *t))
{
    t->cancel = cancel;
    t->owner.waiting = 1;
    return lua_yield(co, 0);
}

void np_task_wake(struct np_task *t, int nresults)
{
    event_del(&t->timer);
    t->cancel = NULL;
    t->pending = NULL;
    np_task_resume(t, nresults);
}

/* The task ends with an operation pending: it is undone, and will not wake the task. */
static void stop_pending(struct np_task *t)
{
    event_del(&t->timer);
    if (t->cancel) t->cancel(t);
    t->cancel = NULL;
    t->pending = NULL;
}

void np_task_resume(struct np_task *t, int nargs)
{
    struct np_sock_owner *outer = np_sock_running();
    lua_State *co = t->owner.co;
    int rc;

    if (t->owner.closed || !co) return;
    /* the deadlines this resume sets count from now, not from the start of a loop turn
     * that many other callbacks may have made long */
    t->resumed_at = np_clock();
    t->owner.waiting = 0;
    np_sock_set_running(&t->owner);
    rc = np_call_resume(co, nargs, &t->limits);
    np_sock_set_running(outer);
    if (t->owner.closed) return;
    if (rc == LUA_YIELD) {
        if (t->owner.waiting) return;
        if (lua_gettop(co) >= 1 && lua_touserdata(co, 1) == &done_marker) {
            lua_remove(co, 1);          /* done: the results follow the marker */
            t->reusable = 1;
            t->ops->finished(t, 1, lua_gettop(co));
            return;
        }
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
    stop_pending(t);
    np_sock_halt_all(&t->owner);
}

void np_task_release(struct np_task *t)
{
    if (!t->owner.co) return;
    stop_pending(t);
    np_sock_close_all(&t->owner);
    if (t->reusable) give_back(t->owner.L, t);
    luaL_unref(t->owner.L, LUA_REGISTRYINDEX, t->co_ref);
    t->co_ref = LUA_NOREF;
    t->owner.co = NULL;
    t->owner.closed = 1;
}
