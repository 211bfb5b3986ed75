/* Data hooks: a Lua function called on each chunk a direction carries, in the main Lua
 * state (hooks never yield), with a time budget so that a runaway hook costs its own
 * connection only. */
#ifndef NP_HOOK_H
#define NP_HOOK_H
#include <stddef.h>
#include <lua.h>

/* Calls hook(data, conn [, true]) in L with the values at the registry refs (conn nil for
 * LUA_NOREF), under a call budget of budget seconds and max_alloc bytes (0: no limit); eof
 * set means the source has ended and data is "". Returns 1 when the hook returned a string: *result
 * points into it until np_hook_done(). 0 when it returned nil: keep the chunk. -1 when it
 * raised an error, returned something else, or overran budget seconds; err says why. */
int np_hook_call(lua_State *L, int fn_ref, int conn_ref, const char *data, size_t len,
                 int eof, double budget, size_t max_alloc, const char **result, size_t *rlen,
                 char *err, size_t errlen);

/* Calls the function under nargs arguments on L's stack (L may be a coroutine: the function
 * must not wait) under a call budget of budget seconds and max_alloc bytes. 0 with its first
 * nresults results left on the stack, or -1 with err (the first line of the error) and
 * nothing left. */
int np_hook_pcall(lua_State *L, int nargs, int nresults, double budget, size_t max_alloc,
                  char *err, size_t errlen);

/* Releases the string np_hook_call returned. */
void np_hook_done(lua_State *L);

#endif
