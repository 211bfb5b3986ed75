/* A proxy's settings, read once from its normalised Lua table (netproxy.config has
 * checked every value), so that nothing per connection looks them up again. */
#include "proxy.h"
#include "accesslog.h"
#include "luavm.h"

#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int np_proxy_read_acl(lua_State *L, int t, struct np_acl *acl, char *err, size_t errlen)
{
    static const char *const lists[] = { "deny", "allow" };

    for (int allow = 0; allow < 2; allow++) {
        lua_getfield(L, t, lists[allow]);
        for (int i = 1; lua_istable(L, -1); i++) {
            struct np_cidr c;
            lua_rawgeti(L, -1, i);
            const char *text = lua_tostring(L, -1);
            lua_pop(L, 1);
            if (!text) break;
            if (np_cidr_parse(text, &c) < 0 || np_acl_add(acl, allow, &c) < 0) {
                snprintf(err, errlen, "%s: bad address or CIDR '%s'", lists[allow], text);
                lua_pop(L, 1);
                return -1;
            }
        }
        lua_pop(L, 1);
    }
    return 0;
}

static enum np_relay_mode relay_mode(const char *name)
{
    if (!name) return NP_RELAY_AUTO;
    if (!strcmp(name, "splice")) return NP_RELAY_SPLICE;
    if (!strcmp(name, "buffered")) return NP_RELAY_BUFFERED;
    return NP_RELAY_AUTO;
}

/* The source addresses its `to`s connect from (netproxy.config's list, each checked as an
 * IP address): each must be one of this host's, found out once here rather than by every
 * connection. 0, or -1 with err. */
static int check_sources(struct np_proxy *p, lua_State *L, int t, char *err, size_t errlen)
{
    int rc = 0;

    lua_getfield(L, t, "sources");
    for (int i = 1; rc == 0 && lua_istable(L, -1); i++) {
        struct sockaddr_storage ss;
        char why[128];
        lua_rawgeti(L, -1, i);
        const char *text = lua_tostring(L, -1);
        socklen_t len = text ? np_addr_ip(text, 0, &ss) : 0;
        if (text && (len == 0 || np_dial_check_source((struct sockaddr *)&ss, len, why, sizeof why) < 0)) {
            snprintf(err, errlen, "proxy '%s': source %s: %s",
                     p->name, text, len ? why : "not an IP address");
            rc = -1;
        }
        lua_pop(L, 1);
        if (!text) break;
    }
    lua_pop(L, 1);
    return rc;
}

/* access_log = { path =, format = } (netproxy.config checked it), if any, into p->access.
 * 0, or -1 with err (a file that cannot be opened). */
static int read_access_log(struct np_proxy *p, lua_State *L, int t, char *err, size_t errlen)
{
    char why[256];
    int rc = 0;

    lua_getfield(L, t, "access_log");
    if (lua_istable(L, -1)) {
        const char *path = np_lua_string(L, lua_gettop(L), "path");
        const char *format = np_lua_string(L, lua_gettop(L), "format");
        p->access = path ? np_accesslog_new(path, format ? format : "text", why, sizeof why) : NULL;
        if (path && !p->access) {
            snprintf(err, errlen, "proxy '%s': %s", p->name, why);
            rc = -1;
        }
    }
    lua_pop(L, 1);
    return rc;
}

/* bandwidth = { per_conn, per_source, per_proxy } (netproxy.config: bytes a second, 0 for
 * none): the rate each connection's relay gets, and the buckets its connections share.
 * 0, or -1 with err. */
static int read_bandwidth(struct np_proxy *p, lua_State *L, int t, char *err, size_t errlen)
{
    double per_source, per_proxy;

    lua_getfield(L, t, "bandwidth");
    if (!lua_istable(L, -1)) {
        lua_pop(L, 1);
        return 0;
    }
    p->bandwidth_per_conn = np_lua_number(L, -1, "per_conn", 0);
    per_source = np_lua_number(L, -1, "per_source", 0);
    per_proxy = np_lua_number(L, -1, "per_proxy", 0);
    lua_pop(L, 1);
    if ((per_source > 0 || per_proxy > 0) && !(p->shaper = np_shaper_new(per_proxy, per_source))) {
        snprintf(err, errlen, "%s: bandwidth: out of memory", p->name);
        return -1;
    }
    return 0;
}

