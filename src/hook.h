/* Data hooks: a Lua function called on each chunk a direction carries, in the main Lua
 * state (hooks never yield), under the limits of its proxy, so that a runaway hook costs
 * its own connection only. */
#ifndef NP_HOOK_H
#define NP_HOOK_H
#include "call.h"

#include <stddef.h>
#include <lua.h>

/* Calls hook(data, conn [, true]) in L with the values at the registry refs (conn nil for
 * LUA_NOREF), under lim; eof set means the source has ended and data is "". Returns 1 when
 * the hook returned a string: *result points into it until np_hook_done(). 0 when it
 * returned nil (or the chunk itself): keep the chunk. -1 when it raised an error, returned
 * something else, or overran its budget; err says why. */
int np_hook_call(lua_State *L, int fn_ref, int conn_ref, const char *data, size_t len, int eof,
                 const struct np_limits *lim, const char **result, size_t *rlen, char *err, size_t errlen);

/* Releases the string np_hook_call returned. */
void np_hook_done(lua_State *L);

#endif
