/* A routed connection: the config fixed the server (proxy.h's np_route), so the core
 * connects itself, without a session, and relays through the route's hooks. */
#include "conn_impl.h"
#include "loop.h"
#include "proxy.h"
#include "relay.h"

#include <errno.h>
#include <lauxlib.h>
#include <unistd.h>

/* ---------------------------------------------------------------- routed */

static void routed_connected(void *arg, int fd, int err, const char *why)
{
    struct np_conn *c = arg;
    const struct np_route *r = c->route;
    struct session *s = c->session;
    /* with defer_accept the kernel handed the client over with its first bytes (unless it
     * waited past the delay: then the read answers EAGAIN once) */
    struct np_relay_side client = { .rfd = s->client_fd[0], .wfd = s->client_fd[1],
                                    .ahead = s->ahead, .ahead_len = s->ahead_len,
                                    .readable = c->proxy->defer_accept > 0 && !s->ahead_len };
    struct np_relay_side server = { .rfd = fd, .wfd = fd };
    const int filtered[2] = { r->hook_ref[0] != LUA_NOREF, r->hook_ref[1] != LUA_NOREF };

    if (fd >= 0) c->connect_time = np_now() - c->dial_started;
    if (fd < 0 && err == ETIMEDOUT && r->on_timeout == NP_END_NEGOTIATION_TIMEOUT) {
        np_conn_close(c, NP_END_NEGOTIATION_TIMEOUT, "%s", "");
    } else if (fd < 0) {
        np_conn_close(c, NP_END_CONNECT_FAILED, "%s", why);
    } else if (np_conn_start_relay(c, &client, &server, filtered, 0) < 0) {
        close(fd);
        np_conn_close(c, NP_END_NO_MEMORY, "%s", "starting the relay");
    } else {
        s->client_fd[0] = s->client_fd[1] = -1;
        np_defer(&c->session_over, np_conn_session_over);
    }
}

/* Connects to c->route; the relay starts from routed_connected. */
void np_conn_dial_route(struct np_conn *c)
{
    const struct np_route *r = c->route;
    struct session *s = c->session;

    c->dial_started = np_now();
    if (r->host) np_dial_start_name(&s->dial, r->host, r->port, &r->dial, routed_connected, c);
    else np_dial_start(&s->dial, &r->ai, &r->dial, routed_connected, c);
}

/* The config fixed the server and nothing runs before the relay: connect, then relay
 * (through the route's hooks, if it has any). */
void np_conn_start_routed(struct np_conn *c, int rfd, int wfd)
{
    struct session *s = c->session;

    s->routed = 1;
    s->client_fd[0] = rfd;
    s->client_fd[1] = wfd;
    np_conn_dial_route(c);
}
