/* src/json.c alone: each line of standard input is hex (two digits a byte); each is written
 * back as the JSON string np_json_string makes of those bytes, one a line, and, after a tab,
 * as np_text_escaped makes it (spec/01-unit/33-json_spec.lua decodes them with lua-cjson). */
#include "../../src/json.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(void)
{
    char line[65536];
    unsigned char bytes[32768];

    while (fgets(line, sizeof line, stdin)) {
        size_t n = 0;
        struct np_text t = { 0 };
        unsigned v;

        for (const char *p = line; p[0] && p[1] && p[0] != '\n' && sscanf(p, "%2x", &v) == 1; p += 2)
            bytes[n++] = (unsigned char)v;
        np_json_string(&t, (const char *)bytes, n);
        np_text_add(&t, "\t", 1);
        np_text_escaped(&t, (const char *)bytes, n);
        if (t.failed) return 1;
        printf("%s\n", t.p);
        np_text_free(&t);
    }
    return 0;
}
