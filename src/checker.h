/* Active health checks of upstream pools: one checker for all workers. The serving process
 * whose turn it is (worker 0, or the single process) starts netproxy.pool's checks in its
 * current config's Lua state, one task per checked server; a newer start anywhere (a reload,
 * a replaced worker 0) ends the older ones at their next round (the epoch in pool.c). The
 * master never calls this: it runs no user Lua. */
#ifndef NP_CHECKER_H
#define NP_CHECKER_H
#include "proxy.h"

#include <lua.h>

/* Starts the checks of the config whose state is L and whose proxies are given (each check
 * runs under its proxy's limits): calls netproxy.pool.start_checks(epoch). */
void np_checker_start(lua_State *L, const struct np_proxy *proxies, int nproxies);

/* L is about to be closed: its check tasks end now. */
void np_checker_stop(lua_State *L);

/* core.pool_spawn(proxy, fn, ...) and core.pool_epoch(): registered into the table on top of L. */
void np_checker_open(lua_State *L);

#endif
