/* Access logs: a line per finished connection (or forwarded HTTP request) in JSON, in
 * logfmt text or in the operator's template, to a file or to syslog. Written from C, a
 * file's lines with one write(2) per turn of the loop; no Lua runs for it. */
#include "accesslog.h"
#include "json.h"
#include "loop.h"

#include <errno.h>
#include <event2/event.h>
#include <event2/event_struct.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

enum kind { TEXT, INT, SECONDS };

static const struct {
    const char *name;
    enum kind kind;
} fields[NP_AF_COUNT] = {
    [NP_AF_TIME] = { "time", TEXT }, [NP_AF_PROXY] = { "proxy", TEXT }, [NP_AF_ID] = { "id", INT },
    [NP_AF_CLIENT] = { "client", TEXT }, [NP_AF_CLIENT_ADDR] = { "client_addr", TEXT },
    [NP_AF_CLIENT_PORT] = { "client_port", INT }, [NP_AF_TARGET] = { "target", TEXT },
    [NP_AF_SERVER] = { "server", TEXT }, [NP_AF_SNI] = { "sni", TEXT }, [NP_AF_ALPN] = { "alpn", TEXT },
    [NP_AF_TLS_VERSION] = { "tls_version", TEXT }, [NP_AF_CLIENT_CERT] = { "client_cert", TEXT },
    [NP_AF_JA4] = { "ja4", TEXT },
    [NP_AF_USER] = { "user", TEXT }, [NP_AF_BYTES_IN] = { "bytes_in", INT },
    [NP_AF_BYTES_OUT] = { "bytes_out", INT }, [NP_AF_DURATION] = { "duration", SECONDS },
    [NP_AF_CONNECT_TIME] = { "connect_time", SECONDS },
    [NP_AF_NEGOTIATION_TIME] = { "negotiation_time", SECONDS }, [NP_AF_END] = { "end", TEXT },
    [NP_AF_DETAIL] = { "detail", TEXT }, [NP_AF_METHOD] = { "method", TEXT }, [NP_AF_URL] = { "url", TEXT },
    [NP_AF_STATUS] = { "status", INT },
};

/* Where lines go: a file, shared by every log of its path, or syslog. A file's lines are
 * kept until the end of the loop's turn (or FLUSH_AT bytes) and written together: one
 * write(2) a turn rather than a line (O_APPEND, whole lines: several workers' writes never
 * cut a line). */
struct sink {
    char *path;                 /* NULL: syslog */
    int fd;
    int refs;
    struct np_text pending;     /* whole lines not written yet */
    struct sink *next;
};

#define FLUSH_AT (32 * 1024)

static struct sink *sinks;
static struct event flush_ev;   /* at the end of the turn that wrote lines */
static int flush_ready;

static void flush_sink(struct sink *s)
{
    if (s->pending.len && s->fd >= 0 && write(s->fd, s->pending.p, s->pending.len) < 0) {
        /* nowhere to say it but the log, at every turn: no */
    }
    s->pending.len = 0;
    s->pending.failed = 0;
}

void np_accesslog_flush(void)
{
    for (struct sink *s = sinks; s; s = s->next) flush_sink(s);
}

static void on_flush(evutil_socket_t fd, short what, void *arg)
{
    np_accesslog_flush();
}

/* Writes s's lines at the end of this turn of the loop (none running: at once). */
static void flush_soon(struct sink *s)
{
    static const struct timeval now = { 0, 0 };

    if (s->pending.len >= FLUSH_AT || !np_base) {
        flush_sink(s);
        return;
    }
    if (!flush_ready) {
        evtimer_assign(&flush_ev, np_base, on_flush, NULL);
        flush_ready = 1;
    }
    if (!evtimer_pending(&flush_ev, NULL)) evtimer_add(&flush_ev, &now);
}

/* A template, cut into literal text each followed by a field (-1 for none: the end). */
struct piece {
    const char *text;
    size_t len;
    int field;
};

enum format { JSON, LOGFMT, TEMPLATE };

struct np_accesslog {
    struct sink *sink;
    enum format format;
    char *template;             /* the pieces point into it */
    struct piece *pieces;
    int npieces;
};

void np_access_record_init(struct np_access_record *r)
{
    for (int i = 0; i < NP_AF_COUNT; i++) {
        r->text[i] = NULL;
        r->num[i] = -1;
    }
}

int np_access_field_parse(const char *name, size_t len)
{
    for (int i = 0; i < NP_AF_COUNT; i++)
        if (strlen(fields[i].name) == len && !strncmp(fields[i].name, name, len)) return i;
    return -1;
}

/* ---------------------------------------------------------------- sinks */

static int open_file(const char *path)
{
    return open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
}

static struct sink *sink_get(const char *path, char *err, size_t errlen)
{
    int is_syslog = !strcmp(path, "syslog");
    struct sink *s;

