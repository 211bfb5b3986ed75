/* What the cosocket files share (sock.c the object, sock_io.c its I/O, sock_keepalive.c its pooling,
 * sock_connect.c core.connect, sock_sniff.c core.sniff, sock_splice.c splice_to). Not for other files. */
#ifndef NP_SOCK_IMPL_H
#define NP_SOCK_IMPL_H
#include <lauxlib.h>
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

/* Stops a splice_to under way through s, either end (sock_splice.c): its pipe and buffer
 * let go, nothing resumes the coroutine (the socket closes or its owner halts). */
void np_sock_stop_splicing(struct np_sock *s);

int np_sock_push_fail(lua_State *L, const char *err);
/* A new cosocket of o, pushed, with no fd yet. */
struct np_sock *np_sock_new(lua_State *L, struct np_sock_owner *o);
void np_sock_set_fds(struct np_sock *s, int rfd, int wfd);
/* Anchors the userdata at idx, marks the coroutine as waiting, and yields. */
int np_sock_yield(lua_State *L, struct np_sock *s, int idx);
/* Hands nresults values, already pushed on the owner's coroutine, back to it. */
void np_sock_resume(struct np_sock *s, int nresults);
/* The timeout argument at idx (seconds, >= 0, else an argument error), or dflt if absent. */
double np_sock_opt_timeout(lua_State *L, int idx, double dflt);

/* A cosocket call may only wait in its owner's coroutine (else a Lua error); 0 once the
 * owner has ended (sock_io.c). */
int np_sock_check_waitable(lua_State *L, struct np_sock *s);
/* One read or write, on the socket or through its TLS session, counted (np_sock_count):
 * >0 bytes, 0 EOF (read), -1 with errno (EAGAIN: s->want_write says what to wait for;
 * else the reason in s->err). */
ssize_t np_sock_io_read(struct np_sock *s, void *buf, size_t len);
ssize_t np_sock_io_write(struct np_sock *s, const void *buf, size_t len);
/* n bytes moved on s in direction dir (0 read, 1 written): the counters and idle clock of
 * the connection that serves through it, if any. */
void np_sock_count(struct np_sock *s, int dir, ssize_t n);

/* A splice_to's event (sock_splice.c): s, one of its ends, is ready, or its wait timed out. */
void np_sock_splice_ready(struct np_sock *s, short what);
/* Whether s's splice waits on s itself (not on the other end): its event is the op's. */
int np_sock_splice_waits_on(const struct np_sock *s);

/* The loop's callbacks of a cosocket's events (sock_io.c): rev/wev while an op waits, and
 * flush_ev for the background flush of what sock:send kept. */
void np_sock_on_event(evutil_socket_t fd, short what, void *arg);
void np_sock_on_flush(evutil_socket_t fd, short what, void *arg);

/* The Lua methods of each file, registered together by np_sock_open (sock.c). */
extern const luaL_Reg np_sock_io_methods[];        /* sock_io.c */
extern const luaL_Reg np_sock_keepalive_methods[]; /* sock_keepalive.c */
extern const luaL_Reg np_sock_splice_methods[];    /* sock_splice.c */

#endif
