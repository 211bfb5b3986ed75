/* The relay: once both sides are connected, C pumps the bytes both ways, by splice()
 * through a pipe when nothing needs to see them, else through bounded buffers. A leaf: it
 * knows sockets, buffers, pipes and TLS sessions, and reports to its owner through the ops
 * given at creation. */
#ifndef NP_RELAY_H
#define NP_RELAY_H
#include "bucket.h"
#include "end.h"

#include <stddef.h>
#include <stdint.h>
#include <openssl/ssl.h>

struct np_relay;

enum np_relay_mode { NP_RELAY_AUTO, NP_RELAY_SPLICE, NP_RELAY_BUFFERED };

enum { NP_TO_SERVER = 0, NP_TO_CLIENT = 1 };   /* the two directions (and the side they come from) */
enum { NP_CLIENT = 0, NP_SERVER = 1 };         /* the two sides */

enum np_filter_rc { NP_FILTER_KEEP, NP_FILTER_REPLACE, NP_FILTER_STOP };

struct np_relay_ops {
    /* A direction's filter (a hook) over the len bytes just read in direction dir; at EOF it
     * is called once more with len 0 and eof set. KEEP passes the bytes on, REPLACE passes
     * *out instead (valid until filter_done), STOP ends the relay (the owner has already
     * decided how the connection ends). */
    enum np_filter_rc (*filter)(void *arg, int dir, const char *data, size_t len, int eof,
                                const char **out, size_t *outlen);
    void (*filter_done)(void *arg);
    /* The relay has ended: called once, as the last thing an event handler does. The relay
     * arms no event afterwards and is freed by its owner (np_relay_free), later. */
    void (*ended)(void *arg, enum np_end how, const char *detail);
};

/* One side: a socket (rfd == wfd), or standard input and output; its TLS session if it
 * speaks TLS already; bytes read from it before the relay (they go out first). */
struct np_relay_side {
    int rfd, wfd;
    SSL *ssl;
    int readable;               /* bytes are known to wait (TCP_DEFER_ACCEPT): read at once */
    const char *ahead;
    size_t ahead_len;
};

struct np_relay_config {
    enum np_relay_mode mode;
    int filtered[2];            /* per direction: call ops->filter on its bytes */
    int may_starttls;           /* a side may be upgraded later: do not splice */
    size_t buffer_size;         /* bytes a copying direction holds */
    double idle_timeout;        /* seconds without a byte either way; 0 = none */
    uint64_t *bytes[2];         /* per direction: counters to add the bytes moved to */
    uint64_t *more_bytes[2];    /* a second set (the proxy's), or NULL */
    double rate;                /* per_conn shaping: bytes a second each way; 0 = none */
    struct np_bucket *shared[2][2]; /* per direction: shared buckets (its source's, its
                                 * proxy's: bucket.h) or NULL; the relay takes these
                                 * references, even when np_relay_new fails */
    uint64_t log_id;            /* the connection id and name its log lines carry */
    const char *log_name;       /* kept by the owner for the relay's life */
};

/* A relay over both sides, which it owns from now on (fds and TLS sessions; the ahead bytes
 * are copied). The first bytes move on the next loop iteration, never inside the caller.
 * NULL when out of memory: nothing was taken then. */
struct np_relay *np_relay_new(const struct np_relay_config *cfg, const struct np_relay_ops *ops,
                              void *arg, const struct np_relay_side *client,
                              const struct np_relay_side *server);

/* Queues bytes for one direction, after the chunk being filtered, if any. 0, or -1 when
 * out of memory. */
int np_relay_inject(struct np_relay *r, int dir, const char *data, size_t len);

/* Upgrades a side to TLS (in the context's role, sending sni and checking verify_name as a
 * client) once the bytes toward it are out in clear; reading stops now. 0, or -1 when that
 * side already speaks TLS (or is not a socket). */
int np_relay_starttls(struct np_relay *r, int side, SSL_CTX *ctx, int server,
                      const char *sni, const char *verify_name);

/* Stops every event: the owner has ended the connection. No callback comes afterwards. */
void np_relay_halt(struct np_relay *r);

/* Closes both sides and frees everything. Never from inside one of the relay's callbacks. */
void np_relay_free(struct np_relay *r);

/* The client side's socket (its read end for standard input and output), the server's. */
int np_relay_client_fd(const struct np_relay *r);
int np_relay_server_fd(const struct np_relay *r);

/* "splice", "buffered", "hook" or "client->server splice, server->client hook". */
const char *np_relay_describe(const struct np_relay *r, char *out, size_t outlen);

#endif
