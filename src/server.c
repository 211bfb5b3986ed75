/* The proxies a config declares: their listeners, the accept path, the counters, and when
 * the process is done (max_connections reached, or a stop signal and nothing left). */
#include "server.h"
#include "conn.h"
#include "log.h"
#include "loop.h"
#include "luavm.h"

#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <lauxlib.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define ACCEPTS_PER_WAKEUP 64
#define LISTEN_BACKLOG 4096

struct np_server np_server;

static struct event resume_accepting;
static int accepting_paused;
static double last_fd_warning;

static void for_each_listener(void (*fn)(struct np_listener *))
{
    for (int i = 0; i < np_server.nproxies; i++)
        for (int j = 0; j < np_server.proxies[i].nlisteners; j++)
            fn(&np_server.proxies[i].listeners[j]);
}

static void listener_on(struct np_listener *l) { if (l->fd >= 0) event_add(&l->ev, NULL); }
static void listener_off(struct np_listener *l) { if (l->fd >= 0) event_del(&l->ev); }

/* Closes a listener's socket(s): the shared one and, in a master, every per-worker one. */
static void close_sockets(struct np_listener *l)
{
    for (int i = 1; i < l->nper_worker; i++) close(l->per_worker[i]);
    if (l->fd >= 0) close(l->fd);
    l->fd = -1;
    l->nper_worker = 0;
}

static void listener_close(struct np_listener *l)
{
    if (l->fd < 0) return;
    event_del(&l->ev);
    close_sockets(l);
}

void np_server_stop_accepting(void)
{
    event_del(&resume_accepting);
    for_each_listener(listener_close);
}

static void maybe_finish(void)
{
    int quota_done = np_server.max_connections &&
                     np_server.accepted >= np_server.max_connections;

    if ((quota_done || np_server.stopping) && np_server.active == 0)
        event_base_loopbreak(np_base);
}

void np_server_conn_done(void)
{
    np_server.active--;
    maybe_finish();
}

static void on_resume_accepting(evutil_socket_t fd, short what, void *arg)
{
    accepting_paused = 0;
    for_each_listener(listener_on);
}

/* Out of file descriptors: stop accepting for a moment instead of spinning on a listener
 * that stays readable; say so at most once a second. */
void np_server_pause_accepting(int err)
{
    struct timeval tv = { 0, 100 * 1000 };

    if (np_now() - last_fd_warning >= 1.0) {
        np_log(NP_WARNING, "out of file descriptors (%s): pausing accepts for 100 ms", strerror(err));
        last_fd_warning = np_now();
    }
    if (accepting_paused) return;
    accepting_paused = 1;
    for_each_listener(listener_off);
    evtimer_add(&resume_accepting, &tv);
}

/* A client turned away at accept: closed at once, counted, logged (at most one line a
 * second per proxy, so a flood cannot flood the log too). */
static void refuse(struct np_proxy *p, int fd, const struct sockaddr_storage *ss, const char *why)
{
    char who[NP_ADDRSTRLEN];

    close(fd);
    NP_COUNTERS(p)->refused++;
    if (np_now() - p->refused_warned < 1.0) {
        p->refused_unlogged++;
        return;
    }
    p->refused_warned = np_now();
    np_addr_format((const struct sockaddr *)ss, who, sizeof who);
    if (p->refused_unlogged)
        np_log(NP_NOTICE, "%s: refused %s: %s (and %llu more since the last such line)", p->name,
               who, why, (unsigned long long)p->refused_unlogged);
    else
        np_log(NP_NOTICE, "%s: refused %s: %s", p->name, who, why);
    p->refused_unlogged = 0;
}

static uint64_t all_active(void)
{
    uint64_t n = 0;

    for (int i = 0; i < np_server.nproxies; i++) n += np_shm_sum(np_server.proxies[i].row).active;
    return n;
}

/* Why a new client may not be served now, or NULL. Too many still negotiating (a flood of
 * silent clients on a sniffing port) is refused rather than let memory and fds run out. */
