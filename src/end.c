/* How a connection or a UDP flow ended: the names and classes of the fixed vocabulary in
 * end.h, and the ended object's life after its end (counted, reaped, its handle cleared). */
#include "end.h"
#include "loop.h"
#include "luavm.h"
#include "shm.h"

#include <errno.h>
#include <event2/event.h>
#include <event2/event_struct.h>
#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Each end's word and what it counts as, for a connection and for a UDP flow. */
static const struct {
    const char *name;
    enum np_end_class class[2];         /* by enum np_ended_kind */
} ends[NP_END_COUNT] = {
    [NP_END_NONE] = { "running", { NP_END_CLEAN, NP_END_CLEAN } },
    [NP_END_EOF] = { "eof", { NP_END_CLEAN, NP_END_CLEAN } },
    [NP_END_CLOSED] = { "closed", { NP_END_CLEAN, NP_END_CLEAN } },
    [NP_END_REFUSED] = { "refused", { NP_END_REFUSAL, NP_END_REFUSAL } },
    [NP_END_CONNECT_FAILED] = { "connect failed", { NP_END_FAILURE, NP_END_FAILURE } },
    [NP_END_NEGOTIATION_TIMEOUT] = { "negotiation timeout", { NP_END_FAILURE, NP_END_FAILURE } },
    /* UDP has no end of its own: a flow ends by going idle, which is no error */
    [NP_END_IDLE_TIMEOUT] = { "idle timeout", { NP_END_FAILURE, NP_END_CLEAN } },
    [NP_END_TOTAL_TIMEOUT] = { "total timeout", { NP_END_FAILURE, NP_END_FAILURE } },
    [NP_END_TIMEOUT] = { "timeout", { NP_END_FAILURE, NP_END_FAILURE } },
    [NP_END_CLIENT_RESET] = { "client reset", { NP_END_FAILURE, NP_END_FAILURE } },
    [NP_END_SERVER_RESET] = { "server reset", { NP_END_FAILURE, NP_END_FAILURE } },
    [NP_END_CLIENT_ERROR] = { "client error", { NP_END_FAILURE, NP_END_FAILURE } },
    [NP_END_SERVER_ERROR] = { "server error", { NP_END_FAILURE, NP_END_FAILURE } },
    [NP_END_CLIENT_TLS] = { "client tls", { NP_END_FAILURE, NP_END_FAILURE } },
    [NP_END_SERVER_TLS] = { "server tls", { NP_END_FAILURE, NP_END_FAILURE } },
    [NP_END_CLIENT_STARTTLS] = { "client starttls", { NP_END_FAILURE, NP_END_FAILURE } },
    [NP_END_SERVER_STARTTLS] = { "server starttls", { NP_END_FAILURE, NP_END_FAILURE } },
    [NP_END_LUA_ERROR] = { "lua error", { NP_END_FAILURE, NP_END_FAILURE } },
    [NP_END_NO_MEMORY] = { "out of memory", { NP_END_FAILURE, NP_END_FAILURE } },
    [NP_END_STOPPED] = { "stopped", { NP_END_FAILURE, NP_END_FAILURE } },
    [NP_END_DRAINED] = { "drained", { NP_END_FAILURE, NP_END_FAILURE } },
    [NP_END_EVICTED] = { "evicted", { NP_END_FAILURE, NP_END_FAILURE } },
};

/* The Lua handle of each kind: its metatable's name, and what __metatable says. */
static const struct {
    const char *mt, *label;
} handles[2] = {
    [NP_ENDED_CONN] = { "netproxy.conn_handle", "netproxy connection" },
    [NP_ENDED_FLOW] = { "netproxy.flow_handle", "netproxy flow" },
};

/* What Lua holds to name an ended object: cleared before the object is freed, so a stale
 * handle can never reach freed memory. */
struct handle {
    struct np_ended *e;
};

static struct np_ended *reaped;         /* ended, waiting for the reaper */
static struct event reaper;
static int reaper_ready;

const char *np_end_name(enum np_end e)
{
    return e >= 0 && e < NP_END_COUNT ? ends[e].name : "?";
}

enum np_end np_end_parse(const char *name)
{
    for (int e = NP_END_EOF; e < NP_END_COUNT; e++)
        if (!strcmp(ends[e].name, name)) return e;
    return NP_END_NONE;
}

enum np_end_class np_end_class(enum np_end e, enum np_ended_kind kind)
{
    return e >= 0 && e < NP_END_COUNT ? ends[e].class[kind == NP_ENDED_FLOW] : NP_END_FAILURE;
}

