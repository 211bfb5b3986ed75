/* Daemon life (Net::Server's): background and setsid, the pid file, and the privileges
 * dropped after binding (user, group, chroot). */
#ifndef NP_DAEMON_H
#define NP_DAEMON_H
#include <stddef.h>

/* Goes to the background: forks (the parent exits 0), starts a session, points standard
 * input, output and error at /dev/null (the log goes to a file or syslog by then). */
int np_daemonize(char *err, size_t errlen);

/* Fails, with err, when path names a pid file of a running process: checked before going to
 * the background so that the error reaches the terminal. */
int np_pidfile_check(const char *path, char *err, size_t errlen);

/* Writes our pid to path, which must not exist (O_EXCL); a stale file whose process is gone
 * is replaced. 0, or -1 with err. The file is removed at exit by this process. */
int np_pidfile_write(const char *path, char *err, size_t errlen);

/* chroot (if dir), then group and user (if given): for a process that has bound what it
 * needs. 0, or -1 with err. */
int np_drop_privileges(const char *user, const char *group, const char *dir, char *err, size_t errlen);

/* The privileges the serving processes give up, kept for np_worker_run. */
void np_daemon_set_privileges(const char *user, const char *group, const char *dir);

/* Fails, with err, when the user or the group to run as does not exist: checked before
 * binding, so that a typo stops the start before anything listens. */
int np_daemon_check_privileges(char *err, size_t errlen);
int np_daemon_apply_privileges(char *err, size_t errlen);

/* Gives the log file to the user the workers run as, so that they can reopen it. */
void np_daemon_chown_log(void);

/* Tells systemd (Type=notify) how we are: "READY=1", "RELOADING=1", "STOPPING=1". Does
 * nothing outside systemd (no NOTIFY_SOCKET). */
void np_notify(const char *state);

#endif