    for (s = sinks; s; s = s->next) {
        if (is_syslog ? !s->path : s->path && !strcmp(s->path, path)) {
            s->refs++;
            return s;
        }
    }
    if (!(s = calloc(1, sizeof *s)) || (!is_syslog && !(s->path = strdup(path)))) {
        free(s);
        snprintf(err, errlen, "access_log: out of memory");
        return NULL;
    }
    s->fd = is_syslog ? -1 : open_file(path);
    if (!is_syslog && s->fd < 0) {
        snprintf(err, errlen, "access_log: cannot open %s: %s", path, strerror(errno));
        free(s->path);
        free(s);
        return NULL;
    }
    s->refs = 1;
    s->next = sinks;
    sinks = s;
    return s;
}

static void sink_put(struct sink *s)
{
    if (--s->refs > 0) return;
    for (struct sink **pp = &sinks; *pp; pp = &(*pp)->next) {
        if (*pp == s) {
            *pp = s->next;
            break;
        }
    }
    flush_sink(s);
    if (s->fd >= 0) close(s->fd);
    np_text_free(&s->pending);
    free(s->path);
    free(s);
}

void np_accesslog_reopen(void)
{
    for (struct sink *s = sinks; s; s = s->next) {
        if (!s->path) continue;
        flush_sink(s);                  /* the old file's last lines stay in it */
        int fd = open_file(s->path);
        if (fd < 0) continue;           /* keep writing where we were */
        dup2(fd, s->fd);                /* the same descriptor: forked workers need nothing */
        close(fd);
    }
}

/* ---------------------------------------------------------------- formats */

/* "... %{field} ..." into pieces; "%%" is a '%'. 0, or -1 with err. */
static int parse_template(struct np_accesslog *a, char *err, size_t errlen)
{
    char *r = a->template, *w = a->template;
    struct piece *p;
    size_t n = 1;

    for (const char *s = r; (s = strstr(s, "%{")); s += 2) n++;
    if (!(a->pieces = calloc(n, sizeof *a->pieces))) {
        snprintf(err, errlen, "access_log: out of memory");
        return -1;
    }
    /* the literal text is compacted in place ("%%" becomes '%'), each piece pointing into it */
    p = &a->pieces[0];
    p->text = w;
    while (*r) {
        if (r[0] == '%' && r[1] == '%') {
            *w++ = '%';
            r += 2;
        } else if (r[0] == '%' && r[1] == '{') {
            char *close = strchr(r + 2, '}');
            int f = close ? np_access_field_parse(r + 2, close - r - 2) : -1;
            if (f < 0) {
                snprintf(err, errlen, "access_log: format: unknown field %.*s (see docs/operations.md)",
                         close ? (int)(close - r + 1) : (int)strlen(r), r);
                return -1;
            }
            p->len = w - p->text;
            p->field = f;
            r = close + 1;
            p++;
            p->text = w;
        } else {
            *w++ = *r++;
        }
    }
    p->len = w - p->text;
    p->field = -1;
    a->npieces = (int)(p - a->pieces) + 1;
    return 0;
}

struct np_accesslog *np_accesslog_new(const char *path, const char *format, char *err, size_t errlen)
{
    struct np_accesslog *a = calloc(1, sizeof *a);

    if (!a) {
        snprintf(err, errlen, "access_log: out of memory");
        return NULL;
    }
    a->format = !strcmp(format, "json") ? JSON : !strcmp(format, "text") ? LOGFMT : TEMPLATE;
    if (a->format == TEMPLATE && (!(a->template = strdup(format)) || parse_template(a, err, errlen) < 0)) {
        if (!a->template) snprintf(err, errlen, "access_log: out of memory");
        np_accesslog_free(a);
        return NULL;
    }
    if (!(a->sink = sink_get(path, err, errlen))) {
        np_accesslog_free(a);
        return NULL;
    }
    return a;
}

void np_accesslog_free(struct np_accesslog *a)
{
    if (!a) return;
    if (a->sink) sink_put(a->sink);
    free(a->pieces);
    free(a->template);
    free(a);
}

/* ---------------------------------------------------------------- a line */

