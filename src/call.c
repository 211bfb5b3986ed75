/* The one door into user Lua: a protected call or a resume under the call budget of
 * budget.h (time and memory). See call.h. */
#include "call.h"
#include "budget.h"

#include <lauxlib.h>
#include <stdio.h>
#include <string.h>

const struct np_limits np_limits_none = { 0, 0 };

static int traceback(lua_State *L)
{
    luaL_traceback(L, L, lua_tostring(L, 1), 1);
    return 1;
}

/* Pushes traceback, made once per state and kept in its registry: a C function pushed anew
 * is a new object for the collector, at every chunk of every hooked connection. */
static void push_traceback(lua_State *L)
{
    static const char key = 0;

    lua_pushlightuserdata(L, (void *)&key);
    lua_rawget(L, LUA_REGISTRYINDEX);
    if (!lua_isnil(L, -1)) return;
    lua_pop(L, 1);
    lua_pushcfunction(L, traceback);
    lua_pushlightuserdata(L, (void *)&key);
    lua_pushvalue(L, -2);
    lua_rawset(L, LUA_REGISTRYINDEX);
}

int np_call(lua_State *L, int nargs, int nresults, const struct np_limits *lim, char *err, size_t errlen)
{
    int base = lua_gettop(L) - nargs, rc;
    struct np_budget outer;

    push_traceback(L);
    lua_insert(L, base);
    if (lim) np_budget_begin(&outer, lim->seconds, lim->max_alloc);
    rc = lua_pcall(L, nargs, nresults, base);
    if (lim) np_budget_end(&outer);
    if (rc != 0) {
        const char *msg = lua_tostring(L, -1);
        /* first line only: the traceback follows it */
        snprintf(err, errlen, "%.*s", (int)strcspn(msg ? msg : "?", "\n"), msg ? msg : "?");
        lua_settop(L, base - 1);
        return -1;
    }
    lua_remove(L, base);                /* the traceback function */
    return 0;
}

int np_call_resume(lua_State *co, int nargs, const struct np_limits *lim)
{
    struct np_budget outer;
    int rc;

    np_budget_begin(&outer, lim->seconds, lim->max_alloc);
    rc = lua_resume(co, nargs);
    np_budget_end(&outer);
    return rc;
}
