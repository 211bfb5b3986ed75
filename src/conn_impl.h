/* What the conn*.c files and sniff.c share about a connection: its fields, and the steps
 * one file starts and another carries on. Not for other files. */
#ifndef NP_CONN_IMPL_H
#define NP_CONN_IMPL_H
#include "conn.h"
#include "defer.h"
#include "dial.h"
#include "end.h"
#include "idle.h"
#include "sniffer.h"
#include "task.h"

#include <event2/event_struct.h>
#include <stdint.h>
#include <sys/types.h>

struct np_route;
struct np_tls_identity;
struct np_relay_side;

/* What a connection holds only while its connectors negotiate: their coroutine, or, for
 * a routed proxy (proxy.h), the connect the core makes itself and the client's socket;
 * for a sniffing one, also the bytes it has read to choose the route by. */
struct session {
    struct event deadline;      /* negotiation timeout */
    int deadline_armed;         /* np_conn_arm_deadline added it (a deletion costs otherwise) */
    int routed;                 /* which of the union below it holds */
    /* one or the other: a session is small enough for malloc's per-thread cache (1 KiB),
     * which a short connection's allocations are served from */
    union {
        struct np_task task;    /* not routed: the connectors' coroutine */
        struct {                /* routed: the core's own connect, maybe after a sniff */
            struct np_dial dial;
            int client_fd[2];           /* read, write; -1 once the relay has them */
            struct np_sniffer sniffer;  /* a sniffing proxy's: the client's first bytes, */
            char *ahead;                /* taken from it once routed, for the server first */
            size_t ahead_len;
        };
    };
};

struct np_conn {
    struct np_ended ended;      /* its id, its end, its Lua handle (end.h) */
    struct np_proxy *proxy;
    struct session *session;    /* while the connectors negotiate */
    struct np_deferred session_over;    /* lets the session go once it has returned */
    struct np_relay *relay;     /* once they are done */
    const struct np_route *route;       /* the server conn.c reaches itself (proxy.h), if any */
    int negotiating;            /* counted in proxy->negotiating until the relay or the end */
    uint64_t bytes[2];          /* client->server, server->client */
    char *client;               /* as the log line names them */
    char *target;
    char *user;                 /* authenticated by the connectors (np_conn_set_user), or NULL */
    char *server;               /* the address reached, for the access log (only with one) */
    double dial_started;        /* the loop's clock when conn_routed.c began to connect */
    double connect_time;        /* seconds the server's connect took, or < 0 */
    double relayed_at;          /* the loop's clock when the relay (or a service) began, or 0 */
    int pool_row;               /* the pool server it holds (active count), or -1 */
    int pool_queue;             /* the pool queue it waits in (max_conns), or -1 */
    struct np_tls_identity *tls;        /* a TLS client's identity and JA4 (np_conn_set_tls), or NULL */
    uint32_t limit_tokens[4];   /* per_source / per_user entries it counts in (limits.h); 0: none */
    int hook_ref[2], hook_conn_ref;
    int closed_ref;             /* np_conn_when_closed's function, or LUA_NOREF */
    struct np_idle idle;        /* a served connection's idle_timeout */
    struct event *total;        /* its total_timeout, when the proxy sets one */
    np_conn_done_fn *done;
    void *done_arg;
    void (*attached)(void *arg);        /* released with the connection (a UDP association) */
    void *attached_arg;
    struct np_conn *next, **pprev;  /* in proxy->conns */
};

/* The connection whose hook (or sniffing pick) is running, else NULL. */
extern struct np_conn *np_conn_in_hook;

/* ---------------------------------------------------------------- conn.c */

/* A new connection, counted and logged; NULL (the fds closed, done told) when out of memory. */
struct np_conn *np_conn_new(struct np_proxy *p, int rfd, int wfd, const char *client,
                            np_conn_done_fn *done, void *done_arg);

/* The negotiation is over (counted in proxy->negotiating no more). */
void np_conn_negotiated(struct np_conn *c);
/* The negotiation's deadline (negotiation_timeout), when the proxy has one; and its end. */
void np_conn_arm_deadline(struct np_conn *c);
void np_conn_disarm_deadline(struct np_conn *c);
/* Lets the session go once the callback that ended it has returned (np_defer). */
void np_conn_session_over(struct np_deferred *d);

/* ---------------------------------------------------------------- the other ways to start
 * (np_conn_start, in conn_session.c, starts a session or one of these) */

/* The config fixed the server: connect, then relay (conn_routed.c). */
void np_conn_start_routed(struct np_conn *c, int rfd, int wfd);
/* Connects to c->route; the relay starts once connected (conn_routed.c). */
void np_conn_dial_route(struct np_conn *c);
/* The route is chosen by the client's first bytes (sniff.c). */
void np_conn_start_sniffing(struct np_conn *c, int rfd, int wfd);

/* The relay over both sides, which it owns from then on; -1 when it could not start
 * (nothing taken). The negotiation is over (conn_relay.c). */
int np_conn_start_relay(struct np_conn *c, const struct np_relay_side *client,
                        const struct np_relay_side *server, const int filtered[2], int may_starttls);

#endif
