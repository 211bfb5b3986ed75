/* What sock.c (cosocket I/O) and sock_connect.c (core.connect) share. Not for other files. */
#ifndef NP_SOCK_IMPL_H
#define NP_SOCK_IMPL_H
#include "sock.h"

#define SOCK_MT "netproxy.sock"
#define SOCK_DONE_MT "netproxy.sock.done"   /* the same methods, no __gc: np_sock_forget */

enum { PENDING, DONE };

int np_sock_push_fail(lua_State *L, const char *err);
struct np_sock *np_sock_new(lua_State *L, struct np_sock_owner *o);
void np_sock_set_fds(struct np_sock *s, int rfd, int wfd);
/* Frees the one-address list a connect made itself (a unix path, an IP literal). */
void np_sock_free_own_addr(struct np_sock *s);
/* Anchors the userdata at idx, marks the coroutine as waiting, and yields. */
int np_sock_yield(lua_State *L, struct np_sock *s, int idx);
/* Hands nresults values, already pushed on the owner's coroutine, back to it. */
void np_sock_resume(struct np_sock *s, int nresults);
/* The event callback of every cosocket: it continues whatever op is pending. */
void np_sock_on_event(evutil_socket_t fd, short what, void *arg);
/* The out-of-descriptors handler, or NULL. */
extern void (*np_sock_fd_shortage)(int err);

#endif
