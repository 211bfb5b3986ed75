/* Cosockets: sockets whose connect/read/peek/write yield the calling coroutine until the
 * event loop has an answer (the OpenResty model). A cosocket belongs to an owner (a task:
 * task.h), which it resumes through the owner's callback. */
#ifndef NP_SOCK_H
#define NP_SOCK_H
#include <lua.h>
#include <event2/event_struct.h>
#include <event2/util.h>
#include <openssl/ssl.h>
#include "addr.h"
#include "dial.h"

struct evbuffer;
struct np_sock;
struct np_sock_dial;
struct np_idle;
struct np_sock_sniff;
struct np_sock_splice;

/* Who the cosockets of one coroutine belong to. */
struct np_sock_owner {
    lua_State *L;               /* the main state: registry refs */
    lua_State *co;              /* the coroutine its sockets may wait in */
    struct np_sock *socks;      /* its open cosockets */
    int waiting;                /* co yielded in a call that will resume it */
    int closed;                 /* the owner has ended: calls fail with "closed", nothing resumes */
    void (*resume)(struct np_sock_owner *o, int nresults);   /* nresults pushed on co */
};

/* The owner whose coroutine is running (set by whoever resumes one), or NULL. */
struct np_sock_owner *np_sock_running(void);
void np_sock_set_running(struct np_sock_owner *o);

/* Pushes the "addr:port" TCP socket fd is bound to and returns 1, or pushes nothing and
 * returns 0 (no socket, not TCP): sock:localaddr() and core.reached. */
int np_sock_push_localaddr(lua_State *L, int fd);

enum np_sock_op { NP_OP_NONE, NP_OP_READ, NP_OP_PEEK, NP_OP_WRITE, NP_OP_HANDSHAKE, NP_OP_FLUSH,
                  NP_OP_SPLICE };

struct np_sock {
    int fd;                       /* -1 when closed or handed to the relay */
    int wfd;                      /* where writes go: fd, except for stdio (0 in, 1 out) */
    struct np_sock_owner *owner;  /* NULL when closed */
    lua_State *L;                 /* the owner's main state */
    struct np_sock *next, **pprev;
    struct event rev, wev;        /* assigned while fd is valid */
    enum np_sock_op op;           /* what the waiting coroutine asked for (one at a time) */
    int want_write;               /* the op waits for writability (else readability) */
    SSL *ssl;                     /* once sock:tls() has run */
    char err[200];                /* why the last I/O failed */
    int self_ref;                 /* anchors the userdata while an op is pending */
    size_t want;
    size_t peek_most;             /* a peek's window: the most it reads ahead and returns */
    double op_deadline;           /* 0 = none */
    double timeout;               /* default for read/peek/write, seconds; 0 = none */
    struct evbuffer *inbuf;       /* read ahead (peek), not yet consumed */
    struct evbuffer *outbuf;      /* accepted by write, not yet sent */
    /* send: writes that never wait, flushed in the background (a service's conn:write) */
    struct evbuffer *sendbuf;     /* accepted by send, not yet sent; NULL until the first */
    struct event flush_ev;        /* the background flush: writability of wfd */
    int send_failed;              /* the flush hit an error (in err): sends fail from then on */
    /* set by np_sock_serve for the connection that serves through this socket: bytes read
     * [0] and written [1] are added to these counters, and every byte touches idle; NULL for none */
    uint64_t *bytes[2], *more_bytes[2];
    struct np_idle *idle;
    struct np_sock_dial *dialing; /* its connect, while under way (sock_connect.c) */
    struct np_sock_sniff *sniffing; /* its sniff, while under way (sock_sniff.c) */
    struct np_sock_splice *splicing; /* a splice_to from or to it, while under way (sock_splice.c) */
    int dgram;                    /* a connected UDP socket: a read is one datagram, a write one */
    int drained;                  /* the last read took less than it asked for (sock_io.c) */
    int reused;                   /* times this connection came out of an idle pool (sockpool.c) */
    char *pool;                   /* the pool it was connected for (core.connect's pool), or NULL */
    char peer[NP_ADDRSTRLEN];
    double connect_time;          /* seconds its connect took (core.connect); < 0: not connected so */
};

