/* Statistics: the per-proxy counters, served in the Prometheus text format at /metrics on
 * server{ stats = "ADDR:PORT" } by libevent's evhttp, and readable from Lua (core.stats). */
#include "metrics.h"
#include "addr.h"
#include "end.h"
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

/* Which proxies have a series: only those that can produce it (no UDP series on a TCP
 * proxy, no connection series on a UDP one). */
enum who { CONNS, ALL, FLOWS, DATAGRAMS };

struct counter {
    const char *name, *type, *help;
    size_t offset;              /* into struct np_counters */
    const char *labels;         /* extra labels, e.g. direction="in" */
    enum who who;
};

#define FIELD(f) offsetof(struct np_counters, f)
static const struct counter counters[] = {
    { "netproxy_connections_opened_total", "counter", "Client connections accepted.", FIELD(opened), "", CONNS },
    { "netproxy_connections_closed_total", "counter", "Client connections finished.", FIELD(closed), "", CONNS },
    { "netproxy_connections_active", "gauge", "Client connections open now.", FIELD(active), "", CONNS },
    { "netproxy_connections_refused_total", "counter", "Clients turned away (guards, connectors).", FIELD(refused), "", CONNS },
    { "netproxy_connections_errors_total", "counter", "Connections that ended in an error.", FIELD(errors), "", CONNS },
    { "netproxy_bytes_total", "counter", "Bytes relayed (in: client to server, out: server to client).", FIELD(bytes_in), ",direction=\"in\"", ALL },
    { "netproxy_bytes_total", NULL, NULL, FIELD(bytes_out), ",direction=\"out\"", ALL },
    { "netproxy_udp_flows_opened_total", "counter", "UDP flows started (a new client address:port).", FIELD(flows_opened), "", FLOWS },
    { "netproxy_udp_flows_closed_total", "counter", "UDP flows ended.", FIELD(flows_closed), "", FLOWS },
    { "netproxy_udp_flows_active", "gauge", "UDP flows open now.", FIELD(flows_active), "", FLOWS },
    { "netproxy_udp_flows_evicted_total", "counter", "UDP flows ended by max_flows.", FIELD(flows_evicted), "", FLOWS },
    /* a udp proxy has flows, not connections: its refusals and errors are its flows' */
    { "netproxy_udp_flows_refused_total", "counter", "UDP flows turned away (allow/deny, accept(), a probe).", FIELD(refused), "", FLOWS },
    { "netproxy_udp_flows_errors_total", "counter", "UDP flows that ended in an error.", FIELD(errors), "", FLOWS },
    { "netproxy_udp_datagrams_total", "counter", "Datagrams carried (in: client to server, out: server to client).", FIELD(datagrams_in), ",direction=\"in\"", DATAGRAMS },
    { "netproxy_udp_datagrams_total", NULL, NULL, FIELD(datagrams_out), ",direction=\"out\"", DATAGRAMS },
    { "netproxy_udp_datagrams_dropped_total", "counter", "Datagrams dropped (a full socket buffer, the queue of a flow resolving its server).", FIELD(datagrams_dropped), "", DATAGRAMS },
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

/* Can proxy p produce a series for who? */
static int produces(const struct np_proxy *p, enum who who)
{
    switch (who) {
    case CONNS: return !p->datagram;
    case FLOWS: return p->datagram;
    case DATAGRAMS: return p->relays_udp;          /* a udp from, or socks5's UDP ASSOCIATE */
    default: return 1;
    }
}

static int any_produces(enum who who)
{
    for (int j = 0; j < live.n; j++)
        if (produces(&live.proxies[j], who)) return 1;
    return 0;
}

static void header(struct evbuffer *out, const char *name, const char *type, const char *help)
{
    evbuffer_add_printf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* NAME{proxy="P" (then the caller's labels and value) */
static void series(struct evbuffer *out, const char *name, const struct np_proxy *p)
{
    evbuffer_add_printf(out, "%s{proxy=\"", name);
    label(out, p->name);
    evbuffer_add(out, "\"", 1);
}

/* One series per proxy; totals are PromQL's sum(), so none is emitted (it would count twice). */
static void render(struct evbuffer *out)
{
    for (size_t i = 0; i < sizeof counters / sizeof counters[0]; i++) {
        const struct counter *c = &counters[i];

        if (!any_produces(c->who)) continue;
        if (c->type) header(out, c->name, c->type, c->help);
        for (int j = 0; j < live.n; j++) {
            if (!produces(&live.proxies[j], c->who)) continue;
            series(out, c->name, &live.proxies[j]);
            evbuffer_add_printf(out, "%s} %llu\n", c->labels, (unsigned long long)value(&live.proxies[j], c));
        }
    }
}

/* netproxy_connections_ended_total{proxy,end}: every end a connection can have. */
static void render_ends(struct evbuffer *out)
{
    if (!any_produces(CONNS)) return;
    header(out, "netproxy_connections_ended_total", "counter", "Connections ended, by how (the log line's end= word).");
    for (int j = 0; j < live.n; j++) {
        const struct np_proxy *p = &live.proxies[j];
        struct np_counters sum;
        if (!produces(p, CONNS)) continue;
        sum = np_shm_sum(p->row);
        for (int e = NP_END_EOF; e < NP_END_COUNT; e++) {
            if (e == NP_END_EVICTED) continue;          /* a UDP flow's only */
            series(out, "netproxy_connections_ended_total", p);
            evbuffer_add_printf(out, ",end=\"%s\"} %llu\n", np_end_name(e), (unsigned long long)sum.ended[e]);
        }
    }
}

/* netproxy_refusals_total{proxy,reason}: the reasons any process has counted so far. */
static void render_refusals(struct evbuffer *out)
{
    if (!any_produces(CONNS)) return;
    header(out, "netproxy_refusals_total", "counter", "Clients turned away, by reason (acl, max_clients, max_negotiating, session: accept() or a connector's rules).");
    for (int j = 0; j < live.n; j++) {
        const struct np_proxy *p = &live.proxies[j];
        struct np_counters sum;
        if (!produces(p, CONNS)) continue;
        sum = np_shm_sum(p->row);
        for (int r = 0; r < NP_MAX_REASONS; r++) {
            const char *name = np_shm_reason_name(r);
            if (!name) continue;
            series(out, "netproxy_refusals_total", p);
            evbuffer_add(out, ",reason=\"", 9);
            label(out, name);
            evbuffer_add_printf(out, "\"} %llu\n", (unsigned long long)sum.refusals[r]);
        }
    }
}

/* One histogram of each proxy: NAME_bucket{le=...} (cumulative), NAME_sum, NAME_count. */
static void render_histogram(struct evbuffer *out, const char *name, const char *help, size_t buckets_at,
                             size_t sum_at, const double *bounds, int n)
{
    char bucket[96];

    if (!any_produces(CONNS)) return;
    snprintf(bucket, sizeof bucket, "%s_bucket", name);
    header(out, name, "histogram", help);
    for (int j = 0; j < live.n; j++) {
        const struct np_proxy *p = &live.proxies[j];
        struct np_counters sum;
        uint64_t total = 0;
        if (!produces(p, CONNS)) continue;
        sum = np_shm_sum(p->row);
        const uint64_t *b = (const uint64_t *)((const char *)&sum + buckets_at);
        for (int i = 0; i <= n; i++) {
            total += b[i];
            series(out, bucket, p);
            if (i < n) evbuffer_add_printf(out, ",le=\"%g\"} %llu\n", bounds[i], (unsigned long long)total);
            else evbuffer_add_printf(out, ",le=\"+Inf\"} %llu\n", (unsigned long long)total);
        }
        series(out, name, p);
        evbuffer_add_printf(out, "} %.6f\n", *(const uint64_t *)((const char *)&sum + sum_at) / 1e6);
        evbuffer_add_printf(out, "%s_count{proxy=\"", name);
        label(out, p->name);
        evbuffer_add_printf(out, "\"} %llu\n", (unsigned long long)total);
    }
}

/* The process: reloads and the build. */
static void render_process(struct evbuffer *out)
{
    uint64_t reloads;
    int last_ok;

    np_shm_reloads(&reloads, &last_ok);
    header(out, "netproxy_reloads_total", "counter", "Reloads tried (SIGHUP), successful or not.");
    evbuffer_add_printf(out, "netproxy_reloads_total %llu\n", (unsigned long long)reloads);
    header(out, "netproxy_last_reload_success", "gauge", "1 when the last reload loaded (or none was tried), 0 when it failed.");
    evbuffer_add_printf(out, "netproxy_last_reload_success %d\n", last_ok);
    header(out, "netproxy_build_info", "gauge", "The running binary: always 1, its version as a label.");
    evbuffer_add_printf(out, "netproxy_build_info{version=\"%s\"} 1\n", NP_VERSION);
}

/* Is name one of the running config's proxies? (the pool table keeps rows of old configs) */
static int live_proxy(const char *name)
{
    for (int j = 0; j < live.n; j++)
        if (strcmp(live.proxies[j].name, name) == 0) return 1;
    return 0;
}

/* The pools with a queue (servers with max_conns): the clients waiting for a free server. */
static void render_queues(struct evbuffer *out)
{
    const char *proxy;
    int waiting, said = 0;

    for (int q = 0; q < NP_POOL_QUEUES; q++) {
        if (np_pool_queue_view(q, &proxy, &waiting) < 0 || !live_proxy(proxy)) continue;
        if (!said++)
            header(out, "netproxy_pool_waiting", "gauge",
                   "Clients waiting for a free pool server (every one at its max_conns).");
        evbuffer_add(out, "netproxy_pool_waiting{proxy=\"", 29);
        label(out, proxy);
        evbuffer_add_printf(out, "\"} %d\n", waiting);
    }
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
    render_queues(out);
}

static void on_metrics(struct evhttp_request *req, void *arg)
{
    struct evbuffer *out = evbuffer_new();

    if (!out) {
        evhttp_send_error(req, HTTP_INTERNAL, NULL);
        return;
    }
    render(out);
    render_ends(out);
    render_refusals(out);
    render_histogram(out, "netproxy_connection_duration_seconds", "Connections' life, accept to end.",
                     offsetof(struct np_counters, duration), offsetof(struct np_counters, duration_sum_us),
                     np_duration_bounds, NP_DURATION_BUCKETS);
    render_histogram(out, "netproxy_connect_time_seconds", "Connects to the server that succeeded: how long they took.",
                     offsetof(struct np_counters, connect), offsetof(struct np_counters, connect_sum_us),
                     np_connect_bounds, NP_CONNECT_BUCKETS);
    render_pools(out);
    render_process(out);
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
