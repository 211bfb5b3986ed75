/* core.resolve and core.reverse: a lookup (resolve.c) is the pending operation of the task
 * that asked (task.h), within a deadline on the task's timer; the task's end cancels it.
 * The answer is pushed on the task's coroutine: at once when the resolver answers inside
 * the call (a literal, /etc/hosts, a malformed address), else when it comes. */
#include "lookup.h"
#include "loop.h"
#include "resolve.h"

#include <arpa/inet.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <stdio.h>
#include <string.h>

static int push_fail(lua_State *L, const char *why)
{
    lua_pushnil(L);
    lua_pushstring(L, why);
    return 2;
}

/* Pushes { "ip", ... } (each address once) or nil, "resolve: why"; frees res. */
static int push_addresses(lua_State *L, int err, struct evutil_addrinfo *res)
{
    char ip[INET6_ADDRSTRLEN];
    int n = 0;

    if (err || !res) {
        if (res) evutil_freeaddrinfo(res);
        return push_fail(L, err ? evutil_gai_strerror(err) : "no address");
    }
    lua_newtable(L);
    for (struct evutil_addrinfo *ai = res; ai; ai = ai->ai_next) {
        const void *a = ai->ai_family == AF_INET ? (const void *)&((struct sockaddr_in *)ai->ai_addr)->sin_addr
                      : ai->ai_family == AF_INET6 ? (const void *)&((struct sockaddr_in6 *)ai->ai_addr)->sin6_addr : NULL;
        int seen = 0;
        if (!a || !inet_ntop(ai->ai_family, a, ip, sizeof ip)) continue;
        for (int i = 1; i <= n && !seen; i++) {
            lua_rawgeti(L, -1, i);
            seen = !strcmp(lua_tostring(L, -1), ip);
            lua_pop(L, 1);
        }
        if (seen) continue;
        lua_pushstring(L, ip);
        lua_rawseti(L, -2, ++n);
    }
    evutil_freeaddrinfo(res);
    return 1;
}

/* Pushes core.reverse's answer: the name, or nil, "resolve: why". */
static int push_name(lua_State *L, int err, const char *name)
{
    char why[96];

    if (!name) {
        snprintf(why, sizeof why, "resolve: %s", evdns_err_to_string(err));
        return push_fail(L, why);
    }
    lua_pushstring(L, name);
    return 1;
}

/* An answer: pushed on the coroutine, which wakes unless the answer came inside the call
 * (the handle is not yet the task's pending one: the caller returns what was pushed). */
static void answered(struct np_task *t, int nresults)
{
    if (!t->pending) return;
    t->pending = NULL;                  /* resolve.c frees the handle after the callback */
    np_task_wake(t, nresults);
}

static void on_resolved(int err, struct evutil_addrinfo *res, void *arg)
{
    struct np_task *t = arg;

    answered(t, push_addresses(t->owner.co, err, res));
}

static void on_reversed(int err, const char *name, void *arg)
{
    struct np_task *t = arg;

    answered(t, push_name(t->owner.co, err, name));
}

static void cancel_lookup(struct np_task *t)
{
    np_resolve_cancel(t->pending);
}

static void on_deadline(evutil_socket_t fd, short what, void *arg)
{
    struct np_task *t = arg;

    cancel_lookup(t);
    np_task_wake(t, push_fail(t->owner.co, "timeout"));
}

/* The lookup r has started (NULL: it answered inside the call, its results pushed above
 * top): returns them, or waits for the answer within timeout seconds. */
static int wait_for(lua_State *L, struct np_task *t, struct np_resolve *r, int top, double timeout)
{
    struct timeval tv = np_tv(timeout);

    if (!r) return lua_gettop(L) - top;
    t->pending = r;
    if (timeout > 0) {
        evtimer_assign(&t->timer, np_base, on_deadline, t);
        evtimer_add(&t->timer, &tv);
    }
    return np_task_wait(t, L, cancel_lookup);
}

int np_lookup_resolve(lua_State *L, struct np_task *t, const char *host, double timeout)
{
    int top = lua_gettop(L);

    if (t->owner.closed) return push_fail(L, "closed");
    return wait_for(L, t, np_resolve_start(host, 1, on_resolved, t), top, timeout);
}

int np_lookup_reverse(lua_State *L, struct np_task *t, const char *ip, double timeout)
{
    int top = lua_gettop(L);

    if (t->owner.closed) return push_fail(L, "closed");
    return wait_for(L, t, np_resolve_reverse(ip, on_reversed, t), top, timeout);
}
