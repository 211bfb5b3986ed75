/* The control socket: a unix socket, never TCP. Each client sends one line (at most
 * LINE_MAX bytes, within TIMEOUT seconds), gets its answer and is closed; at most
 * MAX_CLIENTS at once. A peer whose uid (SO_PEERCRED) is neither root nor the socket's
 * owner (nor, with control_group, of that group) is refused and logged. The commands are
 * lua/netproxy/control.lua's, run in the running config's Lua state through np_call; what
 * it needs of the process comes as C functions (`ops`): the connections of every worker,
 * which the master asks each worker for over the socketpair made at its fork (a request
 * line, an answer of tab-separated lines ended by ".SEQ"), bounded in time. */
#include "control.h"
#include "call.h"
#include "log.h"
#include "loop.h"
#include "luavm.h"
#include "server.h"
#include "shm.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <grp.h>
#include <lauxlib.h>
#include <poll.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define LINE_MAX_LEN 4096
#define MAX_CLIENTS 16
#define TIMEOUT 10              /* seconds a client has to send its line and read its answer */
#define WORKER_WAIT 2.0         /* seconds the master waits for its workers' answers, in all */
#define WORKER_ANSWER_MAX (8 << 20)

struct client {
    struct bufferevent *bev;
    uid_t uid;
    pid_t pid;
    struct client *next;
};

static int sock_fd = -1;
static char sock_path[108];
static uid_t owner_uid;
static gid_t allowed_gid = (gid_t)-1;
static double opened_at;
static struct event *accept_ev;
static struct client *clients;
static int nclients;
static const struct np_control_ops *ops;

/* ---------------------------------------------------------------- the socket */

/* A socket file left at path: a live netproxy answers on it (an error), else it goes. */
static int clear_stale(const struct sockaddr_un *sa, char *err, size_t errlen)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int live = fd >= 0 && connect(fd, (const struct sockaddr *)sa, sizeof *sa) == 0;

    if (fd >= 0) close(fd);
    if (live) {
        snprintf(err, errlen, "control socket %s: a running process answers there", sa->sun_path);
        return -1;
    }
    unlink(sa->sun_path);
    return 0;
}

static int owner_of(const char *user, const char *group, uid_t *uid, gid_t *gid, char *err, size_t errlen)
{
    struct passwd *pw = user ? getpwnam(user) : NULL;
    struct group *gr = group ? getgrnam(group) : NULL;

    if (user && !pw) {
        snprintf(err, errlen, "control: no user %s", user);
        return -1;
    }
    if (group && !gr) {
        snprintf(err, errlen, "control_group: no group %s", group);
        return -1;
    }
    *uid = pw ? pw->pw_uid : geteuid();
    *gid = gr ? gr->gr_gid : pw ? pw->pw_gid : getegid();
    return 0;
}

/* The socket's folder, when it is missing (/run/netproxy without systemd's
 * RuntimeDirectory): made 0755, one level only. */
static void make_folder(const char *path)
{
    char dir[108];
    char *slash;

    snprintf(dir, sizeof dir, "%s", path);
    slash = strrchr(dir, '/');
    if (!slash || slash == dir) return;
    *slash = '\0';
    if (mkdir(dir, 0755) == 0) np_log(NP_INFO, "control: made the folder %s", dir);
}

int np_control_open(const char *path, const char *mode, const char *group, const char *user,
                    char *err, size_t errlen)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    mode_t m = mode ? (mode_t)strtol(mode, NULL, 8) : 0600;
    gid_t gid;

    if (strlen(path) >= sizeof sa.sun_path) {
        snprintf(err, errlen, "control socket %s: path too long", path);
        return -1;
    }
    memcpy(sa.sun_path, path, strlen(path) + 1);
    if (owner_of(user, group, &owner_uid, &gid, err, errlen) < 0 || clear_stale(&sa, err, errlen) < 0) return -1;
    make_folder(path);
    sock_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    mode_t old = umask(0177);   /* never wider than 0600 between bind and chmod */
    int rc = sock_fd < 0 ? -1 : bind(sock_fd, (struct sockaddr *)&sa, sizeof sa);
    umask(old);
    if (rc < 0 || listen(sock_fd, 16) < 0 || chown(path, owner_uid, gid) < 0 || chmod(path, m) < 0) {
        snprintf(err, errlen, "control socket %s: %s", path, strerror(errno));
        if (sock_fd >= 0) close(sock_fd);
        sock_fd = -1;
        return -1;
    }
    if (group) allowed_gid = gid;
    snprintf(sock_path, sizeof sock_path, "%s", path);
    opened_at = np_now();
    return 0;
}

