/* Upstream pools: the health and load of every pool server, shared by all workers. A table in
 * shared memory, mapped before the workers fork, a row per proxy name and server address (so a
 * server's state survives a reload while it stays configured). Updates are atomic; only
 * adding a row takes a lock. */
#ifndef NP_POOL_H
#define NP_POOL_H
#include <lua.h>
#include <stdint.h>

#define NP_POOL_ROWS 1024
#define NP_POOL_QUEUES 256      /* pools with a queue (max_conns), by proxy name */

/* Maps the table (before any fork): a new one, or the one a binary upgrade handed over
 * (NETPROXY_POOL_FD). 0, or -1. */
int np_pool_init(void);
int np_pool_fd(void);

/* The row of (proxy, server), added on first use; -1 when the table is full or not mapped. */
int np_pool_row(const char *proxy, const char *server);
/* The row of (proxy, server) if there is one, else -1 (nothing added). */
int np_pool_find(const char *proxy, const char *server);

/* Runtime control (netproxy ctl, core.set_server): a server's state, weight, and servers
 * added or deleted while running. Each change counts in np_pool_changes(), which every
 * worker's pools watch (netproxy.pool) to take it at their next choice. */
enum { NP_POOL_READY, NP_POOL_DRAIN, NP_POOL_MAINT };
const char *np_pool_state_name(int state);
int np_pool_state_parse(const char *name);      /* -1 for an unknown name */
int np_pool_changes(void);
/* state -1 and weight -1 leave that one as it is; weight 0 is the config's. 0, or -1. */
int np_pool_set(int row, int state, int weight);
/* A server added to a proxy's pool at runtime (or a deleted one back): its row, or -1.
 * dns: added from a DNS answer (a pool's resolve or srv), not by an operator. */
int np_pool_add(const char *proxy, const char *server, int weight, int backup, int dns);
/* Out of its pool: no new connections; the open ones go on. */
int np_pool_delete(int row);


/* A connection to a row's server is open (active and connections counted) / has ended. */
void np_pool_acquire(int row);
void np_pool_release(int row);

/* np_pool_hold when fewer than max connections hold the row's server now (all workers), in
 * one atomic step: 1, or 0 (the server is full). np_pool_release gives it back. */
int np_pool_take(int row, int max);

/* A pool's queue of clients waiting for a free server (max_conns), shared by all workers:
 * its index for proxy, added on first use, or -1 (the table is full or not mapped). */
int np_pool_queue(const char *proxy);
/* One more waiting when fewer than max wait now: 1, or 0 (the queue is full). */
int np_pool_wait(int q, int max);
void np_pool_unwait(int q);
/* For /metrics: 0 and the queue's proxy and count when q is in use, else -1. */
int np_pool_queue_view(int q, const char **proxy, int *waiting);

/* The two halves of np_pool_acquire, for a UDP flow, which holds its server from its choice
 * on (active: leastconn counts it at once) but has reached it only once the server replied
 * or, without a reply, did not refuse (connections). np_pool_release ends the hold. */
void np_pool_hold(int row);
void np_pool_count(int row);

/* The active checks' epoch: a new one for each start of them, the newest. */
int np_pool_new_epoch(void);
int np_pool_epoch(void);

/* What /metrics and core.stats() show of a row. */
struct np_pool_view {
    const char *proxy, *server;
    int up;
    uint64_t active, connections, failures;
    int state, weight, added, deleted;  /* runtime control: see np_pool_set */
};

/* Fills *v for row (0 .. NP_POOL_ROWS-1); 0 when the row is in use, -1 when not. */
int np_pool_view(int row, struct np_pool_view *v);

/* core.pool_* (the Lua side is netproxy.pool): registered into the table on top of L. */
void np_pool_open(lua_State *L);

#endif
