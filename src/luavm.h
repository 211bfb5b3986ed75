/* The process's Lua state: netproxy's own modules, the connectors' path, the config. */
#ifndef NP_LUAVM_H
#define NP_LUAVM_H
#include "call.h"

#include <stddef.h>
#include <lua.h>

extern lua_State *np_L;

/* Set while a config script runs (np_lua_load_config): what only a running config may do
 * (timers) refuses then. */
extern int np_lua_loading;

struct np_cli;

/* Creates the state with lua/ on package.path and core preloaded as netproxy.core. */
int np_lua_open(lua_CFunction core, char *err, size_t errlen);
void np_lua_close(void);

/* Loads and checks the config script, applying the command line over its server{} options.
 * On success pushes the config table and returns 0. On failure prints every problem as
 * "file:line: message" on stderr (to the log instead when to_log is set: a reload) and
 * returns -1. */
int np_lua_load_config(const char *path, const struct np_cli *cli, int to_log);

/* Fields of the table at idx: a string (kept alive by the table; NULL when absent), a
 * number or a boolean (dflt when absent). */
const char *np_lua_string(lua_State *L, int idx, const char *name);
double np_lua_number(lua_State *L, int idx, const char *name, double dflt);
int np_lua_bool(lua_State *L, int idx, const char *name, int dflt);

/* A number netproxy.config sets in every normalised server and proxy table: the field, or
 * (never in practice) its DEFAULTS entry. C restates no default. */
double np_lua_setting(lua_State *L, int idx, const char *name);

/* hook_budget and lua_call_memory of the normalised proxy or server table at idx. */
struct np_limits np_lua_limits(lua_State *L, int idx);

/* A registry ref to the field when it is a function, else LUA_NOREF. */
int np_lua_ref_function(lua_State *L, int idx, const char *name);

/* Lets the registry reference *ref go (none: LUA_NOREF or LUA_REFNIL) and sets it to
 * LUA_NOREF; idempotent. */
void np_lua_unref(lua_State *L, int *ref);

/* Calls one of netproxy's own functions (np_call, no limits) with nargs arguments; logs a
 * failure as "what: error". 0, or -1. */
int np_lua_run(lua_State *L, int nargs, int nresults, const char *what);

/* Pushes require(module): 0, or -1 (logged, nothing pushed). */
int np_lua_require(lua_State *L, const char *module);

#endif
