/* The server{} options the process itself applies (server.c reads the rest with each config
 * generation): at start, and again at each reload. A reload applies what a running process
 * can change (log_level, log_file, stats, resolvers, pipe_size) and names in a warning what
 * only a start can (daemon, pid_file, user, group, chroot, control*). */
#ifndef NP_OPTIONS_H
#define NP_OPTIONS_H
#include <lua.h>

/* At start, from the server table at idx: log_level, pipe_size and resolvers applied; the
 * rest kept for the start to apply (main.c) and for reloads to compare against. */
void np_options_start(lua_State *L, int idx);

/* At a reload, from the new server table at idx. A change that fails (a log file that
 * cannot be opened, a stats address that cannot be bound) is logged; the rest applies. */
void np_options_reload(lua_State *L, int idx);

/* What the start applies: NULL when not set. */
const char *np_options_stats(void);
const char *np_options_log_file(void);
const char *np_options_pid_file(void);
int np_options_daemon(void);
int np_options_workers(void);
const char *np_options_user(void);
/* server{ control, control_mode, control_group }: the control socket (control.c) */
const char *np_options_control(void);
const char *np_options_control_mode(void);
const char *np_options_control_group(void);

#endif
