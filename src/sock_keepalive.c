/* Cosocket keepalive: sock:setkeepalive hands an idle upstream connection to the worker's pool
 * (sockpool.c), and np_sock_push_pooled makes a cosocket of one taken back out of it. */
#include "sock_impl.h"
#include "sockpool.h"

#include <event2/buffer.h>
#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

/* ---- keepalive: an idle connection outlives its task in the worker's pool ---- */

#define KEEPALIVE_IDLE 60.0     /* seconds (OpenResty's lua_socket_keepalive_timeout) */
#define KEEPALIVE_SIZE 30       /* idle connections per pool (lua_socket_pool_size) */
#define POOL_NAME_MAX 256

/* Why s cannot be pooled now, or NULL: it must be a plain idle TCP (or TLS) connection, with
 * nothing read ahead or waiting to be written, so the next task starts on a clean exchange. */
static const char *not_poolable(struct np_sock *s)
{
    if (s->fd < 0 || !s->owner) return "closed";
    if (s->op != NP_OP_NONE || s->dialing || s->sniffing) return "socket busy";
    if (s->dgram) return "a udp socket is not pooled";
    if (s->wfd != s->fd || s->bytes[0]) return "not an upstream connection";
    if ((s->inbuf && evbuffer_get_length(s->inbuf)) || (s->ssl && SSL_pending(s->ssl)))
        return "unread data in buffer";
    if (s->send_failed || (s->sendbuf && evbuffer_get_length(s->sendbuf)) ||
        (s->outbuf && evbuffer_get_length(s->outbuf)))
        return "unsent data in buffer";
    return NULL;
}

/* sock:setkeepalive([idle [, size [, name]]]) -> true | nil, err
 * The connection goes idle into pool name (default: the pool core.connect took it for, else
 * its peer's address) for at most idle seconds (0: no limit), the pool holding at most size;
 * this Lua object is closed. One that cannot be pooled is closed and the reason returned. */
static int sock_setkeepalive(lua_State *L)
{
    struct np_sock *s = np_sock_check(L, 1);
    double idle = np_sock_opt_timeout(L, 2, KEEPALIVE_IDLE);
    lua_Integer size = luaL_optinteger(L, 3, KEEPALIVE_SIZE);
    const char *name = luaL_optstring(L, 4, s->pool ? s->pool : s->peer);
    const char *why = not_poolable(s);
    char key[POOL_NAME_MAX];
    SSL *ssl = s->ssl;
    int fd = s->fd;

    luaL_argcheck(L, size > 0, 3, "pool size must be > 0");
    luaL_argcheck(L, strlen(name) < sizeof key, 4, "pool name longer than 255 bytes");
    if (why) {
        np_sock_close(s);
        np_sock_forget(L, 1);
        return np_sock_push_fail(L, why);
    }
    snprintf(key, sizeof key, "%s", name);  /* name may be s->pool, freed by the close */
    s->fd = s->wfd = -1;                    /* taken from the socket: the close leaves them */
    s->ssl = NULL;
    int reused = s->reused;
    np_sock_close(s);
    np_sock_forget(L, 1);
    if (np_sockpool_put(key, fd, ssl, reused, idle, (int)size) < 0) return np_sock_push_fail(L, "out of memory");
    lua_pushboolean(L, 1);
    return 1;
}

struct np_sock *np_sock_push_pooled(lua_State *L, struct np_sock_owner *o, const char *name)
{
    SSL *ssl;
    int reused, fd = np_sockpool_take(name, &ssl, &reused);
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    char peer[NP_ADDRSTRLEN] = "?";
    struct np_sock *s;

    if (fd < 0) return NULL;
    if (getpeername(fd, (struct sockaddr *)&ss, &len) == 0)
        np_addr_format((struct sockaddr *)&ss, len, peer, sizeof peer);
    s = np_sock_push(L, o, fd, fd, peer);
    s->ssl = ssl;
    s->reused = reused + 1;
    s->pool = strdup(name);                 /* (NULL if out of memory: the peer names it) */
    return s;
}

/* sock:reusedtimes() -> how many times this connection was taken from an idle pool */
static int sock_reusedtimes(lua_State *L)
{
    lua_pushinteger(L, np_sock_check(L, 1)->reused);
    return 1;
}

/* sock:secure() -> whether the socket speaks TLS (sock:tls succeeded, maybe before a reuse) */
static int sock_secure(lua_State *L)
{
    lua_pushboolean(L, np_sock_check(L, 1)->ssl != NULL);
    return 1;
}
const luaL_Reg np_sock_keepalive_methods[] = {
    { "setkeepalive", sock_setkeepalive },
    { "reusedtimes", sock_reusedtimes },
    { "secure", sock_secure },
    { NULL, NULL },
};