int np_proxy_read(struct np_proxy *p, lua_State *L, int t, int session_ref, char *err, size_t errlen)
{
    p->denied_ref = LUA_NOREF;
    snprintf(p->name, sizeof p->name, "%s", np_lua_string(L, t, "name"));
    p->row = np_shm_row(p->name);
    if (p->row < 0) {
        snprintf(err, errlen, "%s: too many proxy names for the statistics (at most %d)", p->name,
                 NP_MAX_PROXIES);
        return -1;
    }
    p->L = L;
    p->session_ref = session_ref;
    p->relay_mode = relay_mode(np_lua_string(L, t, "relay"));
    p->negotiation_timeout = np_lua_setting(L, t, "negotiation_timeout");
    p->idle_timeout = np_lua_setting(L, t, "idle_timeout");
    p->total_timeout = np_lua_setting(L, t, "total_timeout");
    p->buffer_size = (size_t)np_lua_setting(L, t, "buffer_size");
    p->limits = np_lua_limits(L, t);
    p->max_negotiating = (uint64_t)np_lua_setting(L, t, "max_negotiating");
    p->queue_timeout = np_lua_setting(L, t, "queue_timeout");
    p->waiting = NULL;
    p->waiting_tail = &p->waiting;
    p->max_clients = (uint64_t)np_lua_number(L, t, "max_clients", 0);
    p->defer_accept = (int)np_lua_number(L, t, "defer_accept", 0);
    if (np_proxy_read_acl(L, t, &p->acl, err, errlen) < 0 || check_sources(p, L, t, err, errlen) < 0 ||
        read_access_log(p, L, t, err, errlen) < 0 || read_bandwidth(p, L, t, err, errlen) < 0)
        return -1;
    lua_getfield(L, t, "from");
    if (lua_istable(L, -1)) {
        const char *type = np_lua_string(L, lua_gettop(L), "type");
        p->datagram = type && !strcmp(type, "udp");
        p->relays_udp = p->datagram || (type && !strcmp(type, "socks5"));
    }
    lua_pop(L, 1);
    lua_getfield(L, t, "listen");
    p->stdio = lua_istable(L, -1) && np_lua_bool(L, -1, "stdio", 0);
    lua_pop(L, 1);
    lua_pushvalue(L, t);
    p->lua_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    p->denied_ref = np_lua_ref_function(L, t, "on_denied");
    return 0;
}

/* The route's address: a unix path or an IP literal, made once into r->ai (pointing at
 * r->addr), or a name kept for the connection to resolve. 0, or -1. */
static int route_address(struct np_route *r, const char *host, const char *path)
{
    socklen_t len = path ? np_addr_unix(path, &r->addr) : np_addr_ip(host, r->port, &r->addr);

    if (len == 0 && path) return -1;
    if (len == 0) return (r->host = strdup(host)) ? 0 : -1;
    r->ai.ai_family = r->addr.ss_family;
    r->ai.ai_socktype = SOCK_STREAM;
    r->ai.ai_addrlen = len;
    r->ai.ai_addr = (struct sockaddr *)&r->addr;
    return 0;
}

/* The address the route connects from, if it names one (checked by netproxy.config and
 * at start: np_proxy_read). */
void np_keepalive_read(lua_State *L, int t, struct np_keepalive *k)
{
    memset(k, 0, sizeof *k);
    if (!lua_istable(L, t)) return;
    k->on = 1;
    k->idle = (int)np_lua_number(L, t, "idle", 0);
    k->interval = (int)np_lua_number(L, t, "interval", 0);
    k->count = (int)np_lua_number(L, t, "count", 0);
}

static void read_source(struct np_route *r, const char *text)
{
    r->dial.source_len = text ? np_addr_ip(text, 0, &r->source) : 0;
    r->dial.source = r->dial.source_len ? (struct sockaddr *)&r->source : NULL;
}

/* One route table at index t, or NULL (not one, or out of memory). */
static struct np_route *read_route(struct np_proxy *p, lua_State *L, int t)
{
    const char *host = lua_istable(L, t) ? np_lua_string(L, t, "host") : NULL;
    const char *path = lua_istable(L, t) ? np_lua_string(L, t, "path") : NULL;
    const char *label;
    struct np_route *r;
    double connect_timeout;

