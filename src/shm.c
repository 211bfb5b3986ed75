/* Counters shared by the worker processes: one slot per worker (a single writer each, so no
 * locks), a row per proxy name (so counters survive a reload); the master sums them. */
#include "shm.h"

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define RETIRED (NP_MAX_SLOTS)  /* where the counters of workers gone are kept */

struct region {
    char names[NP_MAX_PROXIES][64];
    struct {
        int claimed, ready;     /* taken by a process (CAS), and its name written */
        char name[32];
    } reasons[NP_MAX_REASONS];
    int slot_used[NP_MAX_SLOTS];
    double beat[NP_MAX_SLOTS];  /* when each slot's loop last turned */
    uint64_t next_id;           /* the connection and flow ids of every worker (end.c) */
    uint64_t reloads, reload_ok;        /* SIGHUPs taken, and whether the last one loaded */
    struct np_counters c[NP_MAX_SLOTS + 1][NP_MAX_PROXIES];
};

static struct region *shm;
static int my_slot, shm_fd = -1;

/* The region lives in a memfd, so that a binary upgrade (exec) maps the same one. */
int np_shm_init(void)
{
    const char *inherited = getenv("NETPROXY_SHM_FD");
    int fresh = inherited == NULL;

    shm_fd = fresh ? memfd_create("netproxy-counters", MFD_CLOEXEC) : atoi(inherited);
    if (shm_fd < 0 || (fresh && ftruncate(shm_fd, sizeof *shm) < 0)) return -1;
    shm = mmap(NULL, sizeof *shm, PROT_READ | PROT_WRITE, MAP_SHARED, shm_fd, 0);
    if (shm == MAP_FAILED) {
        shm = NULL;
        return -1;
    }
    if (fresh) {
        shm->slot_used[0] = 1;  /* the process itself, until it forks */
        shm->reload_ok = 1;     /* no reload yet: none failed */
    }
    unsetenv("NETPROXY_SHM_FD");
    return 0;
}

int np_shm_fd(void)
{
    return shm_fd;
}

int np_shm_row(const char *name)
{
    for (int i = 0; i < NP_MAX_PROXIES; i++) {
        if (shm->names[i][0] == '\0') {
            strncpy(shm->names[i], name, sizeof shm->names[i] - 1);
            return i;
        }
        if (strncmp(shm->names[i], name, sizeof shm->names[i] - 1) == 0) return i;
    }
    return -1;
}

const double np_duration_bounds[NP_DURATION_BUCKETS] = {
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800, 3600,
};
const double np_connect_bounds[NP_CONNECT_BUCKETS] = {
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5,
};

void np_shm_observe(uint64_t *buckets, uint64_t *sum_us, const double *bounds, int n, double v)
{
    int i = 0;

    if (v < 0) v = 0;
    while (i < n && v > bounds[i]) i++;
    buckets[i]++;
    *sum_us += (uint64_t)(v * 1e6 + 0.5);
}

/* Reasons are named at run time by any worker (a guard added later needs no table here):
 * an entry is claimed by compare-and-swap, then its name written, then marked ready. */
int np_shm_reason(const char *reason)
{
    for (int i = 0; shm && i < NP_MAX_REASONS; i++) {
        int free_entry = 0;
        if (__atomic_load_n(&shm->reasons[i].ready, __ATOMIC_ACQUIRE)) {
            if (!strncmp(shm->reasons[i].name, reason, sizeof shm->reasons[i].name - 1)) return i;
            continue;
        }
        if (__atomic_compare_exchange_n(&shm->reasons[i].claimed, &free_entry, 1, 0,
                                        __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
            strncpy(shm->reasons[i].name, reason, sizeof shm->reasons[i].name - 1);
            __atomic_store_n(&shm->reasons[i].ready, 1, __ATOMIC_RELEASE);
            return i;
        }
        /* another process is writing it: wait for its name, it may be ours */
        while (!__atomic_load_n(&shm->reasons[i].ready, __ATOMIC_ACQUIRE)) {}
        if (!strncmp(shm->reasons[i].name, reason, sizeof shm->reasons[i].name - 1)) return i;
    }
    return -1;
}

const char *np_shm_reason_name(int i)
{
    if (!shm || i < 0 || i >= NP_MAX_REASONS || !__atomic_load_n(&shm->reasons[i].ready, __ATOMIC_ACQUIRE)) return NULL;
    return shm->reasons[i].name;
}

void np_shm_use_slot(int slot) { my_slot = slot; }
int np_shm_slot(void) { return my_slot; }

/* to += from, every counter (struct np_counters is uint64_t fields only). */
static void add(struct np_counters *to, const struct np_counters *from)
{
    uint64_t *t = (uint64_t *)to;
    const uint64_t *f = (const uint64_t *)from;

    for (size_t i = 0; i < sizeof *to / sizeof *t; i++) t[i] += f[i];
}

int np_shm_take_slot(void)
{
    for (int i = 1; i < NP_MAX_SLOTS; i++) {
        if (!shm->slot_used[i]) {
            shm->slot_used[i] = 1;
            return i;
        }
    }
    return -1;
}

void np_shm_release_slot(int slot)
{
    for (int row = 0; row < NP_MAX_PROXIES; row++) {
        struct np_counters *from = &shm->c[slot][row], *to = &shm->c[RETIRED][row];
        add(to, from);
        to->active -= from->active;     /* its live connections and flows died with it */
        to->flows_active -= from->flows_active;
        memset(from, 0, sizeof *from);
    }
    shm->slot_used[slot] = 0;
}

struct np_counters *np_shm_counters(int row)
{
    return &shm->c[my_slot][row];
}

void np_shm_count_refusal(int row, const char *reason)
{
    int i = np_shm_reason(reason);

    if (i >= 0) np_shm_counters(row)->refusals[i]++;
}

struct np_counters np_shm_sum(int row)
{
    struct np_counters sum;

    memset(&sum, 0, sizeof sum);
    for (int s = 0; s <= NP_MAX_SLOTS; s++) {
        const struct np_counters *c = &shm->c[s][row];
        add(&sum, c);
    }
    return sum;
}

/* One sequence for every process and generation: an atomic add on the shared region, so
 * that two log lines with the same #id are the same connection. Before the region is
 * mapped (a --check run), a process's own count. */
uint64_t np_shm_next_id(void)
{
    static uint64_t local;

    if (!shm) return ++local;
    return __atomic_add_fetch(&shm->next_id, 1, __ATOMIC_RELAXED);
}

void np_shm_count_reload(int ok)
{
    if (!shm) return;
    __atomic_add_fetch(&shm->reloads, 1, __ATOMIC_RELAXED);
    __atomic_store_n(&shm->reload_ok, (uint64_t)(ok != 0), __ATOMIC_RELAXED);
}

void np_shm_reloads(uint64_t *count, int *last_ok)
{
    *count = shm ? __atomic_load_n(&shm->reloads, __ATOMIC_RELAXED) : 0;
    *last_ok = shm ? __atomic_load_n(&shm->reload_ok, __ATOMIC_RELAXED) != 0 : 1;
}

void np_shm_beat(double now)
{
    shm->beat[my_slot] = now;
}

double np_shm_last_beat(int slot)
{
    return shm->beat[slot];
}

void np_shm_set_beat(int slot, double now)
{
    shm->beat[slot] = now;
}