/* ---------------------------------------------------------------- clients */

static void client_free(struct client *c)
{
    for (struct client **p = &clients; *p; p = &(*p)->next) {
        if (*p != c) continue;
        *p = c->next;
        break;
    }
    bufferevent_free(c->bev);
    free(c);
    nclients--;
}

static void on_written(struct bufferevent *bev, void *arg)
{
    client_free(arg);
}

static void on_client_event(struct bufferevent *bev, short what, void *arg)
{
    struct client *c = arg;

    if (what & BEV_EVENT_TIMEOUT) np_log(NP_INFO, "control: uid %d: timed out", (int)c->uid);
    client_free(c);
}

/* The answer, then the connection closes once it is written (or at the write timeout). */
static void answer(struct client *c, const char *text, size_t len)
{
    bufferevent_disable(c->bev, EV_READ);
    bufferevent_write(c->bev, text, len);
    bufferevent_write(c->bev, "\n", 1);
    bufferevent_setcb(c->bev, NULL, on_written, on_client_event, c);
    bufferevent_enable(c->bev, EV_WRITE);
}

/* ---------------------------------------------------------------- what a worker holds */

/* A connection as one line: id, proxy, client, target, state, age, bytes in, bytes out
 * (tabs and line ends in names made harmless). */
static void conn_line(void *arg, const struct np_conn_view *v)
{
    struct evbuffer *out = arg;
    char client[256], target[512];
    const char *src[2] = { v->client, v->target };
    char *dst[2] = { client, target };
    size_t size[2] = { sizeof client, sizeof target };

    for (int k = 0; k < 2; k++) {
        snprintf(dst[k], size[k], "%s", src[k]);
        for (char *p = dst[k]; *p; p++) if (*p == '\t' || *p == '\n' || *p == '\r') *p = ' ';
    }
    evbuffer_add_printf(out, "%llu\t%s\t%s\t%s\t%s\t%.3f\t%llu\t%llu\n", (unsigned long long)v->id, v->proxy,
                        client, target, v->state, v->age, (unsigned long long)v->bytes[0],
                        (unsigned long long)v->bytes[1]);
}

/* A request ("conns [PROXY]" or "kill ID"), answered into out. */
static void serve_request(const char *req, struct evbuffer *out)
{
    unsigned long long id;
    char proxy[128];

    if (!strcmp(req, "conns")) np_server_each_conn(NULL, conn_line, out);
    else if (sscanf(req, "conns %127s", proxy) == 1) np_server_each_conn(proxy, conn_line, out);
    else if (sscanf(req, "kill %llu", &id) == 1)
        evbuffer_add_printf(out, "%d\n", np_server_kill_conn((uint64_t)id, "killed by netproxy ctl"));
}

static void on_master_request(struct bufferevent *bev, void *arg)
{
    struct evbuffer *in = bufferevent_get_input(bev);
    char *line;

    while ((line = evbuffer_readln(in, NULL, EVBUFFER_EOL_LF))) {
        char *seq = strrchr(line, ' ');     /* "REQUEST SEQ" */
        if (seq) {
            *seq++ = '\0';
            serve_request(line, bufferevent_get_output(bev));
            evbuffer_add_printf(bufferevent_get_output(bev), ".%s\n", seq);
        }
        free(line);
    }
}

static struct bufferevent *master_link;    /* a worker's: the master's requests */

static void on_master_gone(struct bufferevent *bev, short what, void *arg)
{
    bufferevent_free(bev);      /* the master exec'd (an upgrade) or died */
    master_link = NULL;
}

void np_control_worker(int fd)
{
    struct bufferevent *bev = bufferevent_socket_new(np_base, fd, BEV_OPT_CLOSE_ON_FREE);

    if (!bev) {
        close(fd);
        return;
    }
    master_link = bev;
    evutil_make_socket_nonblocking(fd);
    bufferevent_setcb(bev, on_master_request, NULL, on_master_gone, NULL);
    bufferevent_enable(bev, EV_READ);
}

/* ---------------------------------------------------------------- the master asks */

static unsigned ask_seq;

