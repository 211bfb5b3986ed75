/* Limits on user code: a time budget per call into Lua (a count hook that reads the clock)
 * and a memory budget per call and per state (the allocator). See budget.h. */
#include "budget.h"

#include <lauxlib.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define INSTRUCTIONS_PER_CHECK 4096

/* Outside calls nothing is limited: the limit is the largest size. */
static struct np_budget current = { .limit = SIZE_MAX };
static size_t in_use, cap;

/* LuaJIT's own allocator (a private dlmalloc space per state, faster for Lua's many small
 * objects than malloc), which ours wraps to count. */
struct state_alloc {
    lua_Alloc f;
    void *ud;
    size_t in_use;              /* what this state holds: given back to in_use at its close */
    struct state_alloc *next, **pprev;
};

/* Every open state's: LuaJIT keeps its pointer in memory it maps itself, which a leak
 * checker does not scan, so a state still open at exit must be reachable from here. */
static struct state_alloc *open_states;

static double monotonic(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* "file:line" of the Lua code running now, for the error's message. */
static void where(lua_State *L, char *out, size_t outlen)
{
    lua_Debug ar;

    for (int level = 0; lua_getstack(L, level, &ar); level++) {
        if (lua_getinfo(L, "Sl", &ar) && ar.currentline > 0) {
            snprintf(out, outlen, "%s:%d", ar.short_src, ar.currentline);
            return;
        }
    }
    snprintf(out, outlen, "?");
}

/* CPU seconds this thread has used (user and system): not in the vDSO, a system call. */
static double thread_cpu(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* A call is stopped past its seconds of CPU time, or past this many times its seconds on the
 * clock: a loop that waits (sleeps, blocks in C calls) rather than computes uses little CPU,
 * and a preempted call is never held back that long. */
#define CLOCK_BOUND_FACTOR 10

enum overrun { WITHIN, OVER_CPU, OVER_CLOCK };

/* Whether the call is over its budget, and how. The budget is CPU time, not time on
 * the clock: on a loaded machine a call that is preempted has not run, and a healthy
 * connection must not be closed for the machine's load. The clock is cheap (vDSO) and CPU
 * time never exceeds it, so the CPU clock (a system call) is read only for a call that has
 * been going for its budget on the clock; its first count tick takes the CPU reading the
 * call is measured from (the 4,096 instructions before it are counted as their time on the
 * clock). A call shorter than one tick reads no CPU clock at all. */
static enum overrun over_budget(void)
{
    double now = monotonic(), on_clock;

    if (current.cpu_base < 0) {
        current.cpu_base = thread_cpu();
        current.before_base = now - current.started;
    }
    on_clock = now - current.started;
    if (on_clock <= current.seconds) return WITHIN;
    /* the calls it made do not count as its own time, but do on this bound: a loop of
     * calls each within its budget is still stopped */
    if (now - current.wall_started > current.seconds * CLOCK_BOUND_FACTOR) return OVER_CLOCK;
    return current.before_base + (thread_cpu() - current.cpu_base) > current.seconds ? OVER_CPU : WITHIN;
}

static void on_count(lua_State *L, lua_Debug *ar)
{
    char at[256];
    enum overrun how;

    if (!current.active || current.seconds <= 0 || current.spent || (how = over_budget()) == WITHIN) return;
    where(L, at, sizeof at);
    current.spent = 1;          /* once: the error's own handling may run Lua too */
    if (how == OVER_CLOCK)
        lua_pushfstring(L, "%s: ran longer than its budget of %f seconds (%d times that on the clock, mostly waiting)",
                        at, current.seconds, CLOCK_BOUND_FACTOR);
    else
        lua_pushfstring(L, "%s: ran longer than its budget of %f seconds", at, current.seconds);
    lua_error(L);               /* not luaL_error: its position would be the caller's */
}

/* Inside a call, an allocation past the call's budget or the state's cap fails: Lua raises
 * "not enough memory" in the call, which ends it (and its connection) only. Every
 * allocation and free of every state passes here, so the path is one compare against the
 * limit np_budget_begin worked out (SIZE_MAX outside calls) and two additions. */
static void *allocate(void *ud, void *ptr, size_t old, size_t size)
{
    struct state_alloc *a = ud;
    size_t before = ptr ? old : 0;
    void *p;

    if (size > before && in_use + (size - before) > current.limit) return NULL;
    p = a->f(a->ud, ptr, old, size);
    if (p || size == 0) {               /* size_t arithmetic: a shrink or a free subtracts */
        in_use += size - before;
        a->in_use += size - before;
    }
    return p;
}

/* What in_use may grow to in the call b describes: the smaller of its own bound and the cap. */
static size_t limit_of(const struct np_budget *b)
{
    size_t limit = SIZE_MAX;

    if (!b->active) return SIZE_MAX;
    if (b->max_alloc && b->in_use_at_start < SIZE_MAX - b->max_alloc) limit = b->in_use_at_start + b->max_alloc;
    if (cap && cap < limit) limit = cap;
    return limit;
}

static int panic(lua_State *L)
{
    fprintf(stderr, "netproxy: Lua panic: %s\n", lua_tostring(L, -1));
    abort();
}

/* NETPROXY_LUA_ALLOC=luajit leaves LuaJIT's allocator unwrapped: nothing counted, no memory
 * bound. Only for measuring what the counting costs (bench/hooks.sh); never for serving. */
static lua_State *newstate_uncounted(void)
{
    lua_State *L = luaL_newstate();

    if (L) {
        lua_atpanic(L, panic);
        np_budget_rearm(L);
    }
    return L;
}

int np_budget_uncounted(void)
{
    const char *how = getenv("NETPROXY_LUA_ALLOC");

    return how && !strcmp(how, "luajit");
}

lua_State *np_budget_newstate(void)
{
    struct state_alloc *a;
    lua_State *L;

    if (np_budget_uncounted()) return newstate_uncounted();
    a = calloc(1, sizeof *a);
    L = a ? luaL_newstate() : NULL;
    if (!L) {
        free(a);
        return NULL;
    }
    a->f = lua_getallocf(L, &a->ud);
    lua_setallocf(L, allocate, a);
    a->next = open_states;
    if (open_states) open_states->pprev = &a->next;
    open_states = a;
    a->pprev = &open_states;
    lua_atpanic(L, panic);
    np_budget_rearm(L);
    return L;
}

void np_budget_close(lua_State *L)
{
    struct state_alloc *a;

    if (!L) return;
    if (lua_getallocf(L, (void **)&a) != allocate) {
        lua_close(L);                   /* an uncounted state's */
        return;
    }
    lua_setallocf(L, a->f, a->ud);      /* LuaJIT frees its space whole only with its own */
    lua_close(L);
    in_use -= a->in_use;
    if (a->next) a->next->pprev = a->pprev;
    *a->pprev = a->next;
    free(a);
}

void np_budget_rearm(lua_State *L)
{
    lua_sethook(L, on_count, LUA_MASKCOUNT, INSTRUCTIONS_PER_CHECK);
}

/* The call running now (a reload installing a config from the control socket's call) takes
 * the new cap at once; the calls it interrupted keep the limit they began with until they end. */
void np_budget_set_cap(size_t bytes)
{
    cap = bytes;
    current.limit = limit_of(&current);
}

void np_budget_begin(struct np_budget *saved, double seconds, size_t max_alloc)
{
    int outer_timed;

    *saved = current;
    outer_timed = saved->active && saved->seconds > 0;
    current.active = 1;
    current.seconds = seconds > 0 ? seconds : 0;
    /* the start is read when this call is timed, or when the call it interrupts is (its
     * time is then taken off that call's: np_budget_end) */
    current.started = current.wall_started = seconds > 0 || outer_timed ? monotonic() : 0;
    current.cpu_entered = outer_timed && saved->cpu_base >= 0 ? thread_cpu() : -1;
    current.cpu_base = -1;
    current.spent = 0;
    current.max_alloc = max_alloc;
    current.in_use_at_start = in_use;
    current.limit = limit_of(&current);
}

/* A nested call (core.call in a service's loop, a probe asked while a coroutine starts a
 * sniff) has its own budget: its time is taken off the budget of the call it interrupted,
 * on the clock and in CPU time, so that the outer call is charged for its own work only. */
void np_budget_end(const struct np_budget *saved)
{
    struct np_budget inner = current;

    current = *saved;
    if (!current.active || current.seconds <= 0) return;
    current.started += monotonic() - inner.wall_started;
    if (current.cpu_base >= 0 && inner.cpu_entered >= 0) current.cpu_base += thread_cpu() - inner.cpu_entered;
}

size_t np_budget_memory(void)
{
    return in_use;
}
