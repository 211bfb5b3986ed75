/* Statistics: the per-proxy counters, served in the Prometheus text format at /metrics on
 * server{ stats = "ADDR:PORT" } by libevent's evhttp, and readable from Lua (core.stats). */
#include "metrics.h"
#include "addr.h"
#include "log.h"
#include "loop.h"
#include "pool.h"
#include "proxy.h"
#include "shm.h"

#include <event2/buffer.h>
#include <event2/http.h>
#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static struct evhttp *http;

struct counter {
    const char *name, *type, *help;
    size_t offset;              /* into struct np_counters */
    const char *labels;         /* extra labels, e.g. direction="in" */
};

#define FIELD(f) offsetof(struct np_counters, f)
static const struct counter counters[] = {
    { "netproxy_connections_opened_total", "counter", "Client connections accepted.", FIELD(opened), "" },
    { "netproxy_connections_closed_total", "counter", "Client connections finished.", FIELD(closed), "" },
    { "netproxy_connections_active", "gauge", "Client connections open now.", FIELD(active), "" },
    { "netproxy_connections_refused_total", "counter", "Clients turned away (guards, connectors).", FIELD(refused), "" },
    { "netproxy_connections_errors_total", "counter", "Connections that ended in an error.", FIELD(errors), "" },
    { "netproxy_bytes_total", "counter", "Bytes relayed (in: client to server, out: server to client).", FIELD(bytes_in), ",direction=\"in\"" },
    { "netproxy_bytes_total", NULL, NULL, FIELD(bytes_out), ",direction=\"out\"" },
    { "netproxy_connections_limited_total", "counter", "Clients turned away by per_source or per_user (also in refused), by reason.", FIELD(limited[1]), ",reason=\"per_source_conns\"" },
    { "netproxy_connections_limited_total", NULL, NULL, FIELD(limited[2]), ",reason=\"per_source_rate\"" },
    { "netproxy_connections_limited_total", NULL, NULL, FIELD(limited[3]), ",reason=\"per_user_conns\"" },
    { "netproxy_connections_limited_total", NULL, NULL, FIELD(limited[4]), ",reason=\"per_user_rate\"" },
    { "netproxy_connections_limited_total", NULL, NULL, FIELD(limited[5]), ",reason=\"limits_table_full\"" },
    { "netproxy_udp_flows_opened_total", "counter", "UDP flows started (a new client address:port).", FIELD(flows_opened), "" },
    { "netproxy_udp_flows_closed_total", "counter", "UDP flows ended.", FIELD(flows_closed), "" },
    { "netproxy_udp_flows_active", "gauge", "UDP flows open now.", FIELD(flows_active), "" },
    { "netproxy_udp_flows_evicted_total", "counter", "UDP flows ended by max_flows.", FIELD(flows_evicted), "" },
    { "netproxy_udp_datagrams_total", "counter", "Datagrams carried (in: client to server, out: server to client).", FIELD(datagrams_in), ",direction=\"in\"" },
    { "netproxy_udp_datagrams_total", NULL, NULL, FIELD(datagrams_out), ",direction=\"out\"" },
    { "netproxy_udp_datagrams_dropped_total", "counter", "Datagrams dropped (a full socket buffer, the queue of a flow resolving its server).", FIELD(datagrams_dropped), "" },
};

/* The sum over every worker of one counter of proxy p. */
static uint64_t value(const struct np_proxy *p, const struct counter *c)
{
    struct np_counters sum = np_shm_sum(p->row);

    return *(const uint64_t *)((const char *)&sum + c->offset);
}

/* A proxy name as a Prometheus label value: backslash, quote and newline escaped. */
static void label(struct evbuffer *out, const char *name)
{
    for (; *name; name++) {
        if (*name == '\\' || *name == '"') evbuffer_add_printf(out, "\\%c", *name);
        else if (*name == '\n') evbuffer_add(out, "\\n", 2);
        else evbuffer_add(out, name, 1);
    }
}

/* The running config's proxies, as server.c installed them (none before the first). */
static struct {
    const struct np_proxy *proxies;
    int n;
} live;

