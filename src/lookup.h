/* core.resolve and core.reverse: a DNS lookup as the pending operation of the running task. */
#ifndef NP_LOOKUP_H
#define NP_LOOKUP_H
#include "task.h"

#include <lua.h>

/* core.resolve for t's coroutine L: pushes a list of host's addresses ("192.0.2.1",
 * "2001:db8::1", each once) or nil, "resolve: why" | "timeout", and returns their count, or
 * yields until the resolver answers or timeout seconds (0: no limit) pass. */
int np_lookup_resolve(lua_State *L, struct np_task *t, const char *host, double timeout);

/* core.reverse: the name of an IP address (a PTR query), the same way. */
int np_lookup_reverse(lua_State *L, struct np_task *t, const char *ip, double timeout);

#endif
