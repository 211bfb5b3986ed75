/* netproxy: load a Lua config, bind its proxies, run the event loop. */
#include "cli.h"
#include "control.h"
#include "ctl.h"
#include "daemon.h"
#include "log.h"
#include "loop.h"
#include "luavm.h"
#include "master.h"
#include "listener.h"
#include "metrics.h"
#include "netproxy_core.h"
#include "options.h"
#include "pipepool.h"
#include "server.h"
#include "shm.h"
#include "pool.h"
#include "tickets.h"
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

/* Net::Server's daemon life, in two steps. Before binding: the pid file is checked, the
 * log file opened and the user and group looked up, while stderr is still the terminal to
 * say what fails. */
static int daemon_life_before(char *err, size_t errlen)
{
    const char *log_file = np_options_log_file(), *pid_file = np_options_pid_file();

    if (pid_file && np_pidfile_check(pid_file, err, errlen) < 0) return -1;
    if (log_file && strncmp(log_file, "syslog", 6) && np_log_open(log_file) < 0) {
        snprintf(err, errlen, "log file %s: %s", log_file, strerror(errno));
        return -1;
    }
    return np_daemon_check_privileges(err, errlen);
}

/* The control socket, before the privilege drop (server{ control }). */
static int open_control(char *err, size_t errlen)
{
    const char *path = np_options_control();

    return path ? np_control_open(path, np_options_control_mode(), np_options_control_group(),
                                  np_options_user(), err, errlen) : 0;
}

/* Once bound: the background, syslog (once stderr is gone), the pid file. */
static int daemon_life_after(char *err, size_t errlen)
{
    const char *log_file = np_options_log_file(), *pid_file = np_options_pid_file();

    /* an upgraded image is the same process: already in the background */
    if (np_options_daemon() && !np_upgraded() && np_daemonize(err, errlen) < 0) return -1;
    if (log_file && !strncmp(log_file, "syslog", 6)) np_log_open(log_file);   /* "syslog[:IDENT:FACILITY]" */
    if (pid_file && np_pidfile_write(pid_file, err, errlen) < 0) return -1;
    return 0;
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

/* A stdio process serves one connection: 1 when it was refused or failed (its proxy's
 * counters say so), so that ssh's ProxyCommand and scripts can tell; else 0. */
static int stdio_status(void)
{
    const struct np_config *g = np_server.config;

    for (int i = 0; g && i < g->nproxies; i++) {
        const struct np_proxy *p = &g->proxies[i];
        if (p->stdio && (NP_COUNTERS(p)->refused || NP_COUNTERS(p)->errors)) return 1;
    }
    return 0;
}

/* The stdio one-line form logs warnings and errors (ssh shows them on the terminal); -q
 * leaves the errors, which say why a connection failed; -q -q silences it entirely. */
static void stdio_quiet(const struct np_cli *cli)
{
    if (cli->target_host && !cli->listen && cli->verbose <= -2) np_log_level = NP_ERR - 1;
}

int main(int argc, char **argv)
{
    struct np_cli cli;
    char err[512];
    int rc;

    if (argc > 1 && !strcmp(argv[1], "ctl")) return np_ctl_main(argc - 1, argv + 1);
    rc = np_cli_parse(argc, argv, &cli);

    if (rc >= 0) return rc;
    np_upgrade_init(argv);
    /* A peer that closes while we write must be an error code, not a death. */
    signal(SIGPIPE, SIG_IGN);
    /* The copying relay takes a 16 KiB buffer per busy direction and gives it back once
     * empty (idle connections hold none). glibc returns the heap's free top to the system
     * past 128 KiB, so short connections grew and shrank it with brk about once each. */
    mallopt(M_TRIM_THRESHOLD, 4 * 1024 * 1024);
    np_log_libraries();
    if (np_shm_init() < 0 || np_pool_init() < 0 || np_tickets_init() < 0) {
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
    lua_getfield(np_L, -1, "server");
    np_options_start(np_L, lua_gettop(np_L));
    lua_pop(np_L, 1);
    stdio_quiet(&cli);
    int adopted = np_listener_adopt_systemd();
    if (daemon_life_before(err, sizeof err) < 0 || np_server_install(np_L, err, sizeof err) < 0 ||
        (np_options_stats() && np_metrics_listen(np_options_stats(), err, sizeof err) < 0) ||
        open_control(err, sizeof err) < 0 || daemon_life_after(err, sizeof err) < 0) {
        np_log(NP_ERR, "%s", err);
        if (np_log_path() && !np_options_daemon()) fprintf(stderr, "netproxy: %s\n", err);
        return 1;
    }
    if (adopted) np_listener_adopted_done();
    lua_pop(np_L, 1);
    config_name = cli.config ? cli.config : "the command line";
    rc = np_options_workers() > 1 ? np_master_run(np_options_workers(), &cli, announce) : np_worker_run(0, &cli, announce);
    if (rc == 0 && np_server_serves_stdio()) rc = stdio_status();
    np_metrics_close();
    np_control_close();                 /* a worker's link to the master, freed before the loop */
    np_server_free();
    np_pipepool_free();
    np_loop_free();
    return rc;
}
