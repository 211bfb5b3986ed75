/* netproxy.core: the whole C surface that Lua sees. */
#ifndef NP_BINDING_H
#define NP_BINDING_H
#include <lua.h>

int luaopen_netproxy_core(lua_State *L);

#endif
