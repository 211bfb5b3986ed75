/* netproxy.core, the Lua module of the C core: cosockets (sock.c) and connect, sleep
 * (sleep.c), TLS contexts (tls.c), stats (metrics.c), logging, the clock, and what a
 * connection's scripts ask of it (conn.c): its names, the hand-off to the relay, send,
 * starttls and close. */
#include "netproxy_core.h"
#include "checker.h"
#include "conn.h"
#include "call.h"
#include "ja4.h"
#include "log.h"
#include "limits.h"
#include "lookup.h"
#include "loop.h"
#include "metrics.h"
#include "pool.h"
#include "proxy.h"
#include "relay.h"
#include "shdict.h"
#include "shm.h"
#include "sleep.h"
#include "sockpool.h"
#include "sniffer.h"
#include "sock.h"
#include "task.h"
#include "timer.h"
#include "tls.h"
#include "udp.h"
#include "udp_assoc.h"

#include <arpa/inet.h>
#include <lauxlib.h>
#include <string.h>

#define DEFAULT_CONNECT_TIMEOUT 10.0

static struct np_conn *session_conn(lua_State *L, const char *what)
{
    struct np_conn *c = np_conn_current();

    if (!c || np_conn_session(c) != L) luaL_error(L, "%s: only from a connection's coroutine", what);
    return c;
}

static int check_level(lua_State *L, int idx)
{
    int level = lua_type(L, idx) == LUA_TNUMBER ? (int)lua_tointeger(L, idx)
                                                : np_log_level_parse(luaL_checkstring(L, idx));

    luaL_argcheck(L, level >= 0 && level <= 4, idx, "log level must be 0..4 or err..debug");
    return level;
}

/* core.log(level, message): about the running connection when there is one. */
static int core_log(lua_State *L)
{
    int level = check_level(L, 1);
    const char *msg = luaL_checkstring(L, 2);
    struct np_conn *c = np_conn_current();
    struct np_task *t = np_task_running();

    if (level <= np_log_level) np_log_conn(level, c ? np_conn_id(c) : t ? t->id : 0, "%s", msg);
    return 0;
}

/* core.log_enabled(level) -> boolean: skip building messages nobody will see. */
static int core_log_enabled(lua_State *L)
{
    lua_pushboolean(L, check_level(L, 1) <= np_log_level);
    return 1;
}

static int core_now(lua_State *L)
{
    lua_pushnumber(L, np_now());
    return 1;
}

/* core.worker() -> this worker's index (0..count-1), the count of workers */
static int core_worker(lua_State *L)
{
    lua_pushinteger(L, np_worker_index);
    lua_pushinteger(L, np_worker_count);
    return 2;
}

/* core.pooled([name]) -> idle connections this worker holds in pool name (or in all) */
static int core_pooled(lua_State *L)
{
    lua_pushinteger(L, np_sockpool_count(luaL_optstring(L, 1, NULL)));
    return 1;
}

/* core.set_target(text): what the connection's log line names as its destination. */
static int core_set_target(lua_State *L)
{
    np_conn_set_target(session_conn(L, "set_target"), luaL_checkstring(L, 1));
    return 0;
}

/* core.pool_connected(row): the connection reached that pool server (counted until it ends). */
static int core_pool_connected(lua_State *L)
{
    np_conn_hold_pool_row(session_conn(L, "pool_connected"), (int)luaL_checkinteger(L, 1));
    return 0;
}

/* core.pool_take(row, max) -> true when the running connection took a slot of that server
 * (fewer than max connections hold it, all workers), false when it is full. The slot is the
 * connection's until core.pool_give() or its end. */
static int core_pool_take(lua_State *L)
{
    struct np_conn *c = session_conn(L, "pool_take");

    lua_pushboolean(L, np_conn_take_pool_row(c, (int)luaL_checkinteger(L, 1), (int)luaL_checkinteger(L, 2)));
    return 1;
}

/* core.pool_give(): the slot core.pool_take took is given back (its connect failed). */
static int core_pool_give(lua_State *L)
{
    np_conn_give_pool_row(session_conn(L, "pool_give"));
    return 0;
}

