/* Idle upstream connections by pool name (sockpool.h). Each idle socket waits for
 * readability with its idle time as the timeout: a byte or an EOF from an idle peer means it
 * is no longer usable (a server that closed it, or talks out of turn), so it is closed at
 * once, like the end of its idle time. A socket is checked again when it is taken, since the
 * peer's FIN may be in flight while this loop turn runs. */
#include "sockpool.h"
#include "loop.h"

#include <errno.h>
#include <event2/event.h>
#include <event2/event_struct.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

struct idle_sock {
    int fd;
    SSL *ssl;
    int reused;
    struct event ev;
    struct pool *pool;
    struct idle_sock *newer, *older;
};

struct pool {
    struct pool *next;
    struct idle_sock *newest, *oldest;
    int count;
    char name[];
};

static struct pool *pools;

static struct pool *find(const char *name, int make)
{
    struct pool *p;
    size_t len = strlen(name);

    for (p = pools; p; p = p->next)
        if (strcmp(p->name, name) == 0) return p;
    if (!make || !(p = calloc(1, sizeof *p + len + 1))) return NULL;
    memcpy(p->name, name, len + 1);
    p->next = pools;
    pools = p;
    return p;
}

static void unlink_idle(struct idle_sock *i)
{
    struct pool *p = i->pool;

    if (i->newer) i->newer->older = i->older;
    else p->newest = i->older;
    if (i->older) i->older->newer = i->newer;
    else p->oldest = i->newer;
    p->count--;
}

/* Out of the pool; the caller has the descriptor and session. */
static void take_out(struct idle_sock *i)
{
    event_del(&i->ev);
    unlink_idle(i);
    free(i);
}

static void discard(struct idle_sock *i)
{
    SSL *ssl = i->ssl;
    int fd = i->fd;

    take_out(i);
    if (ssl) SSL_free(ssl);
    close(fd);
}

/* An empty pool is let go: names may come and go (one per backend), their memory with them. */
static void drop_if_empty(struct pool *p)
{
    if (!p || p->count > 0) return;
    for (struct pool **pp = &pools; *pp; pp = &(*pp)->next) {
        if (*pp == p) {
            *pp = p->next;
            free(p);
            return;
        }
    }
}

/* Readable (EOF, a byte, an error) or idle too long: of no more use. */
static void on_idle_event(evutil_socket_t fd, short what, void *arg)
{
    struct idle_sock *i = arg;
    struct pool *p = i->pool;

    discard(i);
    drop_if_empty(p);
}

int np_sockpool_put(const char *name, int fd, SSL *ssl, int reused, double idle, int size)
{
    struct pool *p = find(name, 1);
    struct idle_sock *i = p ? malloc(sizeof *i) : NULL;
    struct timeval tv = np_tv(idle);

    if (!i) {
        if (ssl) SSL_free(ssl);
        close(fd);
        return -1;
    }
    if (size < 1) size = 1;
    while (p->count >= size) discard(p->oldest);
    *i = (struct idle_sock){ .fd = fd, .ssl = ssl, .reused = reused, .pool = p, .older = p->newest };
    if (p->newest) p->newest->newer = i;
    else p->oldest = i;
    p->newest = i;
    p->count++;
    event_assign(&i->ev, np_base, fd, EV_READ, on_idle_event, i);
    event_add(&i->ev, idle > 0 ? &tv : NULL);
    return 0;
}

/* Nothing to read, no EOF, no pending error: the peer has said nothing since it was pooled. */
static int healthy(int fd)
{
    char c;
    ssize_t n = recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);

    return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
}

int np_sockpool_take(const char *name, SSL **ssl, int *reused)
{
    struct pool *p = find(name, 0);

    while (p && p->newest) {
        struct idle_sock *i = p->newest;
        if (!healthy(i->fd)) {
            discard(i);
            continue;
        }
        int fd = i->fd;
        *ssl = i->ssl;
        *reused = i->reused;
        take_out(i);
        drop_if_empty(p);
        return fd;
    }
    drop_if_empty(p);
    return -1;
}

int np_sockpool_count(const char *name)
{
    int n = 0;

    for (struct pool *p = pools; p; p = p->next)
        if (!name || strcmp(p->name, name) == 0) n += p->count;
    return n;
}

void np_sockpool_clear(void)
{
    while (pools) {
        struct pool *p = pools;
        while (p->newest) discard(p->newest);
        pools = p->next;
        free(p);
    }
}
