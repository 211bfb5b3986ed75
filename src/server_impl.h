/* What server.c, server_accept.c and server_config.c share: the steps one file starts and
 * another carries on. Not for other files. */
#ifndef NP_SERVER_IMPL_H
#define NP_SERVER_IMPL_H
#include "server.h"
#include "listener.h"
#include "udp.h"

#include <stddef.h>
#include <sys/socket.h>
#include <event2/util.h>
#include <lua.h>

/* server.c: a config's teardown (its waiting clients refused, listeners released, Lua
 * state's timers and checks stopped); a retired config whose last connection has gone;
 * the loop ended when the process is done; a retired config's drain_timeout. */
void np_server_config_free(struct np_config *g);
void np_server_config_done(struct np_config *g);
void np_server_maybe_finish(void);
void np_server_on_drain_deadline(evutil_socket_t fd, short what, void *arg);

/* server_accept.c: p's waiting clients served or refused (all at once when gone is set);
 * a listener's new client; the guards and live count of a new UDP flow. */
void np_server_serve_waiting(struct np_proxy *p, int gone);
void np_server_on_client(void *arg, struct np_listener *l, int fd, const struct sockaddr *sa, socklen_t len);
extern const struct np_udp_ops np_server_udp_ops;

/* server_config.c: a new config from the one on L's stack top, its listeners bound; NULL
 * with err (L is still the caller's). */
struct np_config *np_server_config_new(lua_State *L, char *err, size_t errlen);

#endif
