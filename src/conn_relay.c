/* A connection's relay: the hand-off from the connectors (or the routed connect), its
 * hooks (each chunk through the proxy's Lua function, with the hooks' conn object), and
 * what Lua asks of it while it runs (bytes injected, a STARTTLS upgrade). */
#include "conn_impl.h"
#include "hook.h"
#include "log.h"
#include "loop.h"
#include "luavm.h"
#include "proxy.h"
#include "relay.h"

#include <event2/buffer.h>
#include <event2/event.h>
#include <lauxlib.h>
#include <stdio.h>
#include <sys/socket.h>
#include <unistd.h>

/* ---------------------------------------------------------------- the relay */

/* "addr:port" (or the unix path) of fd's peer into out. */
static const char *peer_of(int fd, char *out, size_t outlen)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;

    if (getpeername(fd, (struct sockaddr *)&ss, &len) < 0) snprintf(out, outlen, "?");
    else np_addr_format((struct sockaddr *)&ss, len, out, outlen);
    return out;
}

/* A routed proxy's hooks get their conn object at their first call, from session.route's
 * conn(id, client, handle, server): what a session would have handed them. 0, or -1 with err. */
static int make_hook_conn(struct np_conn *c, char *err, size_t errlen)
{
    const struct np_route *r = c->route;
    lua_State *L = c->proxy->L;
    char server[NP_ADDRSTRLEN];

    lua_rawgeti(L, LUA_REGISTRYINDEX, r->conn_ref);
    lua_pushnumber(L, (lua_Number)c->ended.id);
    lua_pushstring(L, c->client);
    np_ended_push_handle(L, &c->ended);
    lua_pushstring(L, r->server[0] ? r->server : peer_of(np_relay_server_fd(c->relay), server, sizeof server));
    if (np_call(L, 4, 1, &np_limits_none, err, errlen) < 0) return -1;   /* netproxy.session's own */
    c->hook_conn_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    return 0;
}

/* The hooks' conn object: a session's, or a routed proxy's made at the first call; none
 * when no hook takes one. 0, or -1 with err. */
static int hook_conn_ready(struct np_conn *c, char *err, size_t errlen)
{
    const struct np_route *r = c->route;

    if (c->hook_conn_ref != LUA_NOREF || !r || r->conn_ref == LUA_NOREF) return 0;
    return make_hook_conn(c, err, errlen);
}

static enum np_filter_rc filter(void *arg, int dir, const char *data, size_t len, int eof,
                                const char **out, size_t *outlen)
{
    struct np_conn *c = arg, *outer = np_conn_in_hook;
    const struct np_route *r = c->route;
    char err[256];
    int rc = -1;

    np_conn_in_hook = c;
    if (hook_conn_ready(c, err, sizeof err) == 0)
        rc = np_hook_call(c->proxy->L, r ? r->hook_ref[dir] : c->hook_ref[dir], c->hook_conn_ref,
                          data, len, eof, &c->proxy->limits, out, outlen, err, sizeof err);
    np_conn_in_hook = outer;
    if (rc < 0) {
        np_clog(NP_ERR, c->ended.id, "%s: hook: %s", c->proxy->name, err);
        np_conn_close(c, NP_END_LUA_ERROR, "%s", err);
    }
    if (c->ended.end != NP_END_NONE) {        /* an error, or conn:close() from the hook */
        if (rc == 1) np_hook_done(c->proxy->L);
        return NP_FILTER_STOP;
    }
    return rc == 1 ? NP_FILTER_REPLACE : NP_FILTER_KEEP;
}

static void filter_done(void *arg)
{
    np_hook_done(((struct np_conn *)arg)->proxy->L);
}

static void relay_ended(void *arg, enum np_end how, const char *detail)
{
    np_conn_close(arg, how, "%s", detail);
}

static const struct np_relay_ops relay_ops = {
    .filter = filter, .filter_done = filter_done, .ended = relay_ended,
};

static void side_of(struct np_relay_side *s, struct np_conn_handoff *h, int i)
{
    struct evbuffer *ahead = h->ahead[i];

    s->rfd = h->fd[i][0];
    s->wfd = h->fd[i][1];
    s->ssl = h->ssl[i];
    s->readable = 0;            /* a session's connectors have read what they needed */
    s->ahead_len = ahead ? evbuffer_get_length(ahead) : 0;
    s->ahead = s->ahead_len ? (const char *)evbuffer_pullup(ahead, -1) : NULL;
}