/* Sends req to a worker and reads its answer (until ".SEQ") into out, by deadline. 0, or -1. */
static int ask_one(int fd, const char *req, struct evbuffer *out, double deadline)
{
    char line[300], end[32], buf[16384];
    struct evbuffer *got = evbuffer_new();
    int n = snprintf(line, sizeof line, "%s %u\n", req, ++ask_seq), rc = -1;

    snprintf(end, sizeof end, ".%u\n", ask_seq);
    if (!got || write(fd, line, (size_t)n) != n) goto done;
    for (;;) {
        double left = deadline - np_now();
        struct pollfd p = { .fd = fd, .events = POLLIN };
        if (left <= 0 || poll(&p, 1, (int)(left * 1000) + 1) <= 0) goto done;
        ssize_t r = read(fd, buf, sizeof buf);
        if (r <= 0 && !(r < 0 && errno == EAGAIN)) goto done;
        if (r > 0) evbuffer_add(got, buf, (size_t)r);
        size_t len = evbuffer_get_length(got), elen = strlen(end);
        if (len > WORKER_ANSWER_MAX) goto done;
        const char *all = (const char *)evbuffer_pullup(got, -1);
        /* an older, abandoned answer ends with another ".SEQ": what is before it goes */
        const char *mine = len >= elen ? all + len - elen : NULL;
        if (mine && !memcmp(mine, end, elen) && (mine == all || mine[-1] == '\n')) {
            const char *from = all;
            for (const char *q = all; q < mine; q++)
                if (*q == '.' && (q == all || q[-1] == '\n')) from = q + strcspn(q, "\n") + 1;
            evbuffer_add(out, from, (size_t)(mine - from));
            rc = 0;
            goto done;
        }
    }
done:
    if (got) evbuffer_free(got);
    return rc;
}

/* Each worker's answer to req, a line per item, "PID\t" before each; the workers that did
 * not answer in time counted in *missing. */
static void ask_all(const char *req, struct evbuffer *out, int *missing, pid_t only)
{
    int fds[64];
    pid_t pids[64];
    int n = ops && ops->workers ? ops->workers(fds, pids, 64) : -1;
    double deadline = np_now() + WORKER_WAIT;

    *missing = 0;
    if (n < 0) {                /* the process serves itself */
        struct evbuffer *mine = evbuffer_new();
        serve_request(req, mine);
        n = 0;
        pids[0] = getpid();
        char *line;
        while ((line = evbuffer_readln(mine, NULL, EVBUFFER_EOL_LF))) {
            evbuffer_add_printf(out, "%d\t%s\n", (int)pids[0], line);
            free(line);
        }
        evbuffer_free(mine);
        return;
    }
    for (int i = 0; i < n; i++) {
        if ((only && pids[i] != only) || fds[i] < 0) continue;     /* (a previous binary's worker: none) */
        struct evbuffer *one = evbuffer_new();
        char *line;
        if (ask_one(fds[i], req, one, deadline) < 0) (*missing)++;
        while ((line = evbuffer_readln(one, NULL, EVBUFFER_EOL_LF))) {
            evbuffer_add_printf(out, "%d\t%s\n", (int)pids[i], line);
            free(line);
        }
        evbuffer_free(one);
    }
}

/* ---------------------------------------------------------------- ops for control.lua */

static void set_int(lua_State *L, const char *k, lua_Integer v)
{
    lua_pushinteger(L, v);
    lua_setfield(L, -2, k);
}

static void set_str(lua_State *L, const char *k, const char *v)
{
    lua_pushstring(L, v);
    lua_setfield(L, -2, k);
}

