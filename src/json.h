/* A growing text buffer, and JSON strings written into it: valid JSON for any bytes. */
#ifndef NP_JSON_H
#define NP_JSON_H
#include <stddef.h>

struct np_text {
    char *p;                    /* NUL-terminated once anything was added */
    size_t len, cap;
    int failed;                 /* out of memory: what follows is dropped */
};

void np_text_add(struct np_text *t, const char *s, size_t n);
void np_text_printf(struct np_text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void np_text_free(struct np_text *t);

/* s (n bytes) as a JSON string, quotes included: '"' and '\' escaped, control characters
 * and DEL as \uXXXX (\n, \t... by name), valid UTF-8 as it is, and every byte that is not
 * part of a valid UTF-8 sequence as \u00XX of that byte (so a decoder reads U+0080..U+00FF:
 * the line stays valid and the byte can still be told). */
void np_json_string(struct np_text *t, const char *s, size_t n);

/* s as one line of plain text: control characters, DEL and bytes of invalid UTF-8 as \xHH,
 * and '\' as "\\" (a template's fields: a value can never end the line early). */
void np_text_escaped(struct np_text *t, const char *s, size_t n);

/* The length of the valid UTF-8 sequence at s (at most n bytes), or 0 when there is none. */
size_t np_utf8_len(const unsigned char *s, size_t n);

#endif