/* core.pool_wait(queue, max) -> true when the running connection now waits in that pool's
 * queue (fewer than max waited), false when it is full; core.pool_wait() leaves it (so
 * does the connection's end). */
static int core_pool_wait(lua_State *L)
{
    struct np_conn *c = session_conn(L, "pool_wait");

    if (lua_isnoneornil(L, 1)) {
        np_conn_pool_unwait(c);
        return 0;
    }
    lua_pushboolean(L, np_conn_pool_wait(c, (int)luaL_checkinteger(L, 1), (int)luaL_checkinteger(L, 2)));
    return 1;
}

/* core.limit("source" | "user", scope, key, max_conns, rate_n, rate_s) -> true | nil, why:
 * the running connection counts under key (per_source, per_user: netproxy.gate.admit) until
 * it ends; a refusal is counted by its reason. scope: the proxy's name, "" for server{}. */
static int core_limit(lua_State *L)
{
    struct np_conn *c = session_conn(L, "limit");
    int user = strcmp(luaL_checkstring(L, 1), "user") == 0;
    const char *scope = luaL_checkstring(L, 2);
    size_t keylen;
    const char *key = luaL_checklstring(L, 3, &keylen);
    struct np_limit_rule r = { .set = 1, .max_conns = (uint32_t)luaL_checknumber(L, 4),
                               .rate_n = (uint32_t)luaL_checknumber(L, 5), .rate_s = luaL_checknumber(L, 6) };
    uint32_t token;
    enum np_limit_why why = np_limits_take(scope, user, key, keylen, &r, &token);
    char words[128];

    if (why == NP_LIMIT_OK) {
        np_conn_hold_limit(c, token);
        lua_pushboolean(L, 1);
        return 1;
    }
    np_conn_refused_for(c, np_limits_label(why));
    lua_pushnil(L);
    lua_pushstring(L, np_limits_reason(why, &r, scope[0] == '\0', words, sizeof words));
    return 2;
}

/* core.set_client(text): the client as the logs name it (after a PROXY protocol header). */
static int core_set_client(lua_State *L)
{
    np_conn_set_client(session_conn(L, "set_client"), luaL_checkstring(L, 1));
    return 0;
}

/* core.tls_identity(sock) -> { version, cipher, sni, alpn, ja4, subject, cn, issuer, serial,
 * fingerprint, verified }: what the client said in sock's TLS session (after a failed
 * handshake: its ja4 alone, if its hello was read), kept on the running connection too for
 * its log line, on_close and the access log. nil for a socket without TLS. */
static int core_tls_identity(lua_State *L)
{
    struct np_sock *s = np_sock_check(L, 1);
    struct np_tls_identity id;

    if (!s->ssl) return 0;
    np_tls_identity(s->ssl, &id);
    np_conn_set_tls(session_conn(L, "tls_identity"), &id);
    np_tls_push_identity(L, &id);
    return 1;
}

/* core.ja4(handshake) -> the JA4 of a ClientHello message (type, length, body), or nil. */
static int core_ja4(lua_State *L)
{
    size_t len;
    const char *hs = luaL_checklstring(L, 1, &len);
    char ja4[NP_JA4_LEN + 1];

    if (np_ja4((const unsigned char *)hs, len, ja4) < 0) return 0;
    lua_pushstring(L, ja4);
    return 1;
}

/* core.set_ja4(text): the client's JA4 (read by dual's probe) for the connection's log line. */
static int core_set_ja4(lua_State *L)
{
    np_conn_set_ja4(session_conn(L, "set_ja4"), luaL_checkstring(L, 1));
    return 0;
}

/* core.set_user(name): the user the connectors authenticated (the access log's user). */
static int core_set_user(lua_State *L)
{
    np_conn_set_user(session_conn(L, "set_user"), luaL_checkstring(L, 1));
    return 0;
}

/* The string field k of the table at idx, or NULL. */
static const char *opt_string(lua_State *L, int idx, const char *k)
{
    const char *v;

    lua_getfield(L, idx, k);
    v = lua_isstring(L, -1) ? lua_tostring(L, -1) : NULL;
    lua_pop(L, 1);
    return v;               /* still referenced by the table */
}

