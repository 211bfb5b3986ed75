/* Cosockets: sockets whose connect/read/peek/write yield the session coroutine until the
 * event loop has an answer (the OpenResty model), exposed to Lua as netproxy.core. */
#ifndef NP_SOCK_H
#define NP_SOCK_H
#include <lua.h>
#include <event2/event_struct.h>
#include "conn.h"

struct evbuffer;
#include <event2/util.h>
struct np_resolve;

#include <openssl/ssl.h>

enum np_sock_op { NP_OP_NONE, NP_OP_READ, NP_OP_PEEK, NP_OP_WRITE, NP_OP_CONNECT, NP_OP_HANDSHAKE };

struct np_sock {
    int fd;                       /* -1 when closed or handed to the relay */
    int wfd;                      /* where writes go: fd, except for stdio (0 in, 1 out) */
    struct np_conn *conn;         /* owner; NULL when closed */
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
    /* connect */
    struct np_resolve *resolving;
    struct evutil_addrinfo *addrs, *next_addr;
    double deadline;
    int last_errno;
    int waiting_for_fd;           /* connect: no descriptor was free, trying again soon */
    int dns_error;
    char peer[NP_ADDRSTRLEN];
};

/* Pushes a new cosocket owning rfd and wfd (an accepted client: the same socket twice, or
 * standard input and output). */
struct np_sock *np_sock_push(lua_State *L, struct np_conn *c, int rfd, int wfd);
struct np_sock *np_sock_check(lua_State *L, int idx);

/* Takes the fds, the TLS session and the read-ahead bytes away from the cosocket (for the
 * relay): the Lua object is closed afterwards. Returns the read fd, *wfd the write fd (the
 * same for a socket), *ssl the TLS session or NULL; *inbuf receives the buffer (may be
 * empty). */
int np_sock_detach(struct np_sock *s, int *wfd, SSL **ssl, struct evbuffer **inbuf);

/* Closes a cosocket: events off, fd closed, unlinked. Idempotent. */
void np_sock_close(struct np_sock *s);

/* Registers the cosocket metatable and adds connect() to the module table on the top. */
void np_sock_open(lua_State *L);

#endif
