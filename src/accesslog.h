/* Access logs: `access_log = { path = FILE | "syslog", format = "json" | "text" | TEMPLATE }`
 * of server{} or a proxy. One line per finished connection (conn.c) or forwarded HTTP
 * request (core.access_log, from http_forward.lua), written with one write(2) from C, so
 * lines of several workers never interleave. SIGUSR1 reopens the files. */
#ifndef NP_ACCESSLOG_H
#define NP_ACCESSLOG_H
#include <stddef.h>
#include <stdint.h>

/* The fields, as a template names them: %{time}, %{proxy}, ... */
enum np_access_field {
    NP_AF_TIME,                 /* the end, UTC: 2026-12-07T03:45:39.838Z (filled here) */
    NP_AF_PROXY, NP_AF_ID,
    NP_AF_CLIENT,               /* "addr:port" as the log line names it */
    NP_AF_CLIENT_ADDR, NP_AF_CLIENT_PORT,       /* the same, split (filled here) */
    NP_AF_TARGET,               /* as the client (or the config) asked */
    NP_AF_SERVER,               /* the address reached */
    /* TLS identity (conn.tls): set by tls.c's session once that feature is there; absent now */
    NP_AF_SNI, NP_AF_ALPN, NP_AF_TLS_VERSION, NP_AF_CLIENT_CERT, NP_AF_JA4,  /* conn.tls's */
    NP_AF_USER,                 /* the authenticated user */
    NP_AF_BYTES_IN, NP_AF_BYTES_OUT,
    NP_AF_DURATION, NP_AF_CONNECT_TIME, NP_AF_NEGOTIATION_TIME,     /* seconds */
    NP_AF_END, NP_AF_DETAIL,
    NP_AF_METHOD, NP_AF_URL, NP_AF_STATUS,      /* a forwarded HTTP request's */
    NP_AF_COUNT
};

/* What one line says: a text field is absent when NULL, a number when negative. */
struct np_access_record {
    const char *text[NP_AF_COUNT];
    double num[NP_AF_COUNT];
};

/* An empty record: every field absent. */
void np_access_record_init(struct np_access_record *r);

struct np_accesslog;

/* An access log writing to path ("syslog": the system log, at info) in format ("json",
 * "text" or a template). NULL with a message in err (a file that cannot be opened, a
 * template naming an unknown field). Logs of one path share their file. */
struct np_accesslog *np_accesslog_new(const char *path, const char *format, char *err, size_t errlen);
void np_accesslog_free(struct np_accesslog *a);

/* Writes r as one line. */
void np_accesslog_write(struct np_accesslog *a, const struct np_access_record *r);

/* SIGUSR1: every open access log file is opened again at its path (logrotate moved it). */
void np_accesslog_reopen(void);

/* Writes every line still kept (the loop stops; the process exits). */
void np_accesslog_flush(void);

/* The field named name, or -1. */
int np_access_field_parse(const char *name, size_t len);

#endif
