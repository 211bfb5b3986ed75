/* Upstream pools' shared table: per (proxy, server) row, the passive health (failures in the
 * current window, down until when), the active checks' verdict and the load counters. Every
 * worker reads and writes it with __atomic builtins: a row's fields are independent words,
 * and a race between two workers counting a failure at once costs at most one count, so no
 * lock is needed to update. Adding a row takes a spin lock (once per server per config
 * load), so that two workers adding the same server cannot make two rows of it. */
#include "pool.h"

#include <lauxlib.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define NAME_MAX_LEN 200

struct row {
    char name[NAME_MAX_LEN];    /* "proxy\0server" */
    int32_t used;               /* set last, once the name is written */
    int32_t check_down;         /* the active checks say down */
    int32_t rise, fall;         /* consecutive check successes / failures */
    int32_t fails;              /* passive failures in the current window */
    int64_t window_start, down_until;   /* ms on CLOCK_MONOTONIC (the same for every process) */
    int64_t active, connections, failures;
    /* runtime control (netproxy ctl, core.set_server): what an operator said, kept across
     * reloads and binary upgrades with the row */
    int32_t state;              /* NP_POOL_READY, NP_POOL_DRAIN, NP_POOL_MAINT */
    int32_t weight;             /* 0: the config's */
    int32_t added;              /* added at runtime (not in the config): 1, or 2 as a backup;
                                 * from a DNS answer: 3, or 4 as a backup */
    int32_t deleted;            /* out of its pool (del server); its open connections go on */
};

/* A pool's queue: the clients waiting for a free server when every one is at its max_conns,
 * all workers, by proxy name. */
struct queue {
    char proxy[NAME_MAX_LEN];
    int32_t used;               /* set last, once the name is written */
    int32_t waiting;
};

struct table {
    int32_t lock;
    int32_t epoch;              /* the newest start of the active checks (checker.c) */
    int32_t changes;            /* one more per runtime change: the workers' pools look again */
    struct row rows[NP_POOL_ROWS];
    /* last, so that a table handed over by an older binary (without it) is its prefix */
    struct queue queues[NP_POOL_QUEUES];
};

static struct table *tab;
static int tab_fd = -1;

int np_pool_init(void)
{
    const char *inherited = getenv("NETPROXY_POOL_FD");
    int fresh = inherited == NULL;

    struct stat st;

    tab_fd = fresh ? memfd_create("netproxy-pools", MFD_CLOEXEC) : atoi(inherited);
    if (tab_fd < 0 || fstat(tab_fd, &st) < 0) return -1;
    /* a new table, or one an older binary made smaller: the new fields at its end read 0 */
    if ((size_t)st.st_size < sizeof *tab && ftruncate(tab_fd, sizeof *tab) < 0) return -1;
    tab = mmap(NULL, sizeof *tab, PROT_READ | PROT_WRITE, MAP_SHARED, tab_fd, 0);
    if (tab == MAP_FAILED) {
        tab = NULL;
        return -1;
    }
    unsetenv("NETPROXY_POOL_FD");
    return 0;
}

int np_pool_fd(void)
{
    return tab_fd;
}

static int64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

#define LOAD(x) __atomic_load_n(&(x), __ATOMIC_RELAXED)
#define STORE(x, v) __atomic_store_n(&(x), (v), __ATOMIC_RELAXED)
#define ADD(x, v) __atomic_add_fetch(&(x), (v), __ATOMIC_RELAXED)

static int same(const struct row *r, const char *key, size_t len)
{
    return __atomic_load_n(&r->used, __ATOMIC_ACQUIRE) && memcmp(r->name, key, len) == 0;
}

/* "proxy\0server\0" in key: its length, or 0 when too long. */
static size_t make_key(char *key, const char *proxy, const char *server)
{
    size_t lp = strlen(proxy), ls = strlen(server), len = lp + 1 + ls + 1;

    if (len > NAME_MAX_LEN) return 0;
    memcpy(key, proxy, lp + 1);
    memcpy(key + lp + 1, server, ls + 1);
    return len;
}

