/* A task: a Lua coroutine running straight-line code over cosockets (sock.h) and pending
 * operations (a sleep, a lookup), for an owner (a connection's session; later timers and checks) that hears of
 * its end through the ops given at creation. */
#ifndef NP_TASK_H
#define NP_TASK_H
#include "call.h"
#include "sock.h"

#include <stdint.h>
#include <lua.h>
#include <event2/event_struct.h>

struct np_task;

struct np_task_ops {
    /* The coroutine has finished: ok with nresults values on top of co, or not ok with the
     * error message on top (a string). Not called once the task is halted. */
    void (*finished)(struct np_task *t, int ok, int nresults);
};

struct np_task {
    struct np_sock_owner owner; /* first: what sock.c sees (np_sock_running() is a task) */
    int co_ref;                 /* registry anchor of owner.co */
    /* what the coroutine waits for besides its cosockets (OpenResty's coctx->cleanup): at
     * most one pending operation, a sleep (sleep.c) or a lookup (lookup.c) */
    struct event timer;         /* the pending operation's: a sleep's end, a lookup's deadline */
    void (*cancel)(struct np_task *t);  /* undoes it if the task ends first; NULL: nothing to undo */
    void *pending;              /* the operation's own (a lookup's handle) */
    uint64_t id;                /* the connection id its log lines carry; 0 for none */
    int reusable;               /* its function yielded np_task_done: the coroutine can serve again */
    struct np_limits limits;    /* what one resume may use: its proxy's or server's (call.h) */
    double resumed_at;          /* np_clock() when its last resume began */
    const struct np_task_ops *ops;
    void *arg;                  /* the owner's */
};

/* Creates the coroutine in L, or takes one from L's pool of coroutines whose function
 * yielded the done marker (*reused is then set: it waits for its next arguments, with no
 * function to push). The caller pushes (the function and) the arguments before
 * np_task_resume. A function that serves one request after another ends each with
 * coroutine.yield(done_marker, results...): the owner hears "finished" with the results,
 * and the coroutine goes back to the pool when the task is released. reused NULL: always a
 * new coroutine (a timer's or a pool check's, whose function is not a session's). */
lua_State *np_task_init(struct np_task *t, lua_State *L, const struct np_task_ops *ops,
                        void *arg, uint64_t id, int *reused);

/* Pushes the done marker (netproxy.core's task_done). */
void np_task_push_done(lua_State *L);

/* Starts or continues the coroutine with nargs values pushed on owner.co. */
void np_task_resume(struct np_task *t, int nargs);

/* The owner has ended: no event fires and nothing resumes the coroutine any more (a pending
 * operation is cancelled); its cosocket calls fail with "closed". Safe while the coroutine
 * runs. */
void np_task_halt(struct np_task *t);

/* Closes its cosockets and lets the coroutine go. Never while it runs. Idempotent. */
void np_task_release(struct np_task *t);

/* The task whose coroutine is running, or NULL. */
struct np_task *np_task_running(void);

/* The running task, whose coroutine L must be; else raises "what: only from a task's
 * coroutine" (a cosocket call from a hook or the config's load). */
struct np_task *np_task_of(lua_State *L, const char *what);

/* Yields co, the running coroutine of t, until its pending operation (armed by the caller:
 * t->timer, a lookup...) wakes it with np_task_wake. cancel(t), if not NULL, is called
 * instead should the task be halted or released first. */
int np_task_wait(struct np_task *t, lua_State *co, void (*cancel)(struct np_task *t));

/* The pending operation is over, its nresults pushed on the coroutine: t->timer is stopped
 * and the coroutine resumes with them. */
void np_task_wake(struct np_task *t, int nresults);

#endif
