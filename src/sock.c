/* The cosocket object: its userdata and metatables, its life (new, close, detach, halt), the
 * wait and resume every cosocket call shares, and the small methods. Its I/O is in sock_io.c,
 * its keepalive in sock_keepalive.c, its connect in sock_connect.c, its sniff in sock_sniff.c,
 * splice_to in sock_splice.c. */
#include "sock_impl.h"
#include "loop.h"
#include "text.h"

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/util.h>
#include <lauxlib.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define DEFAULT_TIMEOUT 30.0

static struct np_sock_owner *running;

struct np_sock_owner *np_sock_running(void)
{
    return running;
}

void np_sock_set_running(struct np_sock_owner *o)
{
    running = o;
}

int np_sock_push_fail(lua_State *L, const char *err)
{
    lua_pushnil(L);
    lua_pushstring(L, err);
    return 2;
}

void np_sock_set_fds(struct np_sock *s, int rfd, int wfd)
{
    s->fd = rfd;
    s->wfd = wfd;
    /* rev is persistent: it stays armed from one read to the next (np_sock_resume) */
    event_assign(&s->rev, np_base, rfd, EV_READ | EV_PERSIST, np_sock_on_event, s);
    event_assign(&s->wev, np_base, wfd, EV_WRITE, np_sock_on_event, s);
    if (s->sendbuf) event_assign(&s->flush_ev, np_base, wfd, EV_WRITE, np_sock_on_flush, s);
}

static void unlink_sock(struct np_sock *s)
{
    if (!s->pprev) return;
    if (s->next) s->next->pprev = s->pprev;
    *s->pprev = s->next;
    s->next = NULL;
    s->pprev = NULL;
}

static void drop_anchor(struct np_sock *s)
{
    if (s->self_ref != LUA_NOREF) luaL_unref(s->L, LUA_REGISTRYINDEX, s->self_ref);
    s->self_ref = LUA_NOREF;
}

/* Stops a connect under way (its socket, not yet the cosocket's, is closed). */
static void stop_dialing(struct np_sock *s)
{
    if (s->dialing) np_dial_cancel(&s->dialing->d);
}

size_t np_sock_serve(struct np_sock *s, uint64_t *bytes[2], uint64_t *more[2], struct np_idle *idle)
{
    for (int i = 0; i < 2; i++) {
        s->bytes[i] = bytes[i];
        s->more_bytes[i] = more[i];
    }
    s->idle = idle;
    return s->inbuf ? evbuffer_get_length(s->inbuf) : 0;
}

void np_sock_close(struct np_sock *s)
{
    stop_dialing(s);
    np_sock_stop_sniffing(s);
    np_sock_stop_splicing(s);
    free(s->dialing);
    s->dialing = NULL;
    /* rev and wev are assigned from creation on; flush_ev with the first send */
    event_del(&s->rev);
    event_del(&s->wev);
    if (s->sendbuf) event_del(&s->flush_ev);
    if (s->ssl) SSL_free(s->ssl);
    s->ssl = NULL;
    if (s->wfd >= 0 && s->wfd != s->fd) close(s->wfd);
    if (s->fd >= 0) close(s->fd);
    s->fd = s->wfd = -1;
    if (s->inbuf) evbuffer_free(s->inbuf);
    if (s->outbuf) evbuffer_free(s->outbuf);
    if (s->sendbuf) evbuffer_free(s->sendbuf);
    s->inbuf = s->outbuf = s->sendbuf = NULL;
    s->bytes[0] = s->bytes[1] = NULL;
    s->idle = NULL;
    s->op = NP_OP_NONE;
    free(s->pool);
    s->pool = NULL;
    drop_anchor(s);
    unlink_sock(s);
    s->owner = NULL;
}

void np_sock_close_all(struct np_sock_owner *o)
{
    while (o->socks) np_sock_close(o->socks);
}

void np_sock_halt_all(struct np_sock_owner *o)
{
    for (struct np_sock *s = o->socks; s; s = s->next) {
        stop_dialing(s);
        np_sock_stop_sniffing(s);
        np_sock_stop_splicing(s);
        event_del(&s->rev);
        event_del(&s->wev);
        if (s->sendbuf) event_del(&s->flush_ev);
    }
}

int np_sock_detach(struct np_sock *s, int *wfd, SSL **ssl, struct evbuffer **inbuf)
{
    int fd = s->fd;

    *wfd = s->wfd;
    *ssl = s->ssl;
    *inbuf = s->inbuf;
    s->fd = s->wfd = -1;
    s->ssl = NULL;
    s->inbuf = NULL;
    np_sock_close(s);         /* events off; the fds, taken, stay open */
    return fd;
}

