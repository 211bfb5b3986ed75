/* server{ on_log }: log lines queued by log.c's sink and delivered to Lua from the loop.
 * The queue is bounded; the function runs under the call budget; a line it does not take is
 * written as usual, so that no line is lost. */
#include "logsink.h"
#include "call.h"
#include "log.h"
#include "loop.h"

#include <event2/event.h>
#include <event2/event_struct.h>
#include <lauxlib.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define MAX_QUEUED 4096         /* lines waiting; past it they are written as usual */

struct entry {
    struct entry *next;
    int level;
    uint64_t conn_id;
    size_t len, msg_at;         /* the whole line (no newline), where its message starts */
    char line[];
};

static struct {
    lua_State *L;
    int fn_ref;
    struct np_limits limits;
    struct entry *head, **tail;
    int queued;
    int delivering;             /* inside the function: its own lines are written as usual */
    int ready;
    struct event deliver;
} sink = { .fn_ref = LUA_NOREF };

static void write_entry(const struct entry *e)
{
    np_log_write_line(e->line, e->len);
}

/* log.c's sink: 1 when the line is queued for the function, 0 to write it as usual. */
static int take(int level, uint64_t conn_id, const char *line, size_t len, size_t msg_at)
{
    struct entry *e;

    if (sink.fn_ref == LUA_NOREF || sink.delivering || sink.queued >= MAX_QUEUED) return 0;
    if (!(e = malloc(sizeof *e + len))) return 0;
    e->next = NULL;
    e->level = level;
    e->conn_id = conn_id;
    e->len = len;
    e->msg_at = msg_at;
    memcpy(e->line, line, len);
    *sink.tail = e;
    sink.tail = &e->next;
    if (sink.queued++ == 0) event_active(&sink.deliver, EV_TIMEOUT, 0);
    return 1;
}

/* on_log({ level =, message =, line =, conn = }) for one line; written as usual if it fails. */
static void deliver_one(const struct entry *e)
{
    lua_State *L = sink.L;
    char err[256];

    lua_rawgeti(L, LUA_REGISTRYINDEX, sink.fn_ref);
    lua_createtable(L, 0, 4);
    lua_pushstring(L, np_log_level_name(e->level));
    lua_setfield(L, -2, "level");
    lua_pushlstring(L, e->line + e->msg_at, e->len - e->msg_at);
    lua_setfield(L, -2, "message");
    lua_pushlstring(L, e->line, e->len);
    lua_setfield(L, -2, "line");
    if (e->conn_id) {
        lua_pushnumber(L, (lua_Number)e->conn_id);
        lua_setfield(L, -2, "conn");
    }
    if (np_call(L, 1, 0, &sink.limits, err, sizeof err) < 0) {
        /* one failure turns it off: a function that fails (or overruns its budget) on every
         * line would cost that much on every line */
        sink.fn_ref = LUA_NOREF;
        np_log_set_sink(NULL);
        write_entry(e);
        np_log(NP_ERR, "on_log: %s: the log is written as usual until a reload", err);
    }
}

static void on_deliver(evutil_socket_t fd, short what, void *arg)
{
    struct entry *e;

    sink.delivering = 1;
    while ((e = sink.head)) {
        sink.head = e->next;
        if (!sink.head) sink.tail = &sink.head;
        sink.queued--;
        if (sink.fn_ref != LUA_NOREF) deliver_one(e);
        else write_entry(e);
        free(e);
    }
    sink.delivering = 0;
}

void np_logsink_flush(void)
{
    struct entry *e;

    while ((e = sink.head)) {
        sink.head = e->next;
        write_entry(e);
        free(e);
    }
    sink.tail = &sink.head;
    sink.queued = 0;
}

void np_logsink_use(lua_State *L, int fn_ref, const struct np_limits *lim)
{
    if (!sink.ready) {
        event_assign(&sink.deliver, np_base, -1, 0, on_deliver, NULL);
        sink.tail = &sink.head;
        sink.ready = 1;
    }
    if (fn_ref == LUA_NOREF) np_logsink_flush();
    sink.L = L;
    sink.fn_ref = fn_ref;
    sink.limits = *lim;
    np_log_set_sink(fn_ref == LUA_NOREF ? NULL : take);
}
