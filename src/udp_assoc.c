/* SOCKS5 UDP ASSOCIATE: one association per control connection, owned by that connection
 * (netproxy_core.c makes it for the connection, which frees it with itself). The client sends datagrams with the SOCKS UDP
 * header (RSV RSV FRAG ATYP DST.ADDR DST.PORT DATA) to the relay socket; each target is
 * checked by the connector's Lua function (the socks5 from's route/allow), then the data goes
 * out of one unconnected socket per address family, and what comes back is sent to the
 * client with the header naming its source. Names are resolved without blocking, at most
 * MAX_RESOLVING datagrams at once per association. */
#include "udp_assoc.h"
#include "addr.h"
#include "hook.h"
#include "log.h"
#include "loop.h"
#include "luavm.h"
#include "resolve.h"
#include "shm.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <event2/event.h>
#include <event2/event_struct.h>
#include <lauxlib.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_DATAGRAM 65535
#define MAX_RESOLVING 16
#define READS_PER_WAKEUP 64
#define ASSOC_MT "netproxy.udp_association"

struct assoc;

struct pending {                /* a datagram waiting for its target's name */
    struct assoc *a;
    struct np_resolve *r;
    int starting, answered;     /* the answer may come before np_resolve_start returns */
    struct pending *next, **pprev;
    size_t len;
    char data[];
};

struct assoc {
    uint64_t conn_id;
    lua_State *L;               /* the connection's main Lua state */
    int check_ref, conn_ref, self_ref;
    struct np_limits limits;    /* its check's: its proxy's (call.h) */
    int row;                    /* the proxy's counters */
    int relay_fd;
    struct event relay_ev;
    int out_fd[2];              /* IPv4, IPv6: toward the targets */
    struct event out_ev[2];
    struct sockaddr_storage client;     /* the only address served (its IP is the TCP client's) */
    socklen_t clientlen;
    int client_port_known;
    struct pending *pending;
    int npending;
    uint64_t dgrams[2], bytes[2], dropped, refused;
    int released;
};

struct handle {
    struct assoc *a;
};

static char buf[MAX_DATAGRAM + 262];

static void count(struct assoc *a, int dir, size_t len)
{
    struct np_counters *n = np_shm_counters(a->row);

    a->dgrams[dir]++;
    a->bytes[dir] += len;
    if (dir == 0) {
        n->datagrams_in++;
        n->bytes_in += len;
    } else {
        n->datagrams_out++;
        n->bytes_out += len;
    }
}

static void dropped(struct assoc *a)
{
    a->dropped++;
    np_shm_counters(a->row)->datagrams_dropped++;
}

/* ---------------------------------------------------------------- toward the targets */

static void on_out_readable(evutil_socket_t fd, short what, void *arg);

static int out_socket(struct assoc *a, int family)
{
    int i = family == AF_INET6, fd;

    if (a->out_fd[i] >= 0) return a->out_fd[i];
    if ((fd = socket(family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)) < 0) return -1;
    a->out_fd[i] = fd;
    event_assign(&a->out_ev[i], np_base, fd, EV_READ | EV_PERSIST, on_out_readable, a);
    event_add(&a->out_ev[i], NULL);
    return fd;
}

static void send_out(struct assoc *a, const struct sockaddr *sa, socklen_t salen, const char *data, size_t len)
{
    int fd = out_socket(a, sa->sa_family);

    if (fd >= 0 && sendto(fd, data, len, 0, sa, salen) >= 0) count(a, 0, len);
    else dropped(a);
}

static void pending_free(struct pending *p)
{
    *p->pprev = p->next;
    if (p->next) p->next->pprev = p->pprev;
    p->a->npending--;
    free(p);
}

static void on_resolved(int err, struct evutil_addrinfo *res, void *arg)
{
    struct pending *p = arg;

    p->r = NULL;
    p->answered = 1;
    if (err || !res) dropped(p->a);
    else send_out(p->a, res->ai_addr, (socklen_t)res->ai_addrlen, p->data, p->len);
    if (res) evutil_freeaddrinfo(res);
    if (!p->starting) pending_free(p);
}

