/* A process that serves connections: a worker of the master, or netproxy itself when it
 * runs as a single process. */
#include "worker.h"
#include "daemon.h"
#include "log.h"
#include "loop.h"
#include "server.h"

#include <event2/event.h>
#include <event2/event_struct.h>
#include <signal.h>

#define STOP_DEADLINE 10.0  /* seconds live connections get after SIGTERM/SIGINT */

static struct event sigterm_ev, sigint_ev, sigusr1_ev, stop_deadline;
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

static void on_reopen(evutil_socket_t sig, short what, void *arg)
{
    np_log_reopen();
}

int np_worker_run(int index)
{
    char err[256];

    /* bound what it needs: the process that serves gives its privileges up */
    if (np_daemon_apply_privileges(err, sizeof err) < 0) {
        np_log(NP_ERR, "%s", err);
        return 1;
    }
    evsignal_assign(&sigusr1_ev, np_base, SIGUSR1, on_reopen, NULL);
    evsignal_add(&sigusr1_ev, NULL);
    evsignal_assign(&sigterm_ev, np_base, SIGTERM, on_stop_signal, NULL);
    evsignal_assign(&sigint_ev, np_base, SIGINT, on_stop_signal, NULL);
    evtimer_assign(&stop_deadline, np_base, on_stop_deadline, NULL);
    evsignal_add(&sigterm_ev, NULL);
    evsignal_add(&sigint_ev, NULL);
    np_server_start_accepting(index);
    np_server_start_stdio();
    event_base_dispatch(np_base);
    np_log(NP_INFO, "exiting: %llu connections handled", (unsigned long long)np_server.accepted);
    return 0;
}
