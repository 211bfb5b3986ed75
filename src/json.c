/* A growing text buffer, and JSON strings written into it (the access log's lines). */
#include "json.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int reserve(struct np_text *t, size_t more)
{
    size_t cap = t->cap ? t->cap : 256;
    char *p;

    if (t->failed) return -1;
    if (t->len + more + 1 <= t->cap) return 0;
    while (cap < t->len + more + 1) cap *= 2;
    if (!(p = realloc(t->p, cap))) {
        t->failed = 1;
        return -1;
    }
    t->p = p;
    t->cap = cap;
    return 0;
}

void np_text_add(struct np_text *t, const char *s, size_t n)
{
    if (reserve(t, n) < 0) return;
    memcpy(t->p + t->len, s, n);
    t->len += n;
    t->p[t->len] = '\0';
}

void np_text_printf(struct np_text *t, const char *fmt, ...)
{
    va_list ap;
    int n;

    /* into the room there is first: a second pass only when it did not fit */
    if (t->failed || reserve(t, 64) < 0) return;
    va_start(ap, fmt);
    n = vsnprintf(t->p + t->len, t->cap - t->len, fmt, ap);
    va_end(ap);
    if (n >= 0 && (size_t)n < t->cap - t->len) {
        t->len += (size_t)n;
        return;
    }
    if (n < 0 || reserve(t, (size_t)n) < 0) return;
    va_start(ap, fmt);
    vsnprintf(t->p + t->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    t->len += (size_t)n;
}

void np_text_free(struct np_text *t)
{
    free(t->p);
    *t = (struct np_text){ 0 };
}

/* RFC 3629: no overlong forms, no surrogates, nothing past U+10FFFF. */
size_t np_utf8_len(const unsigned char *s, size_t n)
{
    size_t len;
    unsigned lo = 0x80, hi = 0xBF;

    if (s[0] < 0x80) return 1;
    if (s[0] >= 0xC2 && s[0] <= 0xDF) len = 2;
    else if (s[0] >= 0xE0 && s[0] <= 0xEF) len = 3;
    else if (s[0] >= 0xF0 && s[0] <= 0xF4) len = 4;
    else return 0;
    if (len > n) return 0;
    if (s[0] == 0xE0) lo = 0xA0;            /* overlong */
    else if (s[0] == 0xED) hi = 0x9F;       /* surrogates */
    else if (s[0] == 0xF0) lo = 0x90;       /* overlong */
    else if (s[0] == 0xF4) hi = 0x8F;       /* past U+10FFFF */
    if (s[1] < lo || s[1] > hi) return 0;
    for (size_t i = 2; i < len; i++)
        if (s[i] < 0x80 || s[i] > 0xBF) return 0;
    return len;
}

void np_json_string(struct np_text *t, const char *str, size_t n)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0, plain;

    np_text_add(t, "\"", 1);
    while (i < n) {
        /* runs of bytes that need nothing go in one copy */
        for (plain = i; plain < n && s[plain] >= 0x20 && s[plain] < 0x7F && s[plain] != '"' && s[plain] != '\\'; plain++) {}
        if (plain > i) np_text_add(t, str + i, plain - i);
        if ((i = plain) >= n) break;
        size_t len = s[i] >= 0x80 ? np_utf8_len(s + i, n - i) : 0;
        if (len) {
            np_text_add(t, str + i, len);
            i += len;
            continue;
        }
        switch (s[i]) {
        case '"': np_text_add(t, "\\\"", 2); break;
        case '\\': np_text_add(t, "\\\\", 2); break;
        case '\n': np_text_add(t, "\\n", 2); break;
        case '\r': np_text_add(t, "\\r", 2); break;
        case '\t': np_text_add(t, "\\t", 2); break;
        default: np_text_printf(t, "\\u%04x", s[i]); break;    /* control, DEL, a stray byte */
        }
        i++;
    }
    np_text_add(t, "\"", 1);
}

void np_text_escaped(struct np_text *t, const char *str, size_t n)
{
    const unsigned char *s = (const unsigned char *)str;

    for (size_t i = 0; i < n;) {
        size_t len = s[i] >= 0x80 ? np_utf8_len(s + i, n - i) : s[i] >= 0x20 && s[i] < 0x7F;
        if (len && s[i] != '\\') {
            np_text_add(t, str + i, len);
            i += len;
        } else {
            if (s[i] == '\\') np_text_add(t, "\\\\", 2);
            else np_text_printf(t, "\\x%02x", s[i]);
            i++;
        }
    }
}
