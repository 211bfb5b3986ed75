/* The master process: it forks the workers, replaces one that dies, reloads the config on
 * SIGHUP without closing a listening socket, and stops everything on SIGTERM/SIGINT. */
#ifndef NP_MASTER_H
#define NP_MASTER_H

struct np_cli;

/* Runs the master with n workers until it stops. Returns the exit status in the master; in
 * a worker, returns -1 once the worker's loop has ended (main then cleans up and exits). */
int np_master_run(int n, const struct np_cli *cli, void (*ready)(void));

#endif
