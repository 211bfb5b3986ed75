/* How a connection ended: a small fixed vocabulary (HAProxy's termination states, in
 * words). The log line's `end=` word and the counters are made from it; Lua names an end
 * by the same words. */
#ifndef NP_END_H
#define NP_END_H

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

enum np_end_class np_end_class(enum np_end e);

/* The end for an I/O error on side 0 (client) or 1 (server): reset, TLS or other. */
enum np_end np_end_io(int side, int err);

#endif
