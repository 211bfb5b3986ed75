/* netproxy: load a Lua config, bind its proxies, run the event loop. */
#include "cli.h"
#include "log.h"
#include "loop.h"
#include "luavm.h"
#include "master.h"
#include "metrics.h"
#include "pipepool.h"
#include "server.h"
#include "shm.h"
#include "worker.h"

#include <event2/event.h>
#include <lauxlib.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>

static const char *stats_addr;
static int workers;

/* The server{} options C needs before anything runs, from the config on the stack top. */
static void apply_server_options(void)
{
    lua_getfield(np_L, -1, "server");
    lua_getfield(np_L, -1, "log_level");
    np_log_level = (int)lua_tointeger(np_L, -1);
    lua_getfield(np_L, -2, "pipe_size");
    np_pipepool_configure((size_t)lua_tointeger(np_L, -1), 1024);
    lua_pop(np_L, 2);
    lua_getfield(np_L, -1, "workers");
    workers = (int)lua_tointeger(np_L, -1);
    lua_pop(np_L, 1);
    lua_getfield(np_L, -1, "stats");
    stats_addr = lua_tostring(np_L, -1);        /* the config table keeps it alive */
    lua_pop(np_L, 1);
    lua_getfield(np_L, -1, "resolvers");
    if (lua_istable(np_L, -1)) {
        int n = (int)lua_objlen(np_L, -1);
        const char *list[n > 0 ? n : 1];
        for (int i = 0; i < n; i++) {
            lua_rawgeti(np_L, -1, i + 1);
            list[i] = lua_tostring(np_L, -1);   /* kept alive by the config table */
            lua_pop(np_L, 1);
        }
        np_loop_set_nameservers(list, n);
    }
    lua_pop(np_L, 2);
}

int main(int argc, char **argv)
{
    struct np_cli cli;
    char err[512];
    int rc = np_cli_parse(argc, argv, &cli);

    if (rc >= 0) return rc;
    /* A peer that closes while we write must be an error code, not a death. */
    signal(SIGPIPE, SIG_IGN);
    if (np_shm_init() < 0) {
        fprintf(stderr, "netproxy: cannot map the shared counters\n");
        return 1;
    }
    if (np_loop_init(err, sizeof err) < 0 || np_lua_open(err, sizeof err) < 0) {
        fprintf(stderr, "netproxy: %s\n", err);
        return 1;
    }
    int loaded = np_lua_load_config(cli.config, &cli) == 0;
    if (!loaded || cli.check) {             /* a bad config never starts; --check stops here */
        if (loaded) printf("%s: OK\n", cli.config ? cli.config : "command line");
        np_lua_close();
        np_loop_free();
        return loaded ? 0 : 1;
    }
    apply_server_options();
    if (np_server_setup(err, sizeof err) < 0 ||
        (stats_addr && np_metrics_listen(stats_addr, err, sizeof err) < 0)) {
        np_log(NP_ERR, "%s", err);
        return 1;
    }
    lua_pop(np_L, 1);
    np_log(NP_NOTICE, "netproxy %s running %d prox%s from %s", NP_VERSION, np_server.nproxies,
           np_server.nproxies == 1 ? "y" : "ies", cli.config ? cli.config : "the command line");
    rc = workers > 1 ? np_master_run(workers, &cli) : np_worker_run();
    np_metrics_close();
    np_lua_close();
    np_pipepool_free();
    np_loop_free();
    return rc;
}