int np_pool_find(const char *proxy, const char *server)
{
    char key[NAME_MAX_LEN];
    size_t len = make_key(key, proxy, server);

    for (int i = 0; tab && len && i < NP_POOL_ROWS; i++)
        if (same(&tab->rows[i], key, len)) return i;
    return -1;
}

int np_pool_row(const char *proxy, const char *server)
{
    char key[NAME_MAX_LEN];
    size_t len = make_key(key, proxy, server);
    int found = np_pool_find(proxy, server);

    if (!tab || !len) return -1;
    if (found >= 0) return found;
    while (__atomic_exchange_n(&tab->lock, 1, __ATOMIC_ACQUIRE)) sched_yield();
    for (int i = 0; i < NP_POOL_ROWS && found < 0; i++) {   /* again: someone may have added it */
        struct row *r = &tab->rows[i];
        if (same(r, key, len)) found = i;
        else if (!__atomic_load_n(&r->used, __ATOMIC_ACQUIRE)) {
            memset(r, 0, sizeof *r);
            memcpy(r->name, key, len);
            __atomic_store_n(&r->used, 1, __ATOMIC_RELEASE);
            found = i;
        }
    }
    __atomic_store_n(&tab->lock, 0, __ATOMIC_RELEASE);
    return found;
}

static struct row *row_at(int row)
{
    return tab && row >= 0 && row < NP_POOL_ROWS ? &tab->rows[row] : NULL;
}

static int is_up(struct row *r, int64_t now)
{
    if (LOAD(r->state) == NP_POOL_MAINT) return 0;     /* unchecked: said down, not guessed up */
    return !LOAD(r->check_down) && LOAD(r->down_until) <= now;
}

int np_pool_new_epoch(void)
{
    return tab ? ADD(tab->epoch, 1) : 0;
}

int np_pool_epoch(void)
{
    return tab ? LOAD(tab->epoch) : 0;
}

void np_pool_hold(int row)
{
    struct row *r = row_at(row);

    if (r) ADD(r->active, 1);
}

void np_pool_count(int row)
{
    struct row *r = row_at(row);

    if (r) ADD(r->connections, 1);
}

void np_pool_acquire(int row)
{
    np_pool_hold(row);
    np_pool_count(row);
}

void np_pool_release(int row)
{
    struct row *r = row_at(row);

    if (r) ADD(r->active, -1);
}

/* *count + 1 when it is below max: one compare-and-swap, so that two workers racing for the
 * last slot cannot both take it. */
static int take_below(int32_t *count, int64_t max)
{
    int32_t n = __atomic_load_n(count, __ATOMIC_RELAXED);

    do {
        if (n >= max) return 0;
    } while (!__atomic_compare_exchange_n(count, &n, n + 1, 0, __ATOMIC_ACQ_REL, __ATOMIC_RELAXED));
    return 1;
}

int np_pool_take(int row, int max)
{
    struct row *r = row_at(row);
    int64_t n;

    if (!r) return 0;
    n = LOAD(r->active);
    do {
        if (n >= max) return 0;
    } while (!__atomic_compare_exchange_n(&r->active, &n, n + 1, 0, __ATOMIC_ACQ_REL, __ATOMIC_RELAXED));
    return 1;
}

int np_pool_queue(const char *proxy)
{
    size_t len = strlen(proxy) + 1;
    int found = -1;

    if (!tab || len > NAME_MAX_LEN) return -1;
    while (__atomic_exchange_n(&tab->lock, 1, __ATOMIC_ACQUIRE)) sched_yield();
    for (int i = 0; i < NP_POOL_QUEUES && found < 0; i++) {
        struct queue *q = &tab->queues[i];
        if (__atomic_load_n(&q->used, __ATOMIC_ACQUIRE)) {
            if (!memcmp(q->proxy, proxy, len)) found = i;
        } else {
            memcpy(q->proxy, proxy, len);
            q->waiting = 0;
            __atomic_store_n(&q->used, 1, __ATOMIC_RELEASE);
            found = i;
        }
    }
    __atomic_store_n(&tab->lock, 0, __ATOMIC_RELEASE);
    return found;
}

