/* server{ on_log }: Net::Server's write_to_log_hook. The log lines of a serving process are
 * handed to a Lua function instead of being written, from the loop (never inside the call
 * that logged), in order. A line the function cannot take (it is itself logging, or the
 * queue is full) is written as usual; a function that fails is not called again (until a
 * reload) and its line, and every one after it, is written as usual. */
#ifndef NP_LOGSINK_H
#define NP_LOGSINK_H
#include "call.h"

#include <stddef.h>
#include <lua.h>

/* Hands the lines to the function at registry ref fn_ref in L, each call under lim;
 * LUA_NOREF: back to writing them (what is queued is
 * written first). */
void np_logsink_use(lua_State *L, int fn_ref, const struct np_limits *lim);

/* Writes what is still queued, as usual (a process about to exit). */
void np_logsink_flush(void);

#endif
