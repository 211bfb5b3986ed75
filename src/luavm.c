/* The process's Lua state: netproxy's own modules, the connectors' path, the config. */
#include "luavm.h"
#include "budget.h"
#include "cli.h"
#include "log.h"
#include "paths.h"

#include <lauxlib.h>
#include <string.h>
#include <lualib.h>
#include <stdio.h>
#include <unistd.h>

lua_State *np_L;
int np_lua_loading;

int np_lua_open(lua_CFunction core, char *err, size_t errlen)
{
    np_L = np_budget_newstate();
    if (!np_L) {
        snprintf(err, errlen, "cannot create the Lua state");
        return -1;
    }
    if (np_budget_uncounted())
        np_log(NP_WARNING, "NETPROXY_LUA_ALLOC=luajit: Lua memory is not counted, lua_call_memory and "
               "lua_memory do not apply (for benchmarks only)");
    luaL_openlibs(np_L);
    lua_getglobal(np_L, "package");
    /* our modules first, from the tree this binary belongs to (paths.c) */
    lua_pushfstring(np_L, "%s/lua/?.lua;%s/lua/?/init.lua;", np_paths_datadir(), np_paths_datadir());
    lua_getfield(np_L, -2, "path");
    lua_concat(np_L, 2);
    /* and where Debian puts Lua libraries (lua-nginx-redis, ...), even when LUA_PATH left it out */
    if (!strstr(lua_tostring(np_L, -1), ";/usr/share/lua/5.1/?.lua")) {
        lua_pushliteral(np_L, ";/usr/share/lua/5.1/?.lua;/usr/share/lua/5.1/?/init.lua");
        lua_concat(np_L, 2);
    }
    lua_setfield(np_L, -2, "path");
    lua_getfield(np_L, -1, "preload");
    lua_pushcfunction(np_L, core);
    lua_setfield(np_L, -2, "netproxy.core");
    lua_pop(np_L, 2);
    return 0;
}

void np_lua_close(void)
{
    np_budget_close(np_L);
    np_L = NULL;
}

const char *np_lua_string(lua_State *L, int idx, const char *name)
{
    const char *s;

    lua_getfield(L, idx, name);
    s = lua_tostring(L, -1);
    lua_pop(L, 1);
    return s;
}

double np_lua_number(lua_State *L, int idx, const char *name, double dflt)
{
    double v;

    lua_getfield(L, idx, name);
    v = lua_isnumber(L, -1) ? lua_tonumber(L, -1) : dflt;
    lua_pop(L, 1);
    return v;
}

double np_lua_setting(lua_State *L, int idx, const char *name)
{
    double v;

    lua_getfield(L, idx, name);
    v = lua_tonumber(L, -1);
    if (lua_isnumber(L, -1) || np_lua_require(L, "netproxy.config") < 0) {
        lua_pop(L, 1);
        return v;
    }
    lua_getfield(L, -1, "DEFAULTS");
    v = np_lua_number(L, -1, name, 0);
    lua_pop(L, 3);
    return v;
}

struct np_limits np_lua_limits(lua_State *L, int idx)
{
    return (struct np_limits){ .seconds = np_lua_setting(L, idx, "hook_budget"),
                               .max_alloc = (size_t)np_lua_setting(L, idx, "lua_call_memory") };
}

int np_lua_bool(lua_State *L, int idx, const char *name, int dflt)
{
    int v;

    lua_getfield(L, idx, name);
    v = lua_isnil(L, -1) ? dflt : lua_toboolean(L, -1);
    lua_pop(L, 1);
    return v;
}

void np_lua_unref(lua_State *L, int *ref)
{
    if (*ref != LUA_NOREF && *ref != LUA_REFNIL) luaL_unref(L, LUA_REGISTRYINDEX, *ref);
    *ref = LUA_NOREF;
}

int np_lua_ref_function(lua_State *L, int idx, const char *name)
{
    lua_getfield(L, idx, name);
    if (!lua_isfunction(L, -1)) {
        lua_pop(L, 1);
        return LUA_NOREF;
    }
    return luaL_ref(L, LUA_REGISTRYINDEX);
}

int np_lua_run(lua_State *L, int nargs, int nresults, const char *what)
{
    char err[512];

    if (np_call(L, nargs, nresults, &np_limits_none, err, sizeof err) == 0) return 0;
    np_log(NP_ERR, "%s: %s", what, err);
    return -1;
}