/* "host:port" (host an IP literal, [v6], or a name) -> sent now, or once resolved. */
static void send_to(struct assoc *a, const char *target, size_t tlen, const char *data, size_t len)
{
    char host[260];
    const char *colon = memrchr(target, ':', tlen);
    int port = colon ? atoi(colon + 1) : 0;
    size_t hlen = colon ? (size_t)(colon - target) : 0;
    struct sockaddr_storage ss;
    struct sockaddr_in *v4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&ss;
    struct pending *p;

    if (hlen >= 2 && target[0] == '[' && target[hlen - 1] == ']') {
        target++;
        hlen -= 2;
    }
    if (!colon || port <= 0 || port > 65535 || hlen == 0 || hlen >= sizeof host) {
        dropped(a);
        return;
    }
    memcpy(host, target, hlen);
    host[hlen] = '\0';
    memset(&ss, 0, sizeof ss);
    if (inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons(port);
        send_out(a, (struct sockaddr *)v4, sizeof *v4, data, len);
        return;
    }
    if (inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons(port);
        send_out(a, (struct sockaddr *)v6, sizeof *v6, data, len);
        return;
    }
    if (a->npending >= MAX_RESOLVING || !(p = malloc(sizeof *p + len))) {
        dropped(a);
        return;
    }
    p->a = a;
    p->len = len;
    memcpy(p->data, data, len);
    p->next = a->pending;
    if (a->pending) a->pending->pprev = &p->next;
    a->pending = p;
    p->pprev = &a->pending;
    a->npending++;
    p->starting = 1;
    p->answered = 0;
    p->r = np_resolve_start(host, port, on_resolved, p);
    p->starting = 0;
    if (p->answered) pending_free(p);
}

/* ---------------------------------------------------------------- the SOCKS UDP header */

/* Parses the header of msg: the target as "host:port" text into target, and where the data
 * starts. 0, or -1 when malformed or fragmented (FRAG != 0: not supported, dropped). */
static int parse_header(const unsigned char *msg, size_t len, char *target, size_t tsize, size_t *data_at)
{
    char ip[INET6_ADDRSTRLEN];
    size_t at;

    if (len < 4 || msg[0] || msg[1] || msg[2]) return -1;
    switch (msg[3]) {
    case 1:
        if (len < 10) return -1;
        inet_ntop(AF_INET, msg + 4, ip, sizeof ip);
        snprintf(target, tsize, "%s:%d", ip, msg[8] << 8 | msg[9]);
        at = 10;
        break;
    case 4:
        if (len < 22) return -1;
        inet_ntop(AF_INET6, msg + 4, ip, sizeof ip);
        snprintf(target, tsize, "[%s]:%d", ip, msg[20] << 8 | msg[21]);
        at = 22;
        break;
    case 3:
        if (len < 5 || msg[4] == 0 || len < 7u + msg[4]) return -1;
        for (int i = 0; i < msg[4]; i++)
            if (msg[5 + i] <= ' ' || msg[5 + i] >= 127 || msg[5 + i] == ':') return -1;
        snprintf(target, tsize, "%.*s:%d", msg[4], (const char *)msg + 5, msg[5 + msg[4]] << 8 | msg[6 + msg[4]]);
        at = 7u + msg[4];
        break;
    default:
        return -1;
    }
    *data_at = at;
    return 0;
}

/* The connector's check: nil keeps the target, a string replaces it, "" refuses it. */
static void from_client(struct assoc *a, const char *msg, size_t len)
{
    char target[300], err[256];
    const char *out;
    size_t at, olen;
    int rc;

    if (parse_header((const unsigned char *)msg, len, target, sizeof target, &at) < 0) {
        dropped(a);
        return;
    }
    rc = np_hook_call(a->L, a->check_ref, a->conn_ref, target, strlen(target), 0, &a->limits,
                      &out, &olen, err, sizeof err);
    if (rc < 0) {
        np_clog(NP_ERR, a->conn_id, "UDP ASSOCIATE: %s", err);
        dropped(a);
        return;
    }
    if (rc == 1 && olen == 0) {
        a->refused++;
        dropped(a);
    } else if (rc == 1) {
        send_to(a, out, olen, msg + at, len - at);
    } else {
        send_to(a, target, strlen(target), msg + at, len - at);
    }
    if (rc == 1) np_hook_done(a->L);
}