static double opt_number(lua_State *L, int idx, const char *k)
{
    double v;

    lua_getfield(L, idx, k);
    v = lua_isnumber(L, -1) ? lua_tonumber(L, -1) : -1;
    lua_pop(L, 1);
    return v;
}

/* core.access_log{ method =, url =, status =, bytes =, duration =, server = }: a forwarded
 * HTTP request's line in the proxy's access log (nothing when it has none). */
static int core_access_log(lua_State *L)
{
    struct np_conn *c = session_conn(L, "access_log");
    struct np_access_request q;

    luaL_checktype(L, 1, LUA_TTABLE);
    q.method = opt_string(L, 1, "method");
    q.url = opt_string(L, 1, "url");
    q.server = opt_string(L, 1, "server");
    q.status = (int)opt_number(L, 1, "status");
    q.bytes_out = opt_number(L, 1, "bytes");
    q.duration = opt_number(L, 1, "duration");
    np_conn_access_request(c, &q);
    return 0;
}

/* core.pack_ip("192.0.2.1" | "2001:db8::1") -> 4 or 16 bytes, or nil */
static int core_pack_ip(lua_State *L)
{
    const char *ip = luaL_checkstring(L, 1);
    unsigned char bin[16];

    if (inet_pton(AF_INET, ip, bin) == 1) lua_pushlstring(L, (char *)bin, 4);
    else if (inet_pton(AF_INET6, ip, bin) == 1) lua_pushlstring(L, (char *)bin, 16);
    else lua_pushnil(L);
    return 1;
}

/* core.unpack_ip(4 or 16 bytes) -> "192.0.2.1" | "2001:db8::1" */
static int core_unpack_ip(lua_State *L)
{
    size_t len;
    const char *bin = luaL_checklstring(L, 1, &len);
    char text[INET6_ADDRSTRLEN];

    luaL_argcheck(L, len == 4 || len == 16, 1, "want 4 or 16 bytes");
    inet_ntop(len == 4 ? AF_INET : AF_INET6, bin, text, sizeof text);
    lua_pushstring(L, text);
    return 1;
}

/* A registry ref to opts[name] when it is a function, else LUA_NOREF. */
/* Pushes opts.name, raising unless it is a function or nil. */
static void push_function(lua_State *L, int opts, const char *name)
{
    lua_getfield(L, opts, name);
    if (!lua_isnil(L, -1) && !lua_isfunction(L, -1)) luaL_error(L, "relay: %s must be a function", name);
}

/* A ref to the value on the top (popped), or LUA_NOREF for nil. */
static int ref_top(lua_State *L)
{
    if (!lua_isnil(L, -1)) return luaL_ref(L, LUA_REGISTRYINDEX);
    lua_pop(L, 1);
    return LUA_NOREF;
}

/* The options of a connect at idx, into to: its timeout, from { timeout = seconds } or, when
 * bare_number, from seconds alone (DEFAULT_CONNECT_TIMEOUT without one), and the source
 * address to connect from, { source = "ip" }, parsed into *source. Raises on a negative
 * timeout, a source that is not an IP address, and (what: the call's name) outside a task's
 * coroutine. Returns the task. */
static struct np_task *connect_opts(lua_State *L, int idx, int bare_number, const char *what,
                                    struct np_sock_target *to, struct sockaddr_storage *source)
{
    to->timeout = DEFAULT_CONNECT_TIMEOUT;
    if (bare_number && lua_type(L, idx) == LUA_TNUMBER) {
        to->timeout = lua_tonumber(L, idx);
    } else if (lua_istable(L, idx)) {
        lua_getfield(L, idx, "timeout");
        to->timeout = luaL_optnumber(L, -1, to->timeout);
        lua_getfield(L, idx, "source");
        if (!lua_isnil(L, -1)) {
            const char *text = lua_tostring(L, -1);
            to->source_len = text ? np_addr_ip(text, 0, source) : 0;
            luaL_argcheck(L, to->source_len > 0, idx, "source must be an IP address");
            to->source = source;
        }
        lua_getfield(L, idx, "keepalive");
        np_keepalive_read(L, lua_gettop(L), &to->keepalive);
        lua_pop(L, 3);
    }
    luaL_argcheck(L, to->timeout >= 0, idx, "timeout must be >= 0");
    return np_task_of(L, what);
}