/* ops.conns(proxy | nil) -> { { pid, id, proxy, client, target, state, age, bytes_in, bytes_out }, ... } */
static int l_conns(lua_State *L)
{
    const char *proxy = luaL_optstring(L, 1, NULL);
    struct evbuffer *out = evbuffer_new();
    char req[160], *line;
    int missing, n = 0;

    if (proxy && (strlen(proxy) > 100 || strpbrk(proxy, " \t"))) return luaL_error(L, "bad proxy name");
    snprintf(req, sizeof req, proxy ? "conns %s" : "conns", proxy);
    ask_all(req, out, &missing, 0);
    lua_newtable(L);
    while ((line = evbuffer_readln(out, NULL, EVBUFFER_EOL_LF))) {
        char *f[9], *p = line;
        int k = 0;
        for (char *t; k < 9 && (t = strsep(&p, "\t")); ) f[k++] = t;
        if (k == 9) {
            lua_createtable(L, 0, 9);
            set_int(L, "pid", atoi(f[0]));
            set_int(L, "id", (lua_Integer)strtoull(f[1], NULL, 10));
            set_str(L, "proxy", f[2]);
            set_str(L, "client", f[3]);
            set_str(L, "target", f[4]);
            set_str(L, "state", f[5]);
            lua_pushnumber(L, atof(f[6]));
            lua_setfield(L, -2, "age");
            set_int(L, "bytes_in", (lua_Integer)strtoull(f[7], NULL, 10));
            set_int(L, "bytes_out", (lua_Integer)strtoull(f[8], NULL, 10));
            lua_rawseti(L, -2, ++n);
        }
        free(line);
    }
    evbuffer_free(out);
    if (missing) np_log(NP_WARNING, "control: show conns: %d worker%s did not answer within %gs", missing,
                        missing > 1 ? "s" : "", WORKER_WAIT);
    return 1;
}

/* ops.kill(pid, id) -> true when that worker had it and closed it */
static int l_kill(lua_State *L)
{
    pid_t pid = (pid_t)luaL_checkinteger(L, 1);
    char req[64], *line;
    struct evbuffer *out = evbuffer_new();
    int missing, killed = 0;

    snprintf(req, sizeof req, "kill %llu", (unsigned long long)luaL_checkinteger(L, 2));
    ask_all(req, out, &missing, pid);
    while ((line = evbuffer_readln(out, NULL, EVBUFFER_EOL_LF))) {
        killed |= strstr(line, "\t1") != NULL;
        free(line);
    }
    evbuffer_free(out);
    lua_pushboolean(L, killed);
    return 1;
}

/* ops.info() -> { version, pid, uptime, workers, generation, draining } */
static int l_info(lua_State *L)
{
    int workers = 1, draining = np_server.ndraining;

    if (ops && ops->counts) ops->counts(&workers, &draining);
    lua_newtable(L);
    set_str(L, "version", NP_VERSION);
    set_int(L, "pid", getpid());
    lua_pushnumber(L, (double)(long long)((np_now() - opened_at) * 10) / 10);
    lua_setfield(L, -2, "uptime");
    set_int(L, "workers", workers);
    set_int(L, "generation", np_server.config ? np_server.config->generation : 0);
    set_int(L, "draining", draining);
    return 1;
}

/* ops.proxies() -> { { name, active, opened, refused, errors, bytes_in, bytes_out }, ... } */
static int l_proxies(lua_State *L)
{
    const struct np_config *g = np_server.config;

    lua_newtable(L);
    for (int i = 0; g && i < g->nproxies; i++) {
        struct np_counters s = np_shm_sum(g->proxies[i].row);
        lua_createtable(L, 0, 7);
        set_str(L, "name", g->proxies[i].name);
        set_int(L, "active", (lua_Integer)(s.active + s.flows_active));
        set_int(L, "opened", (lua_Integer)(s.opened + s.flows_opened));
        set_int(L, "refused", (lua_Integer)s.refused);
        set_int(L, "errors", (lua_Integer)s.errors);
        set_int(L, "bytes_in", (lua_Integer)s.bytes_in);
        set_int(L, "bytes_out", (lua_Integer)s.bytes_out);
        lua_rawseti(L, -2, i + 1);
    }
    return 1;
}

static void push_ops(lua_State *L)
{
    static const luaL_Reg fns[] = {
        { "conns", l_conns }, { "kill", l_kill }, { "info", l_info }, { "proxies", l_proxies }, { NULL, NULL },
    };

    lua_newtable(L);
    for (const luaL_Reg *f = fns; f->name; f++) {
        lua_pushcfunction(L, f->func);
        lua_setfield(L, -2, f->name);
    }
}

/* ---------------------------------------------------------------- a command */

/* control.lua's fn(args...) in the running config's state: its text answer (malloc'd, its
 * length in *len) and whether it succeeded and changed something; NULL when the call itself
 * failed. netproxy.control is netproxy's own module: no user budget (a `show conns` of many
 * connections must not be cut by hook_budget). */