static struct queue *queue_at(int q)
{
    return tab && q >= 0 && q < NP_POOL_QUEUES ? &tab->queues[q] : NULL;
}

int np_pool_wait(int q, int max)
{
    struct queue *w = queue_at(q);

    return w && take_below(&w->waiting, max);
}

void np_pool_unwait(int q)
{
    struct queue *w = queue_at(q);

    if (w) __atomic_add_fetch(&w->waiting, -1, __ATOMIC_RELAXED);
}

int np_pool_queue_view(int q, const char **proxy, int *waiting)
{
    struct queue *w = queue_at(q);

    if (!w || !__atomic_load_n(&w->used, __ATOMIC_ACQUIRE)) return -1;
    *proxy = w->proxy;
    *waiting = __atomic_load_n(&w->waiting, __ATOMIC_RELAXED);
    return 0;
}

int np_pool_view(int row, struct np_pool_view *v)
{
    struct row *r = row_at(row);

    if (!r || !__atomic_load_n(&r->used, __ATOMIC_ACQUIRE)) return -1;
    v->proxy = r->name;
    v->server = r->name + strlen(r->name) + 1;
    v->up = is_up(r, now_ms());
    v->active = (uint64_t)LOAD(r->active);
    v->connections = (uint64_t)LOAD(r->connections);
    v->failures = (uint64_t)LOAD(r->failures);
    v->state = LOAD(r->state);
    v->weight = LOAD(r->weight);
    v->added = LOAD(r->added);
    v->deleted = LOAD(r->deleted);
    return 0;
}

static const char *const state_names[] = { "ready", "drain", "maint" };

const char *np_pool_state_name(int state)
{
    return state >= 0 && state <= NP_POOL_MAINT ? state_names[state] : "?";
}

int np_pool_state_parse(const char *name)
{
    for (int i = 0; i <= NP_POOL_MAINT; i++)
        if (!strcmp(name, state_names[i])) return i;
    return -1;
}

int np_pool_changes(void)
{
    return tab ? __atomic_load_n(&tab->changes, __ATOMIC_ACQUIRE) : 0;
}

/* Every field is written before the change count moves, so a worker that sees the new
 * count reads the new values. */
static void changed(void)
{
    __atomic_add_fetch(&tab->changes, 1, __ATOMIC_RELEASE);
}

int np_pool_set(int row, int state, int weight)
{
    struct row *r = row_at(row);

    if (!r) return -1;
    if (state >= 0) STORE(r->state, state);
    if (weight >= 0) STORE(r->weight, weight);
    changed();
    return 0;
}

int np_pool_add(const char *proxy, const char *server, int weight, int backup, int dns)
{
    int row = np_pool_row(proxy, server);
    struct row *r = row_at(row);

    if (!r) return -1;
    STORE(r->state, NP_POOL_READY);
    STORE(r->weight, weight);
    STORE(r->added, (backup ? 2 : 1) + (dns ? 2 : 0));
    STORE(r->deleted, 0);
    changed();
    return row;
}

int np_pool_delete(int row)
{
    struct row *r = row_at(row);

    if (!r) return -1;
    STORE(r->deleted, 1);
    STORE(r->added, 0);
    STORE(r->weight, 0);
    STORE(r->state, NP_POOL_READY);
    changed();
    return 0;
}

/* ---------------------------------------------------------------- Lua: core.pool_* */

static struct row *check_row(lua_State *L, int idx)
{
    struct row *r = row_at((int)luaL_checkinteger(L, idx));

    if (!r) luaL_argerror(L, idx, "not a pool row");
    return r;
}

/* core.pool_row(proxy, "host:port") -> row | nil (not mapped, as in --check, or full) */
static int l_row(lua_State *L)
{
    int row = np_pool_row(luaL_checkstring(L, 1), luaL_checkstring(L, 2));

    if (row < 0) return 0;
    lua_pushinteger(L, row);
    return 1;
}