/* The pool of a connect's options at idx, { pool = "name" } or { pool = true } ("host:port"),
 * or NULL: a healthy idle connection of that pool is taken before dialing (sockpool.c), and
 * sock:setkeepalive() puts the socket back there. The name stays on the stack. */
static const char *pool_name(lua_State *L, int idx, const char *host, int port)
{
    if (!lua_istable(L, idx)) return NULL;
    lua_getfield(L, idx, "pool");
    switch (lua_type(L, -1)) {
    case LUA_TNIL: return NULL;
    case LUA_TBOOLEAN: return lua_toboolean(L, -1) ? lua_pushfstring(L, "%s:%d", host, port) : NULL;
    case LUA_TSTRING: luaL_argcheck(L, lua_objlen(L, -1) > 0 && lua_objlen(L, -1) < 256, idx,
                                    "pool: a name of 1..255 bytes");
                      return lua_tostring(L, -1);
    default: luaL_argerror(L, idx, "pool must be a name or true");
    }
    return NULL;
}

/* core.connect(host, port [, { timeout = seconds, source = "ip", keepalive = { idle =,
 * interval =, count = }, pool = name | true } | seconds]) -> sock | nil, err;
 * with dgram, core.connect_udp: a connected UDP socket; sock:read() is one datagram,
 * sock:write(d) sends d as one */
static int connect_ip(lua_State *L, const char *what, int dgram)
{
    struct np_sock_target to = { .host = luaL_checkstring(L, 1), .dgram = dgram };
    lua_Integer port = luaL_checkinteger(L, 2);
    struct sockaddr_storage source;
    struct np_task *t;

    luaL_argcheck(L, port > 0 && port < 65536, 2, "port must be 1..65535");
    to.port = (int)port;
    t = connect_opts(L, 3, 1, what, &to, &source);
    if (!dgram) to.pool = pool_name(L, 3, to.host, to.port);
    return np_sock_connect(L, &t->owner, &to);
}

static int core_connect(lua_State *L)
{
    return connect_ip(L, "connect", 0);
}

static int core_connect_udp(lua_State *L)
{
    return connect_ip(L, "connect_udp", 1);
}

/* core.connect_unix(path [, { timeout = seconds }]) -> sock | nil, err; "@name" is abstract */
static int core_connect_unix(lua_State *L)
{
    struct np_sock_target to = { .path = luaL_checkstring(L, 1) };
    struct sockaddr_storage source;
    struct np_task *t = connect_opts(L, 2, 0, "connect_unix", &to, &source);

    luaL_argcheck(L, !to.source, 2, "source: a unix socket is not connected from an IP address");
    return np_sock_connect(L, &t->owner, &to);
}

/* The arguments of a lookup (core.resolve, core.reverse): what to look up, the timeout,
 * and the running task, whose coroutine the lookup suspends. */
static struct np_task *lookup_args(lua_State *L, const char *what, const char **arg, double *timeout)
{
    *arg = luaL_checkstring(L, 1);
    *timeout = luaL_optnumber(L, 2, DEFAULT_CONNECT_TIMEOUT);
    luaL_argcheck(L, *timeout >= 0, 2, "timeout must be >= 0");
    return np_task_of(L, what);
}

/* core.sniff(sock, pick, { timeout =, probe_timeout =, max_peek = } [, started]) -> how,
 * value, bytes: dual's session path, by the same loop as the core's sniffing proxy
 * (sniffer.c); pick(bytes) -> index | nil (more) | false (none), under the task's limits.
 * started: when the silence counts from (default: now). */
