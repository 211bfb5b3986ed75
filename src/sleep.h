/* core.sleep(seconds): the running task waits without blocking the loop. */
#ifndef NP_SLEEP_H
#define NP_SLEEP_H
#include <lua.h>

/* Adds sleep() to the module table on the top of the stack. */
void np_sleep_open(lua_State *L);

#endif
