/* SIGUSR2, the binary upgrade. The new binary checks the config first (in a child, its
 * errors captured for the log); only then does the master exec it, in the same process: the
 * pid, the children and the listening sockets stay, the shared counters come along as a
 * memfd, and the new image adopts the sockets by address and drains the old workers. Every
 * bound socket, TCP, unix and UDP, goes in one list (NETPROXY_FDS, bound.h), each with its
 * worker index. */
#include "upgrade.h"
#include "bound.h"
#include "log.h"
#include "pool.h"
#include "tickets.h"
#include "shm.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static char exe[PATH_MAX];
static char **args;
static int check_output = -1;       /* memfd with the check's stderr */

void np_upgrade_init(char **argv)
{
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);

    exe[n > 0 ? n : 0] = '\0';
    args = argv;
}

int np_upgraded(void)
{
    return getenv("NETPROXY_UPGRADE") != NULL;
}

const char *np_upgrade_workers(void)
{
    return getenv("NETPROXY_WORKERS");
}

void np_upgrade_done(void)
{
    unsetenv("NETPROXY_UPGRADE");
    unsetenv("NETPROXY_WORKERS");
}

pid_t np_upgrade_check(void)
{
    int argc = 0;
    pid_t pid;

    if (!exe[0]) {
        np_log(NP_ERR, "upgrade: the binary's path is unknown");
        return -1;
    }
    while (args[argc]) argc++;
    if (check_output >= 0) close(check_output);
    check_output = memfd_create("netproxy-upgrade-check", MFD_CLOEXEC);
    pid = fork();
    if (pid < 0) {
        np_log(NP_ERR, "upgrade: fork: %s", strerror(errno));
        return -1;
    }
    if (pid == 0) {
        char *argv[argc + 2];
        int null = open("/dev/null", O_RDWR);
        argv[0] = exe;
        argv[1] = "--check";
        for (int i = 1; i <= argc; i++) argv[i + 1] = args[i];
        dup2(null, STDIN_FILENO);
        dup2(null, STDOUT_FILENO);
        if (check_output >= 0) dup2(check_output, STDERR_FILENO);
        execv(exe, argv);
        dprintf(STDERR_FILENO, "cannot run %s: %s\n", exe, strerror(errno));
        _exit(127);
    }
    np_log(NP_NOTICE, "upgrade: checking the config with %s", exe);
    return pid;
}

/* The check's stderr, line by line, into the log. */
static void log_check_output(void)
{
    char text[4096], *line, *save;
    ssize_t n;

    if (check_output < 0 || lseek(check_output, 0, SEEK_SET) < 0) return;
    n = read(check_output, text, sizeof text - 1);
    text[n > 0 ? n : 0] = '\0';
    for (line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save))
        np_log(NP_ERR, "upgrade: %s", line);
}

/* fds keep (or lose) close-on-exec. */
static void set_cloexec(const int *fds, int n, int on)
{
    for (int i = 0; i < n; i++) fcntl(fds[i], F_SETFD, on ? FD_CLOEXEC : 0);
}

void np_upgrade_checked(int status, const char *workers)
{
    int n = np_bound_fds(NULL, 0), *fds = malloc((n + 1) * sizeof *fds), shm = np_shm_fd(), pool = np_pool_fd(),
        tickets = np_tickets_fd();
    char shm_text[16], pool_text[16], tickets_text[16], *fds_text = NULL;

    if (status != 0) {
        log_check_output();
        np_log(NP_ERR, "upgrade: the new binary refused the config (status %d): still running this one", status);
        free(fds);
        return;
    }
    if (!fds || !(fds_text = np_bound_handover())) {
        np_log(NP_ERR, "upgrade: out of memory: still running this one");
        free(fds);
        return;
    }
    np_bound_fds(fds, n);
    setenv("NETPROXY_FDS", fds_text, 1);
    free(fds_text);
    snprintf(shm_text, sizeof shm_text, "%d", shm);
    setenv("NETPROXY_SHM_FD", shm_text, 1);
    snprintf(pool_text, sizeof pool_text, "%d", pool);
    setenv("NETPROXY_POOL_FD", pool_text, 1);
    snprintf(tickets_text, sizeof tickets_text, "%d", tickets);
    setenv("NETPROXY_TICKETS_FD", tickets_text, 1);     /* the TLS ticket keys: old tickets resume */
    setenv("NETPROXY_WORKERS", workers, 1);
    setenv("NETPROXY_UPGRADE", "1", 1);
    set_cloexec(fds, n, 0);
    set_cloexec(&shm, 1, 0);
    set_cloexec(&pool, 1, 0);
    set_cloexec(&tickets, 1, 0);
    np_log(NP_NOTICE, "upgrade: running %s again with %d listening sockets, %d udp sockets and the workers %s",
           exe, np_bound_count(NP_BOUND_TCP), np_bound_count(NP_BOUND_UDP), workers[0] ? workers : "(none)");
    execv(exe, args);
    np_log(NP_ERR, "upgrade: cannot run %s: %s: still running this one", exe, strerror(errno));
    set_cloexec(fds, n, 1);
    set_cloexec(&shm, 1, 1);
    set_cloexec(&pool, 1, 1);
    set_cloexec(&tickets, 1, 1);
    unsetenv("NETPROXY_FDS");
    free(fds);
    unsetenv("NETPROXY_SHM_FD");
    unsetenv("NETPROXY_POOL_FD");
    unsetenv("NETPROXY_TICKETS_FD");
    np_upgrade_done();
}
