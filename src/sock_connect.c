/* core.connect(), connect_udp(), connect_unix(): a cosocket whose socket np_dial (dial.c)
 * made, the one routine that walks the addresses and connects. The coroutine has it back at
 * once when the dial is over inside the call (a loopback server, a refusal), else when the
 * dial tells it from the loop. */
#include "sock_impl.h"
#include "loop.h"

#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>

/* The dial's outcome, fd or -1 and why: the socket at idx takes fd and is pushed, or is
 * closed and nil, why pushed. The dial is freed. Returns the count pushed. */
static int take(lua_State *L, struct np_sock *s, int idx, int fd, const char *why)
{
    struct np_sock_dial *sd = s->dialing;
    int n;

    if (fd >= 0) {
        np_sock_set_fds(s, fd, fd);
        s->connect_time = np_clock() - sd->started;     /* the access log's connect_time */
        np_addr_format((struct sockaddr *)&sd->d.peer, sd->d.peer_len, s->peer, sizeof s->peer);
        lua_pushvalue(L, idx);
        n = 1;
    } else {
        n = np_sock_push_fail(L, why);  /* (why is the dial's: pushed before it is freed) */
    }
    s->dialing = NULL;
    free(sd);
    if (fd < 0) {
        np_sock_close(s);
        np_sock_forget(L, idx);
    }
    return n;
}

/* The dial told its outcome from the loop: the coroutine resumes with it. */
static void dialed(void *arg, int fd, int err, const char *why)
{
    struct np_sock *s = arg;
    struct np_sock_owner *o = s->owner;
    int n;

    lua_rawgeti(o->co, LUA_REGISTRYINDEX, s->self_ref);
    n = take(o->co, s, lua_gettop(o->co), fd, why);
    lua_remove(o->co, -n - 1);          /* the socket, as the anchor gave it */
    if (fd >= 0) np_sock_resume(s, n);
    else o->resume(o, n);               /* s is closed, its anchor dropped */
}

/* The one address of an IP literal or a unix path, into sd->one; 0 for a name. */
static socklen_t one_address(struct np_sock_dial *sd, const struct np_sock_target *to)
{
    socklen_t len = to->path ? np_addr_unix(to->path, &sd->one_addr)
                             : np_addr_ip(to->host, to->port, &sd->one_addr);

    if (!len) return 0;
    sd->one = (struct evutil_addrinfo){ .ai_family = sd->one_addr.ss_family,
                                        .ai_socktype = to->dgram ? SOCK_DGRAM : SOCK_STREAM,
                                        .ai_addrlen = len, .ai_addr = (struct sockaddr *)&sd->one_addr };
    return len;
}

/* Starts the dial of s, to its one address if it has one (len): 1 when it is over already. */
static int dial(struct np_sock *s, struct np_sock_dial *sd, socklen_t len, const struct np_sock_target *to)
{
    struct np_dial_opts opts = { .timeout = to->timeout, .dgram = to->dgram, .at_once = 1,
                                 .keepalive = to->keepalive };

    if (to->source) {
        memcpy(&sd->source, to->source, to->source_len);
        opts.source = (struct sockaddr *)&sd->source;
        opts.source_len = to->source_len;
    }
    if (len) return np_dial_start(&sd->d, &sd->one, &opts, dialed, s);
    return np_dial_start_name(&sd->d, to->host, to->port, &opts, dialed, s);
}

int np_sock_connect(lua_State *L, struct np_sock_owner *o, const struct np_sock_target *to)
{
    struct np_sock_dial *sd;
    struct np_sock *s;
    socklen_t len;
    int idx;

    if (o->closed) return np_sock_push_fail(L, "closed");
    if (to->pool && np_sock_push_pooled(L, o, to->pool)) return 1;
    if (!(sd = malloc(sizeof *sd))) return np_sock_push_fail(L, "out of memory");
    len = one_address(sd, to);
    if (to->path && !len) {
        free(sd);
        return np_sock_push_fail(L, "bad unix socket path");
    }
    s = np_sock_new(L, o);
    idx = lua_gettop(L);
    s->dgram = to->dgram;
    s->dialing = sd;
    sd->started = np_clock();
    if (to->pool) s->pool = strdup(to->pool);   /* (NULL if out of memory: the peer names it) */
    if (dial(s, sd, len, to)) return take(L, s, idx, sd->d.fd, sd->d.why);
    return np_sock_yield(L, s, idx);
}