static int is_client(struct assoc *a, const struct sockaddr_storage *from)
{
    if (from->ss_family != a->client.ss_family) return 0;
    if (from->ss_family == AF_INET) {
        struct sockaddr_in *x = (struct sockaddr_in *)from, *y = (struct sockaddr_in *)&a->client;
        if (x->sin_addr.s_addr != y->sin_addr.s_addr) return 0;
        if (!a->client_port_known) y->sin_port = x->sin_port;
        a->client_port_known = 1;
        return x->sin_port == y->sin_port;
    }
    struct sockaddr_in6 *x = (struct sockaddr_in6 *)from, *y = (struct sockaddr_in6 *)&a->client;
    if (memcmp(&x->sin6_addr, &y->sin6_addr, 16)) return 0;
    if (!a->client_port_known) y->sin6_port = x->sin6_port;
    a->client_port_known = 1;
    return x->sin6_port == y->sin6_port;
}

static void on_relay_readable(evutil_socket_t fd, short what, void *arg)
{
    struct assoc *a = arg;

    for (int i = 0; i < READS_PER_WAKEUP && !a->released; i++) {
        struct sockaddr_storage from;
        socklen_t len = sizeof from;
        ssize_t n = recvfrom(a->relay_fd, buf, MAX_DATAGRAM, 0, (struct sockaddr *)&from, &len);
        if (n < 0) {
            if (errno == EINTR || errno == ECONNREFUSED) continue;
            return;
        }
        if (!is_client(a, &from)) continue;         /* RFC 1928: only the client's datagrams */
        from_client(a, buf, (size_t)n);
    }
}

/* A reply: the header naming its source, then the data, to the client. */
static void on_out_readable(evutil_socket_t fd, short what, void *arg)
{
    struct assoc *a = arg;

    for (int i = 0; i < READS_PER_WAKEUP && !a->released; i++) {
        struct sockaddr_storage from;
        socklen_t len = sizeof from;
        size_t hlen;
        ssize_t n;

        /* room for the longest header (22 bytes, IPv6) before the data */
        n = recvfrom(fd, buf + 22, MAX_DATAGRAM - 22, 0, (struct sockaddr *)&from, &len);
        if (n < 0) {
            if (errno == EINTR || errno == ECONNREFUSED) continue;
            return;
        }
        if (!a->client_port_known) {
            dropped(a);
            continue;
        }
        unsigned char *h;
        if (from.ss_family == AF_INET) {
            struct sockaddr_in *s = (struct sockaddr_in *)&from;
            hlen = 10;
            h = (unsigned char *)buf + 22 - hlen;
            h[3] = 1;
            memcpy(h + 4, &s->sin_addr, 4);
            memcpy(h + 8, &s->sin_port, 2);
        } else {
            struct sockaddr_in6 *s = (struct sockaddr_in6 *)&from;
            hlen = 22;
            h = (unsigned char *)buf;
            h[3] = 4;
            memcpy(h + 4, &s->sin6_addr, 16);
            memcpy(h + 20, &s->sin6_port, 2);
        }
        h[0] = h[1] = h[2] = 0;
        if (sendto(a->relay_fd, h, hlen + n, 0, (struct sockaddr *)&a->client, a->clientlen) >= 0)
            count(a, 1, (size_t)n);
        else dropped(a);
    }
}

/* ---------------------------------------------------------------- life */


void np_udp_assoc_release(void *arg)
{
    struct assoc *a = arg;

    a->released = 1;
    if (a->relay_fd >= 0) {
        event_del(&a->relay_ev);
        close(a->relay_fd);
    }
    for (int i = 0; i < 2; i++) {
        if (a->out_fd[i] < 0) continue;
        event_del(&a->out_ev[i]);
        close(a->out_fd[i]);
    }
    while (a->pending) {
        struct pending *p = a->pending;
        if (p->r) np_resolve_cancel(p->r);
        pending_free(p);
    }
    if (a->self_ref != LUA_NOREF) {
        lua_rawgeti(a->L, LUA_REGISTRYINDEX, a->self_ref);
        ((struct handle *)lua_touserdata(a->L, -1))->a = NULL;
        lua_pop(a->L, 1);
    }
    np_lua_unref(a->L, &a->self_ref);
    np_lua_unref(a->L, &a->check_ref);
    np_lua_unref(a->L, &a->conn_ref);
    free(a);
}

static int fail(lua_State *L, const char *what)
{
    lua_pushnil(L);
    lua_pushfstring(L, "%s: %s", what, strerror(errno));
    return 2;
}