int np_lua_require(lua_State *L, const char *module)
{
    lua_getglobal(L, "require");
    lua_pushstring(L, module);
    return np_lua_run(L, 1, 1, module);
}

/* The command line as a table: what it sets wins over server{}. */
static void push_overrides(lua_State *L, const struct np_cli *cli)
{
    lua_newtable(L);
    if (cli->log_level >= 0) {
        lua_pushinteger(L, cli->log_level);
        lua_setfield(L, -2, "log_level");
    }
    lua_pushinteger(L, cli->verbose);
    lua_setfield(L, -2, "verbose");
    lua_pushboolean(L, cli->check);     /* warnings go to stderr, not the log */
    lua_setfield(L, -2, "check");
    if (cli->max_connections > 0) {
        lua_pushnumber(L, (lua_Number)cli->max_connections);
        lua_setfield(L, -2, "max_connections");
    }
    if (cli->workers) {
        lua_pushinteger(L, cli->workers);
        lua_setfield(L, -2, "workers");
    }
    lua_pushinteger(L, sysconf(_SC_NPROCESSORS_ONLN));
    lua_setfield(L, -2, "cpus");
    const char *strings[][2] = {
        { "pid_file", cli->pid_file }, { "user", cli->user }, { "group", cli->group },
        { "chroot", cli->chroot }, { "log_file", cli->log_file },
    };
    for (size_t i = 0; i < sizeof strings / sizeof strings[0]; i++) {
        if (!strings[i][1]) continue;
        lua_pushstring(L, strings[i][1]);
        lua_setfield(L, -2, strings[i][0]);
    }
    if (cli->daemon) {
        lua_pushboolean(L, 1);
        lua_setfield(L, -2, "daemon");
    }
    if (cli->relay) {
        lua_pushstring(L, cli->relay);
        lua_setfield(L, -2, "relay");
    }
    lua_newtable(L);
    for (int i = 0; i < cli->nconnector_path; i++) {
        lua_pushstring(L, cli->connector_path[i]);
        lua_rawseti(L, -2, i + 1);
    }
    lua_setfield(L, -2, "connector_path");
    lua_newtable(L);
    for (int i = 0; i < cli->nset; i++) {
        lua_pushstring(L, cli->set[i]);
        lua_rawseti(L, -2, i + 1);
    }
    lua_setfield(L, -2, "set");
    lua_pushfstring(L, "%s/connectors", np_paths_datadir());
    lua_setfield(L, -2, "builtin_connectors");
    if (cli->target_host) {
        const char *fields[][2] = {
            { "host", cli->target_host }, { "port", cli->target_port }, { "listen", cli->listen },
            { "proxy_user", cli->proxy_user }, { "proxy_pass", cli->proxy_pass },
            { "proxy_agent", cli->proxy_agent },
        };
        lua_newtable(L);
        for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
            if (!fields[i][1]) continue;
            lua_pushstring(L, fields[i][1]);
            lua_setfield(L, -2, fields[i][0]);
        }
        lua_newtable(L);                        /* via: the -P proxies, in order */
        for (int i = 0; i < cli->nvia; i++) {
            lua_pushstring(L, cli->via[i]);
            lua_rawseti(L, -2, i + 1);
        }
        lua_setfield(L, -2, "via");
        lua_setfield(L, -2, "oneline");
    }
}

int np_lua_load_config(const char *path, const struct np_cli *cli, int to_log)
{
    lua_State *L = np_L;
    int rc;

    if (np_lua_require(L, "netproxy.config") < 0) return -1;
    lua_getfield(L, -1, "load");
    lua_remove(L, -2);
    lua_pushstring(L, path ? path : "command line");
    push_overrides(L, cli);
    np_lua_loading = 1;
    rc = np_lua_run(L, 2, 2, "netproxy.config");
    np_lua_loading = 0;
    np_budget_rearm(L);                 /* the load's own bound may have replaced the hook */
    if (rc < 0) return -1;
    if (!lua_isnil(L, -2)) {
        lua_pop(L, 1);
        return 0;
    }
    /* nil, { "file:line: message", ... } */
    for (int i = 1;; i++) {
        lua_rawgeti(L, -1, i);
        if (lua_isnil(L, -1)) break;
        if (to_log) np_log(NP_ERR, "%s", lua_tostring(L, -1));
        else fprintf(stderr, "%s\n", lua_tostring(L, -1));
        lua_pop(L, 1);
    }
    lua_pop(L, 3);
    return -1;
}