/* The two metatables are also kept under these keys: every method call checks its socket,
 * and a light userdata key is found without hashing a name. */
static const char open_mt_key, done_mt_key;

static void push_mt(lua_State *L, const char *key)
{
    lua_pushlightuserdata(L, (void *)key);
    lua_rawget(L, LUA_REGISTRYINDEX);
}

/* A cosocket of o with no fd and no event assigned yet. */
static struct np_sock *sock_alloc(lua_State *L, struct np_sock_owner *o)
{
    struct np_sock *s = lua_newuserdata(L, sizeof *s);

    memset(s, 0, sizeof *s);
    s->fd = s->wfd = -1;
    s->self_ref = LUA_NOREF;
    s->timeout = DEFAULT_TIMEOUT;
    s->connect_time = -1;
    /* inbuf, outbuf and sendbuf are made when first needed: most sockets never need them */
    push_mt(L, &open_mt_key);
    lua_setmetatable(L, -2);
    s->owner = o;
    s->L = o->L;
    s->next = o->socks;
    if (o->socks) o->socks->pprev = &s->next;
    o->socks = s;
    s->pprev = &o->socks;
    return s;
}

struct np_sock *np_sock_new(lua_State *L, struct np_sock_owner *o)
{
    struct np_sock *s = sock_alloc(L, o);

    /* no fd yet (a connect's): events that are valid to delete */
    event_assign(&s->rev, np_base, -1, 0, np_sock_on_event, s);
    event_assign(&s->wev, np_base, -1, 0, np_sock_on_event, s);
    return s;
}

struct np_sock *np_sock_push(lua_State *L, struct np_sock_owner *o, int rfd, int wfd,
                             const char *peer)
{
    struct np_sock *s = sock_alloc(L, o);

    np_sock_set_fds(s, rfd, wfd);
    np_copy_text(s->peer, sizeof s->peer, peer);
    /* its first read waits for the event rather than try (sock_io.c, read_would_wait): an
     * accepted client's first bytes mostly come after the accept's wake-up (a read(2) then
     * finds nothing 86% of the time under wrk), and a pooled connection was idle */
    s->drained = 1;
    return s;
}

/* Whether the value on top is the metatable under key. */
static int top_is_mt(lua_State *L, const char *key)
{
    int same;

    push_mt(L, key);
    same = lua_rawequal(L, -1, -2);
    lua_pop(L, 1);
    return same;
}

/* The last state's two metatables, by address: every method call checks its socket, and a
 * comparison of addresses costs a fifth of the two registry look-ups (issue 32: five checks
 * per service request). A state is known by its registry's address. np_sock_open forgets
 * them: a state can check a socket only once it has opened this library, so a state made
 * where a closed one was cannot find that one's addresses here. */
static struct {
    const void *registry, *open, *done;
} known_mt;

/* Whether the value on top is one of the two metatables of L. */
static int top_is_sock_mt(lua_State *L)
{
    const void *registry = lua_topointer(L, LUA_REGISTRYINDEX), *mt = lua_topointer(L, -1);

    if (registry == known_mt.registry && (mt == known_mt.open || mt == known_mt.done)) return 1;
    if (!top_is_mt(L, &open_mt_key) && !top_is_mt(L, &done_mt_key)) return 0;
    known_mt.registry = registry;
    push_mt(L, &open_mt_key);
    known_mt.open = lua_topointer(L, -1);
    push_mt(L, &done_mt_key);
    known_mt.done = lua_topointer(L, -1);
    lua_pop(L, 2);
    return 1;
}

struct np_sock *np_sock_check(lua_State *L, int idx)
{
    struct np_sock *s = lua_touserdata(L, idx);

    if (s && lua_getmetatable(L, idx)) {
        int ok = top_is_sock_mt(L);
        lua_pop(L, 1);
        if (ok) return s;
    }
    luaL_typerror(L, idx, SOCK_MT);
    return NULL;
}

void np_sock_forget(lua_State *L, int idx)
{
    if (idx < 0) idx = lua_gettop(L) + idx + 1;
    push_mt(L, &done_mt_key);
    lua_setmetatable(L, idx);
}

int np_sock_yield(lua_State *L, struct np_sock *s, int idx)
{
    lua_pushvalue(L, idx);
    s->self_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    s->owner->waiting = 1;
    return lua_yield(L, 0);
}

/* The read event is left armed, without its deadline: a coroutine that reads, answers and
 * reads again (a service's request loop) then waits without an epoll_ctl(2) per request
 * (libevent's changelist turns a delete and an add of the same event into a MOD). Readiness
 * that comes while no read waits disarms it (np_sock_on_event). */
