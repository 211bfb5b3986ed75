/* netproxy: load a Lua config, bind its proxies, run the event loop. */
#include "cli.h"
#include "daemon.h"
#include "log.h"
#include "loop.h"
#include "luavm.h"
#include "master.h"
#include "listener.h"
#include "metrics.h"
#include "netproxy_core.h"
#include "pipepool.h"
#include "server.h"
#include "shm.h"
#include "pool.h"
#include "upgrade.h"
#include "worker.h"

#include <event2/event.h>
#include <lauxlib.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

static const char *stats_addr;
static int workers;

/* Net::Server's daemon life, in two steps. Before binding: the pid file is checked and the
 * log file opened, while stderr is still the terminal to say what fails. */
static const char *log_file, *pid_file;
static int daemonize;

static int daemon_life_before(char *err, size_t errlen)
{
    lua_getfield(np_L, -1, "server");
    log_file = np_lua_string(np_L, -1, "log_file");
    pid_file = np_lua_string(np_L, -1, "pid_file");
    daemonize = np_lua_bool(np_L, -1, "daemon", 0);
    np_daemon_set_privileges(np_lua_string(np_L, -1, "user"), np_lua_string(np_L, -1, "group"),
                             np_lua_string(np_L, -1, "chroot"));
    lua_pop(np_L, 1);
    if (pid_file && np_pidfile_check(pid_file, err, errlen) < 0) return -1;
    if (log_file && strncmp(log_file, "syslog", 6) && np_log_open(log_file) < 0) {
        snprintf(err, errlen, "log file %s: %s", log_file, strerror(errno));
        return -1;
    }
    return 0;
}

/* Once bound: the background, syslog (once stderr is gone), the pid file. */
static int daemon_life_after(char *err, size_t errlen)
{
    /* an upgraded image is the same process: already in the background */
    if (daemonize && !np_upgraded() && np_daemonize(err, errlen) < 0) return -1;
    if (log_file && !strncmp(log_file, "syslog", 6)) np_log_open(log_file);   /* "syslog[:IDENT:FACILITY]" */
    if (pid_file && np_pidfile_write(pid_file, err, errlen) < 0) return -1;
    return 0;
}

/* The server{} options C needs before anything runs, from the config on the stack top. */
static void apply_server_options(void)
{
    lua_getfield(np_L, -1, "server");
    np_log_level = (int)np_lua_number(np_L, -1, "log_level", NP_NOTICE);
    np_pipepool_configure((size_t)np_lua_number(np_L, -1, "pipe_size", 64 * 1024), 1024);
    workers = (int)np_lua_number(np_L, -1, "workers", 1);
    stats_addr = np_lua_string(np_L, -1, "stats");     /* the config table keeps it alive */
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

/* Ready: said (to systemd and the log) once the signal handlers are in place, so that a
 * SIGHUP sent on seeing it reloads rather than kills. */
static const char *config_name;

static void announce(void)
{
    np_notify("READY=1");
    np_log(NP_NOTICE, "netproxy %s running %d prox%s from %s", NP_VERSION, np_server.config->nproxies,
           np_server.config->nproxies == 1 ? "y" : "ies", config_name);
}

int main(int argc, char **argv)
{
    struct np_cli cli;
    char err[512];
    int rc = np_cli_parse(argc, argv, &cli);

    if (rc >= 0) return rc;
    np_upgrade_init(argv);
    /* A peer that closes while we write must be an error code, not a death. */
    signal(SIGPIPE, SIG_IGN);
    /* The copying relay takes a 16 KiB buffer per busy direction and gives it back once
     * empty (idle connections hold none). glibc returns the heap's free top to the system
     * past 128 KiB, so short connections grew and shrank it with brk about once each. */
    mallopt(M_TRIM_THRESHOLD, 4 * 1024 * 1024);
    if (np_shm_init() < 0 || np_pool_init() < 0) {
        fprintf(stderr, "netproxy: cannot map the shared counters\n");
        return 1;
    }
    if (np_loop_init(err, sizeof err) < 0 || np_lua_open(luaopen_netproxy_core, err, sizeof err) < 0) {
        fprintf(stderr, "netproxy: %s\n", err);
        return 1;
    }
    int loaded = np_lua_load_config(cli.config, &cli, 0) == 0;
    if (!loaded || cli.check) {             /* a bad config never starts; --check stops here */
        if (loaded) printf("%s: OK\n", cli.config ? cli.config : "command line");
        np_lua_close();
        np_loop_free();
        return loaded ? 0 : 1;
    }
    apply_server_options();
    int adopted = np_listener_adopt_systemd();
    if (daemon_life_before(err, sizeof err) < 0 || np_server_install(np_L, err, sizeof err) < 0 ||
        (stats_addr && np_metrics_listen(stats_addr, err, sizeof err) < 0) ||
        daemon_life_after(err, sizeof err) < 0) {
        np_log(NP_ERR, "%s", err);
        if (np_log_path() && !daemonize) fprintf(stderr, "netproxy: %s\n", err);
        return 1;
    }
    if (adopted) np_listener_adopted_done();
    lua_pop(np_L, 1);
    config_name = cli.config ? cli.config : "the command line";
    rc = workers > 1 ? np_master_run(workers, &cli, announce) : np_worker_run(0, &cli, announce);
    np_metrics_close();
    np_server_free();
    np_pipepool_free();
    np_loop_free();
    return rc;
}
