/* server{} options applied by the process itself, at start and at each reload. Each is kept
 * as text (a copy: the Lua state that held it is gone after a reload), so that a reload
 * compares it with what the process runs with. */
#include "options.h"
#include "daemon.h"
#include "log.h"
#include "loop.h"
#include "luavm.h"
#include "metrics.h"
#include "pipepool.h"

#include <errno.h>
#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The options only a start applies, in the order a reload names them. */
enum { DAEMON, PID_FILE, USER, GROUP, CHROOT, CONTROL, CONTROL_MODE, CONTROL_GROUP, NSTART_ONLY };
static const char *const start_only_names[NSTART_ONLY] = { "daemon", "pid_file", "user", "group", "chroot",
                                                           "control", "control_mode", "control_group" };

static struct {
    char *start_only[NSTART_ONLY];
    char *log_file, *stats, *resolvers;
    double pipe_size;
    int workers;
} now;

/* The option `name` of the table at idx as text ("" when not set; a list joined by ", "),
 * pushed on L's stack. */
static const char *push_text(lua_State *L, int idx, const char *name)
{
    lua_getfield(L, idx, name);
    if (lua_istable(L, -1)) {
        char joined[1024] = "";
        size_t len = 0;
        for (int i = 1; i <= (int)lua_objlen(L, -1) && len < sizeof joined; i++) {
            lua_rawgeti(L, -1, i);
            len += snprintf(joined + len, sizeof joined - len, "%s%s", i > 1 ? ", " : "", lua_tostring(L, -1));
            lua_pop(L, 1);
        }
        lua_pop(L, 1);
        lua_pushstring(L, joined);
    } else if (lua_isboolean(L, -1)) {
        int on = lua_toboolean(L, -1);
        lua_pop(L, 1);
        lua_pushstring(L, on ? "true" : "");
    } else if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        lua_pushliteral(L, "");
    } else {
        lua_tostring(L, -1);
    }
    return lua_tostring(L, -1);
}

/* *field becomes a copy of the option's text (NULL for "", or when out of memory). */
static void keep(char **field, lua_State *L, int idx, const char *name)
{
    const char *text = push_text(L, idx, name);

    free(*field);
    *field = text[0] ? strdup(text) : NULL;
    lua_pop(L, 1);
}

static int differs(const char *kept, lua_State *L, int idx, const char *name)
{
    const char *text = push_text(L, idx, name);
    int changed = strcmp(kept ? kept : "", text) != 0;

    lua_pop(L, 1);
    return changed;
}

static void apply_resolvers(lua_State *L, int idx)
{
    lua_getfield(L, idx, "resolvers");
    if (lua_istable(L, -1)) {
        int n = (int)lua_objlen(L, -1);
        const char *list[n > 0 ? n : 1];
        for (int i = 0; i < n; i++) {
            lua_rawgeti(L, -1, i + 1);
            list[i] = lua_tostring(L, -1);      /* kept alive by the table */
            lua_pop(L, 1);
        }
        np_loop_set_nameservers(list, n);
    }
    lua_pop(L, 1);
}

void np_options_start(lua_State *L, int idx)
{
    np_log_level = (int)np_lua_setting(L, idx, "log_level");
    now.pipe_size = np_lua_setting(L, idx, "pipe_size");
    np_pipepool_configure((size_t)now.pipe_size, 1024);
    now.workers = (int)np_lua_number(L, idx, "workers", 1);
    keep(&now.stats, L, idx, "stats");
    keep(&now.log_file, L, idx, "log_file");
    keep(&now.resolvers, L, idx, "resolvers");
    apply_resolvers(L, idx);
    for (int i = 0; i < NSTART_ONLY; i++) keep(&now.start_only[i], L, idx, start_only_names[i]);
    np_daemon_set_privileges(now.start_only[USER], now.start_only[GROUP], now.start_only[CHROOT]);
}

/* log_file: the new target, or stderr when it is left out; the old one stays on failure. */
static void reload_log_file(lua_State *L, int idx)
{
    const char *target = push_text(L, idx, "log_file");
    const char *was = now.log_file ? now.log_file : "standard error";
    int rc;

    /* said in both logs: where the old one's reader goes on reading, and where it came from */
    np_log(NP_NOTICE, "reload: logging to %s from now on", target[0] ? target : "standard error");
    rc = target[0] ? np_log_open(target) : (np_log_to_stderr(), 0);
    if (rc < 0) {
        np_log(NP_ERR, "reload: log_file %s: %s: still logging here", target, strerror(errno));
    } else {
        np_log(NP_NOTICE, "reload: logging here (was %s)", was);
        free(now.log_file);
        now.log_file = target[0] ? strdup(target) : NULL;
    }
    lua_pop(L, 1);
}

/* stats: /metrics moves to the new address (or stops being served). */
static void reload_stats(lua_State *L, int idx)
{
    char err[256];

    np_metrics_close();
    keep(&now.stats, L, idx, "stats");
    if (now.stats && np_metrics_listen(now.stats, err, sizeof err) < 0)
        np_log(NP_ERR, "reload: %s: /metrics is not served until a reload fixes it", err);
    else if (!now.stats)
        np_log(NP_NOTICE, "reload: stats left out: /metrics is no longer served");
}

void np_options_reload(lua_State *L, int idx)
{
    double pipe_size = np_lua_setting(L, idx, "pipe_size");

    np_log_level = (int)np_lua_setting(L, idx, "log_level");
    if (differs(now.log_file, L, idx, "log_file")) reload_log_file(L, idx);
    if (differs(now.stats, L, idx, "stats")) reload_stats(L, idx);
    if (differs(now.resolvers, L, idx, "resolvers")) {
        keep(&now.resolvers, L, idx, "resolvers");
        if (now.resolvers) apply_resolvers(L, idx);
        else np_loop_use_system_nameservers();
        np_log(NP_NOTICE, "reload: nameservers now %s", now.resolvers ? now.resolvers : "those of /etc/resolv.conf");
    }
    if (pipe_size != now.pipe_size) {
        now.pipe_size = pipe_size;
        np_pipepool_configure((size_t)pipe_size, 1024);
    }
    for (int i = 0; i < NSTART_ONLY; i++) {
        if (!differs(now.start_only[i], L, idx, start_only_names[i])) continue;
        const char *wanted = push_text(L, idx, start_only_names[i]);
        np_log(NP_WARNING, "reload: server{} %s changed (%s -> %s): it takes effect at the next start, not on a reload",
               start_only_names[i], now.start_only[i] ? now.start_only[i] : "not set", wanted[0] ? wanted : "not set");
        lua_pop(L, 1);
    }
}

const char *np_options_stats(void) { return now.stats; }
const char *np_options_log_file(void) { return now.log_file; }
const char *np_options_pid_file(void) { return now.start_only[PID_FILE]; }
int np_options_daemon(void) { return now.start_only[DAEMON] != NULL; }
int np_options_workers(void) { return now.workers; }
const char *np_options_user(void) { return now.start_only[USER]; }
const char *np_options_control(void) { return now.start_only[CONTROL]; }
const char *np_options_control_mode(void) { return now.start_only[CONTROL_MODE]; }
const char *np_options_control_group(void) { return now.start_only[CONTROL_GROUP]; }
