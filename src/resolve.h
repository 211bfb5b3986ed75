/* Host name resolution that never blocks the loop (libevent's evdns, with /etc/hosts). */
#ifndef NP_RESOLVE_H
#define NP_RESOLVE_H

#include <event2/util.h>
struct np_resolve;

/* err is 0 or an EVUTIL_EAI_* code; the callee owns res (evutil_freeaddrinfo). */
typedef void (*np_resolve_cb)(int err, struct evutil_addrinfo *res, void *arg);

/* Starts resolving host for a TCP connection to port. cb may run before this returns
 * (IP literals, /etc/hosts): then NULL is returned. Otherwise the handle is valid until cb
 * runs or np_resolve_cancel() is called. */
struct np_resolve *np_resolve_start(const char *host, int port, np_resolve_cb cb, void *arg);

/* err is 0 with the name (valid during the call), or a DNS_ERR_* code (evdns_err_to_string). */
typedef void (*np_reverse_cb)(int err, const char *name, void *arg);

/* Starts looking up the name of an IP address (a PTR query; /etc/hosts is not read). As
 * np_resolve_start: cb may run before this returns (a bad address), then NULL. */
struct np_resolve *np_resolve_reverse(const char *ip, np_reverse_cb cb, void *arg);

/* Abandons a lookup: cb will not be called. */
void np_resolve_cancel(struct np_resolve *r);

#endif
