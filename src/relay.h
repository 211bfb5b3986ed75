/* The relay: once both sides are connected, C pumps the bytes both ways, by splice()
 * through a pipe when nothing needs to see them, else through bounded buffers. */
#ifndef NP_RELAY_H
#define NP_RELAY_H
#include "server.h"
#include <openssl/ssl.h>

struct np_conn;
struct evbuffer;
struct np_relay;

enum { NP_TO_SERVER = 0, NP_TO_CLIENT = 1 };   /* the two directions */

struct np_relay_opts {
    enum np_relay_mode mode;
    int hook_ref[2];        /* per direction: a Lua function in the registry, or LUA_NOREF */
    int conn_ref;           /* the Lua conn object handed to hooks (the relay releases it) */
    double hook_budget;     /* seconds one hook call may take; 0 = unbounded */
    SSL *ssl[2];            /* client, server: a TLS session the relay takes over, or NULL */
    int may_starttls;       /* a side may be upgraded later: do not splice */
};

/* Hands both sides' fds ({read, write}: the same socket twice, or stdin and stdout) to a new relay, set as c->relay, which owns the registry refs in opts from
 * now on. client_ahead holds bytes already read from the client (they go to the server
 * first), server_ahead the same for the server; both are consumed and freed here and may
 * be NULL. The first bytes move on the next loop iteration, never inside the caller. */
void np_relay_start(struct np_conn *c, const struct np_relay_opts *opts,
                    const int client_fd[2], struct evbuffer *client_ahead,
                    const int server_fd[2], struct evbuffer *server_ahead);

/* conn:send(): queues bytes for one direction, after the chunk being handled, if any.
 * Returns 0, or -1 when out of memory. */
int np_relay_inject(struct np_relay *r, int dir, const char *data, size_t len);

/* conn:starttls(): upgrade a side to TLS (in the context's role, sending sni and checking
 * verify_name as a client) once the bytes toward it are out in clear; reading stops now.
 * Returns 0, or -1 when that side already speaks TLS (or is not a socket). */
int np_relay_starttls(struct np_relay *r, int side, SSL_CTX *ctx, int server,
                      const char *sni, const char *verify_name);

/* conn:close() during the relay: the connection ends once the running hook returns. */
void np_relay_close_soon(struct np_relay *r);

/* Closes both sockets and frees everything. Called by np_conn_end only. */
void np_relay_free(struct np_relay *r);

#endif