static int core_sniff(lua_State *L)
{
    struct np_sock *s = np_sock_check(L, 1);
    struct np_task *t = np_task_of(L, "sniff");
    struct np_sniff_rules rules;

    luaL_checktype(L, 3, LUA_TTABLE);
    lua_getfield(L, 3, "timeout");
    lua_getfield(L, 3, "probe_timeout");
    lua_getfield(L, 3, "max_peek");
    rules.silence = luaL_checknumber(L, -3);
    rules.probe_timeout = luaL_checknumber(L, -2);
    rules.max_peek = (size_t)luaL_checkinteger(L, -1);
    luaL_argcheck(L, rules.max_peek >= 1 && rules.max_peek <= 65536, 3, "max_peek must be 1..65536");
    lua_pop(L, 3);
    return np_sock_sniff(L, s, &rules, luaL_optnumber(L, 4, np_now()), &t->limits);
}

/* core.nameservers() -> { "ip:port", ... }: those the resolver asks (server{ resolvers } or
 * /etc/resolv.conf), for netproxy.dns */
static int core_nameservers(lua_State *L)
{
    char buf[64];

    lua_newtable(L);
    for (int i = 0; i < 64 && np_loop_nameserver(i, buf, sizeof buf) == 0; i++) {
        lua_pushstring(L, buf);
        lua_rawseti(L, -2, i + 1);
    }
    return 1;
}

/* core.resolve(host [, timeout]) -> { "ip", ... } | nil, err: without blocking the loop */
static int core_resolve(lua_State *L)
{
    const char *host;
    double timeout;
    struct np_task *t = lookup_args(L, "resolve", &host, &timeout);

    return np_lookup_resolve(L, t, host, timeout);
}

/* core.reverse(ip [, timeout]) -> name | nil, err: a PTR lookup, without blocking the loop */
static int core_reverse(lua_State *L)
{
    const char *ip;
    double timeout;
    struct np_task *t = lookup_args(L, "reverse", &ip, &timeout);

    return np_lookup_reverse(L, t, ip, timeout);
}

/* core.relay(client, server [, { to_server =, to_client =, may_starttls = } [, conn]]): the
 * C relay takes both sockets; the session is over. to_server and to_client are the hooks of
 * the two directions (run under the proxy's limits), conn the object handed to them (also
 * accepted as opts.conn). Returns true, or nil and why. */
static int core_relay(lua_State *L)
{
    struct np_sock *client = np_sock_check(L, 1), *server = np_sock_check(L, 2);
    struct np_conn *c = session_conn(L, "relay");
    struct np_conn_handoff h = { .conn_ref = LUA_NOREF, .hook_ref = { LUA_NOREF, LUA_NOREF } };

    h.connect_time = server->connect_time;
    luaL_argcheck(L, client != server, 2, "client and server are the same socket");
    if (client->fd < 0 || server->fd < 0) {
        lua_pushnil(L);
        lua_pushliteral(L, "closed");
        return 2;
    }
    if (lua_istable(L, 3)) {
        push_function(L, 3, "to_server");      /* both checked before either is referenced */
        push_function(L, 3, "to_client");
        h.hook_ref[NP_TO_CLIENT] = ref_top(L);
        h.hook_ref[NP_TO_SERVER] = ref_top(L);
        lua_getfield(L, 3, "may_starttls");
        h.may_starttls = lua_toboolean(L, -1);
        lua_pop(L, 1);
        /* the conn object is for the hooks: without one it is not kept */
        if (h.hook_ref[NP_TO_SERVER] != LUA_NOREF || h.hook_ref[NP_TO_CLIENT] != LUA_NOREF) {
            if (lua_isnoneornil(L, 4)) lua_getfield(L, 3, "conn");
            else lua_pushvalue(L, 4);
            h.conn_ref = luaL_ref(L, LUA_REGISTRYINDEX);
        }
    }
    h.fd[NP_CLIENT][0] = np_sock_detach(client, &h.fd[NP_CLIENT][1], &h.ssl[NP_CLIENT], &h.ahead[NP_CLIENT]);
    h.fd[NP_SERVER][0] = np_sock_detach(server, &h.fd[NP_SERVER][1], &h.ssl[NP_SERVER], &h.ahead[NP_SERVER]);
    np_sock_forget(L, 1);
    np_sock_forget(L, 2);
    if (np_conn_relay(c, &h) < 0) {
        lua_pushnil(L);
        lua_pushliteral(L, "closed");
        return 2;
    }
    lua_pushboolean(L, 1);
    return 1;
}

