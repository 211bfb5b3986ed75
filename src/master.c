/* The master process: it forks the workers, replaces one that dies, reloads the config on
 * SIGHUP without closing a listening socket, and stops everything on SIGTERM/SIGINT.
 * Workers share the listening sockets (accept on a shared socket) and count in their own
 * slot of the shared counters (shm.c); the master serves /metrics from their sum. */
#include "master.h"
#include "cli.h"
#include "control.h"
#include "daemon.h"
#include "accesslog.h"
#include "log.h"
#include "loop.h"
#include "luavm.h"
#include "metrics.h"
#include "reload.h"
#include "server.h"
#include "limits.h"
#include "shm.h"
#include "upgrade.h"
#include "worker.h"

#include <errno.h>
#include <event2/event.h>
#include <event2/event_struct.h>
#include <lauxlib.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define RESPAWN_PAUSE 1.0       /* seconds between replacing workers that die at once */

struct worker {
    pid_t pid;                  /* 0: free */
    int index;                  /* 0..nworkers-1 in its generation: picks reuseport sockets */
    int slot;
    int generation;
    int stopping;               /* told to drain (reload or stop) */
    int told_twice;             /* and to close its connections now */
    int killed;                 /* by the watchdog */
    double started;
    int ctl_fd;                 /* the master's end of its control socketpair (control.c), or -1 */
};

static struct worker workers[NP_MAX_SLOTS];
static int generation, nworkers, stopping, my_index;
static const struct np_cli *cli;
static struct event sigchld_ev, sighup_ev, sigterm_ev, sigint_ev, sigusr1_ev, sigusr2_ev, respawn_ev, watchdog_ev;
static pid_t upgrade_check;     /* the new binary's --check, while it runs */

static int alive(void)
{
    int n = 0;

    for (int i = 0; i < NP_MAX_SLOTS; i++) n += workers[i].pid != 0;
    return n;
}

/* In the new child: drop what belongs to the master, become a worker. */
static void become_worker(int slot)
{
    event_reinit(np_base);
    event_del(&sigchld_ev);
    event_del(&sighup_ev);
    event_del(&sigterm_ev);
    event_del(&sigint_ev);
    event_del(&sigusr1_ev);
    event_del(&respawn_ev);
    event_del(&watchdog_ev);
    event_del(&sigusr2_ev);
    np_metrics_close();
    np_control_close();                 /* the control socket is the master's */
    for (int i = 0; i < NP_MAX_SLOTS; i++)
        if (workers[i].pid && workers[i].ctl_fd >= 0) close(workers[i].ctl_fd);
    np_shm_use_slot(slot);
    signal(SIGHUP, SIG_IGN);            /* reloads and upgrades are the master's */
    signal(SIGUSR2, SIG_IGN);
}

/* Forks worker number index of the current generation. 1 in the child, 0 in the master. */
static int spawn(int index)
{
    int slot = np_shm_take_slot(), i, ctl[2] = { -1, -1 };
    sigset_t all, before;
    pid_t pid;

    if (slot < 0) {
        np_log(NP_ERR, "master: no free worker slot (at most %d workers at once)", NP_MAX_SLOTS - 1);
        return 0;
    }
    np_shm_set_beat(slot, np_now());    /* a new worker gets the whole watchdog period */
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, ctl) < 0) ctl[0] = ctl[1] = -1;  /* no show conns there */
    /* Signals wait, blocked, until the child has its own handlers (np_worker_run unblocks
     * them): one sent between fork() and then would be lost, and the master would wait for
     * a worker that never heard its SIGTERM. */
    sigfillset(&all);
    sigprocmask(SIG_BLOCK, &all, &before);
    pid = fork();
    if (pid != 0) sigprocmask(SIG_SETMASK, &before, NULL);
    if (pid < 0) {
        np_log(NP_ERR, "master: fork: %s", strerror(errno));
        np_shm_release_slot(slot);
        if (ctl[0] >= 0) close(ctl[0]), close(ctl[1]);
        return 0;
    }
    if (pid == 0) {
        if (ctl[0] >= 0) close(ctl[0]);
        become_worker(slot);
        if (ctl[1] >= 0) np_control_worker(ctl[1]);
        my_index = index;
        return 1;
    }
    if (ctl[1] >= 0) close(ctl[1]);
    for (i = 0; workers[i].pid; i++) {}
    workers[i] = (struct worker){ .pid = pid, .index = index, .slot = slot, .generation = generation,
                                  .started = np_now(), .ctl_fd = ctl[0] };
    np_log(NP_INFO, "master: worker %d started (generation %d)", (int)pid, generation);
    return 0;
}

