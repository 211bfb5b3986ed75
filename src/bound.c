/* The registry of bound sockets (bound.h): one list of entries for TCP, unix and UDP
 * addresses, their sockets by worker index, and their hand-over from an upgrading binary or
 * systemd. What is done with the sockets (accepting, reading datagrams) is the owner's. */
#include "bound.h"
#include "log.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_INDEX 1024          /* a worker index past it in a hand-over is a bad one */

static struct np_bound *entries;
static int adopted;

/* ---------------------------------------------------------------- entries */

/* "127.0.0.1:53" and "127.0.0.1:0" name the same host. */
static int same_host(const char *a, const char *b)
{
    const char *ca = strrchr(a, ':'), *cb = strrchr(b, ':');

    return ca && cb && ca - a == cb - b && !strncmp(a, b, (size_t)(ca - a));
}

struct np_bound *np_bound_find(int kind, const struct sockaddr *sa, socklen_t len, const char *name)
{
    char want[NP_ADDRSTRLEN];
    size_t n;
    int port0;

    np_addr_format(sa, len, want, sizeof want);
    n = strlen(want);
    port0 = sa->sa_family != AF_UNIX && n >= 2 && !strcmp(want + n - 2, ":0");
    for (struct np_bound *b = entries; b; b = b->next) {
        if (b->kind != kind || b->n == 0) continue;
        if (!port0 && !strcmp(b->addr, want)) return b;
        if (port0 && name && b->passed_by && !strcmp(b->passed_by, name) && same_host(b->addr, want)) {
            free(b->passed_by);         /* taken: another port 0 of that proxy gets its own */
            b->passed_by = NULL;
            return b;
        }
    }
    return NULL;
}

struct np_bound *np_bound_new(int kind)
{
    struct np_bound *b = calloc(1, sizeof *b);

    if (!b) return NULL;
    b->kind = kind;
    b->refs = 1;
    b->next = entries;
    entries = b;
    return b;
}

void np_bound_named(struct np_bound *b)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;

    if (b->n > 0 && b->fds[0] >= 0 && getsockname(b->fds[0], (struct sockaddr *)&ss, &len) == 0)
        np_addr_format((struct sockaddr *)&ss, len, b->addr, sizeof b->addr);
}

void np_bound_own(struct np_bound *b, const struct np_bound_ops *ops, void *owner)
{
    b->ops = ops;
    b->owner = owner;
}

void np_bound_hold(struct np_bound *b)
{
    b->refs++;
}

int np_bound_drop(struct np_bound *b, int say)
{
    if (--b->refs > 0) return b->refs;
    if (b->ops && b->ops->release) b->ops->release(b, say);
    np_bound_close(b);
    for (struct np_bound **pp = &entries; *pp; pp = &(*pp)->next) {
        if (*pp == b) {
            *pp = b->next;
            break;
        }
    }
    free(b->passed_by);
    free(b);
    return 0;
}

struct np_bound *np_bound_next(int kind, struct np_bound *prev)
{
    struct np_bound *b = prev ? prev->next : entries;

    while (b && b->kind != kind) b = b->next;
    return b;
}

/* ---------------------------------------------------------------- sockets by worker index */

int np_bound_put_fd(struct np_bound *b, int index, int fd)
{
    if (index >= b->n) {
        int *grown = realloc(b->fds, (index + 1) * sizeof *grown);
        if (!grown) return -1;
        b->fds = grown;
        while (b->n <= index) b->fds[b->n++] = -1;
    }
    if (b->fds[index] >= 0) close(b->fds[index]);
    b->fds[index] = fd;
    return 0;
}

void np_bound_truncate(struct np_bound *b, int n)
{
    for (; b->n > n; b->n--)
        if (b->fds[b->n - 1] >= 0) close(b->fds[b->n - 1]);
}

int np_bound_keep(struct np_bound *b, int index)
{
    int fd;

    if (b->n == 0) return -1;
    index %= b->n;
    fd = b->fds[index];
    for (int i = 0; i < b->n; i++)
        if (i != index && b->fds[i] >= 0) close(b->fds[i]);
    b->fds[0] = fd;
    b->n = 1;
    return fd;
}

