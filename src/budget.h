/* Limits on user code: every call into Lua (a hook, a resume of a connector's coroutine,
 * a timer, the config's load) runs under a time budget (CPU time) and a memory budget, and the Lua
 * state under a memory cap. Time is checked by a count hook every few thousand VM
 * instructions (the JIT is off for user code, so compiled loops cannot escape it); memory
 * by the state's allocator. Outside a call nothing is limited, so netproxy's own C code
 * never meets a failing allocation in an unprotected place. */
#ifndef NP_BUDGET_H
#define NP_BUDGET_H
#include <stddef.h>
#include <lua.h>

/* What a call may use, and what was in force before it (calls may nest). */
struct np_budget {
    double seconds;             /* of CPU time; 0 = no time limit */
    double started;             /* CLOCK_MONOTONIC seconds at the call's start, moved later by
                                 * the time of the calls it made (theirs, not its own) */
    double wall_started;        /* the same, unmoved: for the bound on the clock */
    double cpu_entered;         /* thread CPU seconds at the start when the call it interrupts
                                 * had read its CPU base; -1 otherwise */
    double cpu_base;            /* the thread's CPU seconds at its first count tick; -1 before */
    double before_base;         /* clock seconds from the start to that tick */
    int spent;                  /* the overrun was raised */
    size_t max_alloc;           /* bytes the call may add to what Lua holds; 0 = no limit */
    size_t in_use_at_start;     /* what Lua held when it began: garbage freed along the way
                                 * does not count against it, what it keeps does */
    size_t limit;               /* what all Lua may hold during it: the smaller of
                                 * in_use_at_start + max_alloc and the cap; SIZE_MAX if none */
    int active;
};

/* A new Lua state whose allocator counts and limits memory, with the count hook set (with
 * NETPROXY_LUA_ALLOC=luajit in the environment: LuaJIT's own allocator, nothing counted). */
lua_State *np_budget_newstate(void);

/* 1 when NETPROXY_LUA_ALLOC=luajit turns the memory bounds off (for benchmarks only). */
int np_budget_uncounted(void);

/* Closes a state made by np_budget_newstate (NULL: nothing), its memory uncounted. */
void np_budget_close(lua_State *L);

/* Sets the count hook again (after code that replaced it: a debug.sethook while loading). */
void np_budget_rearm(lua_State *L);

/* The cap on what every Lua state of this process holds together, checked during calls
 * (0 = none): a worker's lua_memory. */
void np_budget_set_cap(size_t bytes);

/* Starts a call of at most seconds (0 = unbounded) and max_alloc bytes; *saved receives
 * the budget it replaces. */
void np_budget_begin(struct np_budget *saved, double seconds, size_t max_alloc);

/* Ends it: the budget before it is in force again. */
void np_budget_end(const struct np_budget *saved);

/* Bytes the state allocated and holds now. */
size_t np_budget_memory(void);

#endif
