/* What the UDP files share: udp.c (a flow's life), udp_table.c (the flow table of each
 * socket and the LRU of each proxy), udp_sock.c (the listening sockets, entries of the
 * registry of bound sockets) and udp_proxy.c (a proxy's UDP side). Not for other files. */
#ifndef NP_UDP_IMPL_H
#define NP_UDP_IMPL_H
#include "udp.h"
#include "bound.h"
#include "udp_group.h"
#include "addr.h"
#include "idle.h"

#include <event2/event.h>
#include <event2/event_struct.h>
#include <lauxlib.h>
#include <stdint.h>
#include <sys/socket.h>

struct np_flow;
struct queued;
struct np_flow_probe;
struct np_resolve;

/* A listening UDP address and its flows: an entry of the registry of bound sockets
 * (bound.h). The master holds its group (udp_group.h: a socket per worker index); a serving
 * process keeps the socket of its index. */
struct np_usock {
    struct np_bound *b;         /* its address, users and sockets by worker index */
    const char *addr;           /* b's */
    int fd;                     /* the socket this process reads and answers from; -1 once closed */
    int steering;               /* the worker count its group steers over (udp_group.h) */
    struct event ev;
    int armed, reading;
    struct np_udp *serve;       /* whose new flows */
    struct np_flow **buckets;
    size_t nbuckets, nflows;
};

/* A proxy's UDP side. */
struct np_udp {
    struct np_proxy *p;
    const struct np_udp_ops *ops;
    void *arg;
    char *host;                 /* the server; NULL for a service */
    int port;
    double idle_timeout;
    uint64_t max_flows, nflows;
    int hook_ref[2];            /* toward the server, toward the client */
    int datagram_ref;           /* a service's datagram function */
    int start_ref;              /* netproxy.udp.start, when a flow needs a Lua conn */
    int pooled;                 /* the `to` has servers: netproxy.udp.pick and .failed choose */
    int pick_ref, failed_ref;
    int quic;                   /* the from has probes: each flow's ClientHello picks its server */
    double probe_timeout;
    int route_ref;              /* netproxy.udp.route */
    struct np_usock **socks;
    int nsocks;
    struct np_flow *lru_head, *lru_tail;   /* its flows, longest idle first */
    int released;
    double warned;              /* rate of the eviction and refusal warnings */
    uint64_t unlogged;
};

struct np_flow {
    struct np_ended ended;              /* its id, its end, its Lua handle (end.h) */
    struct np_udp *u;
    struct np_usock *ls;
    struct sockaddr_storage peer;
    socklen_t peerlen;
    int fd;                     /* connected to the server; -1 while resolving or for a service */
    struct event ev;
    struct np_resolve *resolving;
    struct queued *queue, **qtail;
    int nqueued;
    struct np_idle idle;
    struct np_flow *hnext;                 /* in ls->buckets */
    struct np_flow *lprev, *lnext;         /* in u's LRU list */
    uint64_t dgrams[2], bytes[2];       /* carried: toward the server, toward the client */
    uint64_t dropped;
    char target[NP_ADDRSTRLEN];
    /* a pool flow: its server (held in the shared table from its choice to the flow's end or
     * the server's failure), the servers that failed before it, whether it replied */
    int row;                            /* -1: none */
    char *server_host;
    int server_port;
    char *failed;                       /* "a,b", or NULL */
    int replied, counted;
    unsigned attempt;                   /* a new one for each server tried */
    int conn_ref;
    int pooled;                         /* its server comes from a pool (the proxy's, or a probe's) */
    struct np_flow_probe *probe;        /* while its QUIC ClientHello is read (udp_probe.c) */
    char *sni, *alpn;                   /* read from it, for the log line */
};

/* ---------------------------------------------------------------- udp_table.c */

/* The flow of peer on ls, or NULL. */
struct np_flow *np_flow_lookup(struct np_usock *ls, const struct sockaddr_storage *peer);
/* f joins ls's table: 0, or -1 (out of memory). */
int np_flow_insert(struct np_usock *ls, struct np_flow *f);
/* f leaves its socket's table (if it is in it). */
void np_flow_unhash(struct np_flow *f);
/* f leaves (if a member) or joins, as the most recently active, its proxy's LRU list. */
void np_flow_lru_unlink(struct np_flow *f);
void np_flow_lru_append(struct np_flow *f);
/* A datagram either way: the flow is the most recently active. */
void np_flow_touch(struct np_flow *f);

/* ---------------------------------------------------------------- udp_sock.c */

/* This process reads its sockets (np_udp_start has run). */
extern int np_udp_started;

/* The socket of sa for proxy name, shared (refs + 1) or bound, with its group grown to n
 * sockets and steering over n (the workers). NULL with a message in err. */
struct np_usock *np_usock_get(const struct sockaddr *sa, socklen_t len, int n, const char *name,
                        char *err, size_t errlen);
/* Drops a reference; the last one ends its flows (end=drained), closes the sockets (said
 * when say) and frees it. */
void np_usock_put(struct np_usock *ls, int say);
/* Reads ls (np_udp_on_readable), unless it is closed or read already. */
void np_usock_arm(struct np_usock *ls);

/* ---------------------------------------------------------------- udp.c */

/* The one way a flow ends (end how, detail fmt): it leaves the table at once; the reaper
 * frees it once the running callback has returned. */
void np_flow_close(struct np_flow *f, enum np_end how, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* A listening socket's datagrams: each to its flow, a new one for a new client. */
void np_udp_on_readable(evutil_socket_t fd, short what, void *arg);

/* ---------------------------------------------------------------- udp_probe.c */

/* The server a probing flow goes to: host and port, or its pool's choice (conn._pool is
 * set), or none (how: why it ends). */
struct np_flow_route {
    enum np_end how;                    /* NP_END_NONE: it goes on */
    const char *why;
    const char *host;
    int port, pooled;
};
typedef void np_flow_routed(struct np_flow *f, const struct np_flow_route *r);

/* A flow of a proxy with quic probes starts probing: its datagrams are held (by udp.c) and
 * read as QUIC Initials until the ClientHello is whole (or is not one, or probe_timeout
 * passes); netproxy.udp.route then picks the server, and routed() is told, once probing has
 * ended. 0, or -1 (no memory). */
int np_flow_probe_start(struct np_flow *f, np_flow_routed *routed);
/* A datagram from the client while probing, held (or not: the queue was full, and the flow
 * goes to the fallback at once). */
void np_flow_probe(struct np_flow *f, const char *data, size_t len, int held);
/* Frees what probing holds (the flow ends, or probing did). */
void np_flow_probe_end(struct np_flow *f);

#endif
