/* The relay: once both sides are connected, C pumps the bytes both ways, by splice()
 * through a pipe when nothing needs to see them, else through bounded buffers. */
#ifndef NP_RELAY_H
#define NP_RELAY_H
#include "server.h"

struct np_conn;
struct evbuffer;
struct np_relay;

/* Hands both fds to a new relay, set as c->relay. client_ahead holds bytes already read
 * from the client (they go to the server first), server_ahead the same for the server;
 * both are consumed and freed here and may be NULL. The relay starts pumping at once, so
 * the connection may have ended (c->ended) when this returns. */
void np_relay_start(struct np_conn *c, enum np_relay_mode mode,
                    int client_fd, struct evbuffer *client_ahead,
                    int server_fd, struct evbuffer *server_ahead);

/* Closes both sockets and frees everything. Called by np_conn_end only. */
void np_relay_free(struct np_relay *r);

#endif
