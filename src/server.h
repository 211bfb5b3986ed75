/* The running config: its proxies, the server-wide guards and limits, the accept path, and
 * when the process is done (max_connections reached, or a stop and nothing left). */
#ifndef NP_SERVER_H
#define NP_SERVER_H
#include "acl.h"
#include "proxy.h"

#include <stddef.h>
#include <stdint.h>
#include <lua.h>

struct np_server {
    struct np_proxy *proxies;
    int nproxies;
    uint64_t max_connections;   /* 0 = unlimited; else stop after this many */
    uint64_t accepted, active;
    uint64_t max_clients;       /* connections at once over all proxies; 0 = no limit */
    struct np_acl acl;          /* server-wide allow / deny, checked before each proxy's */
    int stopping;
    int reuseport;              /* a SO_REUSEPORT socket per worker instead of a shared one */
    int nworkers;               /* how many per_worker sockets a listener gets */
};

extern struct np_server np_server;

/* Reads the proxies from the loaded config (on the top of L's stack) and binds their
 * listeners. Returns 0, or -1 with a message in err. */
int np_server_setup(lua_State *L, char *err, size_t errlen);

/* Starts the one connection of a stdio proxy (inetd / ssh ProxyCommand style): the process
 * exits once it has ended. */
void np_server_start_stdio(void);

/* Arms the listeners (a single process, or a worker after its fork). With reuseport, worker
 * number index takes the sockets of its index and closes the others (its copies). */
void np_server_start_accepting(int index);

/* Reload, in the master: prepare (the running setup is saved aside), np_server_setup on
 * the new config (it shares the listeners on the same addresses), then done (the old
 * setup's other listeners are closed) or failed (the saved setup comes back). */
void np_server_prepare_reload(void);
void np_server_reload_done(void);
void np_server_reload_failed(void);

/* Closes every listener: no new connections. */
void np_server_stop_accepting(void);

/* Stops accepting; the loop ends once the live connections have finished. */
void np_server_stop(void);

#endif
