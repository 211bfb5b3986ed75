/* core.sleep(seconds): the running task waits without blocking the loop; core.turn(): it
 * gives the loop a turn once it has run a slice since it was resumed. */
#ifndef NP_SLEEP_H
#define NP_SLEEP_H
#include <lua.h>

/* Adds sleep() and turn() to the module table on the top of the stack. */
void np_sleep_open(lua_State *L);

#endif