static int push_outcome(lua_State *L, int rc, const char *err)
{
    if (rc == 0) {
        lua_pushboolean(L, 1);
        return 1;
    }
    lua_pushnil(L);
    lua_pushstring(L, err);
    return 2;
}

/* core.send(handle, "client" | "server", bytes): queue bytes toward one side of a relayed
 * connection. Returns true, or nil and why. */
static int core_send(lua_State *L)
{
    struct np_conn *c = np_conn_from_handle(L, 1);
    static const char *const sides[] = { "server", "client", NULL };
    int dir = luaL_checkoption(L, 2, NULL, sides);   /* server: NP_TO_SERVER (0) */
    size_t len;
    const char *data = luaL_checklstring(L, 3, &len), *err = "closed";

    return push_outcome(L, c ? np_conn_send(c, dir, data, len, &err) : -1, err);
}

/* core.starttls(handle, "client" | "server", context [, { sni =, verify_name = }]): upgrade
 * that side of a relayed connection once the chunk being handled has been passed on.
 * Returns true, or nil and why. */
static int core_starttls(lua_State *L)
{
    struct np_conn *c = np_conn_from_handle(L, 1);
    static const char *const sides[] = { "client", "server", NULL };
    int side = luaL_checkoption(L, 2, NULL, sides), server;
    SSL_CTX *ctx = np_tls_check_ctx(L, 3, &server);
    const char *sni = NULL, *verify_name = NULL, *err = "closed";

    if (lua_istable(L, 4)) {
        lua_getfield(L, 4, "sni");
        lua_getfield(L, 4, "verify_name");
        sni = lua_tostring(L, -2);
        verify_name = lua_tostring(L, -1);
    }
    return push_outcome(L, c ? np_conn_starttls(c, side, ctx, server, sni, verify_name, &err) : -1, err);
}

/* core.close(handle [, how [, detail]]): end the connection (how: an end word, "closed" by
 * default). From a hook, the rest of the hook still runs; nothing is relayed afterwards. */
static int core_close(lua_State *L)
{
    struct np_conn *c = np_conn_from_handle(L, 1);
    enum np_end how = np_end_parse(luaL_optstring(L, 2, "closed"));
    const char *detail = luaL_optstring(L, 3, NULL);

    luaL_argcheck(L, how != NP_END_NONE, 2, "not an end word");
    if (c) np_conn_close(c, how, "%s", detail ? detail : np_conn_session(c) ? "by script" : "by hook");
    return 0;
}

/* core.reached(handle) -> "addr:port" the relayed client connected to, or nil: conn.reached
 * once the client's socket belongs to the relay (looked up only when a hook asks). */
static int core_reached(lua_State *L)
{
    struct np_conn *c = np_conn_from_handle(L, 1);

    return np_sock_push_localaddr(L, c ? np_conn_client_fd(c) : -1);
}

/* core.serving(client): the connection is served here (a service): negotiation is over
 * without a relay; client's bytes are the connection's. */
static int core_serving(lua_State *L)
{
    np_conn_serving(session_conn(L, "serving"), np_sock_check(L, 1));
    return 0;
}

/* core.when_closed(handle, fn): fn(info) once the connection has ended and been logged. */
static int core_when_closed(lua_State *L)
{
    struct np_conn *c = np_conn_from_handle(L, 1);

    luaL_checktype(L, 2, LUA_TFUNCTION);
    if (!c || np_conn_ended(c)) return 0;
    lua_pushvalue(L, 2);
    np_conn_when_closed(c, luaL_ref(L, LUA_REGISTRYINDEX));
    return 0;
}

/* core.call(fn, ...) -> true | false, err: fn(...) protected; from a task's coroutine under
 * the task's limits (its proxy's or server's) counted afresh, like a data hook's, elsewhere
 * within the call already running. It must not wait (a cosocket call in it fails). A
 * service's callbacks run so. */