static int index_taken(int index)
{
    for (int i = 0; i < NP_MAX_SLOTS; i++)
        if (workers[i].pid && workers[i].generation == generation && !workers[i].stopping &&
            workers[i].index == index)
            return 1;
    return 0;
}

/* Brings the current generation up to nworkers, each index once. 1 in a child, 0 in the master. */
static int spawn_missing(void)
{
    for (int index = 0; index < nworkers; index++)
        if (!index_taken(index) && spawn(index)) return 1;
    return 0;
}

static void drain_old_generations(void)
{
    for (int i = 0; i < NP_MAX_SLOTS; i++) {
        if (workers[i].pid && workers[i].generation != generation && !workers[i].stopping) {
            workers[i].stopping = 1;
            kill(workers[i].pid, SIGQUIT);
        }
    }
}

static void on_respawn(evutil_socket_t fd, short what, void *arg)
{
    if (!stopping && spawn_missing()) event_base_loopbreak(np_base);
}

static void upgrade_checked(int status);

static void on_sigchld(evutil_socket_t sig, short what, void *arg)
{
    int status, quick = 0;
    pid_t pid;

    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
        if (pid == upgrade_check) {
            upgrade_checked(status);
            continue;
        }
        for (int i = 0; i < NP_MAX_SLOTS; i++) {
            struct worker *w = &workers[i];
            if (w->pid != pid) continue;
            np_shm_release_slot(w->slot);
            np_limits_release_slot(w->slot);   /* its clients' live connections are gone */
            if (!w->stopping && !stopping) {
                if (WIFSIGNALED(status))
                    np_log(NP_ERR, "master: worker %d killed by signal %d: replacing it", (int)pid, WTERMSIG(status));
                else
                    np_log(NP_ERR, "master: worker %d exited with %d: replacing it", (int)pid, WEXITSTATUS(status));
                quick |= np_now() - w->started < RESPAWN_PAUSE;
            } else {
                np_log(NP_INFO, "master: worker %d done", (int)pid);
            }
            w->pid = 0;
            if (w->ctl_fd >= 0) close(w->ctl_fd);
            w->ctl_fd = -1;
        }
    }
    if (stopping) {
        if (alive() == 0) event_base_loopbreak(np_base);
        return;
    }
    /* a worker that dies at once would die again: wait a moment before replacing it */
    struct timeval tv = np_tv(quick ? RESPAWN_PAUSE : 0);
    evtimer_add(&respawn_ev, &tv);
}

/* A worker of an old generation that still drains and has not been told twice. */
static int draining(const struct worker *w)
{
    return w->pid && w->generation != generation && !w->told_twice;
}

/* Old generations still alive, past max_draining: the oldest is told to close its
 * connections now (a second SIGQUIT). Generations are counted by comparing workers, never
 * by indexing with a generation number. */
static int draining_generations(int *oldest)
{
    int count = 0;

    *oldest = generation;
    for (int i = 0; i < NP_MAX_SLOTS; i++) {
        const struct worker *w = &workers[i];
        int first = 1;              /* the first draining worker of its generation */
        if (!draining(w)) continue;
        if (w->generation < *oldest) *oldest = w->generation;
        for (int j = 0; j < i && first; j++)
            first = !(draining(&workers[j]) && workers[j].generation == w->generation);
        count += first;
    }
    return count;
}

static void bound_generations(int max)
{
    for (;;) {
        int oldest, count = draining_generations(&oldest);
        if (count <= max) return;
        np_log(NP_WARNING, "master: %d generations draining (max_draining %d): generation %d closes its connections now",
               count, max, oldest);
        for (int i = 0; i < NP_MAX_SLOTS; i++) {
            struct worker *w = &workers[i];
            if (w->pid && w->generation == oldest) {
                w->told_twice = 1;
                kill(w->pid, SIGQUIT);
            }
        }
    }
}

/* SIGHUP (or the control socket's reload): the new config is loaded first; if it fails, the
 * running one stays (-1). Otherwise new workers start on the same listening sockets, then the
 * old ones drain (SIGQUIT): 0, or 1 in a new worker. */
static int reload(void)
{
    if (np_reload(cli) < 0) return -1;
    generation++;
    nworkers = np_server.config->nworkers;  /* the new config may ask for another count */
    if (spawn_missing()) {
        event_base_loopbreak(np_base);  /* in the child: become a worker */
        return 1;
    }
    drain_old_generations();
    bound_generations(np_server.config->max_draining);
    np_log(NP_NOTICE, "master: generation %d started", generation);
    return 0;
}

