/* Idle timeouts, one list and one timer per timeout length: the list is kept in the order
 * of last activity, so its head expires first and the timer waits for the head alone. */
#include "idle.h"
#include "loop.h"

#include <event2/event.h>
#include <event2/event_struct.h>
#include <stdlib.h>

struct np_idle_list {
    double timeout;
    struct np_idle *head, *tail;
    struct event timer;
    int armed;
    struct np_idle_list *next;
};

static struct np_idle_list *lists;

static void on_timer(evutil_socket_t fd, short what, void *arg);

static void arm(struct np_idle_list *l)
{
    struct timeval tv;

    if (!l->head) {
        if (l->armed) event_del(&l->timer);
        l->armed = 0;
        return;
    }
    if (l->armed) return;           /* set for a head at least as old: it fires early, not late */
    tv = np_tv(l->head->last + l->timeout - np_now());
    evtimer_add(&l->timer, &tv);
    l->armed = 1;
}

static void unlink_member(struct np_idle *m)
{
    struct np_idle_list *l = m->list;

    if (m->prev) m->prev->next = m->next;
    else l->head = m->next;
    if (m->next) m->next->prev = m->prev;
    else l->tail = m->prev;
    m->prev = m->next = NULL;
}

static void append(struct np_idle_list *l, struct np_idle *m)
{
    m->prev = l->tail;
    m->next = NULL;
    if (l->tail) l->tail->next = m;
    else l->head = m;
    l->tail = m;
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    struct np_idle_list *l = arg;
    double now = np_now();

    l->armed = 0;
    while (l->head && l->head->last + l->timeout <= now) {
        struct np_idle *m = l->head;
        unlink_member(m);
        m->list = NULL;
        m->expired(m);
    }
    arm(l);
}

static struct np_idle_list *list_for(double timeout)
{
    struct np_idle_list *l;

    for (l = lists; l; l = l->next)
        if (l->timeout == timeout) return l;
    if (!(l = calloc(1, sizeof *l))) return NULL;
    l->timeout = timeout;
    evtimer_assign(&l->timer, np_base, on_timer, l);
    l->next = lists;
    lists = l;
    return l;
}

int np_idle_join(struct np_idle *m, double timeout, void (*expired)(struct np_idle *m))
{
    struct np_idle_list *l = list_for(timeout);

    if (!l) return -1;
    np_idle_leave(m);
    m->list = l;
    m->expired = expired;
    m->last = np_now();
    append(l, m);
    arm(l);
    return 0;
}

void np_idle_touch(struct np_idle *m)
{
    struct np_idle_list *l = m->list;

    m->last = np_now();
    if (!l || l->tail == m) return;
    unlink_member(m);
    append(l, m);
}

void np_idle_leave(struct np_idle *m)
{
    struct np_idle_list *l = m->list;

    if (!l) return;
    unlink_member(m);
    m->list = NULL;
    arm(l);
}
