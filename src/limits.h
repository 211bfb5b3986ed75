/* Limits per client, shared by the workers: connections at once and a rate of new
 * connections per key (a client address grouped by prefix, or a user name), in one table
 * of fixed size made before fork. */
#ifndef NP_LIMITS_H
#define NP_LIMITS_H
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* per_source / per_user as the config gave them; set = 0: no rule. */
struct np_limit_rule {
    int set;
    uint32_t max_conns;         /* 0: no bound */
    uint32_t rate_n;            /* new connections per rate_s seconds; 0: no bound */
    double rate_s;
    int v6_prefix;              /* per_source: IPv6 clients grouped by this prefix */
};

/* Why a client was turned away (the metric's reason label): see np_limits_reason. */
enum np_limit_why { NP_LIMIT_OK, NP_LIMIT_SOURCE_CONNS, NP_LIMIT_SOURCE_RATE, NP_LIMIT_USER_CONNS,
                    NP_LIMIT_USER_RATE, NP_LIMIT_FULL, NP_LIMIT_NWHY };

/* The table of `entries` entries (rounded up to 16), made once before fork; a later call
 * (a reload) keeps the first size. 0, or -1 with err. */
int np_limits_init(size_t entries, char *err, size_t errlen);

/* The key text of a client address: IPv4 (an IPv4-mapped IPv6 too) as dotted quad, IPv6 as
 * eight groups of 4 hex digits masked to v6_prefix bits and "/PREFIX" (the same text as
 * netproxy.gate.source_key). Returns its length, 0 for no IP address. */
size_t np_limits_source_key(const struct sockaddr *sa, int v6_prefix, char *out, size_t outlen);
/* The same from an address's text ("192.0.2.1", "2001:db8::1"). */
size_t np_limits_source_key_text(const char *ip, int v6_prefix, char *out, size_t outlen);

/* One more connection for key (scope: a proxy's name, or "" for server{}; user: a user
 * rule, else a source one) under rule r: NP_LIMIT_OK and *token set (0: nothing held,
 * the rule counts no connections; else give it back with np_limits_put when the
 * connection ends), or why not. A full neighbourhood of the table (every entry the key may
 * take holds live connections) refuses: NP_LIMIT_FULL. */
enum np_limit_why np_limits_take(const char *scope, int user, const char *key, size_t keylen,
                                 const struct np_limit_rule *r, uint32_t *token);
void np_limits_put(uint32_t token);

/* A worker gone (its slot given back): the connections it held are no longer counted. */
void np_limits_release_slot(int slot);

/* The metric label of a reason ("per_source_conns"...), and the words for a log line
 * ("per_source: max_conns 2") written into buf. */
const char *np_limits_label(enum np_limit_why why);
const char *np_limits_reason(enum np_limit_why why, const struct np_limit_rule *r, int server,
                             char *buf, size_t len);

#endif
