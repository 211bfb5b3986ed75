/* The one door into user Lua: every call of code a config wrote (hooks, routes, accept,
 * probes, services, timers, checks, balance functions, on_* callbacks, UDP routes) and every
 * resume of a coroutine that runs it goes through np_call or np_call_resume, under the
 * limits of the proxy (or server) it belongs to, read once from the config. */
#ifndef NP_CALL_H
#define NP_CALL_H
#include <stddef.h>
#include <lua.h>

/* What one call (or one resume) may use: hook_budget and lua_call_memory. */
struct np_limits {
    double seconds;             /* of CPU time (see budget.h); 0 = unbounded */
    size_t max_alloc;           /* bytes the call may add to what Lua holds; 0 = no limit */
};

/* For netproxy's own modules (loading the config, which bounds the user's script itself). */
extern const struct np_limits np_limits_none;

/* Calls the function under nargs arguments on L's stack (L may be a coroutine: the function
 * must not wait) under lim (NULL: within the call already running, counted in its budget). 0 with its nresults results (LUA_MULTRET: all) left on the stack,
 * or -1 with err (the first line of the error: "file:line: message") and nothing left. */
int np_call(lua_State *L, int nargs, int nresults, const struct np_limits *lim, char *err, size_t errlen);

/* lua_resume(co, nargs) under lim: lua_resume's status. */
int np_call_resume(lua_State *co, int nargs, const struct np_limits *lim);

#endif
