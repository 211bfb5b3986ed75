/* Logging: Net::Server's levels 0..4 to stderr, one line per message, with the
 * connection id when the message is about a connection. */
#ifndef NP_LOG_H
#define NP_LOG_H
#include <stddef.h>
#include <stdint.h>

enum np_log_level { NP_ERR = 0, NP_WARNING, NP_NOTICE, NP_INFO, NP_DEBUG };

extern int np_log_level;

/* Sends the log to a file (appended) or to syslog instead of stderr: "syslog" (ident
 * netproxy, facility daemon, options pid|ndelay) or "syslog:IDENT:FACILITY[:OPTS]"
 * (FACILITY: daemon, local0..local7, ...; OPTS: openlog's, "pid|cons|ndelay|nowait|perror";
 * what netproxy.config makes of server{ syslog_ident, syslog_facility, syslog_logopt }).
 * 0, or -1 (errno). */
int np_log_open(const char *target);

/* Back to stderr: the log file closed, or syslog. */
void np_log_to_stderr(void);

/* Reopens the log file (after logrotate moved it: SIGUSR1). */
void np_log_reopen(void);

/* The log file's path, or NULL (stderr, syslog). */
const char *np_log_path(void);

/* Parses "err", "warning", "notice", "info", "debug" or "0".."4"; -1 when neither. */
int np_log_level_parse(const char *s);
const char *np_log_level_name(int level);

/* Takes a formatted line (len bytes, no newline; its message from msg_at) instead of it
 * being written: 1 when taken, 0 to write it as usual. Not for syslog. */
typedef int np_log_sink_fn(int level, uint64_t conn_id, const char *line, size_t len, size_t msg_at);
void np_log_set_sink(np_log_sink_fn *sink);

/* Writes one formatted line (without its newline) to the log file or stderr. */
void np_log_write_line(const char *line, size_t len);

/* libevent's and its resolver's lines go through np_log instead of raw to stderr (OpenSSL's
 * errors are read off its queue by tls.c into the messages that name them). */
void np_log_libraries(void);

/* conn_id 0 means "not about a connection". */
/* While buf is set: every warning and error logged is also copied there, its message alone,
 * one per line, as long as it fits (a reload from the control socket answers with them).
 * NULL stops. */
void np_log_capture(char *buf, size_t size);

void np_log_conn(int level, uint64_t conn_id, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define np_log(level, ...) \
    do { if ((level) <= np_log_level) np_log_conn((level), 0, __VA_ARGS__); } while (0)
#define np_clog(level, id, ...) \
    do { if ((level) <= np_log_level) np_log_conn((level), (id), __VA_ARGS__); } while (0)

#endif
