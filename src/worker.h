/* A process that serves connections: a worker of the master, or netproxy itself when it
 * runs as a single process. */
#ifndef NP_WORKER_H
#define NP_WORKER_H

/* Accepts and serves until stopped (SIGTERM/SIGINT: stop accepting, let live connections
 * finish for up to the stop deadline; a second signal exits at once), or until -m is met.
 * index is the worker's number (0 in a single process), which picks its own listening
 * sockets with reuseport. Returns the exit status. */
int np_worker_run(int index);

#endif
