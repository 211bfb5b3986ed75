/* Counters shared by the worker processes: one slot per worker (a single writer each, so no
 * locks), a row per proxy name (so counters survive a reload); the master sums them. */
#ifndef NP_SHM_H
#define NP_SHM_H
#include <stdint.h>

#define NP_MAX_SLOTS 64        /* workers alive at once, old and new generations together */
#define NP_MAX_PROXIES 256
#define NP_SHM_ENDS 24          /* room for end.h's words (end.c checks NP_END_COUNT fits) */
#define NP_MAX_REASONS 16       /* refusal reasons: "acl", "max_clients", ... (np_shm_reason) */
#define NP_DURATION_BUCKETS 16  /* the histograms' bounds (np_duration_bounds), +Inf aside */
#define NP_CONNECT_BUCKETS 13

/* The histograms' upper bounds, in seconds (docs/operations.md lists them). */
extern const double np_duration_bounds[NP_DURATION_BUCKETS];
extern const double np_connect_bounds[NP_CONNECT_BUCKETS];

struct np_counters {
    uint64_t opened, closed, active, refused, errors, bytes_in, bytes_out;
    /* UDP (udp.c): flows, and datagrams carried toward the server (in) and the client (out) */
    uint64_t flows_opened, flows_closed, flows_active, flows_evicted;
    uint64_t datagrams_in, datagrams_out, datagrams_dropped;
    /* connections by how they ended (enum np_end), and clients refused by reason */
    uint64_t ended[NP_SHM_ENDS];
    uint64_t refusals[NP_MAX_REASONS];
    /* histograms: a count per bucket (not cumulative: metrics.c adds them up), the sum in us */
    uint64_t duration[NP_DURATION_BUCKETS + 1], duration_sum_us;
    uint64_t connect[NP_CONNECT_BUCKETS + 1], connect_sum_us;
};

/* Counts v seconds into a histogram of n bounds (buckets has n + 1: the last is +Inf). */
void np_shm_observe(uint64_t *buckets, uint64_t *sum_us, const double *bounds, int n, double v);

/* The index of a refusal reason (a short word, the metric's label), given one on first use
 * by any process; -1 when the table is full. And the name at an index, or NULL. */
int np_shm_reason(const char *reason);
const char *np_shm_reason_name(int i);

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

/* A client of row turned away for reason ("acl", "max_clients", "session": accept() or a
 * connector's rules; a guard may add its own word). */
void np_shm_count_refusal(int row, const char *reason);

/* This process's counters for a row. */
struct np_counters *np_shm_counters(int row);

/* The sum over all slots for a row. */
struct np_counters np_shm_sum(int row);

/* The next connection (or flow) id, unique across the workers, reloads and upgrades. */
uint64_t np_shm_next_id(void);

/* A reload was tried (ok: it loaded); and the count so far and the last one's outcome. */
void np_shm_count_reload(int ok);
void np_shm_reloads(uint64_t *count, int *last_ok);

/* The serving loop of this process's slot turned at now (the watchdog reads it). */
void np_shm_beat(double now);
void np_shm_set_beat(int slot, double now);
double np_shm_last_beat(int slot);

#endif
