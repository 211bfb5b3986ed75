/* Host name resolution that never blocks the loop (libevent's evdns, with /etc/hosts). */
#include "resolve.h"
#include "loop.h"

#include <event2/dns.h>
#include <event2/util.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

struct np_resolve {
    struct evdns_getaddrinfo_request *req;
    np_resolve_cb cb;
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

void np_resolve_cancel(struct np_resolve *r)
{
    r->cancelled = 1;
    /* libevent answers a cancelled request at once with EVUTIL_EAI_CANCEL; on_answer frees. */
    evdns_getaddrinfo_cancel(r->req);
}
