/* What sock.c (cosocket I/O) and sock_connect.c (core.connect) share. Not for other files. */
#ifndef NP_SOCK_IMPL_H
#define NP_SOCK_IMPL_H
#include "sock.h"
#include "dial.h"

#define SOCK_MT "netproxy.sock"
#define SOCK_DONE_MT "netproxy.sock.done"   /* the same methods, no __gc: np_sock_forget */

/* A cosocket's connect while under way: the dial, and what it reads until done. */
struct np_sock_dial {
    struct np_dial d;
    struct evutil_addrinfo one;         /* the one address of an IP literal or a unix path */
    struct sockaddr_storage one_addr, source;
};

int np_sock_push_fail(lua_State *L, const char *err);
/* A new cosocket of o, pushed, with no fd yet. */
struct np_sock *np_sock_new(lua_State *L, struct np_sock_owner *o);
void np_sock_set_fds(struct np_sock *s, int rfd, int wfd);
/* Anchors the userdata at idx, marks the coroutine as waiting, and yields. */
int np_sock_yield(lua_State *L, struct np_sock *s, int idx);
/* Hands nresults values, already pushed on the owner's coroutine, back to it. */
void np_sock_resume(struct np_sock *s, int nresults);

#endif
