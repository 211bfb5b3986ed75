/* How a connection or a UDP flow ended: a small fixed vocabulary (HAProxy's termination
 * states, in words), and the ended object both embed: one id sequence, one end function,
 * one reaper, the counting by class, the log line's tail and the Lua handle. The log
 * line's `end=` word and the counters are made from the vocabulary; Lua names an end by
 * the same words. */
#ifndef NP_END_H
#define NP_END_H

#include <stdarg.h>
#include <stdint.h>
#include <lua.h>

enum np_end {
    NP_END_NONE = 0,            /* still running */
    NP_END_EOF,                 /* both directions finished cleanly */
    NP_END_CLOSED,              /* closed on purpose: a script, a hook, a service */
    NP_END_REFUSED,             /* turned away: a guard, accept(), a connector's rules */
    NP_END_CONNECT_FAILED,      /* the server could not be reached */
    NP_END_NEGOTIATION_TIMEOUT, /* the connectors took longer than negotiation_timeout */
    NP_END_IDLE_TIMEOUT,        /* no byte either way for idle_timeout */
    NP_END_TOTAL_TIMEOUT,       /* open for total_timeout */
    NP_END_TIMEOUT,             /* a service's own timeout */
    NP_END_CLIENT_RESET,
    NP_END_SERVER_RESET,
    NP_END_CLIENT_ERROR,        /* an I/O error other than a reset */
    NP_END_SERVER_ERROR,
    NP_END_CLIENT_TLS,          /* a TLS failure while relaying */
    NP_END_SERVER_TLS,
    NP_END_CLIENT_STARTTLS,     /* the STARTTLS handshake failed */
    NP_END_SERVER_STARTTLS,
    NP_END_LUA_ERROR,           /* a script raised an error or broke a rule */
    NP_END_NO_MEMORY,
    NP_END_STOPPED,             /* still open at the stop deadline */
    NP_END_DRAINED,             /* still open at the drain deadline of a reload */
    NP_END_EVICTED,             /* a UDP flow pushed out by max_flows (the longest idle) */
    NP_END_COUNT
};

/* What a counter makes of an end. */
enum np_end_class { NP_END_CLEAN, NP_END_REFUSAL, NP_END_FAILURE };

/* "eof", "client reset", "lua error", ...: the words of the log line. */
const char *np_end_name(enum np_end e);

/* The end with that name, or NP_END_NONE. */
enum np_end np_end_parse(const char *name);

/* Connections and UDP flows: what an end counts as may differ by kind (the table in end.c). */
enum np_ended_kind { NP_ENDED_CONN, NP_ENDED_FLOW };

enum np_end_class np_end_class(enum np_end e, enum np_ended_kind kind);

/* The end for an I/O error on side 0 (client) or 1 (server): reset, TLS or other. */
enum np_end np_end_io(int side, int err);

/* What a connection (conn.c) and a UDP flow (udp.c) share from start to free. Its owner
 * embeds it and reads its fields; end.c writes them. */
struct np_ended {
    uint64_t id;                /* in the log line (#id), from the one sequence */
    enum np_ended_kind kind;
    enum np_end end;            /* NP_END_NONE while it runs */
    char *detail;               /* of the end, for its log line; NULL when none (freed by the owner) */
    double started;             /* the loop's time at the start */
    int row;                    /* its proxy's counters (shm.h) */
    const char *refusal;        /* a refusal's reason word for /metrics (static); NULL: "session" */
    lua_State *L;               /* the main state of its config, where its handle is anchored */
    int handle_ref;             /* the Lua handle's anchor, or LUA_NOREF */
    void (*reap)(struct np_ended *e);   /* the owner's teardown (it logs and frees) */
    struct np_ended *next_reaped;
};

/* A new id, for what is logged with one but is neither (the ids share a space in the log). */
uint64_t np_end_new_id(void);

/* e starts: a new id, the loop's time, counted as opened and active in row; reap will be
 * called by the reaper once e has ended. */
void np_ended_begin(struct np_ended *e, enum np_ended_kind kind, int row, lua_State *L,
                    void (*reap)(struct np_ended *e));

/* The one end function: 0 when e had ended already (the first call wins); else 1, with how
 * (NP_END_NONE: closed) and the detail (printf's fmt and ap) set, e counted by the class of
 * its end (no longer active: limits see it gone at once), and queued for the reaper, which
 * clears its Lua handle and calls e->reap once the running callback has returned. */
int np_ended_mark(struct np_ended *e, enum np_end how, const char *fmt, va_list ap);

/* The tail of an ended object's log line, and its arguments: "time=1.234s end=eof: detail". */
#define NP_ENDED_LOG_TAIL "time=%.3fs end=%s%s%s"
#define NP_ENDED_LOG_ARGS(e) np_clock() - (e)->started, np_end_name((e)->end), \
    (e)->detail ? ": " : "", (e)->detail ? (e)->detail : ""

/* Pushes e's Lua handle on L (a userdata of its kind's metatable; anchored until e is
 * freed, then it names nothing). */
void np_ended_push_handle(lua_State *L, struct np_ended *e);

/* What the handle of that kind at idx names (it raises on anything else), or NULL once it
 * has been freed. */
struct np_ended *np_ended_from_handle(lua_State *L, int idx, enum np_ended_kind kind);

#endif
