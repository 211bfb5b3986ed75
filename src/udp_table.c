/* The two indexes of the UDP flows: each listening socket's table by client address:port
 * (chained buckets, doubled as it fills), which finds a datagram's flow, and each proxy's LRU
 * list, longest idle first, which max_flows evicts from. */
#include "udp_impl.h"

#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- the flow table */

static int same_peer(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
    if (a->ss_family != b->ss_family) return 0;
    if (a->ss_family == AF_INET) {
        const struct sockaddr_in *x = (const void *)a, *y = (const void *)b;
        return x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;
    }
    const struct sockaddr_in6 *x = (const void *)a, *y = (const void *)b;
    return x->sin6_port == y->sin6_port && !memcmp(&x->sin6_addr, &y->sin6_addr, 16) &&
           x->sin6_scope_id == y->sin6_scope_id;
}

static size_t hash_peer(const struct sockaddr_storage *a)
{
    const unsigned char *p;
    size_t n, h = 2166136261u;
    uint16_t port;

    if (a->ss_family == AF_INET) {
        p = (const void *)&((const struct sockaddr_in *)a)->sin_addr;
        n = 4;
        port = ((const struct sockaddr_in *)a)->sin_port;
    } else {
        p = (const void *)&((const struct sockaddr_in6 *)a)->sin6_addr;
        n = 16;
        port = ((const struct sockaddr_in6 *)a)->sin6_port;
    }
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 16777619u;
    h = (h ^ (port & 0xff)) * 16777619u;
    return (h ^ (port >> 8)) * 16777619u;
}

struct np_flow *np_flow_lookup(struct np_usock *ls, const struct sockaddr_storage *peer)
{
    if (!ls->nbuckets) return NULL;
    for (struct np_flow *f = ls->buckets[hash_peer(peer) & (ls->nbuckets - 1)]; f; f = f->hnext)
        if (same_peer(&f->peer, peer)) return f;
    return NULL;
}

/* Doubles the buckets once there are more flows than buckets. 0, or -1 (kept as it was). */
static int grow(struct np_usock *ls)
{
    size_t n = ls->nbuckets ? ls->nbuckets * 2 : 64;
    struct np_flow **b = calloc(n, sizeof *b);

    if (!b) return ls->nbuckets ? 0 : -1;
    for (size_t i = 0; i < ls->nbuckets; i++) {
        for (struct np_flow *f = ls->buckets[i], *next; f; f = next) {
            next = f->hnext;
            size_t j = hash_peer(&f->peer) & (n - 1);
            f->hnext = b[j];
            b[j] = f;
        }
    }
    free(ls->buckets);
    ls->buckets = b;
    ls->nbuckets = n;
    return 0;
}

int np_flow_insert(struct np_usock *ls, struct np_flow *f)
{
    if (ls->nflows >= ls->nbuckets && grow(ls) < 0) return -1;
    size_t j = hash_peer(&f->peer) & (ls->nbuckets - 1);
    f->hnext = ls->buckets[j];
    ls->buckets[j] = f;
    ls->nflows++;
    return 0;
}

void np_flow_unhash(struct np_flow *f)
{
    struct np_usock *ls = f->ls;

    if (!ls || !ls->nbuckets) return;
    for (struct np_flow **pp = &ls->buckets[hash_peer(&f->peer) & (ls->nbuckets - 1)]; *pp; pp = &(*pp)->hnext) {
        if (*pp == f) {
            *pp = f->hnext;
            ls->nflows--;
            return;
        }
    }
}

/* ---------------------------------------------------------------- LRU, per proxy */

void np_flow_lru_unlink(struct np_flow *f)
{
    struct np_udp *u = f->u;

    if (f->lprev) f->lprev->lnext = f->lnext;
    else if (u->lru_head == f) u->lru_head = f->lnext;
    else return;                        /* not a member */
    if (f->lnext) f->lnext->lprev = f->lprev;
    else u->lru_tail = f->lprev;
    f->lprev = f->lnext = NULL;
}

void np_flow_lru_append(struct np_flow *f)
{
    struct np_udp *u = f->u;

    f->lnext = NULL;
    f->lprev = u->lru_tail;
    if (u->lru_tail) u->lru_tail->lnext = f;
    else u->lru_head = f;
    u->lru_tail = f;
}

/* A datagram either way: the flow is the most recently active. */
void np_flow_touch(struct np_flow *f)
{
    np_idle_touch(&f->idle);
    if (f->u->lru_tail != f) {
        np_flow_lru_unlink(f);
        np_flow_lru_append(f);
    }
}
