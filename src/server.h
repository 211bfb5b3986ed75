/* The proxies a config declares: their listeners, counters and the accept path. */
#ifndef NP_SERVER_H
#define NP_SERVER_H
#include <stddef.h>
#include <stdint.h>
#include <event2/event_struct.h>
#include "acl.h"
#include "shm.h"

/* This process's counters of proxy p (bytes are counted as they move; metrics.c sums). */
#define NP_COUNTERS(p) np_shm_counters((p)->row)

enum np_relay_mode { NP_RELAY_AUTO, NP_RELAY_SPLICE, NP_RELAY_BUFFERED };

struct np_listener {
    int fd;
    struct np_proxy *proxy;
    struct event ev;
    char addr[64];
    int reused;                 /* taken over from the config a reload replaced */
    int *per_worker;            /* reuseport: a socket per worker index (fd is [0]) */
    int nper_worker;
};

struct np_proxy {
    char name[64];
    int lua_ref;                /* the proxy's normalised table from netproxy.config */
    enum np_relay_mode relay_mode;
    double negotiation_timeout; /* seconds the connectors may take; 0 = none */
    double idle_timeout;        /* seconds without a byte either way; 0 = none */
    size_t buffer_size;         /* buffered relay: bytes held per direction */
    uint64_t max_negotiating;   /* connections allowed at once before the relay (sniffing) */
    uint64_t max_clients;       /* connections at once; 0 = no limit */
    struct np_acl acl;          /* allow / deny */
    uint64_t negotiating;
    double refused_warned;      /* when a refusal was last logged */
    uint64_t refused_unlogged;  /* refusals since then */
    struct np_listener *listeners;
    int nlisteners;
    int stdio;                  /* the client is standard input and output, not a listener */
    int row;                    /* of its counters in shared memory (shm.h); see NP_COUNTERS */
};

struct np_server {
    struct np_proxy *proxies;
    int nproxies;
    uint64_t max_connections;   /* 0 = unlimited; else stop after this many */
    uint64_t accepted, active;
    uint64_t max_clients;       /* connections at once over all proxies; 0 = no limit */
    struct np_acl acl;          /* server-wide allow / deny, checked before each proxy's */
    int session_ref;            /* netproxy.session's run function */
    int stopping;
    int reuseport;              /* a SO_REUSEPORT socket per worker instead of a shared one */
    int nworkers;               /* how many per_worker sockets a listener gets */
};

extern struct np_server np_server;

/* Reads the proxies from the loaded config (on the stack top) and binds their listeners.
 * Returns 0, or -1 with a message in err. */
int np_server_setup(char *err, size_t errlen);

/* Starts the one connection of a stdio proxy (inetd / ssh ProxyCommand style): the process
 * exits once it has ended. */
void np_server_start_stdio(void);

/* Called once a connection has ended and been counted. */
void np_server_conn_done(void);

/* Arms the listeners (a single process, or a worker after its fork). With reuseport, worker
 * number index takes the sockets of its index and closes the others (its copies). */
void np_server_start_accepting(int index);

/* Reload, in the master: prepare (the running setup is saved, its listeners become
 * candidates), np_server_setup on the new config (it takes over the listeners on the same
 * addresses), then done (the others are closed) or failed (the saved setup comes back). */
void np_server_prepare_reload(void);
void np_server_reload_done(void);
void np_server_reload_failed(void);

/* systemd socket activation: adopt the passed sockets before np_server_setup (it takes
 * them over by address), then close those no proxy wanted. */
int np_server_adopt_systemd_sockets(void);
void np_server_adopted_done(void);

/* Closes every listener: no new connections. */
void np_server_stop_accepting(void);

/* Out of file descriptors (err): accepting pauses for 100 ms, with a warning at most once
 * a second. */
void np_server_pause_accepting(int err);

/* Stops accepting; the loop ends once the live connections have finished. */
void np_server_stop(void);

#endif