static char *call_control(const char *fn, int nargs_pushed(lua_State *L, void *arg), void *arg,
                          size_t *len, int *ok, int *changed)
{
    struct np_config *g = np_server.config;
    lua_State *L = g ? g->L : NULL;
    char err[512], *text;
    const char *s;
    int top;

    if (!L) return NULL;
    top = lua_gettop(L);
    if (np_lua_require(L, "netproxy.control") < 0) return NULL;
    lua_getfield(L, -1, fn);
    lua_remove(L, -2);
    int n = nargs_pushed(L, arg);
    if (np_call(L, n, 3, &np_limits_none, err, sizeof err) < 0) {
        np_log(NP_ERR, "control: %s", err);
        lua_settop(L, top);
        return NULL;
    }
    s = lua_tolstring(L, -3, len);
    if (!s) s = "", *len = 0;
    text = malloc(*len + 1);
    if (text) memcpy(text, s, *len + 1);
    *ok = lua_toboolean(L, -2);
    *changed = lua_toboolean(L, -1);
    lua_settop(L, top);
    return text;
}

struct command {
    const char *line;
    int json;
    int reload_rc;
    const char *problems;
};

static int push_run(lua_State *L, void *arg)
{
    struct command *cmd = arg;

    lua_pushstring(L, cmd->line);
    lua_pushboolean(L, cmd->json);
    push_ops(L);
    return 3;
}

static int push_reloaded(lua_State *L, void *arg)
{
    struct command *cmd = arg;

    lua_pushboolean(L, cmd->reload_rc == 0);
    lua_pushstring(L, cmd->problems);
    lua_pushinteger(L, np_server.config->generation);
    lua_pushboolean(L, cmd->json);
    return 4;
}

/* The line as the log shows it: at most 200 bytes. */
static void log_command(struct client *c, const char *line, int ok, int changed, const char *text)
{
    int level = changed || !ok ? NP_NOTICE : NP_INFO;

    if (ok) np_log(level, "control: uid %d (pid %d): %.200s", (int)c->uid, (int)c->pid, line);
    else np_log(level, "control: uid %d (pid %d): %.200s: %.300s", (int)c->uid, (int)c->pid, line, text);
}

/* reload: the config's own reload; the answer comes from the config running afterwards.
 * 1 when this is a new worker forked by it (it must leave at once). */
static int run_reload(struct client *c, struct command *cmd)
{
    static char problems[8192];
    static const char none[] = "error: reload: no answer (see the log)";
    int ok = 0, changed = 0;
    size_t len = 0;
    char *text;

    np_log(NP_NOTICE, "control: uid %d (pid %d): reload", (int)c->uid, (int)c->pid);
    np_log_capture(problems, sizeof problems);
    cmd->reload_rc = ops && ops->reload ? ops->reload() : -1;
    np_log_capture(NULL, 0);
    if (cmd->reload_rc == 1) return 1;
    cmd->problems = problems;
    text = call_control("reloaded", push_reloaded, cmd, &len, &ok, &changed);
    if (text) answer(c, text, len);
    else answer(c, none, sizeof none - 1);
    free(text);
    return 0;
}

/* A line is a command when it is printable text (tabs allowed). */
static int printable(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 32 && *s != '\t') return 0;
    return 1;
}

static void refuse_garbage(struct client *c)
{
    static const char bad[] = "error: not a command (control characters); try help";

    np_log(NP_NOTICE, "control: uid %d (pid %d): a line with control characters: refused", (int)c->uid, (int)c->pid);
    answer(c, bad, sizeof bad - 1);
}

static void run(struct client *c, char *line)
{
    struct command cmd = { .line = line };
    size_t len = strlen(line), alen = 0;
    int ok = 0, changed = 0;
    char *text;

    while (len && (line[len - 1] == ' ' || line[len - 1] == '\t' || line[len - 1] == '\r')) line[--len] = '\0';
    if (len >= 7 && !strcmp(line + len - 6, "--json") && (line[len - 7] == ' ' || line[len - 7] == '\t')) {
        cmd.json = 1;
        line[len -= 7] = '\0';
        while (len && (line[len - 1] == ' ' || line[len - 1] == '\t')) line[--len] = '\0';
    }
    line += strspn(line, " \t");
    cmd.line = line;
    if (!printable(line)) {
        refuse_garbage(c);
        return;
    }
    if (!strcmp(line, "reload")) {
        run_reload(c, &cmd);
        return;
    }
    text = call_control("run", push_run, &cmd, &alen, &ok, &changed);
    if (!text) {
        static const char failed[] = "error: the command failed (see the log)";
        log_command(c, line, 0, 0, failed);
        answer(c, failed, sizeof failed - 1);
        return;
    }
    log_command(c, line, ok, changed, text);
    answer(c, text, alen);
    free(text);
}

