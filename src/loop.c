/* The one event loop of a process, its DNS resolver, and time helpers. */
#include "loop.h"
#include "log.h"

#include <event2/dns.h>
#include <event2/event.h>
#include <arpa/inet.h>
#include <math.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <stdio.h>

struct event_base *np_base;
int np_worker_index, np_worker_count = 1;
struct evdns_base *np_dns;

int np_loop_init(char *err, size_t errlen)
{
    struct event_config *cfg = event_config_new();

    if (!cfg) goto fail;
    /* One thread per process: the base needs no locks. */
    event_config_set_flag(cfg, EVENT_BASE_FLAG_NOLOCK);
    /* changes to a descriptor's events within one loop turn become one epoll_ctl (or none:
     * an add then a delete), applied just before epoll_wait */
    event_config_set_flag(cfg, EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST);
    np_base = event_base_new_with_config(cfg);
    event_config_free(cfg);
    if (!np_base) goto fail;
    /* Reads resolv.conf and /etc/hosts; without nameservers it falls back to 127.0.0.1.
     * DISABLE_WHEN_INACTIVE: an idle resolver must not keep the loop alive. */
    np_dns = evdns_base_new(np_base, EVDNS_BASE_INITIALIZE_NAMESERVERS |
                                     EVDNS_BASE_DISABLE_WHEN_INACTIVE);
    if (!np_dns) np_dns = evdns_base_new(np_base, EVDNS_BASE_DISABLE_WHEN_INACTIVE);
    if (!np_dns) goto fail;
    return 0;
fail:
    snprintf(err, errlen, "cannot create the event loop");
    return -1;
}

void np_loop_set_nameservers(const char *const *list, int n)
{
    evdns_base_clear_nameservers_and_suspend(np_dns);
    for (int i = 0; i < n; i++)
        if (evdns_base_nameserver_ip_add(np_dns, list[i]) != 0)
            np_log(NP_WARNING, "resolver: cannot use nameserver '%s'", list[i]);
    evdns_base_resume(np_dns);
}

void np_loop_use_system_nameservers(void)
{
    evdns_base_clear_nameservers_and_suspend(np_dns);
    if (evdns_base_resolv_conf_parse(np_dns, DNS_OPTION_NAMESERVERS, "/etc/resolv.conf") != 0)
        np_log(NP_WARNING, "resolver: /etc/resolv.conf gives no nameserver: 127.0.0.1 is asked");
    evdns_base_resume(np_dns);
}

/* The idx-th nameserver the resolver asks, as "ip:port" ("[ip6]:port") in buf; -1 past the
 * last. For netproxy.dns, which asks them itself (TTLs, SRV: evdns gives neither). */
int np_loop_nameserver(int idx, char *buf, size_t len)
{
    struct sockaddr_storage ss;
    char ip[INET6_ADDRSTRLEN];
    int n = evdns_base_get_nameserver_addr(np_dns, idx, (struct sockaddr *)&ss, sizeof ss);

    if (n <= 0 || (size_t)n > sizeof ss) return -1;
    if (ss.ss_family == AF_INET) {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        inet_ntop(AF_INET, &a->sin_addr, ip, sizeof ip);
        snprintf(buf, len, "%s:%u", ip, ntohs(a->sin_port));
    } else if (ss.ss_family == AF_INET6) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
        inet_ntop(AF_INET6, &a->sin6_addr, ip, sizeof ip);
        snprintf(buf, len, "[%s]:%u", ip, ntohs(a->sin6_port));
    } else {
        return -1;
    }
    return 0;
}

void np_loop_free(void)
{
    if (np_dns) evdns_base_free(np_dns, 0);
    if (np_base) event_base_free(np_base);
    np_dns = NULL;
    np_base = NULL;
}

double np_now(void)
{
    struct timeval tv;

    event_base_gettimeofday_cached(np_base, &tv);
    return tv.tv_sec + tv.tv_usec / 1e6;
}

struct timeval np_tv(double seconds)
{
    struct timeval tv;

    if (seconds < 0) seconds = 0;
    tv.tv_sec = (time_t)floor(seconds);
    tv.tv_usec = (suseconds_t)((seconds - floor(seconds)) * 1e6);
    return tv;
}

/* The loop's clock brought up to now (libevent's cached time is a monotonic clock with an
 * offset: mixing it with gettimeofday gives negative durations). */
double np_clock(void)
{
    event_base_update_cache_time(np_base);
    return np_now();
}