static void on_sighup(evutil_socket_t sig, short what, void *arg)
{
    reload();
}

/* ---- what the control socket asks of the master (control.c) */

static int control_workers(int *fds, pid_t *pids, int max)
{
    int n = 0;

    for (int i = 0; i < NP_MAX_SLOTS && n < max; i++) {
        if (!workers[i].pid) continue;
        fds[n] = workers[i].ctl_fd;     /* -1 for a worker of the previous binary */
        pids[n++] = workers[i].pid;
    }
    return n;
}

/* For show info: the workers of the current generation, and the generations draining. */
static int control_counts(int *nwork, int *ndraining)
{
    int oldest;

    *nwork = 0;
    for (int i = 0; i < NP_MAX_SLOTS; i++)
        if (workers[i].pid && workers[i].generation == generation && !workers[i].stopping) (*nwork)++;
    *ndraining = draining_generations(&oldest);
    return 0;
}

static const struct np_control_ops control_ops = { reload, control_workers, control_counts };

/* SIGUSR2: the binary upgrade starts with the new binary checking the config. */
static void on_upgrade(evutil_socket_t sig, short what, void *arg)
{
    if (upgrade_check > 0 || stopping) {
        np_log(NP_WARNING, "master: SIGUSR2 ignored: %s", stopping ? "stopping" : "an upgrade is under way");
        return;
    }
    np_log(NP_NOTICE, "master: SIGUSR2: upgrading the binary");
    upgrade_check = np_upgrade_check();
}

/* The signals the master handles. Across the upgrade's exec they wait, blocked: the new
 * image starts with the default actions (a SIGHUP or SIGTERM would kill the master and leave
 * its workers to init) until np_master_run has its handlers. The mask and the pending
 * signals survive exec; np_master_run unblocks them, so a SIGHUP sent meanwhile is a reload
 * done by the new image, and a worker's SIGCHLD is not lost. */
static void master_signals(sigset_t *set)
{
    sigemptyset(set);
    sigaddset(set, SIGCHLD);
    sigaddset(set, SIGHUP);
    sigaddset(set, SIGTERM);
    sigaddset(set, SIGINT);
    sigaddset(set, SIGUSR1);
    sigaddset(set, SIGUSR2);
}

/* The check has ended: exec the new binary, handing over the live workers, each as
 * "pid:slot:state:generation" (state: 0 serving, 1 draining, 2 told twice). */
static void upgrade_checked(int status)
{
    char list[NP_MAX_SLOTS * 48] = "";
    size_t used = 0;
    sigset_t handled, before;

    upgrade_check = 0;
    for (int i = 0; i < NP_MAX_SLOTS; i++) {
        const struct worker *w = &workers[i];
        if (w->pid && used < sizeof list - 48)
            used += snprintf(list + used, sizeof list - used, "%s%d:%d:%d:%d", used ? "," : "",
                             (int)w->pid, w->slot, w->stopping + w->told_twice, w->generation);
    }
    np_notify("RELOADING=1");
    master_signals(&handled);
    sigprocmask(SIG_BLOCK, &handled, &before);
    np_upgrade_checked(WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status), list);
    sigprocmask(SIG_SETMASK, &before, NULL);    /* still here: what came meanwhile is ours */
    np_notify("READY=1");               /* the upgrade did not happen */
}

/* In an upgraded image: the previous image's workers, to drain once ours run. They keep
 * their generations, and ours continues after the newest of them (a real number, so that
 * every comparison and count of generations holds across the upgrade). A binary from before
 * the generation was handed over gives "pid:slot:state": those count as generation 0. */
static void adopt_workers(void)
{
    const char *list = np_upgrade_workers();
    int n = 0, newest = -1;

    for (const char *p = list; p && *p; p += strcspn(p, ",") + (p[strcspn(p, ",")] == ',')) {
        int pid, slot, state, gen = 0, i;
        if (sscanf(p, "%d:%d:%d:%d", &pid, &slot, &state, &gen) < 3) break;
        if (gen < 0) gen = 0;
        for (i = 0; i < NP_MAX_SLOTS && workers[i].pid; i++) {}
        if (i == NP_MAX_SLOTS) break;
        workers[i] = (struct worker){ .pid = pid, .slot = slot, .generation = gen, .stopping = state > 0,
                                      .told_twice = state > 1, .started = np_now(), .ctl_fd = -1 };
        if (gen > newest) newest = gen;
        n++;
    }
    generation = newest + 1;            /* drain_old_generations then tells them */
    if (list) np_log(NP_NOTICE, "master: upgraded: netproxy %s runs now, with %d workers of the previous binary to drain",
                     NP_VERSION, n);
    np_upgrade_done();
}

