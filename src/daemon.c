/* Daemon life (Net::Server's): background and setsid, the pid file, and the privileges
 * dropped after binding (user, group, chroot). */
#include "daemon.h"
#include "addr.h"
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

static char pidfile[4096];
static pid_t pidfile_owner;

int np_daemonize(char *err, size_t errlen)
{
    pid_t pid = fork();
    int null;

    if (pid < 0) {
        snprintf(err, errlen, "daemon: fork: %s", strerror(errno));
        return -1;
    }
    if (pid > 0) _exit(0);              /* the shell gets its prompt back */
    setsid();
    null = open("/dev/null", O_RDWR);
    if (null >= 0) {
        dup2(null, STDIN_FILENO);
        dup2(null, STDOUT_FILENO);
        dup2(null, STDERR_FILENO);
        if (null > STDERR_FILENO) close(null);
    }
    return 0;
}

static void remove_pidfile(void)
{
    if (pidfile[0] && getpid() == pidfile_owner) unlink(pidfile);
}

int np_pidfile_check(const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    long old = 0;

    if (!f) return 0;
    /* our own pid: a binary upgrade runs again in the same process */
    if (fscanf(f, "%ld", &old) == 1 && old > 0 && old != (long)getpid() &&
        (kill((pid_t)old, 0) == 0 || errno == EPERM)) {
        fclose(f);
        snprintf(err, errlen, "pid file %s: process %ld is running", path, old);
        return -1;
    }
    fclose(f);
    return 0;
}

int np_pidfile_write(const char *path, char *err, size_t errlen)
{
    char text[32];
    int fd, n;

    for (int tries = 0; tries < 2; tries++) {
        fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        if (fd >= 0 || errno != EEXIST) break;
        /* a pid file left by a netproxy that is gone may be replaced; a live one not */
        if (np_pidfile_check(path, err, errlen) < 0) return -1;
        unlink(path);
    }
    if (fd < 0) {
        snprintf(err, errlen, "pid file %s: %s", path, strerror(errno));
        return -1;
    }
    n = snprintf(text, sizeof text, "%d\n", (int)getpid());
    if (write(fd, text, n) != n) {
        snprintf(err, errlen, "pid file %s: %s", path, strerror(errno));
        close(fd);
        return -1;
    }
    close(fd);
    snprintf(pidfile, sizeof pidfile, "%s", path);
    pidfile_owner = getpid();
    atexit(remove_pidfile);
    return 0;
}

int np_drop_privileges(const char *user, const char *group, const char *dir, char *err, size_t errlen)
{
    struct passwd *pw = NULL;
    struct group *gr = NULL;

    /* look the names up before chroot: /etc/passwd may not be inside it */
    if (user && !(pw = getpwnam(user))) {
        snprintf(err, errlen, "user %s: no such user", user);
        return -1;
    }
    if (group && !(gr = getgrnam(group))) {
        snprintf(err, errlen, "group %s: no such group", group);
        return -1;
    }
    if (dir && (chroot(dir) < 0 || chdir("/") < 0)) {
        snprintf(err, errlen, "chroot %s: %s", dir, strerror(errno));
        return -1;
    }
    gid_t gid = gr ? gr->gr_gid : pw ? pw->pw_gid : getgid();
    if ((gr || pw) && (setgroups(1, &gid) < 0 || setgid(gid) < 0)) {
        snprintf(err, errlen, "group %u: %s", (unsigned)gid, strerror(errno));
        return -1;
    }
    if (pw && setuid(pw->pw_uid) < 0) {
        snprintf(err, errlen, "user %s: %s", user, strerror(errno));
        return -1;
    }
    return 0;
}

static char *drop_user, *drop_group, *drop_dir;

void np_daemon_set_privileges(const char *user, const char *group, const char *dir)
{
    drop_user = user ? strdup(user) : NULL;
    drop_group = group ? strdup(group) : NULL;
    drop_dir = dir ? strdup(dir) : NULL;
}

void np_daemon_chown_log(void)
{
    struct passwd *pw = drop_user ? getpwnam(drop_user) : NULL;
    struct group *gr = drop_group ? getgrnam(drop_group) : NULL;
    const char *path = np_log_path();

    if (path && (pw || gr) && chown(path, pw ? pw->pw_uid : (uid_t)-1, gr ? gr->gr_gid : (gid_t)-1) < 0) {
        /* nothing to do: the workers keep writing to the file they have */
    }
}

int np_daemon_check_privileges(char *err, size_t errlen)
{
    if (drop_user && !getpwnam(drop_user)) {
        snprintf(err, errlen, "user %s: no such user", drop_user);
        return -1;
    }
    if (drop_group && !getgrnam(drop_group)) {
        snprintf(err, errlen, "group %s: no such group", drop_group);
        return -1;
    }
    return 0;
}

int np_daemon_apply_privileges(char *err, size_t errlen)
{
    if (!drop_user && !drop_group && !drop_dir) return 0;
    np_daemon_chown_log();
    return np_drop_privileges(drop_user, drop_group, drop_dir, err, errlen);
}

void np_notify(const char *state)
{
    const char *path = getenv("NOTIFY_SOCKET");
    struct sockaddr_storage sa;
    socklen_t len;
    char msg[128];
    int fd, n;

    if (!path || (path[0] != '/' && path[0] != '@') || !(len = np_addr_unix(path, &sa))) return;
    fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return;
    n = snprintf(msg, sizeof msg, "%s\nMAINPID=%d", state, (int)getpid());
    sendto(fd, msg, n, MSG_NOSIGNAL, (struct sockaddr *)&sa, len);
    close(fd);
}
