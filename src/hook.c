/* Data hooks: a Lua function called on each chunk a direction carries, in the main Lua
 * state (hooks never yield), with a time budget. The budget is enforced by a count hook that
 * looks at the clock every few thousand VM instructions; compiled traces do not run count
 * hooks, so netproxy.config turns the JIT off for hook functions (jit.off(fn, true)). */
#include "hook.h"

#include <lauxlib.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#define INSTRUCTIONS_PER_CHECK 4096

static double deadline, budget_seconds;

static double monotonic(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void on_count(lua_State *L, lua_Debug *ar)
{
    if (monotonic() > deadline)
        luaL_error(L, "hook ran longer than its budget of %f seconds", budget_seconds);
}

static int traceback(lua_State *L)
{
    luaL_traceback(L, L, lua_tostring(L, 1), 1);
    return 1;
}

int np_hook_call(lua_State *L, int fn_ref, int conn_ref, const char *data, size_t len,
                 int eof, double budget, const char **result, size_t *rlen,
                 char *err, size_t errlen)
{
    int base = lua_gettop(L), rc, nargs = eof ? 3 : 2;

    lua_pushcfunction(L, traceback);
    lua_rawgeti(L, LUA_REGISTRYINDEX, fn_ref);
    lua_pushlstring(L, data, len);
    const char *given = lua_tostring(L, -1);
    lua_rawgeti(L, LUA_REGISTRYINDEX, conn_ref);
    if (eof) lua_pushboolean(L, 1);
    budget_seconds = budget;
    deadline = monotonic() + budget;
    if (budget > 0) lua_sethook(L, on_count, LUA_MASKCOUNT, INSTRUCTIONS_PER_CHECK);
    rc = lua_pcall(L, nargs, LUA_MULTRET, base + 1);
    if (budget > 0) lua_sethook(L, NULL, 0, 0);
    if (rc != 0) {
        const char *msg = lua_tostring(L, -1);
        /* first line only: the traceback follows it */
        snprintf(err, errlen, "%.*s", (int)strcspn(msg ? msg : "?", "\n"), msg ? msg : "?");
        lua_settop(L, base);
        return -1;
    }
    lua_remove(L, base + 1);            /* the traceback function */
    if (lua_isnil(L, -1)) {
        lua_settop(L, base);
        return 0;
    }
    if (lua_type(L, -1) != LUA_TSTRING) {
        snprintf(err, errlen, "hook returned a %s (want a string or nil)", luaL_typename(L, -1));
        lua_settop(L, base);
        return -1;
    }
    *result = lua_tolstring(L, -1, rlen);
    if (*result == given) {             /* the chunk itself, handed back: nothing to copy */
        lua_settop(L, base);
        return 0;
    }
    return 1;
}

void np_hook_done(lua_State *L)
{
    lua_pop(L, 1);
}
