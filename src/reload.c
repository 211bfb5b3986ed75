/* SIGHUP: the config and every script loaded again into a new Lua state, which replaces
 * the running config; when anything fails the running one stays, and the log says why. */
#include "reload.h"
#include "budget.h"
#include "cli.h"
#include "daemon.h"
#include "log.h"
#include "luavm.h"
#include "netproxy_core.h"
#include "options.h"
#include "server.h"
#include "shm.h"

#include <lauxlib.h>

int np_reload(const struct np_cli *cli)
{
    lua_State *running = np_L;
    const char *what = cli->config ? cli->config : "the command line";
    char err[512];

    np_log(NP_NOTICE, "SIGHUP: reloading %s", what);
    np_notify("RELOADING=1");
    np_L = NULL;
    if (np_lua_open(luaopen_netproxy_core, err, sizeof err) < 0) {
        np_log(NP_ERR, "reload failed: %s: still running the previous config", err);
        goto failed;
    }
    if (np_lua_load_config(cli->config, cli, 1) < 0) {
        np_log(NP_ERR, "reload failed (the problems are above): still running the previous config");
        goto failed;
    }
    if (np_server_install(np_L, err, sizeof err) < 0) {
        np_log(NP_ERR, "reload failed: %s: still running the previous config", err);
        goto failed;
    }
    lua_getfield(np_L, -1, "server");
    np_options_reload(np_L, lua_gettop(np_L));
    lua_pop(np_L, 2);                   /* server, the config table (kept by the registry) */
    np_notify("READY=1");
    np_shm_count_reload(1);
    np_log(NP_NOTICE, "reloaded %s (config generation %d)", what, np_server.config->generation);
    return 0;
failed:
    np_budget_close(np_L);
    np_L = running;
    np_notify("READY=1");
    np_shm_count_reload(0);
    return -1;
}
