/* Active checks: each checked server's loop (Lua, netproxy.pool) runs in a task of its own,
 * so a server that swallows connects delays only its own checks. The pools whose servers come
 * from DNS get their lookup loop here too (netproxy.pool's start_checks spawns both), in the
 * same one process, which writes the answers into the shared rows for every worker. The tasks of a Lua state
 * are kept in a list, so that closing the state (a drained config) ends them first. */
#include "checker.h"
#include "log.h"
#include "luavm.h"
#include "loop.h"
#include "pool.h"
#include "task.h"

#include <event2/event.h>
#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>

struct check {
    struct np_task task;
    lua_State *L;
    struct event reap;          /* the task is let go outside its own resume */
    struct event start;         /* spawned by a running task: first resumed from the loop */
    int nargs;
    struct check *next, **pprev;
};

static struct check *checks;

/* While np_checker_start runs (core.pool_spawn works only then): its state and proxies. */
static struct {
    lua_State *L;
    const struct np_proxy *proxies;
    int nproxies;
} starting;

/* The limits of the proxy named name among those starting: the ones its hooks run under. */
static const struct np_limits *limits_of(const char *name)
{
    for (int i = 0; i < starting.nproxies; i++)
        if (!strcmp(starting.proxies[i].name, name)) return &starting.proxies[i].limits;
    return NULL;
}

static void check_free(struct check *k)
{
    if (k->next) k->next->pprev = k->pprev;
    *k->pprev = k->next;
    event_del(&k->reap);
    event_del(&k->start);
    np_task_release(&k->task);
    free(k);
}

static void on_reap(evutil_socket_t fd, short what, void *arg)
{
    check_free(arg);
}

static void finished(struct np_task *t, int ok, int nresults)
{
    struct check *k = (struct check *)t;
    struct timeval now = { 0, 0 };

    if (!ok) np_log(NP_ERR, "pool check: %s", lua_tostring(t->owner.co, -1));
    np_task_halt(t);
    evtimer_add(&k->reap, &now);
}

static const struct np_task_ops check_ops = { .finished = finished };

static void on_start(evutil_socket_t fd, short what, void *arg)
{
    struct check *k = arg;

    np_task_resume(&k->task, k->nargs);
}

/* core.pool_spawn(proxy, fn, ...): runs fn(...) in a task of its own (cosockets, core.sleep),
 * each resume under the proxy's limits. While the checks start, or from a task spawned so
 * (a DNS pool's lookup loop starts the checks of the servers it finds: under its own
 * limits, from the loop's next turn, as one coroutine cannot resume another's task). */
static int core_pool_spawn(lua_State *L)
{
    const char *proxy = luaL_checkstring(L, 1);
    int nargs = lua_gettop(L) - 2;
    const struct np_limits *lim;
    struct np_task *running = np_task_running();
    struct check *k;
    lua_State *co, *owner;

    luaL_checktype(L, 2, LUA_TFUNCTION);
    if (starting.L) {
        owner = starting.L;
        if (!(lim = limits_of(proxy))) return luaL_error(L, "pool_spawn: no proxy named '%s'", proxy);
    } else if (running && running->ops == &check_ops) {
        owner = ((struct check *)running)->L;
        lim = &running->limits;
    } else {
        return luaL_error(L, "pool_spawn: only while the checks start, or from a check's task");
    }
    k = calloc(1, sizeof *k);
    if (!k) return luaL_error(L, "pool_spawn: out of memory");
    co = np_task_init(&k->task, owner, &check_ops, k, 0, NULL);
    k->task.limits = *lim;
    k->L = owner;
    k->nargs = nargs;
    evtimer_assign(&k->reap, np_base, on_reap, k);
    evtimer_assign(&k->start, np_base, on_start, k);
    k->next = checks;
    k->pprev = &checks;
    if (checks) checks->pprev = &k->next;
    checks = k;
    lua_xmove(L, co, nargs + 1);
    if (starting.L) {
        np_task_resume(&k->task, nargs);
    } else {
        struct timeval now = { 0, 0 };
        evtimer_add(&k->start, &now);
    }
    return 0;
}

/* core.pool_epoch() -> the newest start's number: an older checker stops when it differs. */
static int core_pool_epoch(lua_State *L)
{
    lua_pushinteger(L, np_pool_epoch());
    return 1;
}

void np_checker_start(lua_State *L, const struct np_proxy *proxies, int nproxies)
{
    int epoch = np_pool_new_epoch(), top = lua_gettop(L);   /* a new epoch ends the older checks */

    /* no pool in this config: netproxy.pool was never loaded, and is not loaded now */
    lua_getglobal(L, "package");
    lua_getfield(L, -1, "loaded");
    lua_getfield(L, -1, "netproxy.pool");
    if (lua_isnil(L, -1)) {
        lua_settop(L, top);
        return;
    }
    lua_getfield(L, -1, "start_checks");
    lua_pushinteger(L, epoch);
    starting.L = L;
    starting.proxies = proxies;
    starting.nproxies = nproxies;
    np_lua_run(L, 1, 0, "pool checks");
    starting.L = NULL;
    starting.proxies = NULL;
    starting.nproxies = 0;
    lua_settop(L, top);
}

void np_checker_stop(lua_State *L)
{
    for (struct check *k = checks, *next; k; k = next) {
        next = k->next;
        if (k->L == L) check_free(k);
    }
}

void np_checker_open(lua_State *L)
{
    lua_pushcfunction(L, core_pool_spawn);
    lua_setfield(L, -2, "pool_spawn");
    lua_pushcfunction(L, core_pool_epoch);
    lua_setfield(L, -2, "pool_epoch");
}
