/* Logging to stderr: "2026-11-21T13:45:11.123Z notice [pid] #id message". */
#include "log.h"

#include <errno.h>
#include <event2/dns.h>
#include <event2/event.h>
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

static const struct { const char *name; int facility; } facilities[] = {
    { "auth", LOG_AUTH }, { "authpriv", LOG_AUTHPRIV }, { "cron", LOG_CRON },
    { "daemon", LOG_DAEMON }, { "ftp", LOG_FTP }, { "kern", LOG_KERN }, { "lpr", LOG_LPR },
    { "mail", LOG_MAIL }, { "news", LOG_NEWS }, { "syslog", LOG_SYSLOG }, { "user", LOG_USER },
    { "uucp", LOG_UUCP }, { "local0", LOG_LOCAL0 }, { "local1", LOG_LOCAL1 },
    { "local2", LOG_LOCAL2 }, { "local3", LOG_LOCAL3 }, { "local4", LOG_LOCAL4 },
    { "local5", LOG_LOCAL5 }, { "local6", LOG_LOCAL6 }, { "local7", LOG_LOCAL7 },
};

static const struct { const char *name; int option; } logopts[] = {
    { "pid", LOG_PID }, { "cons", LOG_CONS }, { "ndelay", LOG_NDELAY }, { "nowait", LOG_NOWAIT },
    { "perror", LOG_PERROR },
};

/* openlog's options from "pid|ndelay"; -1 for a word that is none. */
static int parse_logopt(const char *text)
{
    int options = 0;

    while (*text) {
        size_t n = strcspn(text, "|"), i;
        for (i = 0; i < sizeof logopts / sizeof logopts[0]; i++)
            if (strlen(logopts[i].name) == n && !strncmp(text, logopts[i].name, n)) break;
        if (i == sizeof logopts / sizeof logopts[0]) return -1;
        options |= logopts[i].option;
        text += n + (text[n] == '|');
    }
    return options;
}

/* "IDENT:FACILITY[:OPTS]" into openlog's arguments; openlog keeps the ident pointer, so it
 * lives in a static buffer. 0, or -1 (EINVAL). */
static int syslog_options(const char *spec, const char **ident, int *facility, int *options)
{
    static char ident_buf[64];
    const char *colon = strchr(spec, ':'), *opts;
    size_t flen;

    if (!colon || colon == spec || (size_t)(colon - spec) >= sizeof ident_buf) goto bad;
    memcpy(ident_buf, spec, colon - spec);
    ident_buf[colon - spec] = '\0';
    opts = strchr(colon + 1, ':');
    flen = opts ? (size_t)(opts - colon - 1) : strlen(colon + 1);
    if (opts && (*options = parse_logopt(opts + 1)) < 0) goto bad;
    for (size_t i = 0; i < sizeof facilities / sizeof facilities[0]; i++) {
        if (strlen(facilities[i].name) == flen && !strncmp(colon + 1, facilities[i].name, flen)) {
            *ident = ident_buf;
            *facility = facilities[i].facility;
            return 0;
        }
    }
bad:
    errno = EINVAL;
    return -1;
}

/* The log file, if any, is closed: the log goes to stderr again. */
static void close_file(void)
{
    if (log_fd != STDERR_FILENO) close(log_fd);
    log_fd = STDERR_FILENO;
    log_path[0] = '\0';
}

void np_log_to_stderr(void)
{
    close_file();
    if (to_syslog) closelog();
    to_syslog = 0;
}

int np_log_open(const char *target)
{
    const char *ident = "netproxy";
    int facility = LOG_DAEMON, options = LOG_PID | LOG_NDELAY;

    if (!strcmp(target, "syslog") || !strncmp(target, "syslog:", 7)) {
        if (target[6] && syslog_options(target + 7, &ident, &facility, &options) < 0) return -1;
        if (to_syslog) closelog();
        openlog(ident, options, facility);
        close_file();
        to_syslog = 1;
        return 0;
    }
    int fd = open(target, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
    if (fd < 0) return -1;
    np_log_to_stderr();
    snprintf(log_path, sizeof log_path, "%s", target);
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
static np_log_sink_fn *sink;
static char *capture;
static size_t capture_size, capture_len;

void np_log_capture(char *buf, size_t size)
{
    capture = buf;
    capture_size = size;
    capture_len = 0;
    if (buf && size) buf[0] = '\0';
}

/* A warning or an error, its message alone, one per line, as long as there is room. */
static void captured(int level, const char *msg, size_t len)
{
    if (!capture || level > NP_WARNING || capture_len + len + 2 > capture_size) return;
    memcpy(capture + capture_len, msg, len);
    capture_len += len;
    capture[capture_len++] = '\n';
    capture[capture_len] = '\0';
}

void np_log_set_sink(np_log_sink_fn *fn)
{
    sink = fn;
}

void np_log_write_line(const char *line, size_t len)
{
    char buf[2048];

    if (len > sizeof buf - 1) len = sizeof buf - 1;
    memcpy(buf, line, len);
    buf[len++] = '\n';
    /* One write per line so lines from several processes never interleave. */
    if (write(log_fd, buf, len) < 0) { /* nowhere left to report it */ }
}

void np_log_conn(int level, uint64_t conn_id, const char *fmt, ...)
{
    char line[2048], stamp[32];
    struct timeval tv;
    struct tm tm;
    va_list ap;
    size_t msg_at;
    int n;

    if (to_syslog) {                /* syslog stamps time, level and pid itself */
        n = conn_id ? snprintf(line, sizeof line, "#%llu ", (unsigned long long)conn_id) : 0;
        va_start(ap, fmt);
        vsnprintf(line + n, sizeof line - n, fmt, ap);
        va_end(ap);
        captured(level, line + n, strlen(line + n));
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
    msg_at = (size_t)n;
    va_start(ap, fmt);
    n += vsnprintf(line + n, sizeof line - n, fmt, ap);
    va_end(ap);
    if (n > (int)sizeof line - 2) n = sizeof line - 2;
    captured(level, line + msg_at, n - msg_at);
    if (sink && sink(level, conn_id, line, n, msg_at)) return;
    np_log_write_line(line, n);
}

/* ---------------------------------------------------------------- libraries' lines */

/* libevent's own lines ("[msg] Nameserver 127.0.0.1:53 has failed"), which it would print
 * raw on stderr: into the log, at our level for theirs. */
static void from_libevent(int severity, const char *msg)
{
    int level = severity == EVENT_LOG_ERR ? NP_ERR : severity == EVENT_LOG_WARN ? NP_WARNING
              : severity == EVENT_LOG_MSG ? NP_NOTICE : NP_DEBUG;

    np_log(level, "libevent: %s", msg);
}

/* evdns's, when a program set a function of its own for them (is_warning or not). */
static void from_evdns(int is_warning, const char *msg)
{
    np_log(is_warning ? NP_WARNING : NP_INFO, "resolver: %s", msg);
}

void np_log_libraries(void)
{
    event_set_log_callback(from_libevent);
    evdns_set_log_fn(from_evdns);
}
