/* SOCKS5 UDP ASSOCIATE (RFC 1928 section 7): a relay socket for one client, datagrams with
 * the SOCKS UDP header toward any target the socks5 connector allows, replies back with the
 * header naming their source; it lives as long as its TCP control connection. */
#ifndef NP_UDP_ASSOC_H
#define NP_UDP_ASSOC_H
#include <lua.h>

/* Registers core.udp_associate in the table on the top of L. */
void np_udp_assoc_open(lua_State *L);

#endif
