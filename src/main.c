/* netproxy: load a Lua config, bind its proxies, run the event loop. */
#include "cli.h"
#include "log.h"
#include "loop.h"
#include "luavm.h"
#include "metrics.h"
#include "pipepool.h"
#include "server.h"
#include "shm.h"

#include <event2/event.h>
#include <lauxlib.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>

#define STOP_DEADLINE 10.0  /* seconds live connections get after SIGTERM/SIGINT */

static struct event sigterm_ev, sigint_ev, stop_deadline;
static const char *stats_addr;
static int stop_signals;

static void on_stop_deadline(evutil_socket_t fd, short what, void *arg)
{
    np_log(NP_WARNING, "stop: %llu connections still open after %.0fs, closing them",
           (unsigned long long)np_server.active, STOP_DEADLINE);
    event_base_loopbreak(np_base);
}

static void on_stop_signal(evutil_socket_t sig, short what, void *arg)
{
    struct timeval tv = np_tv(STOP_DEADLINE);

    if (++stop_signals > 1) {
        np_log(NP_NOTICE, "second stop signal: exiting now");
        event_base_loopbreak(np_base);
        return;
    }
    np_log(NP_NOTICE, "signal %d: no new connections; waiting for %llu to finish", (int)sig,
           (unsigned long long)np_server.active);
    evtimer_add(&stop_deadline, &tv);
    np_server_stop();
}

static void watch_signals(void)
{
    evsignal_assign(&sigterm_ev, np_base, SIGTERM, on_stop_signal, NULL);
    evsignal_assign(&sigint_ev, np_base, SIGINT, on_stop_signal, NULL);
    evtimer_assign(&stop_deadline, np_base, on_stop_deadline, NULL);
    evsignal_add(&sigterm_ev, NULL);
    evsignal_add(&sigint_ev, NULL);
}

/* The server{} options C needs before anything runs, from the config on the stack top. */
static void apply_server_options(void)
{
    lua_getfield(np_L, -1, "server");
    lua_getfield(np_L, -1, "log_level");
    np_log_level = (int)lua_tointeger(np_L, -1);
    lua_getfield(np_L, -2, "pipe_size");
    np_pipepool_configure((size_t)lua_tointeger(np_L, -1), 1024);
    lua_pop(np_L, 2);
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
    watch_signals();
    np_server_start_stdio();
    np_log(NP_NOTICE, "netproxy %s running %d prox%s from %s", NP_VERSION, np_server.nproxies,
           np_server.nproxies == 1 ? "y" : "ies", cli.config ? cli.config : "the command line");
    event_base_dispatch(np_base);
    np_log(NP_INFO, "exiting: %llu connections handled", (unsigned long long)np_server.accepted);
    np_metrics_close();
    np_lua_close();
    np_pipepool_free();
    np_loop_free();
    return 0;
}
