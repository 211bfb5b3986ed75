/* Logging to stderr: "2026-11-21T13:45:11.123Z notice [pid] #id message". */
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <syslog.h>
#include <stdio.h>
#include <string.h>
#include <stdlib.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

int np_log_level = NP_NOTICE;

static int log_fd = STDERR_FILENO;
static int to_syslog;
static char log_path[4096];

static const char *const level_names[] = { "err", "warning", "notice", "info", "debug" };

int np_log_level_parse(const char *s)
{
    for (int i = 0; i < 5; i++)
        if (strcmp(s, level_names[i]) == 0) return i;
    if (s[0] >= '0' && s[0] <= '4' && s[1] == '\0') return s[0] - '0';
    return -1;
}

const char *np_log_level_name(int level)
{
    if (level < 0) level = 0;
    if (level > 4) level = 4;
    return level_names[level];
}

int np_log_open(const char *target)
{
    if (!strcmp(target, "syslog")) {
        openlog("netproxy", LOG_PID | LOG_NDELAY, LOG_DAEMON);
        to_syslog = 1;
        return 0;
    }
    snprintf(log_path, sizeof log_path, "%s", target);
    int fd = open(target, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
    if (fd < 0) return -1;
    log_fd = fd;
    return 0;
}

const char *np_log_path(void)
{
    return log_path[0] ? log_path : NULL;
}

void np_log_reopen(void)
{
    int fd;

    if (!log_path[0]) return;
    fd = open(log_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
    if (fd < 0) return;         /* keep writing where we were */
    dup2(fd, log_fd);           /* the same descriptor number: nothing else to update */
    close(fd);
}

static const int syslog_priority[] = { LOG_ERR, LOG_WARNING, LOG_NOTICE, LOG_INFO, LOG_DEBUG };

void np_log_conn(int level, uint64_t conn_id, const char *fmt, ...)
{
    char line[2048], stamp[32];
    struct timeval tv;
    struct tm tm;
    va_list ap;
    int n;

    if (to_syslog) {                /* syslog stamps time, level and pid itself */
        n = conn_id ? snprintf(line, sizeof line, "#%llu ", (unsigned long long)conn_id) : 0;
        va_start(ap, fmt);
        vsnprintf(line + n, sizeof line - n, fmt, ap);
        va_end(ap);
        syslog(syslog_priority[level < 0 ? 0 : level > 4 ? 4 : level], "%s", line);
        return;
    }
    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &tm);
    n = snprintf(line, sizeof line, "%s.%03dZ %s [%d] ", stamp, (int)(tv.tv_usec / 1000),
                 np_log_level_name(level), (int)getpid());
    if (conn_id)
        n += snprintf(line + n, sizeof line - n, "#%llu ", (unsigned long long)conn_id);
    va_start(ap, fmt);
    n += vsnprintf(line + n, sizeof line - n, fmt, ap);
    va_end(ap);
    if (n > (int)sizeof line - 2) n = sizeof line - 2;
    line[n++] = '\n';
    /* One write per line so lines from several processes never interleave. */
    if (write(log_fd, line, n) < 0) { /* nowhere left to report it */ }
}
