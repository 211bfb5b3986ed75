/* Timers outside any connection: core.every(s, fn) and core.after(s, fn). Each firing runs
 * fn in a task of its own (cosockets and core.sleep work there). A timer belongs to the Lua
 * state it was created in (a config generation's): that config cancels them all when it
 * retires. */
#ifndef NP_TIMER_H
#define NP_TIMER_H
#include "call.h"

#include <stddef.h>
#include <lua.h>

/* Adds every and after to the table on the top of L (netproxy.core). */
void np_timer_open(lua_State *L);

/* The limits of each resume of the timers made from now on: the running config's. */
void np_timer_set_limits(const struct np_limits *lim);

/* Cancels every timer created in the Lua state main (a running one is halted). */
void np_timer_cancel_all(lua_State *main);

#endif
