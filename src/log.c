/* Logging to stderr: "2026-11-21T13:45:11.123Z notice [pid] #id message". */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <stdlib.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

int np_log_level = NP_NOTICE;

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

void np_log_conn(int level, uint64_t conn_id, const char *fmt, ...)
{
    char line[2048], stamp[32];
    struct timeval tv;
    struct tm tm;
    va_list ap;
    int n;

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
    if (write(STDERR_FILENO, line, n) < 0) { /* nowhere left to report it */ }
}
