/* UDP proxies: listening UDP sockets shared by address (a reload takes them over; with
 * workers a SO_REUSEPORT group per address, a socket per worker index, udp_group.h), and
 * flows: one per client address:port, each with its own connected socket towards the
 * server (or a Lua datagram service), ended by udp_idle_timeout or, past max_flows, by
 * eviction of the longest idle. */
#ifndef NP_UDP_H
#define NP_UDP_H
#include "end.h"

#include <stddef.h>
#include <lua.h>
#include <sys/socket.h>

struct np_proxy;

/* What the owner of the proxies (server.c) decides and is told, given at np_udp_bind. */
struct np_udp_ops {
    /* NULL when a new flow from sa may start on p, else why not; a started flow is
     * reported ended through done() exactly once. */
    const char *(*admit)(void *arg, struct np_proxy *p, const struct sockaddr *sa);
    void (*done)(void *arg, struct np_proxy *p);
};

/* Binds (or takes over, by address) the UDP sockets of host:port for proxy p, whose
 * settings are read from its Lua table: with workers > 1, a group of that many sockets per
 * address (grown, never shrunk, when a reload asks for more) steering each client to one.
 * A port 0 is a new socket, except the one an upgrade passed for a proxy of p's name on
 * the same host. 0, or -1 with a message in err. */
int np_udp_bind(struct np_proxy *p, const char *host, int port, int workers,
                const struct np_udp_ops *ops, void *arg, char *err, size_t errlen);

/* New flows on p's sockets go to p from now on (a reload's new config). */
void np_udp_serve(struct np_proxy *p);

/* p lets its sockets go (its config is retired or freed); the last user closes a socket,
 * and flows on a closed socket end (end=drained). Its flows keep running otherwise. */
void np_udp_release(struct np_proxy *p, int say);

/* Ends every flow of p now, as how. */
void np_udp_close_all(struct np_proxy *p, enum np_end how, const char *why);

/* A serving process starts reading: worker number index keeps socket index of each group
 * (the kernel steers every datagram of a client to it) and closes its copies of the
 * others; a single process (index 0) reads its one socket. */
void np_udp_start(int index);

/* No new flows (a drain or a stop): sockets are no longer read; replies of live flows
 * still go out through them until their flows end. */
void np_udp_stop_reading(void);

/* The passed sockets (np_bound_adopt: an upgrade's UDP ones) are held, by address, until
 * np_udp_adopted_done; np_udp_bind takes them over. Returns how many sockets were passed
 * (0 once the listeners' adoption at the start took them). Those no proxy took are closed
 * with a warning by np_udp_adopted_done. */
int np_udp_adopt(void);
void np_udp_adopted_done(void);

/* Registers core.flow_send and core.flow_close in the table on the top of L. */
void np_udp_open(lua_State *L);

/* The proxy owns this (proxy.h); freed by np_udp_release. */
struct np_udp;

#endif
