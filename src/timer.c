/* core.every / core.after: a libevent timer per Lua timer; each firing runs the function
 * in a fresh task. An every timer whose previous run is still going (it sleeps, it waits
 * on a socket) skips that tick rather than pile up coroutines. */
#include "timer.h"
#include "defer.h"
#include "log.h"
#include "loop.h"
#include "luavm.h"
#include "task.h"

#include <event2/event.h>
#include <lauxlib.h>
#include <stdint.h>
#include <stdlib.h>

#define HANDLE_MT "netproxy.timer"

struct timer {
    uint64_t id;                /* what a handle names it by */
    lua_State *L;               /* the main state of the config that made it */
    int fn_ref;
    double interval;
    struct np_limits limits;    /* each resume of a run: the config's (as a hook) */
    int repeat;
    int cancelled;
    int running;                /* its task has not finished yet */
    struct event ev;
    struct np_task task;
    struct np_deferred release; /* lets a finished task go, from the loop */
    struct timer *next, **pprev;
};

struct handle {
    uint64_t id;                /* 0 once cancelled */
};

static struct timer *timers;
static uint64_t next_id = 1;
static struct np_limits run_limits;

void np_timer_set_limits(const struct np_limits *lim)
{
    run_limits = *lim;
}
static const struct np_task_ops timer_ops;

static void unlink_timer(struct timer *t)
{
    if (!t->pprev) return;
    if (t->next) t->next->pprev = t->pprev;
    *t->pprev = t->next;
    t->pprev = NULL;
}

static void timer_free(struct timer *t)
{
    event_del(&t->ev);
    np_defer_cancel(&t->release);
    if (t->task.owner.co) np_task_release(&t->task);
    luaL_unref(t->L, LUA_REGISTRYINDEX, t->fn_ref);
    unlink_timer(t);
    free(t);
}

static void on_release(struct np_deferred *d)
{
    struct timer *t = (struct timer *)((char *)d - offsetof(struct timer, release));

    np_task_release(&t->task);
    if (t->cancelled || !t->repeat) timer_free(t);
}

static void finished(struct np_task *task, int ok, int nresults)
{
    struct timer *t = task->arg;

    if (!ok) np_log(NP_ERR, "timer: lua error: %s", lua_tostring(task->owner.co, -1));
    t->running = 0;
    np_task_halt(task);
    np_defer(&t->release, on_release);
}

static const struct np_task_ops timer_ops = { .finished = finished };

static void on_fire(evutil_socket_t fd, short what, void *arg)
{
    struct timer *t = arg;
    lua_State *co;

    if (t->cancelled) return;
    if (t->running) {
        np_log(NP_INFO, "timer: still running since the last tick: this one is skipped");
        return;
    }
    if (t->task.owner.co) {             /* the last run's coroutine is not let go yet */
        np_defer_cancel(&t->release);
        np_task_release(&t->task);
    }
    co = np_task_init(&t->task, t->L, &timer_ops, t, 0, NULL);
    t->task.limits = t->limits;
    lua_rawgeti(co, LUA_REGISTRYINDEX, t->fn_ref);
    t->running = 1;
    np_task_resume(&t->task, 0);
}

/* The main state of the running code: a task's owner's, or L itself (the config load,
 * on_start, a hook: all in the main state). */
static lua_State *main_state(lua_State *L)
{
    struct np_task *t = np_task_running();

    return t && t->owner.co == L ? t->owner.L : L;
}

static int add_timer(lua_State *L, int repeat)
{
    double seconds = luaL_checknumber(L, 1);
    struct timeval tv;
    struct timer *t;
    struct handle *h;

    luaL_argcheck(L, seconds >= (repeat ? 0.001 : 0), 1, repeat ? "must be >= 0.001" : "must be >= 0");
    luaL_checktype(L, 2, LUA_TFUNCTION);
    if (np_lua_loading)     /* the master and --check load configs too: timers are the workers' */
        return luaL_error(L, "%s: not while the config loads: start timers in server{ on_start }",
                          repeat ? "every" : "after");
    t = calloc(1, sizeof *t);
    if (!t) return luaL_error(L, "timer: out of memory");
    t->id = next_id++;
    t->L = main_state(L);
    t->interval = seconds;
    t->limits = run_limits;
    t->repeat = repeat;
    lua_pushvalue(L, 2);
    t->fn_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    event_assign(&t->ev, np_base, -1, repeat ? EV_PERSIST : 0, on_fire, t);
    tv = np_tv(seconds);
    event_add(&t->ev, &tv);
    t->next = timers;
    if (timers) timers->pprev = &t->next;
    timers = t;
    t->pprev = &timers;

    h = lua_newuserdata(L, sizeof *h);
    h->id = t->id;
    luaL_getmetatable(L, HANDLE_MT);
    lua_setmetatable(L, -2);
    return 1;
}

/* core.every(seconds, fn) -> handle: fn() every seconds, each run in its own coroutine. */
static int core_every(lua_State *L) { return add_timer(L, 1); }

/* core.after(seconds, fn) -> handle: fn() once, in its own coroutine. */
static int core_after(lua_State *L) { return add_timer(L, 0); }

static struct timer *find(uint64_t id)
{
    for (struct timer *i = timers; i; i = i->next)
        if (i->id == id) return i;
    return NULL;
}

static void cancel(struct timer *t)
{
    t->cancelled = 1;
    event_del(&t->ev);
    if (t->running) {                   /* halted now, let go from the loop */
        t->running = 0;
        np_task_halt(&t->task);
        np_defer(&t->release, on_release);
    } else if (!t->release.queued) {
        timer_free(t);
    }
    /* else: its last run's coroutine is let go from the loop, and the timer with it */
}

/* handle:cancel(): no more runs; a run under way is stopped. Idempotent. */
static int timer_cancel(lua_State *L)
{
    struct handle *h = luaL_checkudata(L, 1, HANDLE_MT);
    struct timer *t = h->id ? find(h->id) : NULL;

    h->id = 0;
    if (t && !t->cancelled) cancel(t);
    return 0;
}

void np_timer_cancel_all(lua_State *main)
{
    struct timer *t = timers;

    while (t) {
        struct timer *next = t->next;
        if (t->L == main) {             /* the state is about to go: nothing may wait */
            if (t->running) np_task_halt(&t->task);
            timer_free(t);
        }
        t = next;
    }
}

void np_timer_open(lua_State *L)
{
    if (luaL_newmetatable(L, HANDLE_MT)) {
        lua_newtable(L);
        lua_pushcfunction(L, timer_cancel);
        lua_setfield(L, -2, "cancel");
        lua_setfield(L, -2, "__index");
    }
    lua_pop(L, 1);
    lua_pushcfunction(L, core_every);
    lua_setfield(L, -2, "every");
    lua_pushcfunction(L, core_after);
    lua_setfield(L, -2, "after");
}