enum np_end np_end_io(int side, int err)
{
    if (err == EPROTO) return side ? NP_END_SERVER_TLS : NP_END_CLIENT_TLS;
    if (err == ECONNRESET || err == EPIPE) return side ? NP_END_SERVER_RESET : NP_END_CLIENT_RESET;
    return side ? NP_END_SERVER_ERROR : NP_END_CLIENT_ERROR;
}

/* The ids come from the shared region (shm.c): the workers, the generations of a reload and
 * an upgraded binary draw from one sequence, so an id names one connection in every log. */
uint64_t np_end_new_id(void)
{
    return np_shm_next_id();
}

/* ---------------------------------------------------------------- the ended object */

static void clear_handle(struct np_ended *e)
{
    if (e->handle_ref == LUA_NOREF) return;
    lua_rawgeti(e->L, LUA_REGISTRYINDEX, e->handle_ref);
    ((struct handle *)lua_touserdata(e->L, -1))->e = NULL;
    lua_pop(e->L, 1);
    np_lua_unref(e->L, &e->handle_ref);
}

/* Frees what has ended; nothing of it is on the C stack any more. */
static void on_reap(evutil_socket_t fd, short what, void *arg)
{
    while (reaped) {
        struct np_ended *e = reaped;
        reaped = e->next_reaped;
        clear_handle(e);
        e->reap(e);
    }
}

void np_ended_begin(struct np_ended *e, enum np_ended_kind kind, int row, lua_State *L,
                    void (*reap)(struct np_ended *e))
{
    struct np_counters *n = np_shm_counters(row);

    if (!reaper_ready) {
        event_assign(&reaper, np_base, -1, 0, on_reap, NULL);
        reaper_ready = 1;
    }
    e->id = np_end_new_id();
    e->kind = kind;
    e->end = NP_END_NONE;
    e->detail = NULL;
    e->started = np_now();      /* the loop's time, as its timers count */
    e->row = row;
    e->L = L;
    e->handle_ref = LUA_NOREF;
    e->reap = reap;
    if (kind == NP_ENDED_FLOW) {
        n->flows_opened++;
        n->flows_active++;
    } else {
        n->opened++;
        n->active++;
    }
}

_Static_assert(NP_END_COUNT <= NP_SHM_ENDS, "shm.h's NP_SHM_ENDS must hold every end");

/* Counted at the end, not at the free: max_clients reads active, and a client that closes
 * and reconnects at once must find its ended connections gone. */
static void count_end(const struct np_ended *e)
{
    struct np_counters *n = np_shm_counters(e->row);

    if (e->kind == NP_ENDED_FLOW) {
        n->flows_closed++;
        n->flows_active--;
    } else {
        n->closed++;
        n->active--;
        n->ended[e->end]++;
        np_shm_observe(n->duration, &n->duration_sum_us, np_duration_bounds, NP_DURATION_BUCKETS,
                       np_now() - e->started);
    }
    switch (np_end_class(e->end, e->kind)) {
    case NP_END_REFUSAL:
        n->refused++;
        if (e->kind == NP_ENDED_CONN) np_shm_count_refusal(e->row, e->refusal ? e->refusal : "session");
        break;
    case NP_END_FAILURE: n->errors++; break;
    case NP_END_CLEAN: break;
    }
}

int np_ended_mark(struct np_ended *e, enum np_end how, const char *fmt, va_list ap)
{
    if (e->end != NP_END_NONE) return 0;
    e->end = how == NP_END_NONE ? NP_END_CLOSED : how;
    if (!strcmp(fmt, "%s")) {           /* the common case, often empty: no formatting */
        const char *detail = va_arg(ap, const char *);
        e->detail = detail && detail[0] ? strdup(detail) : NULL;
    } else if (vasprintf(&e->detail, fmt, ap) < 0) {
        e->detail = NULL;
    }
    count_end(e);
    e->next_reaped = reaped;
    reaped = e;
    event_active(&reaper, EV_TIMEOUT, 0);
    return 1;
}

void np_ended_push_handle(lua_State *L, struct np_ended *e)
{
    struct handle *h = lua_newuserdata(L, sizeof *h);

    h->e = e;
    if (luaL_newmetatable(L, handles[e->kind].mt)) {
        lua_pushstring(L, handles[e->kind].label);
        lua_setfield(L, -2, "__metatable");
    }
    lua_setmetatable(L, -2);
    lua_pushvalue(L, -1);
    e->handle_ref = luaL_ref(L, LUA_REGISTRYINDEX);
}

struct np_ended *np_ended_from_handle(lua_State *L, int idx, enum np_ended_kind kind)
{
    return ((struct handle *)luaL_checkudata(L, idx, handles[kind].mt))->e;
}
