/* Data hooks: a Lua function called on each chunk a direction carries, in the main Lua
 * state (hooks never yield), through the one door (call.h), and what it returned. */
#include "hook.h"

#include <lauxlib.h>
#include <stdio.h>

int np_hook_call(lua_State *L, int fn_ref, int conn_ref, const char *data, size_t len, int eof,
                 const struct np_limits *lim, const char **result, size_t *rlen, char *err, size_t errlen)
{
    int base = lua_gettop(L);

    lua_rawgeti(L, LUA_REGISTRYINDEX, fn_ref);
    lua_pushlstring(L, data, len);
    const char *given = lua_tostring(L, -1);
    if (conn_ref == LUA_NOREF) lua_pushnil(L);      /* a hook that takes none */
    else lua_rawgeti(L, LUA_REGISTRYINDEX, conn_ref);
    if (eof) lua_pushboolean(L, 1);
    if (np_call(L, eof ? 3 : 2, LUA_MULTRET, lim, err, errlen) < 0) return -1;
    if (lua_gettop(L) == base || lua_isnil(L, -1)) {   /* its last result decides */
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
    if (lua_gettop(L) > base + 1) {     /* only it stays, for np_hook_done to pop */
        lua_replace(L, base + 1);
        lua_settop(L, base + 1);
    }
    return 1;
}

void np_hook_done(lua_State *L)
{
    lua_pop(L, 1);
}
