/* Idle upstream connections kept for reuse (sock:setkeepalive, OpenResty's connection pool):
 * per worker process, by pool name, each pool bounded. An idle socket belongs to no task
 * and no Lua state: it is a descriptor (and its TLS session) the pool holds until a task
 * takes it, its idle time runs out, or the peer closes it. */
#ifndef NP_SOCKPOOL_H
#define NP_SOCKPOOL_H
#include <openssl/ssl.h>

/* Takes fd (and ssl, may be NULL) into pool name, idle for at most idle seconds (0: no
 * limit), the pool holding at most size sockets (the oldest is closed to make room).
 * reused: how many times this connection was handed out before. Always takes ownership:
 * returns 0, or -1 (out of memory: fd and ssl were closed). */
int np_sockpool_put(const char *name, int fd, SSL *ssl, int reused, double idle, int size);

/* Hands out the most recently pooled socket of name that is still healthy (no EOF, no byte
 * waiting, no error: one that is not is closed, never handed out): its fd, *ssl, *reused.
 * -1 when there is none. */
int np_sockpool_take(const char *name, SSL **ssl, int *reused);

/* How many idle sockets pool name holds (all pools: NULL). */
int np_sockpool_count(const char *name);

/* Closes every idle socket (the process stops). */
void np_sockpool_clear(void);

#endif
