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

struct evbuffer;
struct np_resolve;
struct np_sock;
struct np_idle;

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

/* Out of file descriptors while connecting: fn(errno) is told (the server pauses accepting). */
void np_sock_on_fd_shortage(void (*fn)(int err));
void np_sock_report_fd_shortage(int err);      /* a connect outside the cosockets met one */

/* A short, stable token for an errno ("refused", "timeout"...), as OpenResty's cosockets
 * give; and TCP_NODELAY on a connected socket. */
const char *np_sock_err_token(int err);
void np_sock_set_nodelay(int fd);

/* Why a connect failed, as core.connect and the routed dial both say it: "resolve: ..." for
 * a name that did not resolve, else the last errno's token, or "no address". */
void np_sock_connect_why(int dns_error, int last_errno, char *out, size_t outlen);

/* Whether a TCP socket whose connect() said EINPROGRESS is connected already: to a loopback
 * address the handshake is done inside the call, and one getsockopt then saves waiting for
 * writability (an epoll_ctl ADD, a turn of the loop, getsockopt SO_ERROR, the MOD after). */
int np_sock_established(int fd, int family);

/* Pushes the "addr:port" TCP socket fd is bound to and returns 1, or pushes nothing and
 * returns 0 (no socket, not TCP): sock:localaddr() and core.reached. */
int np_sock_push_localaddr(lua_State *L, int fd);

enum np_sock_op { NP_OP_NONE, NP_OP_READ, NP_OP_PEEK, NP_OP_WRITE, NP_OP_CONNECT, NP_OP_HANDSHAKE, NP_OP_FLUSH };

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
    double op_deadline;           /* 0 = none */
    double timeout;               /* default for read/peek/write, seconds; 0 = none */
    struct evbuffer *inbuf;       /* read ahead (peek), not yet consumed */
    struct evbuffer *outbuf;      /* accepted by write, not yet sent */
    /* send: writes that never wait, flushed in the background (a service's conn:write) */
    struct evbuffer *sendbuf;     /* accepted by send, not yet sent; NULL until the first */
    struct event flush_ev;        /* the background flush: writability of wfd */
    int send_failed;              /* the flush hit an error (in err): sends fail from then on */
    /* set by the connection that serves through this socket (conn.c): bytes read [0] and
     * written [1] are added to these counters, and every byte touches idle; NULL for none */
    uint64_t *bytes[2], *more_bytes[2];
    struct np_idle *idle;
    /* connect */
    void (*connect_step)(struct np_sock *s, short what);   /* set by sock_connect.c */
    struct evutil_addrinfo *own_addr;    /* a unix socket or an address literal: a list
                                             * of one made here, not by the resolver */
    int resolve_only;             /* core.resolve: the addresses are the answer */
    int reverse;                  /* core.reverse: the name is (reverse_name, or dns_error) */
    char *reverse_name;
    struct np_resolve *resolving;
    struct evutil_addrinfo *addrs, *next_addr;
    double deadline;
    int last_errno;
    int waiting_for_fd;           /* connect: no descriptor was free, trying again soon */
    int dns_error;
    int dgram;                    /* a connected UDP socket: a read is one datagram, a write one */
    char peer[NP_ADDRSTRLEN];
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

/* Closes every cosocket of an owner. */
void np_sock_close_all(struct np_sock_owner *o);

/* Stops every event of an owner's cosockets (they stay open): nothing will resume it. */
void np_sock_halt_all(struct np_sock_owner *o);

/* core.connect for o's coroutine L: pushes the socket or nil, err and returns their count,
 * or yields until it knows. */
int np_sock_connect(lua_State *L, struct np_sock_owner *o, const char *host, int port, double timeout);

/* core.resolve for o's coroutine L: pushes a list of the host's addresses ("192.0.2.1",
 * "2001:db8::1") or nil, err, or yields until the resolver answers (or timeout seconds). */
int np_sock_resolve(lua_State *L, struct np_sock_owner *o, const char *host, double timeout);
/* core.reverse: the name of an IP address (a PTR query), or nil, "resolve: why" | "timeout". */
int np_sock_reverse(lua_State *L, struct np_sock_owner *o, const char *ip, double timeout);

/* The same with a connected UDP socket (core.connect_udp): nothing is sent, so only the name
 * can fail (or a route); the first address is used. */
int np_sock_connect_udp(lua_State *L, struct np_sock_owner *o, const char *host, int port, double timeout);

/* The same to a unix socket: a path, or "@name" (abstract). */
int np_sock_connect_unix(lua_State *L, struct np_sock_owner *o, const char *path, double timeout);

/* Registers the cosocket metatable. */
void np_sock_open(lua_State *L);

#endif
