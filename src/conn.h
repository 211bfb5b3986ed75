/* A client connection from accept to close, and its one owner: its session task while the
 * connectors negotiate, then its relay; one log line and its counters when it ends. Every
 * end goes through np_conn_close, which only marks it: the connection is torn down and
 * freed by a reaper once the running callback has returned. */
#ifndef NP_CONN_H
#define NP_CONN_H
#include "end.h"

#include <stddef.h>
#include <stdint.h>
#include <lua.h>
#include <openssl/ssl.h>

struct np_conn;
struct np_proxy;
struct evbuffer;

/* Told once a connection has ended, been counted and logged, just before it is freed. */
typedef void np_conn_done_fn(void *arg, struct np_conn *c);

/* Takes ownership of rfd and wfd (one socket twice, or standard input and output) and
 * starts the proxy's session for a client named `client` in the logs. Returns the
 * connection (valid until the running callback returns: it is freed by a reaper), or NULL
 * when it could not be made (done was called). */
struct np_conn *np_conn_start(struct np_proxy *p, int rfd, int wfd, const char *client,
                   np_conn_done_fn *done, void *done_arg);

/* Ends the connection: how, and a detail for the log line (may be ""). The first call
 * wins; nothing of the connection runs afterwards, and it is freed once the running
 * callback has returned. */
void np_conn_close(struct np_conn *c, enum np_end how, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Closes every live connection of proxy p, as how (a drain or stop deadline). */
void np_conn_close_all(struct np_proxy *p, enum np_end how, const char *detail);

/* A live connection as the control socket shows it (show conns). */
struct np_conn_view {
    uint64_t id;
    const char *proxy, *client, *target, *state;   /* state: negotiating, relaying, serving */
    double age;                 /* seconds */
    uint64_t bytes[2];          /* client->server, server->client */
};
typedef void np_conn_view_fn(void *arg, const struct np_conn_view *v);

/* Calls fn for each live connection of p. */
void np_conn_each(struct np_proxy *p, np_conn_view_fn *fn, void *arg);

/* Closes p's connection number id (end=closed: why); 1 when there was one, else 0. */
int np_conn_kill(struct np_proxy *p, uint64_t id, const char *why);

/* The connection whose Lua code is running (its session, or one of its hooks), or NULL. */
struct np_conn *np_conn_current(void);

uint64_t np_conn_id(const struct np_conn *c);
/* The main Lua state of its config (where hooks run). */
lua_State *np_conn_lua(const struct np_conn *c);
/* Something the connection carries besides a relay (a UDP association): its negotiation is
 * over, and release(arg) is called once when the connection is freed. */
void np_conn_attach(struct np_conn *c, void (*release)(void *arg), void *arg);
const char *np_conn_proxy_name(const struct np_conn *c);
int np_conn_ended(const struct np_conn *c);
/* The session coroutine, or NULL once the session is over. */
lua_State *np_conn_session(const struct np_conn *c);

/* The connection reached a pool server: counted in its row (pool.c) until the connection ends. */
void np_conn_hold_pool_row(struct np_conn *c, int row);
/* A slot of a pool server with max_conns, taken before its connect (np_pool_take): 1, or 0
 * when the server is full. np_conn_hold_pool_row(c, row) then counts the connection;
 * np_conn_give_pool_row gives the slot back (the connect failed). */
int np_conn_take_pool_row(struct np_conn *c, int row, int max);
void np_conn_give_pool_row(struct np_conn *c);
/* The connection waits in a pool's queue (1, or 0 when it is full) / no longer; it leaves it
 * at its end at the latest. */
int np_conn_pool_wait(struct np_conn *c, int q, int max);
void np_conn_pool_unwait(struct np_conn *c);

/* The connection counts in a per_source / per_user entry (limits.h) until it ends. */
void np_conn_hold_limit(struct np_conn *c, uint32_t token);

/* What the log line names as the destination, and as the client (after a PROXY header). */
void np_conn_set_target(struct np_conn *c, const char *text);
void np_conn_set_client(struct np_conn *c, const char *text);
/* What the client's TLS said (tls.h): kept (copied) for the log line, on_close's info.tls
 * and the access log; a later call replaces it. ja4 alone (dual's probe) goes through
 * np_conn_set_ja4. */
struct np_tls_identity;
void np_conn_set_tls(struct np_conn *c, const struct np_tls_identity *id);
void np_conn_set_ja4(struct np_conn *c, const char *ja4);

/* The user the connectors authenticated, for the access log. */
void np_conn_set_user(struct np_conn *c, const char *name);

/* If the connection ends refused, /metrics counts it under this reason (a static word:
 * "per_source_conns"...) rather than "session". */
void np_conn_refused_for(struct np_conn *c, const char *reason);

/* One forwarded HTTP request's access log line (method, url, status; bytes toward the
 * client; its seconds; server: the address reached, or NULL), when the proxy has an access
 * log: the connection's fields, end and detail aside. */
struct np_access_request {
    const char *method, *url, *server;
    int status;
    double bytes_out, duration;
};
void np_conn_access_request(struct np_conn *c, const struct np_access_request *q);

/* The hand-off to the relay: both sides' fds ({read, write}), TLS sessions and read-ahead
 * buffers (may be NULL), the hooks and the Lua conn object as registry refs (LUA_NOREF for
 * none). */
struct np_conn_handoff {
    int fd[2][2];
    SSL *ssl[2];
    struct evbuffer *ahead[2];
    int hook_ref[2];
    int conn_ref;
    int may_starttls;
    double connect_time;        /* the server socket's connect (core.connect), or < 0 */
};

/* The connectors are done: the relay takes everything in h (always, even on failure: then
 * the connection is closed). 0, or -1 when it could not start. */
int np_conn_relay(struct np_conn *c, struct np_conn_handoff *h);

/* The relayed client's socket (a hook asking where the client connected to), or -1. */
int np_conn_client_fd(const struct np_conn *c);

/* During the relay: bytes toward one side (NP_TO_SERVER / NP_TO_CLIENT), after the chunk
 * being handled; and a STARTTLS upgrade of one side. 0, or -1 with a reason in err. */
int np_conn_send(struct np_conn *c, int dir, const char *data, size_t len, const char **err);
int np_conn_starttls(struct np_conn *c, int side, SSL_CTX *ctx, int server, const char *sni,
                     const char *verify_name, const char **err);

/* The connection is served here (a service `to`): the negotiation phase ends without a
 * relay (no negotiation_timeout, not counted in max_negotiating), the bytes read from and
 * written to client count as the connection's, and idle_timeout applies to them. */
struct np_sock;
void np_conn_serving(struct np_conn *c, struct np_sock *client);

/* Once the connection has ended, been counted and logged, the function at registry ref
 * fn_ref (taken over) is called in the main state with an info table: bytes_in,
 * bytes_out, duration, reason (the end word), detail, server. An error is logged. */
void np_conn_when_closed(struct np_conn *c, int fn_ref);

/* The connection a Lua handle at idx names, or NULL once it is gone. */
struct np_conn *np_conn_from_handle(lua_State *L, int idx);

#endif