/* core.pool_up(row) -> boolean */
static int l_up(lua_State *L)
{
    lua_pushboolean(L, is_up(check_row(L, 1), now_ms()));
    return 1;
}

/* core.pool_active(row) -> connections open now to the server, all workers */
static int l_active(lua_State *L)
{
    lua_pushinteger(L, (lua_Integer)LOAD(check_row(L, 1)->active));
    return 1;
}

/* core.pool_state(row) -> up, active, failures (in the current window), connections, failures_total */
static int l_state(lua_State *L)
{
    struct row *r = check_row(L, 1);

    lua_pushboolean(L, is_up(r, now_ms()));
    lua_pushinteger(L, (lua_Integer)LOAD(r->active));
    lua_pushinteger(L, LOAD(r->fails));
    lua_pushinteger(L, (lua_Integer)LOAD(r->connections));
    lua_pushinteger(L, (lua_Integer)LOAD(r->failures));
    return 5;
}

/* core.pool_failed(row, max_fails, fail_timeout) -> true when this failure marked it down.
 * nginx's meaning: max_fails failures within fail_timeout seconds make the server down for
 * fail_timeout seconds; max_fails = 0 counts but never marks down. */
static int l_failed(lua_State *L)
{
    struct row *r = check_row(L, 1);
    lua_Integer max_fails = luaL_checkinteger(L, 2);
    int64_t span = (int64_t)(luaL_checknumber(L, 3) * 1000), now = now_ms();
    int64_t start = LOAD(r->window_start);
    int32_t fails;

    ADD(r->failures, 1);
    if (now - start >= span && __atomic_compare_exchange_n(&r->window_start, &start, now, 0, __ATOMIC_RELAXED,
                                                          __ATOMIC_RELAXED)) {
        STORE(r->fails, 1);       /* a new window: this failure is its first */
        fails = 1;
    } else {
        fails = ADD(r->fails, 1);
    }
    int down = max_fails > 0 && fails >= max_fails;
    if (down) {
        STORE(r->down_until, now + span);
        STORE(r->fails, 0);
        STORE(r->window_start, 0);
    }
    lua_pushboolean(L, down);
    return 1;
}

/* core.pool_checked(row, ok, rise, fall) -> "up" | "down" when this result changed the
 * verdict, else nothing. HAProxy's meaning: fall failures in a row mark a server down, rise
 * successes in a row mark it up again. */
static int l_checked(lua_State *L)
{
    struct row *r = check_row(L, 1);
    int ok = lua_toboolean(L, 2);
    int32_t rise = (int32_t)luaL_checkinteger(L, 3), fall = (int32_t)luaL_checkinteger(L, 4);
    int down = LOAD(r->check_down);

    if (ok) {
        STORE(r->fall, 0);
        if (down && ADD(r->rise, 1) >= rise) {
            STORE(r->rise, 0);
            STORE(r->check_down, 0);
            STORE(r->down_until, 0);    /* passively down too: a check that passes says up */
            lua_pushliteral(L, "up");
            return 1;
        }
    } else {
        STORE(r->rise, 0);
        if (!down && ADD(r->fall, 1) >= fall) {
            STORE(r->fall, 0);
            STORE(r->check_down, 1);
            lua_pushliteral(L, "down");
            return 1;
        }
    }
    return 0;
}

/* core.pool_changes() -> the count of runtime changes: a pool whose count differs looks again */
static int l_changes(lua_State *L)
{
    lua_pushinteger(L, np_pool_changes());
    return 1;
}

/* core.pool_control(row) -> state, weight (0: the config's), added (0, 1, 2: a backup; 3, 4:
 * the same from DNS), deleted */
static int l_control(lua_State *L)
{
    struct row *r = check_row(L, 1);

    lua_pushstring(L, np_pool_state_name(LOAD(r->state)));
    lua_pushinteger(L, LOAD(r->weight));
    lua_pushinteger(L, LOAD(r->added));
    lua_pushboolean(L, LOAD(r->deleted));
    return 4;
}