void np_bound_close(struct np_bound *b)
{
    np_bound_truncate(b, 0);
    free(b->fds);
    b->fds = NULL;
}

/* ---------------------------------------------------------------- the hand-over */

char *np_bound_handover(void)
{
    size_t size = 1, used = 0;
    char *text;

    for (struct np_bound *b = entries; b; b = b->next) {
        const char *name = b->ops && b->ops->name ? b->ops->name(b) : "";
        size += (size_t)b->n * (40 + 2 * strlen(name));
    }
    if (!(text = malloc(size))) return NULL;
    text[0] = '\0';
    for (struct np_bound *b = entries; b; b = b->next) {
        const char *name = b->ops && b->ops->name ? b->ops->name(b) : "";
        for (int i = 0; i < b->n; i++) {
            if (b->fds[i] < 0) continue;
            used += (size_t)snprintf(text + used, size - used, "%s%c:%d:%d:", used ? "," : "", b->kind, b->fds[i], i);
            for (const unsigned char *c = (const unsigned char *)name; *c; c++)
                used += (size_t)snprintf(text + used, size - used, "%02x", *c);
        }
    }
    return text;
}

int np_bound_fds(int *fds, int max)
{
    int n = 0;

    for (struct np_bound *b = entries; b; b = b->next)
        for (int i = 0; i < b->n; i++)
            if (b->fds[i] >= 0 && n++ < max) fds[n - 1] = b->fds[i];
    return n;
}

int np_bound_count(int kind)
{
    int n = 0;

    for (struct np_bound *b = entries; b; b = b->next)
        for (int i = 0; i < b->n; i++) n += b->kind == kind && b->fds[i] >= 0;
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

static const char *kind_word(int kind)
{
    return kind == NP_BOUND_UDP ? "udp " : "";
}

/* One passed socket joins the passed entry of its kind and address (made on its first
 * socket) as number index (-1: the next one). */
static void adopt_one(int kind, int fd, int index, const char *hexname, size_t hexlen, const char *from)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    char addr[NP_ADDRSTRLEN];
    struct np_bound *b;
    int one = 1;

    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    fcntl(fd, F_SETFD, FD_CLOEXEC);
    if (kind == NP_BOUND_TCP) setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);  /* fails harmlessly on unix */
    if ((kind != NP_BOUND_TCP && kind != NP_BOUND_UDP) || index >= MAX_INDEX ||
        getsockname(fd, (struct sockaddr *)&ss, &len) < 0) {
        np_log(NP_WARNING, "%s passed a bad socket (fd %d, index %d): closed", from, fd, index);
        close(fd);
        return;
    }
    np_addr_format((struct sockaddr *)&ss, len, addr, sizeof addr);
    for (b = entries; b && !(b->passed && b->kind == kind && !strcmp(b->addr, addr)); b = b->next) {}
    if (!b && (b = np_bound_new(kind))) {
        b->passed = 1;
        b->passed_by = hexlen ? unhex(hexname, hexlen) : NULL;
        snprintf(b->addr, sizeof b->addr, "%s", addr);
    }
    if (!b || np_bound_put_fd(b, index < 0 ? b->n : index, fd) < 0) {
        np_log(NP_ERR, "out of memory for a passed socket on %s%s: closed", kind_word(kind), addr);
        close(fd);
    }
}

/* NETPROXY_FDS: "KIND:FD:INDEX:NAME,...". Returns how many sockets. */
static int adopt_upgrade(const char *list)
{
    int n = 0;

    for (const char *p = list; *p; p += strcspn(p, ",") + (p[strcspn(p, ",")] == ',')) {
        int fd, index, at = 0;
        char kind;
        size_t end = strcspn(p, ",");
        if (sscanf(p, "%c:%d:%d:%n", &kind, &fd, &index, &at) < 3 || at == 0 || (size_t)at > end) continue;
        adopt_one(kind, fd, index, p + at, end - (size_t)at, "the previous binary");
        n++;
    }
    return n;
}

