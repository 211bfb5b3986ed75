/* SOCKS5 UDP ASSOCIATE (RFC 1928 section 7): a relay socket for one client, datagrams with
 * the SOCKS UDP header toward any target the socks5 connector allows, replies back with the
 * header naming their source; it lives as long as its TCP control connection. */
#ifndef NP_UDP_ASSOC_H
#define NP_UDP_ASSOC_H
#include "call.h"

#include <lua.h>
#include <stdint.h>

/* What an association needs of the connection that owns it. */
struct np_udp_assoc_owner {
    lua_State *L;               /* the connection's main Lua state */
    uint64_t id;                /* for the log */
    int row;                    /* its proxy's counters (shm.h) */
    struct np_limits limits;    /* its proxy's: each datagram's check runs under them */
    /* takes the association made (before anything that may raise): the owner frees it with
     * np_udp_assoc_release when it is freed itself */
    void (*attach)(void *arg, void *assoc);
    void *arg;
};

/* Registers the association's metatable (core.udp_associate is netproxy_core.c's). */
void np_udp_assoc_open(lua_State *L);

/* core.udp_associate's work, for owner o: reads { bind = IP, client = IP, client_port = n,
 * check = fn, conn = conn } at index 1 and pushes association,
 * "ip:port" | nil, err; the association made is handed to o->attach. check(target, conn)
 * sees each datagram's "host:port". Raises on bad arguments. */
int np_udp_assoc_new(lua_State *L, const struct np_udp_assoc_owner *o);

/* The owner is being freed: the association's sockets, lookups and Lua references go. */
void np_udp_assoc_release(void *a);

#endif