int np_udp_assoc_new(lua_State *L, const struct np_udp_assoc_owner *o)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    struct assoc *a;
    char text[NP_ADDRSTRLEN];
    const char *bind_ip, *client_ip;
    int port;

    luaL_checktype(L, 1, LUA_TTABLE);
    lua_getfield(L, 1, "check");        /* every check that may raise comes before what it would leak */
    luaL_argcheck(L, lua_isfunction(L, -1), 1, "check must be a function");
    lua_pop(L, 1);
    lua_getfield(L, 1, "bind");
    lua_getfield(L, 1, "client");
    lua_getfield(L, 1, "client_port");
    bind_ip = luaL_checkstring(L, -3);
    client_ip = luaL_checkstring(L, -2);
    port = (int)luaL_optinteger(L, -1, 0);
    if (!(a = calloc(1, sizeof *a))) return luaL_error(L, "udp_associate: out of memory");
    a->limits = o->limits;
    a->L = o->L;
    a->conn_id = o->id;
    a->row = o->row;
    a->out_fd[0] = a->out_fd[1] = -1;
    a->check_ref = a->conn_ref = a->self_ref = LUA_NOREF;
    memset(&ss, 0, sizeof ss);
    if (strchr(bind_ip, ':')) {
        struct sockaddr_in6 *b = (struct sockaddr_in6 *)&ss, *cl = (struct sockaddr_in6 *)&a->client;
        b->sin6_family = cl->sin6_family = AF_INET6;
        len = a->clientlen = sizeof *b;
        if (inet_pton(AF_INET6, bind_ip, &b->sin6_addr) != 1 || inet_pton(AF_INET6, client_ip, &cl->sin6_addr) != 1) goto bad;
        cl->sin6_port = htons(port);
    } else {
        struct sockaddr_in *b = (struct sockaddr_in *)&ss, *cl = (struct sockaddr_in *)&a->client;
        b->sin_family = cl->sin_family = AF_INET;
        len = a->clientlen = sizeof *b;
        if (inet_pton(AF_INET, bind_ip, &b->sin_addr) != 1 || inet_pton(AF_INET, client_ip, &cl->sin_addr) != 1) goto bad;
        cl->sin_port = htons(port);
    }
    a->client_port_known = port != 0;
    a->relay_fd = socket(ss.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (a->relay_fd < 0 || bind(a->relay_fd, (struct sockaddr *)&ss, len) < 0 ||
        getsockname(a->relay_fd, (struct sockaddr *)&ss, &len) < 0) {
        int e = errno;
        if (a->relay_fd >= 0) close(a->relay_fd);
        free(a);
        errno = e;
        return fail(L, "udp relay socket");
    }
    event_assign(&a->relay_ev, np_base, a->relay_fd, EV_READ | EV_PERSIST, on_relay_readable, a);
    event_add(&a->relay_ev, NULL);
    lua_getfield(L, 1, "check");
    a->check_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_getfield(L, 1, "conn");
    a->conn_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    o->attach(o->arg, a);
    struct handle *h = lua_newuserdata(L, sizeof *h);
    h->a = a;
    luaL_getmetatable(L, ASSOC_MT);
    lua_setmetatable(L, -2);
    lua_pushvalue(L, -1);
    a->self_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    np_addr_format((struct sockaddr *)&ss, len, text, sizeof text);
    lua_pushstring(L, text);
    return 2;
bad:
    free(a);
    return luaL_error(L, "udp_associate: bind and client must be IP addresses of one family");
}

/* association:summary() -> "datagrams_in=N ..." for the log line. */
static int assoc_summary(lua_State *L)
{
    struct assoc *a = ((struct handle *)luaL_checkudata(L, 1, ASSOC_MT))->a;
    char text[256];

    if (!a) return 0;
    /* 64-bit counts: lua_pushfstring knows no more than an int */
    snprintf(text, sizeof text, "datagrams_in=%" PRIu64 " bytes_in=%" PRIu64 " datagrams_out=%" PRIu64
             " bytes_out=%" PRIu64 " dropped=%" PRIu64 " refused=%" PRIu64,
             a->dgrams[0], a->bytes[0], a->dgrams[1], a->bytes[1], a->dropped, a->refused);
    lua_pushstring(L, text);
    return 1;
}

void np_udp_assoc_open(lua_State *L)
{
    if (luaL_newmetatable(L, ASSOC_MT)) {
        lua_newtable(L);
        lua_pushcfunction(L, assoc_summary);
        lua_setfield(L, -2, "summary");
        lua_setfield(L, -2, "__index");
        lua_pushliteral(L, "netproxy udp association");
        lua_setfield(L, -2, "__metatable");
    }
    lua_pop(L, 1);
}