void np_sock_resume(struct np_sock *s, int nresults)
{
    event_remove_timer(&s->rev);
    event_del(&s->wev);
    s->op = NP_OP_NONE;
    drop_anchor(s);
    s->owner->resume(s->owner, nresults);
}

double np_sock_opt_timeout(lua_State *L, int idx, double dflt)
{
    double t = luaL_optnumber(L, idx, dflt);

    luaL_argcheck(L, t >= 0, idx, "timeout must be >= 0");
    return t;
}

/* ---- the small things ---- */

static int sock_close(lua_State *L)
{
    np_sock_close(np_sock_check(L, 1));
    np_sock_forget(L, 1);
    return 0;
}

static int sock_settimeout(lua_State *L)
{
    struct np_sock *s = np_sock_check(L, 1);

    s->timeout = np_sock_opt_timeout(L, 2, DEFAULT_TIMEOUT);
    return 0;
}

/* sock:peer() -> "addr:port" of the other end */
static int sock_peer(lua_State *L)
{
    lua_pushstring(L, np_sock_check(L, 1)->peer);
    return 1;
}

int np_sock_push_localaddr(lua_State *L, int fd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    char text[NP_ADDRSTRLEN];

    if (fd < 0 || getsockname(fd, (struct sockaddr *)&ss, &len) < 0 ||
        (ss.ss_family != AF_INET && ss.ss_family != AF_INET6))
        return 0;
    np_addr_format((struct sockaddr *)&ss, len, text, sizeof text);
    lua_pushstring(L, text);
    return 1;
}

/* sock:localaddr() -> "addr:port" this end is bound to (what a client connected to), or nil */
static int sock_localaddr(lua_State *L)
{
    struct np_sock *s = np_sock_check(L, 1);

    return np_sock_push_localaddr(L, s->fd);
}

/* sock:peercred() -> uid, gid, pid of a unix socket's peer (SO_PEERCRED), or nil */
static int sock_peercred(lua_State *L)
{
    struct np_sock *s = np_sock_check(L, 1);
    struct ucred cred;
    socklen_t len = sizeof cred;

    if (s->fd < 0 || getsockopt(s->fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0 || cred.pid == 0)
        return 0;
    lua_pushinteger(L, cred.uid);
    lua_pushinteger(L, cred.gid);
    lua_pushinteger(L, cred.pid);
    return 3;
}

/* sock:unread(bytes): puts bytes back in front of what is to be read (and relayed). */
static int sock_unread(lua_State *L)
{
    struct np_sock *s = np_sock_check(L, 1);
    size_t len;
    const char *data = luaL_checklstring(L, 2, &len);

    if (s->fd < 0) return np_sock_push_fail(L, "closed");
    if (!s->inbuf && !(s->inbuf = evbuffer_new())) return np_sock_push_fail(L, "out of memory");
    evbuffer_prepend(s->inbuf, data, len);
    lua_pushboolean(L, 1);
    return 1;
}

static int sock_tostring(lua_State *L)
{
    struct np_sock *s = np_sock_check(L, 1);

    lua_pushfstring(L, "sock(%s%s%s)", s->peer, s->ssl ? ", tls" : "", s->fd < 0 ? ", closed" : "");
    return 1;
}

static const luaL_Reg sock_methods[] = {
    { "unread", sock_unread },
    { "close", sock_close },
    { "settimeout", sock_settimeout },
    { "peer", sock_peer },
    { "localaddr", sock_localaddr },
    { "peercred", sock_peercred },
    { NULL, NULL },
};

void np_sock_open(lua_State *L)
{
    known_mt.registry = known_mt.open = known_mt.done = NULL;
    luaL_newmetatable(L, SOCK_MT);
    lua_newtable(L);
    luaL_register(L, NULL, np_sock_io_methods);
    luaL_register(L, NULL, sock_methods);
    luaL_register(L, NULL, np_sock_keepalive_methods);
    luaL_register(L, NULL, np_sock_splice_methods);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, sock_close);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, sock_tostring);
    lua_setfield(L, -2, "__tostring");
    luaL_newmetatable(L, SOCK_DONE_MT);     /* the same, but __gc */
    lua_getfield(L, -2, "__index");
    lua_setfield(L, -2, "__index");
    lua_getfield(L, -2, "__tostring");
    lua_setfield(L, -2, "__tostring");
    lua_pushlightuserdata(L, (void *)&done_mt_key);
    lua_insert(L, -2);
    lua_rawset(L, LUA_REGISTRYINDEX);
    lua_pushlightuserdata(L, (void *)&open_mt_key);
    lua_insert(L, -2);
    lua_rawset(L, LUA_REGISTRYINDEX);
}
