/* The one event loop of a process, its DNS resolver, and time helpers. */
#ifndef NP_LOOP_H
#define NP_LOOP_H
#include <stddef.h>
#include <sys/time.h>

struct event_base;
struct evdns_base;

extern struct event_base *np_base;
extern struct evdns_base *np_dns;

/* Creates the loop and the resolver. Returns 0, or -1 with a message in err. */
int np_loop_init(char *err, size_t errlen);
void np_loop_free(void);

/* Replaces the nameservers from resolv.conf with these "ip[:port]" entries. */
void np_loop_set_nameservers(const char *const *list, int n);
/* Back to the nameservers of /etc/resolv.conf, as at start without server{ resolvers }. */
void np_loop_use_system_nameservers(void);

/* This serving process's index among the workers (0..count-1) and their count: set by
 * worker.c when it starts serving, read by core.worker() (ngx.worker.id/count). */
extern int np_worker_index, np_worker_count;

/* The idx-th nameserver asked, "ip:port", in buf: 0, or -1 past the last. */
int np_loop_nameserver(int idx, char *buf, size_t len);

/* Seconds since the epoch, as cached by the loop for the current iteration. */
double np_now(void);
struct timeval np_tv(double seconds);

/* Seconds since the epoch now, not the loop's cached time (for durations that a long
 * callback may have stretched). */
double np_clock(void);

#endif
