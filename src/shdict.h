/* Shared dicts: server{ shared = { name = "1m" } } and core.shared(name). Each dict is a
 * shared mapping made before the workers are forked (in the master, or a single process),
 * so every worker sees the same one; a reload keeps the dicts it already has (contents and
 * size), and adds the new names. Entries have a fixed size; a full dict evicts its least
 * recently used entry. A process-shared robust mutex guards each dict. */
#ifndef NP_SHDICT_H
#define NP_SHDICT_H
#include <stddef.h>
#include <lua.h>

/* The dict called name, of size bytes: made now, or the one made before (its size kept).
 * 0, or -1 with err. */
int np_shdict_define(const char *name, size_t size, char *err, size_t errlen);

/* Adds shared to the table on the top of L (netproxy.core). */
void np_shdict_open(lua_State *L);

#endif
