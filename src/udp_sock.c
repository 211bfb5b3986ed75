/* The listening UDP sockets: entries of the registry of bound sockets (bound.c: shared by
 * address with references, a reload keeps the sockets its new config names again, the
 * hand-over to an upgraded binary), each a group (udp_group.c); their reading, armed and
 * disarmed. */
#include "udp_impl.h"
#include "log.h"
#include "loop.h"
#include "proxy.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int np_udp_started;

/* ---------------------------------------------------------------- sockets by address */

static void usock_disarm(struct np_usock *ls)
{
    if (ls->armed) event_del(&ls->ev);
    ls->armed = 0;
}

void np_usock_arm(struct np_usock *ls)
{
    if (ls->fd < 0 || ls->armed) return;
    event_assign(&ls->ev, np_base, ls->fd, EV_READ | EV_PERSIST, np_udp_on_readable, ls);
    event_add(&ls->ev, NULL);
    ls->armed = 1;
}

/* The sockets of this process, one after the other (the registry's UDP entries taken). */
static struct np_usock *next_usock(struct np_usock *prev)
{
    struct np_bound *b = prev ? prev->b : NULL;

    while ((b = np_bound_next(NP_BOUND_UDP, b)) && !b->owner) {}
    return b ? b->owner : NULL;
}

/* For a hand-over: the proxy whose flows it serves (a port 0 is taken over by name). */
static const char *served_name(const struct np_bound *b)
{
    const struct np_usock *ls = b->owner;

    return ls->serve ? ls->serve->p->name : "";
}

/* The last user went: its flows end (they cannot outlive their socket), and it goes. */
static void release(struct np_bound *b, int say)
{
    struct np_usock *ls = b->owner;

    if (say && ls->fd >= 0) np_log(NP_NOTICE, "no longer listening on udp %s", ls->addr);
    usock_disarm(ls);
    for (size_t i = 0; i < ls->nbuckets; i++)
        while (ls->buckets[i]) np_flow_close(ls->buckets[i], NP_END_DRAINED, "%s", "no longer listening");
    free(ls->buckets);                  /* flows being reaped no longer look at it */
    free(ls);
}

static const struct np_bound_ops usock_ops = { .name = served_name, .release = release };

/* The socket of entry b (a new or a passed one): 0, or -1 (out of memory). */
static int own(struct np_bound *b)
{
    struct np_usock *ls;

    if (b->owner) return 0;
    if (!(ls = calloc(1, sizeof *ls))) return -1;
    ls->b = b;
    ls->addr = b->addr;
    ls->fd = b->fds[0];
    ls->reading = 1;
    np_bound_own(b, &usock_ops, ls);
    return 0;
}

struct np_usock *np_usock_get(const struct sockaddr *sa, socklen_t len, int n, const char *name,
                              char *err, size_t errlen)
{
    char want[NP_ADDRSTRLEN];
    struct np_bound *b = np_bound_find(NP_BOUND_UDP, sa, len, name);
    struct np_usock *ls;
    int steering;

    np_addr_format(sa, len, want, sizeof want);
    if (b) {
        np_bound_hold(b);
        if (own(b) < 0) {
            snprintf(err, errlen, "cannot listen on udp %s: %s", want, strerror(ENOMEM));
            np_bound_drop(b, 0);
            return NULL;
        }
        ls = b->owner;
        if (np_udp_group_resize(b, &ls->steering, n) == 0) return ls;
        snprintf(err, errlen, "cannot listen on udp %s with %d sockets: %s", b->addr, n, strerror(errno));
        np_bound_drop(b, 0);
        return NULL;
    }
    if (!(b = np_bound_new(NP_BOUND_UDP))) {
        snprintf(err, errlen, "cannot listen on udp %s: %s", want, strerror(ENOMEM));
        return NULL;
    }
    if (np_udp_group_open(b, &steering, sa, len, n) < 0 || own(b) < 0) {
        snprintf(err, errlen, "cannot listen on udp %s: %s", want, strerror(b->n ? ENOMEM : errno));
        np_bound_drop(b, 0);
        return NULL;
    }
    ls = b->owner;
    ls->steering = steering;
    np_bound_named(b);
    return ls;
}

void np_usock_put(struct np_usock *ls, int say)
{
    np_bound_drop(ls->b, say);
}

/* ---------------------------------------------------------------- the hand-over (SIGUSR2) */

int np_udp_adopt(void)
{
    return np_bound_adopt();    /* done once: at the start, with the listeners (main.c) */
}

void np_udp_adopted_done(void)
{
    np_bound_passed_done(NP_BOUND_UDP);
}

/* ---------------------------------------------------------------- reading */

void np_udp_start(int index)
{
    np_udp_started = 1;
    for (struct np_usock *ls = next_usock(NULL); ls; ls = next_usock(ls)) {
        ls->fd = np_bound_keep(ls->b, index);
        ls->steering = 0;
        np_usock_arm(ls);
    }
}

void np_udp_stop_reading(void)
{
    for (struct np_usock *ls = next_usock(NULL); ls; ls = next_usock(ls)) {
        usock_disarm(ls);
        ls->reading = 0;
    }
}
