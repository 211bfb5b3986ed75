/* Host name resolution that never blocks the loop (libevent's evdns, with /etc/hosts). */
#include "resolve.h"
#include "loop.h"

#include <arpa/inet.h>
#include <event2/dns.h>
#include <event2/util.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

struct np_resolve {
    struct evdns_getaddrinfo_request *req;
    struct evdns_request *reverse_req;  /* a reverse lookup's instead */
    np_resolve_cb cb;
    np_reverse_cb reverse_cb;
    void *arg;
    int cancelled;
    int answered;
    int returned;   /* np_resolve_start has returned: the answer frees the handle */
};

static void on_answer(int err, struct evutil_addrinfo *res, void *arg)
{
    struct np_resolve *r = arg;

    r->answered = 1;
    if (r->cancelled) {
        if (res) evutil_freeaddrinfo(res);
    } else {
        r->cb(err, res, r->arg);
    }
    if (r->returned) free(r);
}

struct np_resolve *np_resolve_start(const char *host, int port, np_resolve_cb cb, void *arg)
{
    struct evutil_addrinfo hints;
    struct np_resolve *r = calloc(1, sizeof *r);
    char service[16];

    if (!r) {
        cb(EVUTIL_EAI_MEMORY, NULL, arg);
        return NULL;
    }
    r->cb = cb;
    r->arg = arg;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_protocol = IPPROTO_TCP;
    snprintf(service, sizeof service, "%d", port);
    r->req = evdns_getaddrinfo(np_dns, host, service, &hints, on_answer, r);
    if (r->answered) {          /* answered before returning */
        free(r);
        return NULL;
    }
    if (!r->req) {              /* refused without answering: report it ourselves */
        free(r);
        cb(EVUTIL_EAI_FAIL, NULL, arg);
        return NULL;
    }
    r->returned = 1;
    return r;
}

static void on_reverse_answer(int result, char type, int count, int ttl, void *addresses, void *arg)
{
    struct np_resolve *r = arg;
    const char *name = result == DNS_ERR_NONE && type == DNS_PTR && count > 0 ? *(char **)addresses : NULL;

    r->answered = 1;
    if (!r->cancelled) r->reverse_cb(name ? 0 : result ? result : DNS_ERR_NOTEXIST, name, r->arg);
    if (r->returned) free(r);
}

struct np_resolve *np_resolve_reverse(const char *ip, np_reverse_cb cb, void *arg)
{
    struct np_resolve *r = calloc(1, sizeof *r);
    struct in_addr a4;
    struct in6_addr a6;

    if (!r) {
        cb(DNS_ERR_UNKNOWN, NULL, arg);
        return NULL;
    }
    r->reverse_cb = cb;
    r->arg = arg;
    if (inet_pton(AF_INET, ip, &a4) == 1)
        r->reverse_req = evdns_base_resolve_reverse(np_dns, &a4, 0, on_reverse_answer, r);
    else if (inet_pton(AF_INET6, ip, &a6) == 1)
        r->reverse_req = evdns_base_resolve_reverse_ipv6(np_dns, &a6, 0, on_reverse_answer, r);
    if (r->answered) {
        free(r);
        return NULL;
    }
    if (!r->reverse_req) {      /* not an address, or refused without answering */
        free(r);
        cb(DNS_ERR_FORMAT, NULL, arg);
        return NULL;
    }
    r->returned = 1;
    return r;
}

void np_resolve_cancel(struct np_resolve *r)
{
    r->cancelled = 1;
    /* libevent answers a cancelled request with a cancel code (at once for getaddrinfo,
     * from the loop for a reverse lookup); the answer frees the handle. */
    if (r->reverse_req) evdns_cancel_request(np_dns, r->reverse_req);
    else evdns_getaddrinfo_cancel(r->req);
}
