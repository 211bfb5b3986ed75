/* A process that serves connections: a worker of the master, or netproxy itself when it
 * runs as a single process. */
#ifndef NP_WORKER_H
#define NP_WORKER_H

struct np_cli;

/* Accepts and serves until stopped, or until -m is met. Signals: SIGTERM/SIGINT stop (no
 * new connections; live ones get stop_timeout; a second signal closes them now), SIGQUIT
 * drains (the master's reload: live ones run to their end, or drain_timeout), SIGUSR1
 * reopens the log; in a single process SIGHUP reloads. index is the worker's number (0 in
 * a single process), which picks its own listening sockets with reuseport. cli is given to
 * a single process (it reloads), NULL to a worker. Returns the exit status. */
int np_worker_run(int index, const struct np_cli *cli, void (*ready)(void));

#endif