/* core.pool_rows(proxy) -> { { row =, server = }, ... }: every row of that proxy */
static int l_rows(lua_State *L)
{
    const char *proxy = luaL_checkstring(L, 1);
    size_t lp = strlen(proxy) + 1;
    int n = 0;

    lua_newtable(L);
    for (int i = 0; tab && i < NP_POOL_ROWS; i++) {
        struct row *r = &tab->rows[i];
        if (!__atomic_load_n(&r->used, __ATOMIC_ACQUIRE) || memcmp(r->name, proxy, lp)) continue;
        lua_createtable(L, 0, 2);
        lua_pushinteger(L, i);
        lua_setfield(L, -2, "row");
        lua_pushstring(L, r->name + lp);
        lua_setfield(L, -2, "server");
        lua_rawseti(L, -2, ++n);
    }
    return 1;
}

/* core.pool_find(proxy, "host:port") -> row | nil: never adds one */
static int l_find(lua_State *L)
{
    int row = np_pool_find(luaL_checkstring(L, 1), luaL_checkstring(L, 2));

    if (row < 0) return 0;
    lua_pushinteger(L, row);
    return 1;
}

/* core.pool_set(row, state | nil, weight | nil): state "ready", "drain" or "maint", weight
 * 0 (the config's) .. 256 */
static int l_set(lua_State *L)
{
    int row = (int)luaL_checkinteger(L, 1), state = -1, weight = -1;

    check_row(L, 1);
    if (!lua_isnoneornil(L, 2) && (state = np_pool_state_parse(luaL_checkstring(L, 2))) < 0)
        return luaL_argerror(L, 2, "want ready, drain or maint");
    if (!lua_isnoneornil(L, 3)) {
        weight = (int)luaL_checkinteger(L, 3);
        if (weight < 0 || weight > 256) return luaL_argerror(L, 3, "want 0..256");
    }
    np_pool_set(row, state, weight);
    return 0;
}

/* core.pool_add(proxy, "host:port", weight, backup [, dns]) -> row | nil (the table is full) */
static int l_add(lua_State *L)
{
    int row = np_pool_add(luaL_checkstring(L, 1), luaL_checkstring(L, 2), (int)luaL_checkinteger(L, 3),
                          lua_toboolean(L, 4), lua_toboolean(L, 5));

    if (row < 0) return 0;
    lua_pushinteger(L, row);
    return 1;
}

/* core.pool_delete(row) */
static int l_delete(lua_State *L)
{
    check_row(L, 1);
    np_pool_delete((int)lua_tointeger(L, 1));
    return 0;
}

/* core.pool_queue(proxy) -> the pool's queue (its waiting clients, all workers) | nil */
static int l_queue(lua_State *L)
{
    int q = np_pool_queue(luaL_checkstring(L, 1));

    if (q < 0) return 0;
    lua_pushinteger(L, q);
    return 1;
}

/* core.pool_waiting(queue) -> clients waiting now, all workers */
static int l_waiting(lua_State *L)
{
    const char *proxy;
    int waiting = 0;

    np_pool_queue_view((int)luaL_checkinteger(L, 1), &proxy, &waiting);
    lua_pushinteger(L, waiting);
    return 1;
}

static const luaL_Reg funcs[] = {
    { "pool_queue", l_queue },
    { "pool_waiting", l_waiting },
    { "pool_changes", l_changes },
    { "pool_control", l_control },
    { "pool_rows", l_rows },
    { "pool_find", l_find },
    { "pool_set", l_set },
    { "pool_add", l_add },
    { "pool_delete", l_delete },
    { "pool_row", l_row },
    { "pool_up", l_up },
    { "pool_active", l_active },
    { "pool_state", l_state },
    { "pool_failed", l_failed },
    { "pool_checked", l_checked },
    { NULL, NULL },
};

void np_pool_open(lua_State *L)
{
    for (const luaL_Reg *f = funcs; f->name; f++) {
        lua_pushcfunction(L, f->func);
        lua_setfield(L, -2, f->name);
    }
}
