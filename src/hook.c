/* Data hooks: a Lua function called on each chunk a direction carries, in the main Lua
 * state (hooks never yield), under the call budget of budget.h (time and memory). */
#include "hook.h"
#include "budget.h"

#include <lauxlib.h>
#include <stdio.h>
#include <string.h>

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

int np_hook_call(lua_State *L, int fn_ref, int conn_ref, const char *data, size_t len,
                 int eof, double budget, size_t max_alloc, const char **result, size_t *rlen,
                 char *err, size_t errlen)
{
    int base = lua_gettop(L), rc, nargs = eof ? 3 : 2;
    struct np_budget outer;

    push_traceback(L);
    lua_rawgeti(L, LUA_REGISTRYINDEX, fn_ref);
    lua_pushlstring(L, data, len);
    const char *given = lua_tostring(L, -1);
    if (conn_ref == LUA_NOREF) lua_pushnil(L);      /* a hook that takes none */
    else lua_rawgeti(L, LUA_REGISTRYINDEX, conn_ref);
    if (eof) lua_pushboolean(L, 1);
    np_budget_begin(&outer, budget, max_alloc);
    rc = lua_pcall(L, nargs, LUA_MULTRET, base + 1);
    np_budget_end(&outer);
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

int np_hook_pcall(lua_State *L, int nargs, int nresults, double budget, size_t max_alloc,
                  char *err, size_t errlen)
{
    int base = lua_gettop(L) - nargs, rc;
    struct np_budget outer;

    push_traceback(L);
    lua_insert(L, base);
    np_budget_begin(&outer, budget, max_alloc);
    rc = lua_pcall(L, nargs, nresults, base);
    np_budget_end(&outer);
    if (rc != 0) {
        const char *msg = lua_tostring(L, -1);
        snprintf(err, errlen, "%.*s", (int)strcspn(msg ? msg : "?", "\n"), msg ? msg : "?");
        lua_settop(L, base - 1);
        return -1;
    }
    lua_remove(L, base);                /* the traceback function */
    return 0;
}

void np_hook_done(lua_State *L)
{
    lua_pop(L, 1);
}