/* What a build of this version from before NETPROXY_FDS passes, so that an upgrade from it
 * still takes its sockets over: NETPROXY_LISTEN_FDS, "FD,..." (the listeners, the SO_REUSEPORT
 * copies of an address in their order), and NETPROXY_UDP_FDS, "FD:INDEX:NAME,...". Returns
 * how many sockets. */
static int adopt_older(const char *tcp, const char *udp)
{
    int n = 0;

    for (const char *p = tcp ? tcp : ""; *p; p += strcspn(p, ",") + (p[strcspn(p, ",")] == ',')) {
        adopt_one(NP_BOUND_TCP, atoi(p), -1, "", 0, "the previous binary");
        n++;
    }
    for (const char *p = udp ? udp : ""; *p; p += strcspn(p, ",") + (p[strcspn(p, ",")] == ',')) {
        int fd, index, at = 0;
        size_t end = strcspn(p, ",");
        if (sscanf(p, "%d:%d:%n", &fd, &index, &at) < 2 || at == 0 || (size_t)at > end) continue;
        adopt_one(NP_BOUND_UDP, fd, index, p + at, end - (size_t)at, "the previous binary");
        n++;
    }
    return n;
}

/* LISTEN_FDS from systemd (for this pid): fds 3..., each a listener; several on one address
 * are its per-worker sockets, in order. Returns how many. */
static int adopt_systemd(void)
{
    const char *pid = getenv("LISTEN_PID"), *fds = getenv("LISTEN_FDS");
    int n;

    if (!pid || !fds || atoi(pid) != (int)getpid() || (n = atoi(fds)) <= 0) return 0;
    for (int fd = 3; fd < 3 + n; fd++) adopt_one(NP_BOUND_TCP, fd, -1, "", 0, "systemd");
    return n;
}

/* The passed entries are complete (a group's order is the kernel's: a hole cannot be
 * filled) and named; said. */
static void passed_complete(const char *from)
{
    for (struct np_bound *b = entries, *next; b; b = next) {
        int holes = 0;
        next = b->next;
        if (!b->passed) continue;
        for (int i = 0; i < b->n; i++) holes += b->fds[i] < 0;
        if (holes || b->n == 0) {
            np_log(NP_WARNING, "%s passed an incomplete %sgroup on %s: closed", from, kind_word(b->kind), b->addr);
            b->passed = 0;
            np_bound_drop(b, 0);
            continue;
        }
        np_bound_named(b);
        if (b->kind == NP_BOUND_UDP)
            np_log(NP_INFO, "%s passed %d udp sockets on %s", from, b->n, b->addr);
        else
            np_log(NP_INFO, "%s passed a socket listening on %s", from, b->addr);
    }
}

int np_bound_adopt(void)
{
    const char *upgrade = getenv("NETPROXY_FDS");
    const char *tcp = getenv("NETPROXY_LISTEN_FDS"), *udp = getenv("NETPROXY_UDP_FDS");
    int older = !upgrade && (tcp || udp);
    const char *from = upgrade || older ? "the previous binary" : "systemd";
    int n;

    if (adopted) return 0;
    adopted = 1;
    n = upgrade ? adopt_upgrade(upgrade) : older ? adopt_older(tcp, udp) : adopt_systemd();
    unsetenv("NETPROXY_FDS");           /* not for the workers to see again */
    unsetenv("NETPROXY_LISTEN_FDS");
    unsetenv("NETPROXY_UDP_FDS");
    if (!upgrade && !older && n > 0) {
        unsetenv("LISTEN_PID");
        unsetenv("LISTEN_FDS");
        unsetenv("LISTEN_FDNAMES");
    }
    passed_complete(from);
    return n;
}

void np_bound_passed_done(int kind)
{
    for (struct np_bound *b = entries, *next; b; b = next) {
        next = b->next;
        if (!b->passed || b->kind != kind) continue;
        b->passed = 0;
        if (b->refs == 1)
            np_log(NP_WARNING, "passed %ssockets on %s are ones no proxy listens on: closed", kind_word(kind), b->addr);
        np_bound_drop(b, 0);
    }
}