/* A worker whose loop has not turned for watchdog seconds is stuck (a runaway script, a
 * blocking C call): it is killed, and replaced like any worker that dies. */
static void on_watchdog(evutil_socket_t fd, short what, void *arg)
{
    double limit = np_server.config ? np_server.config->watchdog : 0, now = np_now();

    if (limit <= 0) return;
    for (int i = 0; i < NP_MAX_SLOTS; i++) {
        struct worker *w = &workers[i];
        double beat = np_shm_last_beat(w->slot);
        if (!w->pid || w->killed || now - beat <= limit) continue;
        np_log(NP_ERR, "master: worker %d: its loop has not turned for %.1fs (watchdog %gs): killing it",
               (int)w->pid, now - beat, limit);
        kill(w->pid, SIGKILL);
        w->killed = 1;
    }
}

/* SIGUSR1: the log file was moved (logrotate): everybody reopens it. */
static void on_reopen(evutil_socket_t sig, short what, void *arg)
{
    np_log_reopen();
    np_accesslog_reopen();
    np_daemon_chown_log();      /* a new file is root's: the workers must be able to open it */
    for (int i = 0; i < NP_MAX_SLOTS; i++) if (workers[i].pid) kill(workers[i].pid, SIGUSR1);
}

static void on_stop(evutil_socket_t sig, short what, void *arg)
{
    if (stopping++) {
        np_log(NP_NOTICE, "master: second stop signal: killing the workers");
        for (int i = 0; i < NP_MAX_SLOTS; i++) if (workers[i].pid) kill(workers[i].pid, SIGKILL);
        event_base_loopbreak(np_base);
        return;
    }
    np_log(NP_NOTICE, "master: signal %d: stopping %d workers", (int)sig, alive());
    np_notify("STOPPING=1");
    np_server_stop_accepting();         /* the master's copies of the listening sockets */
    for (int i = 0; i < NP_MAX_SLOTS; i++) {
        if (workers[i].pid) {
            workers[i].stopping = 1;
            kill(workers[i].pid, SIGTERM);
        }
    }
    if (alive() == 0) event_base_loopbreak(np_base);
}

int np_master_run(int n, const struct np_cli *c, void (*ready)(void))
{
    struct timeval second = { 1, 0 };
    sigset_t handled;

    cli = c;
    nworkers = n;
    evsignal_assign(&sigchld_ev, np_base, SIGCHLD, on_sigchld, NULL);
    evsignal_assign(&sighup_ev, np_base, SIGHUP, on_sighup, NULL);
    evsignal_assign(&sigterm_ev, np_base, SIGTERM, on_stop, NULL);
    evsignal_assign(&sigint_ev, np_base, SIGINT, on_stop, NULL);
    evsignal_assign(&sigusr1_ev, np_base, SIGUSR1, on_reopen, NULL);
    evtimer_assign(&respawn_ev, np_base, on_respawn, NULL);
    event_assign(&watchdog_ev, np_base, -1, EV_PERSIST, on_watchdog, NULL);
    evsignal_assign(&sigusr2_ev, np_base, SIGUSR2, on_upgrade, NULL);
    evsignal_add(&sigusr2_ev, NULL);
    event_add(&watchdog_ev, &second);
    evsignal_add(&sigusr1_ev, NULL);
    evsignal_add(&sigchld_ev, NULL);
    evsignal_add(&sighup_ev, NULL);
    evsignal_add(&sigterm_ev, NULL);
    evsignal_add(&sigint_ev, NULL);
    if (ready) ready();                 /* its handlers are in place: signals are safe now */
    np_log(NP_NOTICE, "master: %d workers", n);
    np_control_serve(&control_ops);
    adopt_workers();
    if (spawn_missing()) return np_worker_run(my_index, NULL, NULL);
    drain_old_generations();
    master_signals(&handled);           /* blocked across an upgrade's exec: ours now */
    sigprocmask(SIG_UNBLOCK, &handled, NULL);
    while (!stopping || alive() > 0) {
        event_base_dispatch(np_base);
        if (np_shm_slot() != 0) return np_worker_run(my_index, NULL, NULL);   /* a child, forked in a callback */
        if (stopping && (alive() == 0 || stopping > 1)) break;
    }
    np_control_remove();
    np_log(NP_NOTICE, "master: stopped");
    return 0;
}