static void drop_handoff(struct np_conn_handoff *h, lua_State *L)
{
    for (int i = 0; i < 2; i++) {
        if (h->ssl[i]) SSL_free(h->ssl[i]);
        if (h->fd[i][1] != h->fd[i][0] && h->fd[i][1] >= 0) close(h->fd[i][1]);
        if (h->fd[i][0] >= 0) close(h->fd[i][0]);
        np_lua_unref(L, &h->hook_ref[i]);
    }
    np_lua_unref(L, &h->conn_ref);
}

/* The relay over both sides, which it owns from then on; -1 when it could not start
 * (nothing taken). The negotiation is over. */
int np_conn_start_relay(struct np_conn *c, const struct np_relay_side *client,
                       const struct np_relay_side *server, const int filtered[2], int may_starttls)
{
    struct np_proxy *p = c->proxy;
    struct np_relay_config cfg = {
        .mode = p->relay_mode,
        .filtered = { filtered[0], filtered[1] },
        .may_starttls = may_starttls,
        .buffer_size = p->buffer_size,
        .idle_timeout = p->idle_timeout,
        .bytes = { &c->bytes[0], &c->bytes[1] },
        .more_bytes = { &NP_COUNTERS(p)->bytes_in, &NP_COUNTERS(p)->bytes_out },
        .rate = p->bandwidth_per_conn,
        .log_id = c->ended.id,
        .log_name = p->name,
    };
    char path[96];

    /* the source's and the proxy's buckets (bandwidth), which the relay takes */
    if (c->ended.end == NP_END_NONE && !c->relay && np_shaper_get(p->shaper, c->client, cfg.shared) == 0)
        c->relay = np_relay_new(&cfg, &relay_ops, c, client, server);
    if (!c->relay) return -1;
    c->relayed_at = np_now();
    if (p->access && !c->server) {      /* the address reached: a getpeername only for the access log */
        char where[NP_ADDRSTRLEN];
        const char *server_text = c->route && c->route->server[0] ? c->route->server
                                : peer_of(np_relay_server_fd(c->relay), where, sizeof where);
        c->server = strdup(server_text);
    }
    np_conn_negotiated(c);
    np_conn_disarm_deadline(c);
    np_clog(NP_INFO, c->ended.id, "%s: relay: %s", p->name, np_relay_describe(c->relay, path, sizeof path));
    return 0;
}

int np_conn_relay(struct np_conn *c, struct np_conn_handoff *h)
{
    struct np_relay_side client, server;
    int filtered[2] = { h->hook_ref[0] != LUA_NOREF, h->hook_ref[1] != LUA_NOREF };
    int rc;

    side_of(&client, h, NP_CLIENT);
    side_of(&server, h, NP_SERVER);
    if (h->connect_time >= 0) c->connect_time = h->connect_time;
    rc = np_conn_start_relay(c, &client, &server, filtered, h->may_starttls);
    for (int i = 0; i < 2; i++)
        if (h->ahead[i]) evbuffer_free(h->ahead[i]);
    if (rc < 0) {
        drop_handoff(h, c->proxy->L);
        np_conn_close(c, NP_END_NO_MEMORY, "%s", "starting the relay");
        return -1;
    }
    c->hook_ref[0] = h->hook_ref[0];
    c->hook_ref[1] = h->hook_ref[1];
    c->hook_conn_ref = h->conn_ref;
    return 0;
}

int np_conn_client_fd(const struct np_conn *c)
{
    return c->relay && c->ended.end == NP_END_NONE ? np_relay_client_fd(c->relay) : -1;
}

int np_conn_send(struct np_conn *c, int dir, const char *data, size_t len, const char **err)
{
    if (c->ended.end != NP_END_NONE) *err = "closed";
    else if (!c->relay) *err = "not relaying yet: write to the socket";
    else if (np_relay_inject(c->relay, dir, data, len) < 0) *err = "out of memory";
    else return 0;
    return -1;
}

int np_conn_starttls(struct np_conn *c, int side, SSL_CTX *ctx, int server, const char *sni,
                     const char *verify_name, const char **err)
{
    if (c->ended.end != NP_END_NONE) *err = "closed";
    else if (!c->relay) *err = "not relaying yet: use sock:tls()";
    else if (np_relay_starttls(c->relay, side, ctx, server, sni, verify_name) < 0)
        *err = side == NP_CLIENT ? "the client side already speaks TLS" : "the server side already speaks TLS";
    else return 0;
    return -1;
}