void np_metrics_serve(const struct np_proxy *proxies, int n)
{
    live.proxies = proxies;
    live.n = n;
}

/* One series per proxy; totals are PromQL's sum(), so none is emitted (it would count twice). */
static void render(struct evbuffer *out)
{
    for (size_t i = 0; i < sizeof counters / sizeof counters[0]; i++) {
        const struct counter *c = &counters[i];

        if (c->type) evbuffer_add_printf(out, "# HELP %s %s\n# TYPE %s %s\n", c->name, c->help, c->name, c->type);
        for (int j = 0; j < live.n; j++) {
            evbuffer_add_printf(out, "%s{proxy=\"", c->name);
            label(out, live.proxies[j].name);
            evbuffer_add_printf(out, "\"%s} %llu\n", c->labels, (unsigned long long)value(&live.proxies[j], c));
        }
    }
}

/* Is name one of the running config's proxies? (the pool table keeps rows of old configs) */
static int live_proxy(const char *name)
{
    for (int j = 0; j < live.n; j++)
        if (strcmp(live.proxies[j].name, name) == 0) return 1;
    return 0;
}

/* The pool servers, one series each: {proxy="NAME",server="HOST:PORT"}. */
static void render_pools(struct evbuffer *out)
{
    static const char *const series[][3] = {
        { "netproxy_server_up", "gauge", "1 when the pool server takes clients, 0 when it is down." },
        { "netproxy_server_active", "gauge", "Connections open now to the pool server." },
        { "netproxy_server_connections_total", "counter", "Connections that reached the pool server." },
        { "netproxy_server_failures_total", "counter", "Connects to the pool server that failed." },
    };
    struct np_pool_view v;

    for (size_t i = 0; i < sizeof series / sizeof series[0]; i++) {
        evbuffer_add_printf(out, "# HELP %s %s\n# TYPE %s %s\n", series[i][0], series[i][2], series[i][0], series[i][1]);
        for (int row = 0; row < NP_POOL_ROWS; row++) {
            if (np_pool_view(row, &v) < 0 || !live_proxy(v.proxy)) continue;
            uint64_t n = i == 0 ? (uint64_t)v.up : i == 1 ? v.active : i == 2 ? v.connections : v.failures;
            evbuffer_add_printf(out, "%s{proxy=\"", series[i][0]);
            label(out, v.proxy);
            evbuffer_add(out, "\",server=\"", 10);
            label(out, v.server);
            evbuffer_add_printf(out, "\"} %llu\n", (unsigned long long)n);
        }
    }
}

static void on_metrics(struct evhttp_request *req, void *arg)
{
    struct evbuffer *out = evbuffer_new();

    if (!out) {
        evhttp_send_error(req, HTTP_INTERNAL, NULL);
        return;
    }
    render(out);
    render_pools(out);
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
                      "text/plain; version=0.0.4; charset=utf-8");
    evhttp_send_reply(req, HTTP_OK, "OK", out);
    evbuffer_free(out);
}

static void on_other(struct evhttp_request *req, void *arg)
{
    evhttp_send_error(req, HTTP_NOTFOUND, "netproxy serves /metrics only");
}

