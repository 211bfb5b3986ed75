/* Copying a C string into a fixed buffer, as snprintf(out, outlen, "%s", text) would (cut,
 * always terminated), without the format machinery: it runs on every connection. */
#ifndef NP_TEXT_H
#define NP_TEXT_H
#include <string.h>

static inline void np_copy_text(char *out, size_t outlen, const char *text)
{
    size_t n = strlen(text);

    if (n >= outlen) n = outlen - 1;
    memcpy(out, text, n);
    out[n] = '\0';
}

#endif