    if ((!host && !path) || !(r = calloc(1, sizeof *r))) return NULL;
    r->port = (int)np_lua_number(L, t, "port", 0);
    if (route_address(r, host, path) < 0) {
        free(r);
        return NULL;
    }
    label = np_lua_string(L, t, "label");
    snprintf(r->label, sizeof r->label, "%s", label ? label : host ? host : path);
    if (!r->host) np_addr_format(r->ai.ai_addr, r->ai.ai_addrlen, r->server, sizeof r->server);
    r->hook_ref[0] = np_lua_ref_function(L, t, "to_server");
    r->hook_ref[1] = np_lua_ref_function(L, t, "to_client");
    r->conn_ref = np_lua_ref_function(L, t, "conn");
    read_source(r, np_lua_string(L, t, "source"));
    lua_getfield(L, t, "tcp_keepalive");
    np_keepalive_read(L, lua_gettop(L), &r->dial.keepalive);
    lua_pop(L, 1);
    /* the session's connect is bounded by both: the nearer deadline decides the end */
    connect_timeout = np_lua_setting(L, t, "connect_timeout");
    r->dial.timeout = connect_timeout;
    r->on_timeout = NP_END_CONNECT_FAILED;
    if (p->negotiation_timeout > 0 && (connect_timeout <= 0 || p->negotiation_timeout < connect_timeout)) {
        r->dial.timeout = p->negotiation_timeout;
        r->on_timeout = NP_END_NEGOTIATION_TIMEOUT;
    }
    return r;
}

static void route_free(struct np_route *r)
{
    if (r) free(r->host);
    free(r);
}

/* (its Lua refs, as a route's, go with the config's state) */
static void sniff_free(struct np_sniff *s)
{
    if (!s) return;
    for (int i = 0; i < s->npicks; i++) {
        route_free(s->picks[i]);
        free(s->notes[i]);
    }
    route_free(s->silent);
    route_free(s->fallback);
    free(s->picks);
    free(s->notes);
    free(s);
}

/* picks = { route tables with their note, in pick's order }: 0, or -1. */
static int read_sniff_picks(struct np_sniff *s, struct np_proxy *p, lua_State *L, int t)
{
    int n;

    lua_getfield(L, t, "picks");
    n = lua_istable(L, -1) ? (int)lua_objlen(L, -1) : 0;
    s->picks = calloc(n ? n : 1, sizeof *s->picks);
    s->notes = calloc(n ? n : 1, sizeof *s->notes);
    for (int i = 1; i <= n && s->picks && s->notes; i++) {
        const char *note;
        lua_rawgeti(L, -1, i);
        s->picks[i - 1] = read_route(p, L, lua_gettop(L));
        note = lua_istable(L, -1) ? np_lua_string(L, -1, "note") : NULL;
        s->notes[i - 1] = strdup(note ? note : "picked");
        lua_pop(L, 1);
        if (!s->picks[i - 1] || !s->notes[i - 1]) {
            route_free(s->picks[i - 1]);
            free(s->notes[i - 1]);
            break;
        }
        s->npicks = i;
    }
    lua_pop(L, 1);
    return s->picks && s->notes && s->npicks == n ? 0 : -1;
}

/* The route table at field name of the table at t, or NULL. */
static struct np_route *read_route_field(struct np_proxy *p, lua_State *L, int t, const char *name)
{
    struct np_route *r;

    lua_getfield(L, t, name);
    r = lua_istable(L, -1) ? read_route(p, L, lua_gettop(L)) : NULL;
    lua_pop(L, 1);
    return r;
}

/* The sniff table at t, or NULL (then the connections run the session). */
static struct np_sniff *read_sniff(struct np_proxy *p, lua_State *L, int t)
{
    struct np_sniff *s = calloc(1, sizeof *s);

    if (!s) return NULL;
    if (read_sniff_picks(s, p, L, t) < 0) {
        sniff_free(s);
        return NULL;
    }
    s->silent = read_route_field(p, L, t, "silent");
    s->fallback = read_route_field(p, L, t, "fallback");
    s->rules.silence = np_lua_number(L, t, "timeout", 0);      /* dual.check fills all three */
    s->rules.probe_timeout = np_lua_number(L, t, "probe_timeout", 0);
    s->rules.max_peek = (size_t)np_lua_number(L, t, "max_peek", 0);
    s->pick_ref = np_lua_ref_function(L, t, "pick");
    return s;
}

void np_proxy_read_route(struct np_proxy *p, lua_State *L, int t)
{
    if (!lua_istable(L, t)) return;
    lua_getfield(L, t, "sniff");
    if (lua_istable(L, -1)) p->sniff = read_sniff(p, L, lua_gettop(L));
    else p->route = read_route(p, L, t);
    lua_pop(L, 1);
}

void np_proxy_free(struct np_proxy *p)
{
    route_free(p->route);
    p->route = NULL;
    sniff_free(p->sniff);
    p->sniff = NULL;
    np_acl_free(&p->acl);
    np_accesslog_free(p->access);
    p->access = NULL;
    np_shaper_put(p->shaper);
    p->shaper = NULL;
    free(p->listeners);
    p->listeners = NULL;
    p->nlisteners = 0;
}