int np_metrics_listen(const char *addr, char *err, size_t errlen)
{
    char host[128];
    const char *colon = strrchr(addr, ':');
    int port;

    if (!colon || colon == addr || (size_t)(colon - addr) >= sizeof host) {
        snprintf(err, errlen, "stats: want \"ADDR:PORT\", not \"%s\"", addr);
        return -1;
    }
    snprintf(host, sizeof host, "%.*s", (int)(colon - addr), addr);
    if (host[0] == '[' && host[strlen(host) - 1] == ']') {     /* [::1]:9100 */
        memmove(host, host + 1, strlen(host));
        host[strlen(host) - 1] = '\0';
    }
    port = atoi(colon + 1);
    http = evhttp_new(np_base);
    if (!http) goto fail;
    evhttp_set_allowed_methods(http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD);
    evhttp_set_timeout(http, 10);
    evhttp_set_cb(http, "/metrics", on_metrics, NULL);
    evhttp_set_gencb(http, on_other, NULL);
    struct evhttp_bound_socket *bound = evhttp_bind_socket_with_handle(http, host, (ev_uint16_t)port);
    if (!bound) goto fail;
    {   /* the address bound: a port 0 is told as the one the kernel chose */
        struct sockaddr_storage ss;
        socklen_t len = sizeof ss;
        char where[NP_ADDRSTRLEN];
        if (getsockname(evhttp_bound_socket_get_fd(bound), (struct sockaddr *)&ss, &len) == 0)
            np_addr_format((struct sockaddr *)&ss, len, where, sizeof where);
        else
            snprintf(where, sizeof where, "%s", addr);
        np_log(NP_NOTICE, "stats: serving /metrics on %s", where);
    }
    return 0;
fail:
    snprintf(err, errlen, "stats: cannot listen on %s", addr);
    if (http) evhttp_free(http);
    http = NULL;
    return -1;
}

void np_metrics_close(void)
{
    if (http) evhttp_free(http);
    http = NULL;
}

/* core.stats().servers = { PROXY = { ["HOST:PORT"] = { up =, active =, connections =, failures = } } } */
static void push_servers(lua_State *L)
{
    struct np_pool_view v;

    lua_newtable(L);
    for (int row = 0; row < NP_POOL_ROWS; row++) {
        if (np_pool_view(row, &v) < 0 || !live_proxy(v.proxy)) continue;
        lua_getfield(L, -1, v.proxy);
        if (lua_isnil(L, -1)) {
            lua_pop(L, 1);
            lua_newtable(L);
            lua_pushvalue(L, -1);
            lua_setfield(L, -3, v.proxy);
        }
        lua_newtable(L);
        lua_pushboolean(L, v.up);
        lua_setfield(L, -2, "up");
        lua_pushnumber(L, (double)v.active);
        lua_setfield(L, -2, "active");
        lua_pushnumber(L, (double)v.connections);
        lua_setfield(L, -2, "connections");
        lua_pushnumber(L, (double)v.failures);
        lua_setfield(L, -2, "failures");
        lua_setfield(L, -2, v.server);
        lua_pop(L, 1);
    }
}

/* core.stats() -> { proxies = { NAME = { opened =, closed =, active =, refused =, errors =,
 * bytes_in =, bytes_out =, flows_opened =, flows_closed =, flows_active =, flows_evicted =,
 * datagrams_in =, datagrams_out =, datagrams_dropped = }, ... }, total = { ... } } */
static int core_stats(lua_State *L)
{
    static const char *const names[] = { "opened", "closed", "active", "refused", "errors", "bytes_in", "bytes_out",
                                         "flows_opened", "flows_closed", "flows_active", "flows_evicted",
                                         "datagrams_in", "datagrams_out", "datagrams_dropped" };
    const size_t n = sizeof names / sizeof names[0];

    lua_newtable(L);
    lua_newtable(L);                                        /* proxies */
    lua_newtable(L);                                        /* total */
    for (size_t i = 0; i < n; i++) {
        lua_pushnumber(L, 0);
        lua_setfield(L, -2, names[i]);
    }
    for (int j = 0; j < live.n; j++) {
        const struct np_proxy *p = &live.proxies[j];
        lua_newtable(L);
        for (size_t i = 0; i < n; i++) {
            double v = (double)value(p, &counters[i]);
            lua_pushnumber(L, v);
            lua_setfield(L, -2, names[i]);
            lua_getfield(L, -2, names[i]);                  /* total[name] += v */
            lua_pushnumber(L, lua_tonumber(L, -1) + v);
            lua_setfield(L, -4, names[i]);
            lua_pop(L, 1);
        }
        lua_setfield(L, -3, p->name);
    }
    lua_setfield(L, -3, "total");
    lua_setfield(L, -2, "proxies");
    push_servers(L);
    lua_setfield(L, -2, "servers");
    return 1;
}

void np_metrics_open(lua_State *L)
{
    lua_pushcfunction(L, core_stats);
    lua_setfield(L, -2, "stats");
}
