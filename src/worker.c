/* A process that serves connections: a worker of the master, or netproxy itself when it
 * runs as a single process (then it reloads on SIGHUP too). Its loop beats in shared memory
 * once a second: the master's watchdog reads it. */
#include "worker.h"
#include "daemon.h"
#include "accesslog.h"
#include "log.h"
#include "logsink.h"
#include "loop.h"
#include "checker.h"
#include "control.h"
#include "reload.h"
#include "server.h"
#include "options.h"
#include "shm.h"
#include "sockpool.h"

#include <event2/event.h>
#include <lauxlib.h>
#include <event2/event_struct.h>
#include <signal.h>

static struct event sigterm_ev, sigint_ev, sigquit_ev, sighup_ev, sigusr1_ev, sigusr2_ev, beat_ev;
static const struct np_cli *reload_cli;
static int stop_signals, my_index;

static void on_stop_signal(evutil_socket_t sig, short what, void *arg)
{
    if (++stop_signals > 1) {
        np_log(NP_NOTICE, "second stop signal: closing %llu connections now",
               (unsigned long long)np_server.active);
        np_server_close_all(NP_END_STOPPED, "second stop signal");
        return;
    }
    np_log(NP_NOTICE, "signal %d: no new connections; waiting for %llu to finish", (int)sig,
           (unsigned long long)np_server.active);
    np_server_stop();
}

static void on_drain_signal(evutil_socket_t sig, short what, void *arg)
{
    np_log(NP_INFO, "draining: no new connections; %llu finish here", (unsigned long long)np_server.active);
    np_server_drain();
}

/* The config again (SIGHUP, or the control socket): 0, or -1 when the running one stays. */
static int reload(void)
{
    if (np_reload(reload_cli) < 0) return -1;
    np_server_run_start(my_index);   /* the new config's */
    if (my_index == 0) np_checker_start(np_server.config->L, np_server.config->proxies, np_server.config->nproxies);
    return 0;
}

static int control_counts(int *workers, int *draining)
{
    *workers = 1;
    *draining = np_server.ndraining;
    return 0;
}

/* A single process serves its control socket itself (a master's worker has none). */
static const struct np_control_ops control_ops = { reload, NULL, control_counts };

/* A stdio process (inetd, ssh's ProxyCommand) has one connection and nothing to reload:
 * SIGHUP is the hangup of whoever started it (ssh sends it when it exits). */
static void on_reload(evutil_socket_t sig, short what, void *arg)
{
    if (np_server_serves_stdio()) {
        np_log(NP_INFO, "SIGHUP: hangup: ending the standard input/output connection");
        np_server_close_all(NP_END_CLOSED, "hangup (SIGHUP)");
        return;
    }
    reload();
}

static void on_upgrade(evutil_socket_t sig, short what, void *arg)
{
    np_log(NP_WARNING, "SIGUSR2 ignored: a binary upgrade is the master's (run with -w 2 or more); "
           "a single process reloads its scripts on SIGHUP");
}

static void on_reopen(evutil_socket_t sig, short what, void *arg)
{
    np_log_reopen();
    np_accesslog_reopen();
}

static void on_beat(evutil_socket_t fd, short what, void *arg)
{
    np_shm_beat(np_now());
}

/* The stdio connection starts inside the loop: it may end at once (refused), and a loop
 * told to stop before it runs would not hear it. */
static void on_start(evutil_socket_t fd, short what, void *arg)
{
    np_server_start_stdio();
}

static void watch(struct event *ev, int sig, event_callback_fn fn)
{
    evsignal_assign(ev, np_base, sig, fn, NULL);
    evsignal_add(ev, NULL);
}

int np_worker_run(int index, const struct np_cli *cli, void (*ready)(void))
{
    sigset_t none;
    struct timeval second = { 1, 0 };
    char err[256];

    /* bound what it needs: the process that serves gives its privileges up */
    if (np_daemon_apply_privileges(err, sizeof err) < 0) {
        np_log(NP_ERR, "%s", err);
        return 1;
    }
    watch(&sigusr1_ev, SIGUSR1, on_reopen);
    watch(&sigterm_ev, SIGTERM, on_stop_signal);
    watch(&sigint_ev, SIGINT, on_stop_signal);
    watch(&sigquit_ev, SIGQUIT, on_drain_signal);
    if (cli) {
        reload_cli = cli;
        watch(&sighup_ev, SIGHUP, on_reload);
        watch(&sigusr2_ev, SIGUSR2, on_upgrade);
        np_control_serve(&control_ops);
    }
    sigemptyset(&none);                 /* a worker's signals waited, blocked, for these handlers */
    sigprocmask(SIG_SETMASK, &none, NULL);
    if (ready) ready();
    event_assign(&beat_ev, np_base, -1, EV_PERSIST, on_beat, NULL);
    event_add(&beat_ev, &second);
    np_shm_beat(np_now());
    my_index = index;
    np_worker_index = index;
    np_worker_count = np_options_workers();
    np_server_start_accepting(index);
    if (index == 0) np_checker_start(np_server.config->L, np_server.config->proxies, np_server.config->nproxies);     /* one checker for all workers: worker 0's */
    event_base_once(np_base, -1, EV_TIMEOUT, on_start, NULL, NULL);
    np_server_run_start(index);
    event_base_dispatch(np_base);
    np_accesslog_flush();                               /* the last turn's lines */
    np_logsink_use(NULL, LUA_NOREF, &np_limits_none);      /* no loop left to deliver: written from now on */
    np_server_run_stop();
    if (cli) np_control_remove();
    event_del(&beat_ev);
    np_sockpool_clear();                /* idle upstream connections: closed, not left to exit */
    np_log(NP_INFO, "exiting: %llu connections handled", (unsigned long long)np_server.accepted);
    return 0;
}
