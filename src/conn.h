/* A client connection from accept to close: its session coroutine while the connectors
 * negotiate, then its relay; one log line when it ends. */
#ifndef NP_CONN_H
#define NP_CONN_H
#include <stdint.h>
#include <sys/socket.h>
#include <lua.h>
#include <event2/event_struct.h>

#define NP_ADDRSTRLEN 64  /* "[ipv6%scope]:port" */

struct np_proxy;
struct np_sock;
struct np_relay;

struct np_conn {
    uint64_t id;
    struct np_proxy *proxy;
    lua_State *co;            /* the session coroutine; NULL once it has finished */
    int co_ref;               /* registry anchor of co */
    int waiting;              /* co yielded inside a netproxy call that will resume it */
    int resuming;             /* depth of lua_resume on the C stack: defer the free */
    int ended;
    int negotiating;          /* counted in proxy->negotiating until the relay or the end */
    struct np_sock *socks;    /* cosockets still owned by the session */
    struct np_relay *relay;
    struct event deadline;    /* negotiation timeout */
    struct event sleep_ev;    /* core.sleep() */
    double started;
    uint64_t bytes_in, bytes_out;  /* client->server, server->client */
    char client[NP_ADDRSTRLEN];
    char target[256];
    char reason[200];
    int handle_ref;           /* registry anchor of the Lua handle (netproxy.conn_handle) */
};

/* What Lua holds to name a connection: cleared when the connection is freed, so a stale
 * handle can never reach freed memory. */
struct np_conn_handle {
    struct np_conn *conn;
};

/* Takes ownership of rfd and wfd (one socket twice, or standard input and output) and
 * starts the proxy's session for a client named `client` in the logs. */
void np_conn_start(struct np_proxy *p, int rfd, int wfd, const char *client);

/* Takes ownership of fd, an accepted client socket, and starts the proxy's session. */
void np_conn_accept(struct np_proxy *p, int fd, const struct sockaddr *sa, socklen_t len);

/* The connectors are done: the connection leaves the negotiating count. */
void np_conn_negotiated(struct np_conn *c);

/* Resumes the session coroutine with nargs values already pushed on co. */
void np_conn_resume(struct np_conn *c, int nargs);

/* Ends the connection: closes its sockets and relay, counts it, logs its line. Idempotent;
 * the memory is released now, or when the running resume returns. */
void np_conn_end(struct np_conn *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* lua_pcall(L, nargs, LUA_MULTRET, errfunc) with c as the current connection. */
int np_conn_call_as(struct np_conn *c, lua_State *L, int nargs, int errfunc);

/* The connection a handle at idx names, or NULL once it is gone. */
struct np_conn *np_conn_from_handle(lua_State *L, int idx);

/* The connection whose Lua code is running, or NULL. */
struct np_conn *np_conn_current(void);

/* Formats a socket address as "1.2.3.4:5" or "[::1]:5". */
void np_addr_format(const struct sockaddr *sa, char *out, size_t outlen);

#endif