/* Pushes a new cosocket of o owning rfd and wfd (an accepted client: the same socket twice,
 * or standard input and output), whose peer is named peer. An accepted TCP socket has
 * TCP_NODELAY from its listener already; whoever passes another sets it. */
struct np_sock *np_sock_push(lua_State *L, struct np_sock_owner *o, int rfd, int wfd,
                             const char *peer);
struct np_sock *np_sock_check(lua_State *L, int idx);

/* The socket at idx is closed or handed over: it holds nothing its finalizer would release,
 * and loses it. A userdata with __gc costs the collector a call and a cycle more alive. */
void np_sock_forget(lua_State *L, int idx);

/* Takes the fds, the TLS session and the read-ahead bytes away from the cosocket (for the
 * relay): the Lua object is closed afterwards. Returns the read fd, *wfd the write fd (the
 * same for a socket), *ssl the TLS session or NULL; *inbuf receives the buffer (may be
 * empty). */
int np_sock_detach(struct np_sock *s, int *wfd, SSL **ssl, struct evbuffer **inbuf);

/* Closes a cosocket: events off, fd closed, unlinked. Idempotent. */
void np_sock_close(struct np_sock *s);

/* A connection serves through s from now on (a service): what s reads and writes is added
 * to bytes[0]/[1] and to more[0]/[1], and touches idle (NULL: none). Returns the bytes s
 * already holds read ahead (a probe's peek), which the service will read too. */
size_t np_sock_serve(struct np_sock *s, uint64_t *bytes[2], uint64_t *more[2], struct np_idle *idle);

/* Pushes a cosocket of o made of the healthiest idle connection of pool name (sockpool.c),
 * which the pool lets go of: it belongs to o from now on. NULL (nothing pushed): none. */
struct np_sock *np_sock_push_pooled(lua_State *L, struct np_sock_owner *o, const char *name);

/* Closes every cosocket of an owner. */
void np_sock_close_all(struct np_sock_owner *o);

/* Stops every event of an owner's cosockets (they stay open): nothing will resume it. */
void np_sock_halt_all(struct np_sock_owner *o);

/* Where a cosocket connect goes, and how: host:port (a name or an IP literal), or a unix
 * path ("@name": abstract). */
struct np_sock_target {
    const char *host;
    int port;
    const char *path;           /* instead of host and port */
    int dgram;                  /* a connected UDP socket: a read is one datagram, a write one */
    double timeout;             /* seconds; 0: no limit */
    const struct sockaddr_storage *source;  /* the local address to connect from, or NULL */
    socklen_t source_len;
    struct np_keepalive keepalive;      /* tcp_keepalive of a `to` */
    const char *pool;           /* an idle connection of this pool first, if one is healthy */
};

/* core.connect, connect_udp and connect_unix for o's coroutine L, through np_dial: pushes the
 * socket or nil, err and returns their count, or yields until it knows. A UDP socket's
 * connect() sends nothing: only the name can fail (or a route). */
int np_sock_connect(lua_State *L, struct np_sock_owner *o, const struct np_sock_target *to);

struct np_sniff_rules;
struct np_limits;

/* core.sniff's work (sock_sniff.c): the function at index 2 asked about s's first bytes by
 * dual's timing rules (the silence counted from started), each call under limits; yields
 * until the end, then gives how ("picked", "none", "silent", "closed", "error"), a value
 * (pick's answer, the close's word, the error) and the count of bytes held, which stay in
 * s's read-ahead. */
int np_sock_sniff(lua_State *L, struct np_sock *s, const struct np_sniff_rules *rules, double started,
                  const struct np_limits *limits);

/* Registers the cosocket metatable. */
void np_sock_open(lua_State *L);

#endif
