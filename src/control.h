/* The control socket (server{ control = PATH }): a unix socket opened in the master (or the
 * single process) before the privilege drop, owned by the run user; one command per
 * connection, one line, answered and closed (netproxy ctl, or socat). The commands are
 * lua/netproxy/control.lua's; this file owns the socket, the peer check (SO_PEERCRED), the
 * bounds (line length, clients at once, time), the log line of each command, `reload`, and
 * the worker side: each worker answers the master over a socketpair made at its fork
 * (`show conns`, `kill conn`). */
#ifndef NP_CONTROL_H
#define NP_CONTROL_H
#include <stddef.h>
#include <sys/types.h>

/* Binds PATH (a stale socket of ours is replaced; one a live process answers on is an
 * error), mode (e.g. 0600), group (NULL: the run user's), owned by user (NULL: the current
 * one). Before the privilege drop. 0, or -1 with err. */
int np_control_open(const char *path, const char *mode, const char *group, const char *user,
                    char *err, size_t errlen);

/* What the process that serves the socket does for it. */
struct np_control_ops {
    /* the config loaded again and installed (SIGHUP's work): 0, -1 (failed, the running one
     * stays), or 1 in a child it forked (a new worker: it must return at once) */
    int (*reload)(void);
    /* its workers' control fds and pids (a master), or NULL: the process serves itself */
    int (*workers)(int *fds, pid_t *pids, int max);
    /* worker processes, and old generations still draining */
    int (*counts)(int *workers, int *draining);
};

/* Starts accepting on the socket, if one was opened, in the loop. */
void np_control_serve(const struct np_control_ops *ops);

/* Closes the socket and every client (a new worker, forked by the master; at exit), and a
 * worker's link to the master (at exit). */
void np_control_close(void);

/* Closes it and removes the file (the process that served it stops). */
void np_control_remove(void);

/* In a worker: answers the master's requests on fd (its end of the socketpair). */
void np_control_worker(int fd);


#endif
