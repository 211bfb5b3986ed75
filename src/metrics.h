/* Statistics: the per-proxy counters, served in the Prometheus text format at /metrics on
 * server{ stats = "ADDR:PORT" } (libevent's evhttp), and readable from Lua (core.stats). */
#ifndef NP_METRICS_H
#define NP_METRICS_H
#include <stddef.h>
#include <lua.h>

/* Listens on "host:port" for GET /metrics. 0, or -1 with a message in err. */
int np_metrics_listen(const char *addr, char *err, size_t errlen);
void np_metrics_close(void);

struct np_proxy;

/* The proxies whose counters are served and read from now on: the running config's. */
void np_metrics_serve(const struct np_proxy *proxies, int n);

/* Adds stats() to the module table on the top of the stack. */
void np_metrics_open(lua_State *L);

#endif