static int core_call(lua_State *L)
{
    struct np_task *t = np_task_running();
    char err[512];

    luaL_checktype(L, 1, LUA_TFUNCTION);
    if (np_call(L, lua_gettop(L) - 1, 0, t && t->owner.co == L ? &t->limits : NULL, err, sizeof err) == 0) {
        lua_pushboolean(L, 1);
        return 1;
    }
    lua_pushboolean(L, 0);
    lua_pushstring(L, err);
    return 2;
}

static void attach_assoc(void *conn, void *assoc)
{
    np_conn_attach(conn, np_udp_assoc_release, assoc);
}

/* core.udp_associate({ bind, client, client_port, check, conn }) ->
 * association, "ip:port" | nil, err (udp_assoc.h): from the session coroutine of a
 * connection, whose association it is from then on (freed with it); its negotiation is over. */
static int core_udp_associate(lua_State *L)
{
    struct np_conn *c = session_conn(L, "udp_associate");
    const struct np_udp_assoc_owner o = {
        .L = np_conn_lua(c), .id = np_conn_id(c), .row = np_shm_row(np_conn_proxy_name(c)),
        .limits = np_task_running()->limits, .attach = attach_assoc, .arg = c,
    };

    return np_udp_assoc_new(L, &o);
}

/* core.servers([proxy]) and core.set_server(proxy, "host:port", { state =, weight = }): the
 * runtime control of pools from Lua (a timer that drains a server on its own rule), the same
 * functions as `netproxy ctl show servers` / `set server` (lua/netproxy/control.lua). */
static int control_fn(lua_State *L, const char *name)
{
    int n = lua_gettop(L);

    lua_getglobal(L, "require");
    lua_pushliteral(L, "netproxy.control");
    lua_call(L, 1, 1);
    lua_getfield(L, -1, name);
    lua_insert(L, 1);
    lua_pop(L, 1);
    lua_call(L, n, 2);
    return 2;
}

static int core_servers(lua_State *L)
{
    return control_fn(L, "servers");
}

static int core_set_server(lua_State *L)
{
    return control_fn(L, "set_server");
}

static const luaL_Reg core_funcs[] = {
    { "servers", core_servers },
    { "set_server", core_set_server },
    { "call", core_call },
    { "sniff", core_sniff },
    { "serving", core_serving },
    { "when_closed", core_when_closed },
    { "log", core_log },
    { "log_enabled", core_log_enabled },
    { "now", core_now },
    { "worker", core_worker },
    { "pooled", core_pooled },
    { "set_target", core_set_target },
    { "set_client", core_set_client },
    { "tls_identity", core_tls_identity },
    { "ja4", core_ja4 },
    { "set_ja4", core_set_ja4 },
    { "set_user", core_set_user },
    { "access_log", core_access_log },
    { "limit", core_limit },
    { "pool_connected", core_pool_connected },
    { "pool_take", core_pool_take },
    { "pool_give", core_pool_give },
    { "pool_wait", core_pool_wait },
    { "reached", core_reached },
    { "pack_ip", core_pack_ip },
    { "unpack_ip", core_unpack_ip },
    { "connect", core_connect },
    { "connect_unix", core_connect_unix },
    { "connect_udp", core_connect_udp },
    { "resolve", core_resolve },
    { "nameservers", core_nameservers },
    { "reverse", core_reverse },
    { "relay", core_relay },
    { "send", core_send },
    { "close", core_close },
    { "starttls", core_starttls },
    { "udp_associate", core_udp_associate },
    { NULL, NULL },
};

int luaopen_netproxy_core(lua_State *L)
{
    lua_newtable(L);
    luaL_register(L, NULL, core_funcs);
    np_sock_open(L);
    np_sleep_open(L);
    np_timer_open(L);
    np_shdict_open(L);
    np_tls_open(L);
    np_metrics_open(L);
    np_udp_open(L);
    np_udp_assoc_open(L);
    np_pool_open(L);
    np_checker_open(L);
    lua_pushstring(L, NP_VERSION);
    lua_setfield(L, -2, "version");
    lua_pushlightuserdata(L, NULL);     /* core.null: OpenResty's ngx.null (netproxy.ngx) */
    lua_setfield(L, -2, "null");
    np_task_push_done(L);
    lua_setfield(L, -2, "task_done");
    return 1;
}
