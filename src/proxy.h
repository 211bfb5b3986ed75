/* A proxy as the C core runs it: the settings its config fixed, read once from the
 * normalised Lua table, its counters' row and its listeners. */
#ifndef NP_PROXY_H
#define NP_PROXY_H
#include "acl.h"
#include "addr.h"
#include "bucket.h"
#include "call.h"
#include "dial.h"
#include "end.h"
#include "limits.h"
#include "relay.h"
#include "shm.h"
#include "sniffer.h"

#include <stddef.h>
#include <stdint.h>
#include <lua.h>
#include <event2/util.h>
#include <sys/socket.h>

/* This process's counters of proxy p (bytes are counted as they move; metrics.c sums). */
#define NP_COUNTERS(p) np_shm_counters((p)->row)

struct np_listener;
struct np_config;
struct np_conn;
struct np_udp;
struct np_waiter;
struct np_accesslog;

/* The server of a proxy whose connections run no Lua before the relay (netproxy.session's
 * route(): nothing to negotiate or tell, and a `to` fixed by the config): conn.c connects
 * there itself. Its hooks, if any, run in the relay as a session's would. */
struct np_route {
    struct evutil_addrinfo ai;  /* the address (ai.ai_addr is addr): an IP or a unix path */
    struct sockaddr_storage addr;
    char *host;                 /* else the name, resolved per connection */
    int port;
    struct sockaddr_storage source;         /* the address to connect from (`source`) */
    struct np_dial_opts dial;   /* timeout: connect_timeout or negotiation_timeout; source */
    enum np_end on_timeout;     /* and which of the two it is */
    char label[NP_ADDRSTRLEN];  /* the target, as the log line names it */
    char server[NP_ADDRSTRLEN]; /* the address as conn.server names it; "" for a name */
    int hook_ref[2];            /* client->server, server->client; LUA_NOREF: none */
    int conn_ref;               /* function(id, client, handle, server) -> the hooks' conn;
                                 * LUA_NOREF when no hook takes one */
};

/* A proxy whose `from` only looks at the client's first bytes to choose among fixed targets
 * (netproxy.session.route's sniff: dual's probes): conn.c reads them itself, calls pick
 * once per arrival and connects to the route it names. The bytes read go to the server
 * first. */
struct np_sniff {
    int pick_ref;               /* function(bytes) -> i (1-based, into picks) | nil: more | false */
    struct np_route **picks;    /* the route of each answer of pick, owned here */
    char **notes;               /* and what the info log says of it ("dual: probe 1 (tls) matched") */
    int npicks;
    struct np_route *silent;    /* a client silent for `silence` seconds; NULL: refused */
    struct np_route *fallback;  /* nothing picked; NULL: refused */
    struct np_sniff_rules rules; /* dual's timeout (silence), probe_timeout, max_peek */
};

struct np_proxy {
    char name[64];
    struct np_config *config;   /* the generation it belongs to (server.h) */
    lua_State *L;               /* the state that holds its config and scripts */
    int lua_ref;                /* its normalised table from netproxy.config */
    int session_ref;            /* netproxy.session's run function */
    int denied_ref;             /* on_denied(info), or LUA_NOREF */
    enum np_relay_mode relay_mode;
    double negotiation_timeout; /* seconds the connectors may take; 0 = none */
    double idle_timeout;        /* seconds without a byte either way; 0 = none */
    double total_timeout;       /* seconds a connection may last in all; 0 = none */
    size_t buffer_size;         /* buffered relay: bytes held per direction */
    double bandwidth_per_conn;  /* bytes a second each way per connection; 0 = no cap */
    struct np_shaper *shaper;   /* per_source and per_proxy buckets (this worker's); or NULL */
    struct np_limits limits;    /* what one call into its Lua may use (call.h) */
    uint64_t max_negotiating;   /* connections allowed at once before the relay (sniffing) */
    uint64_t max_clients;       /* connections at once; 0 = no limit */
    double queue_timeout;       /* seconds a client past max_clients waits for a slot */
    struct np_waiter *waiting, **waiting_tail;  /* those clients, in arrival order (server.c) */
    int nwaiting;
    struct np_acl acl;          /* allow / deny */
    struct np_accesslog *access;        /* access_log (accesslog.h), or NULL */
    struct np_limit_rule per_source[2]; /* server{}'s, its own: checked at accept, */
    int limits_in_lua;          /* unless its session does (a PROXY header, a protocol's answer) */
    struct np_keepalive keepalive;      /* from's tcp_keepalive, on each accepted socket */
    int stdio;                  /* the client is standard input and output, not a listener */
    int defer_accept;           /* TCP_DEFER_ACCEPT: a client comes with its first bytes */
    int datagram;               /* its from is udp: flows, no TCP connections */
    int relays_udp;             /* it may carry datagrams: a udp from, or socks5's UDP ASSOCIATE */
    int row;                    /* of its counters in shared memory (shm.h); see NP_COUNTERS */
    struct np_listener **listeners;
    int nlisteners;
    struct np_udp *udp;         /* a udp from: its sockets and flows (udp.c) */
    struct np_route *route;     /* NULL: each connection runs netproxy.session, */
    struct np_sniff *sniff;     /* unless it sniffs */
    /* while running */
    struct np_conn *conns;      /* its live connections (linked by conn.c) */
    uint64_t negotiating;
    double refused_warned;      /* when a refusal was last logged */
    uint64_t refused_unlogged;  /* refusals since then */
};

/* Reads the normalised proxy table at index t of L into p (listeners aside). 0, or -1
 * with a message in err. */
int np_proxy_read(struct np_proxy *p, lua_State *L, int t, int session_ref, char *err, size_t errlen);

/* The route table at index t (from netproxy.session.route: host, port or path, label,
 * connect_timeout; to_server, to_client and conn when it has hooks; or a sniff
 * table of them), if any, into p->route or p->sniff. */
void np_proxy_read_route(struct np_proxy *p, lua_State *L, int t);

/* allow = { ... }, deny = { ... } of the table at t into acl. 0, or -1 with err. */
int np_proxy_read_acl(lua_State *L, int t, struct np_acl *acl, char *err, size_t errlen);

/* A tcp_keepalive table at index t (netproxy.config's { idle, interval, count }) into k;
 * anything else (nil): k->on = 0. */
void np_keepalive_read(lua_State *L, int t, struct np_keepalive *k);

/* Releases what np_proxy_read took (not the listeners: their owner puts them). */
void np_proxy_free(struct np_proxy *p);

#endif
