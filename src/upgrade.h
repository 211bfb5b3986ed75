/* SIGUSR2: the master runs the netproxy binary at its path again (typically a newer build)
 * in the same process, handing over the listening sockets, the shared counters and its
 * workers, which then drain as on a reload. */
#ifndef NP_UPGRADE_H
#define NP_UPGRADE_H
#include <sys/types.h>

/* Remembers the binary's path and the command line (at start). */
void np_upgrade_init(char **argv);

/* Starts the new binary's --check of the config in a child; its pid, or -1 (logged). */
pid_t np_upgrade_check(void);

/* The check child ended with status: when it passed, exec the binary with everything
 * handed over (workers: master.c's "pid:slot:state:generation,..."); this returns only when that could not
 * be done (logged, nothing changed). */
void np_upgrade_checked(int status, const char *workers);

/* In the new image: the workers handed over, as given to np_upgrade_checked, or NULL. */
const char *np_upgrade_workers(void);

/* This process is an upgraded image (set until np_upgrade_done). */
int np_upgraded(void);
void np_upgrade_done(void);

#endif
