/* The running configs: the one that serves new clients and the older ones still draining
 * (each a generation with its own Lua state, proxies and guards), the accept path, and when
 * the process is done (max_connections reached, or a stop and nothing left). */
#ifndef NP_SERVER_H
#define NP_SERVER_H
#include "acl.h"
#include "conn.h"
#include "call.h"
#include "proxy.h"

#include <stddef.h>
#include <stdint.h>
#include <lua.h>
#include <event2/event_struct.h>

/* One loaded config: it owns its Lua state, freed with the config once it no longer serves
 * new clients and its last connection has ended. */
struct np_config {
    lua_State *L;
    int generation;             /* 0 for the first, then one more per reload */
    struct np_proxy *proxies;
    int nproxies;
    uint64_t max_clients;       /* connections at once over all proxies; 0 = no limit */
    struct np_acl acl;          /* server-wide allow / deny, checked before each proxy's */
    int reuseport;              /* a SO_REUSEPORT socket per worker instead of a shared one */
    int nworkers;               /* how many per_worker sockets a listener gets */
    double drain_timeout;       /* seconds a retired config's connections may still run; 0 = no bound */
    double stop_timeout;        /* seconds live connections get after a stop signal */
    int max_draining;           /* retired configs kept at once; past it the oldest is closed */
    double watchdog;            /* seconds a worker's loop may stand still; 0 = no watchdog */
    int on_start_ref, on_stop_ref;  /* server{ on_start, on_stop }, or LUA_NOREF */
    int denied_ref;             /* server{ on_denied }, or LUA_NOREF */
    int bound_ref;              /* server{ on_bound }, or LUA_NOREF */
    int log_ref;                /* server{ on_log }, or LUA_NOREF */
    struct np_limits limits;    /* what one call of its server{} functions may use (call.h) */
    int started;                /* on_start has run in this process */
    uint64_t live;              /* its connections not yet freed */
    struct event drain_deadline;
    int draining;               /* retired: no new clients */
    struct np_config *next;     /* in np_server.draining */
};

struct np_server {
    struct np_config *config;   /* serves new clients */
    struct np_config *draining; /* retired configs with live connections, newest first */
    int ndraining;
    uint64_t max_connections;   /* 0 = unlimited; else stop after this many clients */
    uint64_t accepted, active;
    int stopping;
    struct event stop_deadline;
};

extern struct np_server np_server;

/* Reads the loaded config (on the top of L's stack) into a new config, binds or takes over
 * its listeners, and makes it the one that serves new clients; the previous one (if any)
 * drains. L belongs to the server from then on. Returns 0, or -1 with a message in err
 * (nothing changed: L is still the caller's). */
int np_server_install(lua_State *L, char *err, size_t errlen);

/* Starts the one connection of a stdio proxy (inetd / ssh ProxyCommand style): the process
 * exits once it has ended. */
void np_server_start_stdio(void);

/* Arms the listeners (a single process, or a worker after its fork). With reuseport, worker
 * number index takes the sockets of its index and closes the others (its copies). */
void np_server_start_accepting(int index);

/* Closes every listener: no new connections. */
void np_server_stop_accepting(void);

/* A stop (SIGTERM/SIGINT): no new connections; the live ones get the config's stop_timeout,
 * then are closed (end=stopped). The loop ends once none is left. */
void np_server_stop(void);

/* A worker whose generation was replaced (the master's SIGQUIT): no new connections; the
 * live ones run until they end, or until drain_timeout (end=drained). Asked again: they
 * are closed now (too many generations draining). */
void np_server_drain(void);

/* The running config serves standard input and output (inetd, ProxyCommand). */
int np_server_serves_stdio(void);

/* Closes every live connection now, as how. */
void np_server_close_all(enum np_end how, const char *why);

/* The live connections of every running config (of one proxy when proxy is not NULL), for
 * the control socket: fn is called for each (conn.h). */
void np_server_each_conn(const char *proxy, np_conn_view_fn *fn, void *arg);
/* Closes connection number id, wherever it runs (end=closed: why): 1, or 0 when none. */
int np_server_kill_conn(uint64_t id, const char *why);

/* server{ on_start = function(worker) }: runs once per process for the config that serves
 * new clients (a worker after its privileges are dropped; a single process again after
 * each reload), with worker = { id = index, pid = getpid() }. An error is logged. */
void np_server_run_start(int index);

/* server{ on_stop }: before the process exits. An error is logged. */
void np_server_run_stop(void);

/* Frees every config (at exit). */
void np_server_free(void);

#endif