static const char *turned_away(struct np_proxy *p, const struct sockaddr_storage *ss)
{
    static char why[96];
    const char *rule;

    if ((rule = np_acl_refuses(&np_server.acl, (const struct sockaddr *)ss))) {
        snprintf(why, sizeof why, "%s (server)", rule);
        return why;
    }
    if ((rule = np_acl_refuses(&p->acl, (const struct sockaddr *)ss))) return rule;
    /* the limits count every worker's connections (shared counters) */
    if (p->max_clients && np_shm_sum(p->row).active >= p->max_clients) return "max_clients";
    if (np_server.max_clients && all_active() >= np_server.max_clients) return "max_clients (server)";
    if (p->negotiating >= p->max_negotiating) {
        snprintf(why, sizeof why, "%llu connections negotiating (max_negotiating)",
                 (unsigned long long)p->negotiating);
        return why;
    }
    return NULL;
}

static void on_accept(evutil_socket_t lfd, short what, void *arg)
{
    struct np_listener *l = arg;

    for (int i = 0; i < ACCEPTS_PER_WAKEUP && l->fd >= 0; i++) {
        struct sockaddr_storage ss;
        socklen_t len = sizeof ss;
        int fd = accept4(l->fd, (struct sockaddr *)&ss, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);

        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED) continue;
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)
                np_server_pause_accepting(errno);
            else if (errno != EAGAIN)
                np_log(NP_ERR, "accept on %s: %s", l->addr, strerror(errno));
            return;
        }
        const char *why = turned_away(l->proxy, &ss);
        if (why) {
            refuse(l->proxy, fd, &ss, why);
            continue;
        }
        np_server.accepted++;
        np_server.active++;
        if (np_server.max_connections && np_server.accepted >= np_server.max_connections)
            np_server_stop_accepting();     /* l->fd is now -1: the loop ends */
        np_conn_accept(l->proxy, fd, (struct sockaddr *)&ss, len);
    }
}

static void free_proxies(void)
{
    for (int i = 0; i < np_server.nproxies; i++) {
        np_acl_free(&np_server.proxies[i].acl);
        for (int j = 0; j < np_server.proxies[i].nlisteners; j++) free(np_server.proxies[i].listeners[j].per_worker);
        free(np_server.proxies[i].listeners);
    }
    free(np_server.proxies);
    np_acl_free(&np_server.acl);
    np_server.proxies = NULL;
    np_server.nproxies = 0;
}

/* Listeners of the config being replaced (reload): kept open, handed over to the new one
 * when it listens on the same address, so no connection attempt is ever refused. */
static struct np_listener *old_listeners;
static int nold_listeners;

/* The old listener on ai's address, moved out of the candidates, or NULL. */
static int take_old_listener(const struct addrinfo *ai, struct np_listener *into)
{
    char want[64];

    np_addr_format(ai->ai_addr, want, sizeof want);
    if (!strcmp(want + strlen(want) - 2, ":0")) return -1;     /* port 0: always a new one */
    for (int i = 0; i < nold_listeners; i++) {
        if (old_listeners[i].fd >= 0 && !strcmp(old_listeners[i].addr, want)) {
            *into = old_listeners[i];
            old_listeners[i].fd = -1;
            old_listeners[i].per_worker = NULL;
            old_listeners[i].nper_worker = 0;
            return into->fd;
        }
    }
    return -1;
}

