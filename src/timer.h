/* core.sleep(): a connector waits without blocking the loop. */
#ifndef NP_TIMER_H
#define NP_TIMER_H
#include <lua.h>

/* Adds sleep() to the module table on the top of the stack. */
void np_timer_open(lua_State *L);

#endif
