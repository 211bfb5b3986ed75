/* What sock.c (cosocket I/O) and sock_connect.c (core.connect) share. Not for other files. */
#ifndef NP_SOCK_IMPL_H
#define NP_SOCK_IMPL_H
#include "sock.h"
#include "call.h"
#include "dial.h"
#include "sniffer.h"

#define SOCK_MT "netproxy.sock"
#define SOCK_DONE_MT "netproxy.sock.done"   /* the same methods, no __gc: np_sock_forget */

/* A cosocket's connect while under way: the dial, and what it reads until done. */
struct np_sock_dial {
    struct np_dial d;
    struct evutil_addrinfo one;         /* the one address of an IP literal or a unix path */
    struct sockaddr_storage one_addr, source;
    double started;                     /* the loop's clock when the dial began */
};

/* A cosocket's sniff while under way: the loop, and the pick function it asks. */
struct np_sock_sniff {
    struct np_sniffer sn;
    struct np_sock *s;
    int pick_ref;                       /* in s->owner->L's registry */
    struct np_limits limits;            /* each call of pick: the task's */
    lua_State *running;                 /* the coroutine while it starts the sniff, else NULL */
    int ended_at_once;                  /* the results are on it already */
    char err[256];                      /* pick's error */
};

/* Stops a sniff under way, if any (the socket closes or its owner halts). */
void np_sock_stop_sniffing(struct np_sock *s);

int np_sock_push_fail(lua_State *L, const char *err);
/* A new cosocket of o, pushed, with no fd yet. */
struct np_sock *np_sock_new(lua_State *L, struct np_sock_owner *o);
void np_sock_set_fds(struct np_sock *s, int rfd, int wfd);
/* Anchors the userdata at idx, marks the coroutine as waiting, and yields. */
int np_sock_yield(lua_State *L, struct np_sock *s, int idx);
/* Hands nresults values, already pushed on the owner's coroutine, back to it. */
void np_sock_resume(struct np_sock *s, int nresults);

#endif