static int bound_socket(const struct sockaddr *sa, socklen_t len, int family)
{
    int one = 1, fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

    if (fd < 0) return -1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (np_server.reuseport) setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
    if (family == AF_INET6) setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    if (bind(fd, sa, len) < 0 || listen(fd, LISTEN_BACKLOG) < 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

/* reuseport: one socket per worker index on l's address ([0] is l->fd), grown or shrunk to
 * the number of workers (a reload may change it). 0, or -1 with errno. */
static int per_worker_sockets(struct np_listener *l, const struct sockaddr *sa, socklen_t len)
{
    int n = np_server.reuseport && np_server.nworkers > 1 ? np_server.nworkers : 0;
    int *grown;

    for (int i = n; i < l->nper_worker; i++) if (i > 0) close(l->per_worker[i]);
    if (n == 0) {
        free(l->per_worker);
        l->per_worker = NULL;
        l->nper_worker = 0;
        return 0;
    }
    grown = realloc(l->per_worker, n * sizeof *grown);
    if (!grown) return -1;
    l->per_worker = grown;
    grown[0] = l->fd;
    for (int i = l->nper_worker ? l->nper_worker : 1; i < n; i++)
        if ((grown[i] = bound_socket(sa, len, sa->sa_family)) < 0) return -1;
    l->nper_worker = n;
    return 0;
}

static int open_listener(struct np_proxy *p, const struct addrinfo *ai, char *err, size_t errlen)
{
    struct np_listener *l = &p->listeners[p->nlisteners];
    struct sockaddr_storage bound;
    socklen_t len = sizeof bound;
    int fd = take_old_listener(ai, l), reused = fd >= 0;

    if (!reused && (fd = bound_socket(ai->ai_addr, ai->ai_addrlen, ai->ai_family)) < 0) goto fail;
    getsockname(fd, (struct sockaddr *)&bound, &len);
    p->nlisteners++;
    l->fd = fd;
    l->reused = reused;
    l->proxy = p;
    if (per_worker_sockets(l, (struct sockaddr *)&bound, len) < 0) goto fail;
    np_addr_format((struct sockaddr *)&bound, l->addr, sizeof l->addr);
    event_assign(&l->ev, np_base, fd, EV_READ | EV_PERSIST, on_accept, l);
    if (!reused) np_log(NP_NOTICE, "%s: listening on %s", p->name, l->addr);
    return 0;
fail:
    {
        char where[64];
        np_addr_format(ai->ai_addr, where, sizeof where);
        snprintf(err, errlen, "%s: cannot listen on %s: %s", p->name, where, strerror(errno));
    }
    if (fd >= 0) close(fd);
    return -1;
}

/* Binds every address the proxy's listen host resolves to (both for "localhost"). */
static int bind_proxy(struct np_proxy *p, const char *host, int port, char *err, size_t errlen)
{
    struct addrinfo hints, *res, *ai;
    char service[16];
    int rc, n = 0;

    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE;
    snprintf(service, sizeof service, "%d", port);
    rc = getaddrinfo(host, service, &hints, &res);
    if (rc != 0) {
        snprintf(err, errlen, "%s: cannot resolve listen host '%s': %s", p->name, host,
                 gai_strerror(rc));
        return -1;
    }
    for (ai = res; ai; ai = ai->ai_next) n++;
    p->listeners = calloc(n, sizeof *p->listeners);
    for (ai = res; ai && p->listeners; ai = ai->ai_next) {
        if (open_listener(p, ai, err, errlen) < 0) {
            freeaddrinfo(res);
            return -1;
        }
    }
    freeaddrinfo(res);
    return p->listeners ? 0 : -1;
}

/* allow = { ... }, deny = { ... } of the table at t (already checked by netproxy.config). */
static int read_acl(lua_State *L, int t, struct np_acl *acl, char *err, size_t errlen)
{
    static const char *const lists[] = { "deny", "allow" };

    for (int allow = 0; allow < 2; allow++) {
        lua_getfield(L, t, lists[allow]);
        for (int i = 1; lua_istable(L, -1); i++) {
            struct np_cidr c;
            lua_rawgeti(L, -1, i);
            const char *text = lua_tostring(L, -1);
            lua_pop(L, 1);
            if (!text) break;
            if (np_cidr_parse(text, &c) < 0 || np_acl_add(acl, allow, &c) < 0) {
                snprintf(err, errlen, "%s: bad address or CIDR '%s'", lists[allow], text);
                lua_pop(L, 1);
                return -1;
            }
        }
        lua_pop(L, 1);
    }
    return 0;
}

/* Reads one normalised proxy table (stack top) into p and binds it. */
static int setup_proxy(lua_State *L, struct np_proxy *p, char *err, size_t errlen)
{
    const char *relay, *host;
    int t = lua_gettop(L);

    snprintf(p->name, sizeof p->name, "%s", np_lua_string(L, t, "name"));
    p->row = np_shm_row(p->name);
    if (p->row < 0) {
        snprintf(err, errlen, "%s: too many proxy names for the statistics (at most %d)", p->name, NP_MAX_PROXIES);
        return -1;
    }
    relay = np_lua_string(L, t, "relay");
    p->relay_mode = !strcmp(relay, "splice")     ? NP_RELAY_SPLICE
                    : !strcmp(relay, "buffered") ? NP_RELAY_BUFFERED
                                                 : NP_RELAY_AUTO;
    p->negotiation_timeout = np_lua_number(L, t, "negotiation_timeout", 30);
    p->idle_timeout = np_lua_number(L, t, "idle_timeout", 3600);
    p->buffer_size = (size_t)np_lua_number(L, t, "buffer_size", 64 * 1024);
    p->max_negotiating = (uint64_t)np_lua_number(L, t, "max_negotiating", 4096);
    p->max_clients = (uint64_t)np_lua_number(L, t, "max_clients", 0);
    if (read_acl(L, t, &p->acl, err, errlen) < 0) return -1;
    lua_getfield(L, t, "listen");
    host = np_lua_string(L, -1, "host");
    int port = (int)np_lua_number(L, -1, "port", 0);
    p->stdio = np_lua_bool(L, -1, "stdio", 0);
    lua_pop(L, 1);
    lua_pushvalue(L, t);
    p->lua_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    if (!host) return 0;        /* a connector that listens on nothing of ours */
    return bind_proxy(p, host, port, err, errlen);
}

int np_server_setup(char *err, size_t errlen)
{
    lua_State *L = np_L;
    int cfg = lua_gettop(L);

    evtimer_assign(&resume_accepting, np_base, on_resume_accepting, NULL);
    lua_getfield(L, cfg, "server");
    np_server.max_connections = (uint64_t)np_lua_number(L, -1, "max_connections", 0);
    np_server.max_clients = (uint64_t)np_lua_number(L, -1, "max_clients", 0);
    np_server.nworkers = (int)np_lua_number(L, -1, "workers", 1);
    np_server.reuseport = np_lua_bool(L, -1, "reuseport", 0);
    if (read_acl(L, lua_gettop(L), &np_server.acl, err, errlen) < 0) return -1;
    lua_pop(L, 1);
    lua_getglobal(L, "require");
    lua_pushliteral(L, "netproxy.session");
    if (np_lua_pcall(L, 1, 1, "netproxy.session") < 0) {
        snprintf(err, errlen, "cannot load netproxy.session");
        return -1;
    }
    lua_getfield(L, -1, "run");
    lua_remove(L, -2);
    np_server.session_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_getfield(L, cfg, "proxies");
    np_server.nproxies = (int)lua_objlen(L, -1);
    np_server.proxies = calloc(np_server.nproxies ? np_server.nproxies : 1, sizeof(struct np_proxy));
    for (int i = 0; i < np_server.nproxies; i++) {
        lua_rawgeti(L, -1, i + 1);
        if (setup_proxy(L, &np_server.proxies[i], err, errlen) < 0) return -1;
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    return 0;
}

/* Standard input and output are shared with whoever started us (a shell, ssh): their
 * O_NONBLOCK flag is put back at exit. */
static int saved_flags[2] = { -1, -1 }, saved_fds[2] = { -1, -1 };

static void restore_stdio_flags(void)
{
    for (int i = 0; i < 2; i++)
        if (saved_fds[i] >= 0) fcntl(saved_fds[i], F_SETFL, saved_flags[i]);
}

void np_server_start_stdio(void)
{
    for (int i = 0; i < np_server.nproxies; i++) {
        struct np_proxy *p = &np_server.proxies[i];
        if (!p->stdio) continue;
        for (int fd = 0; fd < 2; fd++) {
            saved_flags[fd] = fcntl(fd, F_GETFL);
            saved_fds[fd] = fcntl(fd, F_DUPFD_CLOEXEC, 3);
            fcntl(fd, F_SETFL, saved_flags[fd] | O_NONBLOCK);
        }
        atexit(restore_stdio_flags);
        np_server.accepted++;
        np_server.active++;
        np_server.max_connections = np_server.accepted;     /* done when it is done */
        np_conn_start(p, 0, 1, "stdio");
    }
}

static int worker_index;

/* reuseport: this worker keeps the socket of its index and closes its copies of the others. */
static void take_own_socket(struct np_listener *l)
{
    if (l->nper_worker == 0) return;
    for (int i = 0; i < l->nper_worker; i++)
        if (i != worker_index % l->nper_worker) close(l->per_worker[i]);
    l->fd = l->per_worker[worker_index % l->nper_worker];
    l->nper_worker = 0;
    event_assign(&l->ev, np_base, l->fd, EV_READ | EV_PERSIST, on_accept, l);
}

void np_server_start_accepting(int index)
{
    worker_index = index;
    for_each_listener(take_own_socket);
    for_each_listener(listener_on);
}

/* Reload, in the master. The running setup is saved aside; its listeners become candidates
 * for the new setup to take over (same address: same socket, so no connection attempt is
 * ever refused). */
static struct np_server saved;

void np_server_prepare_reload(void)
{
    int n = 0;

    saved = np_server;
    for (int i = 0; i < saved.nproxies; i++) n += saved.proxies[i].nlisteners;
    old_listeners = calloc(n ? n : 1, sizeof *old_listeners);
    nold_listeners = 0;
    for (int i = 0; i < saved.nproxies; i++) {
        for (int j = 0; j < saved.proxies[i].nlisteners; j++) {
            old_listeners[nold_listeners++] = saved.proxies[i].listeners[j];
            saved.proxies[i].listeners[j].per_worker = NULL;    /* owned by the candidate now */
        }
    }
    np_server.proxies = NULL;
    np_server.nproxies = 0;
    memset(&np_server.acl, 0, sizeof np_server.acl);
}

/* The new setup runs: listeners it did not take are closed, the old setup forgotten. */
void np_server_reload_done(void)
{
    for (int i = 0; i < nold_listeners; i++) {
        if (old_listeners[i].fd < 0) continue;
        np_log(NP_NOTICE, "no longer listening on %s", old_listeners[i].addr);
        close_sockets(&old_listeners[i]);
        free(old_listeners[i].per_worker);
    }
    free(old_listeners);
    old_listeners = NULL;
    nold_listeners = 0;
    struct np_server current = np_server;
    np_server = saved;
    free_proxies();
    np_server = current;
}

/* systemd socket activation: the listening sockets systemd passed (fds 3...) become
 * candidates for the setup to take over by address, as in a reload. Returns how many. */
int np_server_adopt_systemd_sockets(void)
{
    const char *pid = getenv("LISTEN_PID"), *fds = getenv("LISTEN_FDS");
    int n;

    if (!pid || !fds || atoi(pid) != (int)getpid() || (n = atoi(fds)) <= 0) return 0;
    old_listeners = calloc(n, sizeof *old_listeners);
    nold_listeners = 0;
    for (int fd = 3; fd < 3 + n && old_listeners; fd++) {
        struct sockaddr_storage ss;
        socklen_t len = sizeof ss;
        struct np_listener *l = &old_listeners[nold_listeners++];
        l->fd = fd;
        fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
        fcntl(fd, F_SETFD, FD_CLOEXEC);
        if (getsockname(fd, (struct sockaddr *)&ss, &len) == 0) np_addr_format((struct sockaddr *)&ss, l->addr, sizeof l->addr);
        np_log(NP_INFO, "systemd passed a socket listening on %s", l->addr);
    }
    unsetenv("LISTEN_PID");             /* not for the workers to see again */
    unsetenv("LISTEN_FDS");
    unsetenv("LISTEN_FDNAMES");
    return n;
}

/* After the setup: systemd sockets no proxy listens on are closed. */
void np_server_adopted_done(void)
{
    for (int i = 0; i < nold_listeners; i++) {
        if (old_listeners[i].fd < 0) continue;
        np_log(NP_WARNING, "systemd passed a socket on %s that no proxy listens on: closed", old_listeners[i].addr);
        close(old_listeners[i].fd);
    }
    free(old_listeners);
    old_listeners = NULL;
    nold_listeners = 0;
}

/* Gives a listener's per-worker sockets back to the saved listener with the same socket. */
static void give_back(struct np_listener *from)
{
    for (int i = 0; i < saved.nproxies; i++) {
        for (int j = 0; j < saved.proxies[i].nlisteners; j++) {
            struct np_listener *to = &saved.proxies[i].listeners[j];
            if (to->fd != from->fd) continue;
            to->per_worker = from->per_worker;
            to->nper_worker = from->nper_worker;
            from->per_worker = NULL;
            from->nper_worker = 0;
            return;
        }
    }
}

/* The new setup failed: its own new sockets are closed, the saved one comes back. */
void np_server_reload_failed(void)
{
    for (int i = 0; i < nold_listeners; i++)
        if (old_listeners[i].fd >= 0) give_back(&old_listeners[i]);
    for (int i = 0; i < np_server.nproxies; i++)
        for (int j = 0; j < np_server.proxies[i].nlisteners; j++)
            if (np_server.proxies[i].listeners[j].reused) give_back(&np_server.proxies[i].listeners[j]);
    for (int i = 0; i < np_server.nproxies; i++)
        for (int j = 0; j < np_server.proxies[i].nlisteners; j++)
            if (!np_server.proxies[i].listeners[j].reused) close_sockets(&np_server.proxies[i].listeners[j]);
    free_proxies();
    free(old_listeners);
    old_listeners = NULL;
    nold_listeners = 0;
    np_server = saved;
}

void np_server_stop(void)
{
    np_server.stopping = 1;
    np_server_stop_accepting();
    maybe_finish();
}
