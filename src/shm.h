/* Counters shared by the worker processes: one slot per worker (a single writer each, so no
 * locks), a row per proxy name (so counters survive a reload); the master sums them. */
#ifndef NP_SHM_H
#define NP_SHM_H
#include <stdint.h>

#define NP_MAX_SLOTS 64        /* workers alive at once, old and new generations together */
#define NP_MAX_PROXIES 256

struct np_counters {
    uint64_t opened, closed, active, refused, errors, bytes_in, bytes_out;
    /* UDP (udp.c): flows, and datagrams carried toward the server (in) and the client (out) */
    uint64_t flows_opened, flows_closed, flows_active, flows_evicted;
    uint64_t datagrams_in, datagrams_out, datagrams_dropped;
    /* clients turned away by per_source / per_user, by enum np_limit_why (limits.h; [0] unused) */
    uint64_t limited[6];
};

/* Maps the shared region (before any fork): a new one, or the one a binary upgrade handed
 * over (NETPROXY_SHM_FD). 0, or -1. */
int np_shm_init(void);

/* The region's memfd (close-on-exec), for an upgrade to hand over. */
int np_shm_fd(void);

/* The row of a proxy name, given one on first use; -1 when the table is full. */
int np_shm_row(const char *name);

/* Which slot this process writes (0 in a single process). */
void np_shm_use_slot(int slot);
int np_shm_slot(void);

/* A free slot for a new worker, or -1; and giving it back when the worker is gone: its
 * cumulative counters are kept (folded into a retired slot), its active count dropped. */
int np_shm_take_slot(void);
void np_shm_release_slot(int slot);

/* This process's counters for a row. */
struct np_counters *np_shm_counters(int row);

/* The sum over all slots for a row. */
struct np_counters np_shm_sum(int row);

/* The serving loop of this process's slot turned at now (the watchdog reads it). */
void np_shm_beat(double now);
void np_shm_set_beat(int slot, double now);
double np_shm_last_beat(int slot);

#endif