static void on_line(struct bufferevent *bev, void *arg)
{
    struct client *c = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    size_t n;
    char *line = evbuffer_readln(in, &n, EVBUFFER_EOL_CRLF);

    if (!line) {
        if (evbuffer_get_length(in) > LINE_MAX_LEN) {
            static const char tl[] = "error: line too long (at most 4096 bytes)";
            np_log(NP_NOTICE, "control: uid %d (pid %d): a line over %d bytes: refused", (int)c->uid, (int)c->pid,
                   LINE_MAX_LEN);
            answer(c, tl, sizeof tl - 1);
        }
        return;
    }
    if (n > LINE_MAX_LEN) {
        static const char tl[] = "error: line too long (at most 4096 bytes)";
        answer(c, tl, sizeof tl - 1);
    } else if (strlen(line) != n) {
        refuse_garbage(c);      /* a NUL byte inside */
    } else {
        run(c, line);
    }
    free(line);
}

/* ---------------------------------------------------------------- accepting */

static int peer_allowed(int fd, uid_t *uid, pid_t *pid)
{
    struct ucred cred;
    socklen_t len = sizeof cred;

    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0) return 0;
    *uid = cred.uid;
    *pid = cred.pid;
    return cred.uid == 0 || cred.uid == owner_uid || (allowed_gid != (gid_t)-1 && cred.gid == allowed_gid);
}

static void refuse(int fd, const char *why)
{
    if (send(fd, why, strlen(why), MSG_DONTWAIT | MSG_NOSIGNAL) < 0) { /* it goes anyway */ }
    close(fd);
}

static void on_accept(evutil_socket_t lfd, short what, void *arg)
{
    for (int i = 0; i < 16; i++) {
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        uid_t uid = (uid_t)-1;
        pid_t pid = 0;
        if (fd < 0) return;
        if (!peer_allowed(fd, &uid, &pid)) {
            np_log(NP_WARNING, "control: refused a peer of uid %d (pid %d): neither root nor the owner (uid %d)",
                   (int)uid, (int)pid, (int)owner_uid);
            refuse(fd, "error: permission denied\n");
            continue;
        }
        if (nclients >= MAX_CLIENTS) {
            np_log(NP_WARNING, "control: %d clients at once already: uid %d (pid %d) refused", nclients, (int)uid, (int)pid);
            refuse(fd, "error: too many control clients at once\n");
            continue;
        }
        struct client *c = calloc(1, sizeof *c);
        struct bufferevent *bev = c ? bufferevent_socket_new(np_base, fd, BEV_OPT_CLOSE_ON_FREE) : NULL;
        if (!bev) {
            free(c);
            close(fd);
            continue;
        }
        struct timeval tv = { TIMEOUT, 0 };
        *c = (struct client){ .bev = bev, .uid = uid, .pid = pid, .next = clients };
        clients = c;
        nclients++;
        bufferevent_setcb(bev, on_line, NULL, on_client_event, c);
        bufferevent_set_timeouts(bev, &tv, &tv);
        bufferevent_setwatermark(bev, EV_READ, 0, LINE_MAX_LEN + 2);
        bufferevent_enable(bev, EV_READ);
    }
}

void np_control_serve(const struct np_control_ops *o)
{
    ops = o;
    if (sock_fd < 0 || accept_ev) return;
    accept_ev = event_new(np_base, sock_fd, EV_READ | EV_PERSIST, on_accept, NULL);
    if (accept_ev) event_add(accept_ev, NULL);
    np_log(NP_INFO, "control: listening on %s (owner uid %d)", sock_path, (int)owner_uid);
}

void np_control_close(void)
{
    if (master_link) bufferevent_free(master_link);
    master_link = NULL;
    while (clients) client_free(clients);
    if (accept_ev) event_free(accept_ev);
    accept_ev = NULL;
    if (sock_fd >= 0) close(sock_fd);
    sock_fd = -1;
}

void np_control_remove(void)
{
    int had = sock_fd >= 0;

    np_control_close();
    if (had && unlink(sock_path) < 0 && errno != ENOENT)
        np_log(NP_INFO, "control: %s stays: %s", sock_path, strerror(errno));
}
