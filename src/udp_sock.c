/* The listening UDP sockets, shared by address with references (a reload keeps the
 * sockets its new config names again), each a group (udp_group.c); their reading, armed
 * and disarmed; and the hand-over of them all to an upgraded binary (SIGUSR2). */
#include "udp_impl.h"
#include "log.h"
#include "loop.h"
#include "proxy.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int np_udp_started;

static struct np_usock *socks;

/* ---------------------------------------------------------------- sockets by address */

static void usock_disarm(struct np_usock *ls)
{
    if (ls->armed) event_del(&ls->ev);
    ls->armed = 0;
}

void np_usock_arm(struct np_usock *ls)
{
    if (ls->fd < 0 || ls->armed) return;
    event_assign(&ls->ev, np_base, ls->fd, EV_READ | EV_PERSIST, np_udp_on_readable, ls);
    event_add(&ls->ev, NULL);
    ls->armed = 1;
}

/* "127.0.0.1:53" and "127.0.0.1:0" name the same host. */
static int same_host(const char *a, const char *b)
{
    const char *ca = strrchr(a, ':'), *cb = strrchr(b, ':');

    return ca && cb && ca - a == cb - b && !strncmp(a, b, (size_t)(ca - a));
}

/* The open socket for sa: by address; a port 0 is a new one, except the group a binary
 * upgrade passed for the same proxy (name) on the same host, which it takes over. */
static struct np_usock *usock_find(const char *want, const char *name)
{
    size_t n = strlen(want);
    int port0 = n >= 2 && !strcmp(want + n - 2, ":0");

    for (struct np_usock *ls = socks; ls; ls = ls->next) {
        if (ls->fd < 0) continue;
        if (!port0 && !strcmp(ls->addr, want)) return ls;
        if (port0 && ls->passed_by && !strcmp(ls->passed_by, name) && same_host(ls->addr, want)) {
            free(ls->passed_by);        /* taken: another port 0 of that proxy gets its own */
            ls->passed_by = NULL;
            return ls;
        }
    }
    return NULL;
}

static struct np_usock *usock_new(void)
{
    struct np_usock *ls = calloc(1, sizeof *ls);

    if (!ls) return NULL;
    ls->fd = -1;
    ls->refs = 1;
    ls->reading = 1;
    ls->next = socks;
    socks = ls;
    return ls;
}

static void usock_named(struct np_usock *ls)
{
    struct sockaddr_storage ss;
    socklen_t sslen = sizeof ss;

    ls->fd = ls->group.fds[0];
    if (getsockname(ls->fd, (struct sockaddr *)&ss, &sslen) == 0)
        np_addr_format((struct sockaddr *)&ss, sslen, ls->addr, sizeof ls->addr);
}

/* The socket of sa for proxy name, shared (refs + 1) or bound, with its group grown to n
 * sockets and steering over n (the workers). NULL with a message in err. */
struct np_usock *np_usock_get(const struct sockaddr *sa, socklen_t len, int n, const char *name,
                        char *err, size_t errlen)
{
    char want[NP_ADDRSTRLEN];
    struct np_usock *ls;

    np_addr_format(sa, len, want, sizeof want);
    if ((ls = usock_find(want, name))) {
        ls->refs++;
        if (np_udp_group_resize(&ls->group, n) == 0) return ls;
        snprintf(err, errlen, "cannot listen on udp %s with %d sockets: %s", ls->addr, n, strerror(errno));
        np_usock_put(ls, 0);
        return NULL;
    }
    if (!(ls = usock_new()) || np_udp_group_open(&ls->group, sa, len, n) < 0) {
        snprintf(err, errlen, "cannot listen on udp %s: %s", want, strerror(ls ? errno : ENOMEM));
        if (ls) np_usock_put(ls, 0);
        return NULL;
    }
    usock_named(ls);
    return ls;
}

void np_usock_put(struct np_usock *ls, int say)
{
    if (--ls->refs > 0) return;
    if (say && ls->fd >= 0) np_log(NP_NOTICE, "no longer listening on udp %s", ls->addr);
    usock_disarm(ls);
    for (size_t i = 0; i < ls->nbuckets; i++)           /* flows cannot outlive their socket */
        while (ls->buckets[i]) np_flow_close(ls->buckets[i], NP_END_DRAINED, "%s", "no longer listening");
    np_udp_group_close(&ls->group);
    ls->fd = -1;
    for (struct np_usock **pp = &socks; *pp; pp = &(*pp)->next) {
        if (*pp == ls) {
            *pp = ls->next;
            break;
        }
    }
    free(ls->passed_by);
    free(ls->buckets);                  /* flows being reaped no longer look at it */
    free(ls);
}

/* ---------------------------------------------------------------- the hand-over (SIGUSR2) */

/* NETPROXY_UDP_FDS: "FD:INDEX:NAME,..." per socket, NAME the proxy's name in hex (any
 * byte may be in a name). */
