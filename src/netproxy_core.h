/* netproxy.core: the whole C surface that Lua sees. */
#ifndef NP_NETPROXY_CORE_H
#define NP_NETPROXY_CORE_H
#include <lua.h>

int luaopen_netproxy_core(lua_State *L);

#endif