/* The fields made here: the time, and the client's address and port. */
static void derive(struct np_access_record *r, char *stamp, size_t len, char *addr, size_t addrlen)
{
    struct timeval tv;
    struct tm tm;
    const char *client = r->text[NP_AF_CLIENT], *colon;

    static time_t second = -1;          /* the date and time to the second, made once a second */
    static char date[32];
    static size_t date_len;

    gettimeofday(&tv, NULL);
    if (tv.tv_sec != second) {
        gmtime_r(&tv.tv_sec, &tm);
        date_len = strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%S", &tm);
        second = tv.tv_sec;
    }
    snprintf(stamp, len, "%.*s.%03dZ", (int)date_len, date, (int)(tv.tv_usec / 1000));
    r->text[NP_AF_TIME] = stamp;
    /* "1.2.3.4:5", "[::1]:5"; a unix client ("unix:PATH") has no port */
    if (!client || strncmp(client, "unix:", 5) == 0 || !(colon = strrchr(client, ':'))) {
        r->text[NP_AF_CLIENT_ADDR] = client;
        return;
    }
    const char *host = client;
    size_t hlen = colon - client;
    if (host[0] == '[' && hlen >= 2 && host[hlen - 1] == ']') {
        host++;
        hlen -= 2;
    }
    snprintf(addr, addrlen, "%.*s", (int)hlen, host);
    r->text[NP_AF_CLIENT_ADDR] = addr;
    r->num[NP_AF_CLIENT_PORT] = atoi(colon + 1);
}

static int present(const struct np_access_record *r, int f)
{
    return fields[f].kind == TEXT ? r->text[f] != NULL : r->num[f] >= 0;
}

static void number(struct np_text *t, const struct np_access_record *r, int f)
{
    if (fields[f].kind == INT) np_text_printf(t, "%llu", (unsigned long long)r->num[f]);
    else np_text_printf(t, "%.3f", r->num[f]);    /* the loop's clock: milliseconds */
}

/* {"time":"...","proxy":"web",...}: the fields present, in the table's order. */
static void as_json(struct np_text *t, const struct np_access_record *r)
{
    int first = 1;

    np_text_add(t, "{", 1);
    for (int f = 0; f < NP_AF_COUNT; f++) {
        if (!present(r, f)) continue;
        if (!first) np_text_add(t, ",", 1);
        np_text_add(t, "\"", 1);
        np_text_add(t, fields[f].name, strlen(fields[f].name));
        np_text_add(t, "\":", 2);
        first = 0;
        if (fields[f].kind == TEXT) np_json_string(t, r->text[f], strlen(r->text[f]));
        else number(t, r, f);
    }
    np_text_add(t, "}", 1);
}

/* A logfmt value: bare when it holds nothing to quote, else in quotes. */
static void logfmt_value(struct np_text *t, const char *v)
{
    size_t n = strlen(v);
    int bare = n > 0;

    for (size_t i = 0; bare && i < n; i++)
        bare = (unsigned char)v[i] > 0x20 && (unsigned char)v[i] < 0x7F && v[i] != '"' && v[i] != '=' && v[i] != '\\';
    if (bare) {
        np_text_add(t, v, n);
        return;
    }
    np_text_add(t, "\"", 1);
    for (const char *q; (q = strchr(v, '"')); v = q + 1) {
        np_text_escaped(t, v, q - v);
        np_text_add(t, "\\\"", 2);
    }
    np_text_escaped(t, v, strlen(v));
    np_text_add(t, "\"", 1);
}

/* time=... proxy=web id=7 client=... end="connect failed": the fields present. */
static void as_logfmt(struct np_text *t, const struct np_access_record *r)
{
    int first = 1;

    for (int f = 0; f < NP_AF_COUNT; f++) {
        if (!present(r, f) || f == NP_AF_CLIENT_ADDR || f == NP_AF_CLIENT_PORT) continue;
        np_text_printf(t, "%s%s=", first ? "" : " ", fields[f].name);
        first = 0;
        if (fields[f].kind == TEXT) logfmt_value(t, r->text[f]);
        else number(t, r, f);
    }
}

/* The operator's template: each field as it is ("-" when absent), escaped to stay one line. */
static void as_template(struct np_text *t, const struct np_accesslog *a, const struct np_access_record *r)
{
    for (int i = 0; i < a->npieces; i++) {
        const struct piece *p = &a->pieces[i];
        np_text_add(t, p->text, p->len);
        if (p->field < 0) continue;
        if (!present(r, p->field)) np_text_add(t, "-", 1);
        else if (fields[p->field].kind == TEXT) np_text_escaped(t, r->text[p->field], strlen(r->text[p->field]));
        else number(t, r, p->field);
    }
}

void np_accesslog_write(struct np_accesslog *a, const struct np_access_record *given)
{
    static struct np_text line;         /* kept between lines: no allocation once grown */
    struct np_access_record r = *given;
    char stamp[40], addr[128];

    derive(&r, stamp, sizeof stamp, addr, sizeof addr);
    line.len = 0;
    line.failed = 0;
    if (a->format == JSON) as_json(&line, &r);
    else if (a->format == LOGFMT) as_logfmt(&line, &r);
    else as_template(&line, a, &r);
    if (line.failed) return;
    if (!a->sink->path) {
        syslog(LOG_INFO, "%s", line.len ? line.p : "");
        return;
    }
    np_text_add(&line, "\n", 1);
    if (line.failed) return;
    np_text_add(&a->sink->pending, line.p, line.len);
    flush_soon(a->sink);
}