char *np_udp_handover(void)
{
    size_t size = 1, used = 0;
    char *text;

    for (struct np_usock *ls = socks; ls; ls = ls->next) {
        const char *name = ls->serve ? ls->serve->p->name : "";
        size += (size_t)ls->group.n * (32 + 2 * strlen(name));
    }
    if (!(text = malloc(size))) return NULL;
    text[0] = '\0';
    for (struct np_usock *ls = socks; ls; ls = ls->next) {
        const char *name = ls->serve ? ls->serve->p->name : "";
        for (int i = 0; i < ls->group.n; i++) {
            if (ls->group.fds[i] < 0) continue;
            used += (size_t)snprintf(text + used, size - used, "%s%d:%d:", used ? "," : "", ls->group.fds[i], i);
            for (const unsigned char *c = (const unsigned char *)name; *c; c++)
                used += (size_t)snprintf(text + used, size - used, "%02x", *c);
        }
    }
    return text;
}

int np_udp_fds(int *fds, int max)
{
    int n = 0;

    for (struct np_usock *ls = socks; ls; ls = ls->next)
        for (int i = 0; i < ls->group.n; i++)
            if (ls->group.fds[i] >= 0 && n++ < max) fds[n - 1] = ls->group.fds[i];
    return n;
}

static char *unhex(const char *p, size_t n)
{
    char *name = malloc(n / 2 + 1);
    size_t i = 0;
    unsigned v;

    if (!name) return NULL;
    for (; 2 * i + 1 < n && sscanf(p + 2 * i, "%2x", &v) == 1; i++) name[i] = (char)v;
    name[i] = '\0';
    return name;
}

/* One passed socket joins the group of its address (made on its first socket). */
static void adopt_one(int fd, int index, const char *hexname, size_t hexlen)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    char addr[NP_ADDRSTRLEN];
    struct np_usock *ls;

    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    fcntl(fd, F_SETFD, FD_CLOEXEC);
    if (index < 0 || index > 1024 || getsockname(fd, (struct sockaddr *)&ss, &len) < 0) {
        np_log(NP_WARNING, "the previous binary passed a bad udp socket (fd %d, index %d): closed", fd, index);
        close(fd);
        return;
    }
    np_addr_format((struct sockaddr *)&ss, len, addr, sizeof addr);
    for (ls = socks; ls && !(ls->passed && !strcmp(ls->addr, addr)); ls = ls->next) {}
    if (!ls && (ls = usock_new())) {
        ls->passed = 1;
        ls->passed_by = unhex(hexname, hexlen);
        snprintf(ls->addr, sizeof ls->addr, "%s", addr);
    }
    if (!ls || np_udp_group_put(&ls->group, index, fd) < 0) {
        np_log(NP_ERR, "out of memory for a passed udp socket on %s: closed", addr);
        close(fd);
    }
}

int np_udp_adopt(void)
{
    const char *list = getenv("NETPROXY_UDP_FDS");
    int n = 0;

    if (!list) return 0;
    for (const char *p = list; *p; p += strcspn(p, ",") + (p[strcspn(p, ",")] == ',')) {
        int fd, index, at = 0;
        size_t end = strcspn(p, ",");
        if (sscanf(p, "%d:%d:%n", &fd, &index, &at) < 2 || at == 0 || (size_t)at > end) continue;
        adopt_one(fd, index, p + at, end - (size_t)at);
        n++;
    }
    unsetenv("NETPROXY_UDP_FDS");       /* not for the workers to see */
    for (struct np_usock *ls = socks, *next; ls; ls = next) {
        int holes = 0;
        next = ls->next;
        if (!ls->passed) continue;
        for (int i = 0; i < ls->group.n; i++) holes += ls->group.fds[i] < 0;
        if (holes || ls->group.n == 0) {    /* the kernel's order of the group is unknown */
            np_log(NP_WARNING, "the previous binary passed an incomplete udp group on %s: closed", ls->addr);
            ls->passed = 0;
            np_usock_put(ls, 0);
            continue;
        }
        usock_named(ls);
        np_log(NP_INFO, "the previous binary passed %d udp sockets on %s", ls->group.n, ls->addr);
    }
    return n;
}

void np_udp_adopted_done(void)
{
    for (struct np_usock *ls = socks, *next; ls; ls = next) {
        next = ls->next;
        if (!ls->passed) continue;
        ls->passed = 0;
        if (ls->refs == 1)
            np_log(NP_WARNING, "passed udp sockets on %s are ones no proxy listens on: closed", ls->addr);
        np_usock_put(ls, 0);
    }
}

/* ---------------------------------------------------------------- reading */

void np_udp_start(int index)
{
    np_udp_started = 1;
    for (struct np_usock *ls = socks; ls; ls = ls->next) {
        ls->fd = np_udp_group_keep(&ls->group, index);
        np_usock_arm(ls);
    }
}

void np_udp_stop_reading(void)
{
    for (struct np_usock *ls = socks; ls; ls = ls->next) {
        usock_disarm(ls);
        ls->reading = 0;
    }
}
