/* JA4 (FoxIO, technical_details/JA4.md) of a ClientHello: one parse of the message into the
 * lists the fingerprint is made of, then its three parts:
 *   a  "t" + version + "d"/"i" (SNI or not) + cipher count + extension count + ALPN's ends
 *   b  SHA-256 (12 hex digits) of the sorted cipher suites, "002f,0035,..."
 *   c  SHA-256 of the sorted extensions without SNI and ALPN, "_", the signature algorithms
 *      in the client's order.
 * GREASE values (RFC 8701) are left out of every list and count. The same function serves
 * dual's tls probe (core.ja4 over the bytes it read) and `from = ssl` (the message as
 * OpenSSL's message callback hands it over, src/tls.c). */
#include "ja4.h"

#include <openssl/evp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A ClientHello fills at most one 16 KiB record train of 2^24 bytes in theory; a real one
 * has tens of each. Values past these bounds are counted but not hashed: no client sends
 * them, and the fingerprint of such a hello needs only to be stable. */
#define MAX_CIPHERS 1024
#define MAX_EXTS 256
#define MAX_SIGALGS 256

struct hello {
    unsigned version;                       /* the hello's legacy version */
    unsigned highest;                       /* the highest of supported_versions, if sent */
    int sni;
    const unsigned char *alpn;              /* the first ALPN value */
    size_t alpn_len;
    uint16_t ciphers[MAX_CIPHERS], exts[MAX_EXTS], sigalgs[MAX_SIGALGS];
    int nciphers, nexts, nsigalgs;
    int ciphers_seen, exts_seen;            /* counted, past the bounds too */
};

static unsigned u16(const unsigned char *p) { return (unsigned)p[0] << 8 | p[1]; }
static int grease(unsigned v) { return (v & 0x0f0f) == 0x0a0a && (v >> 8) == (v & 0xff); }

static void supported_versions(struct hello *h, const unsigned char *p, size_t len)
{
    if (len < 1 || p[0] + 1u > len) return;
    for (size_t i = 1; i + 1 < (size_t)p[0] + 1; i += 2) {
        unsigned v = u16(p + i);
        if (!grease(v) && v > h->highest) h->highest = v;
    }
}

static void extension(struct hello *h, unsigned type, const unsigned char *p, size_t len)
{
    if (grease(type)) return;
    h->exts_seen++;
    if (type == 0x0000) h->sni = 1;
    else if (type == 0x0010 && len >= 3 && p[2] >= 1 && 3u + p[2] <= len && !h->alpn) {
        h->alpn = p + 3;
        h->alpn_len = p[2];
    } else if (type == 0x002b) {
        supported_versions(h, p, len);
    } else if (type == 0x000d && len >= 2) {
        size_t n = u16(p);
        for (size_t i = 2; i + 1 < 2 + n && i + 1 < len; i += 2)
            if (!grease(u16(p + i)) && h->nsigalgs < MAX_SIGALGS) h->sigalgs[h->nsigalgs++] = (uint16_t)u16(p + i);
    }
    if (type != 0x0000 && type != 0x0010 && h->nexts < MAX_EXTS) h->exts[h->nexts++] = (uint16_t)type;
}

/* hs: type, 3-byte length, legacy version, random, session id, ciphers, compression,
 * extensions. */
static int parse(const unsigned char *hs, size_t len, struct hello *h)
{
    size_t body, p, n, end;

    if (len < 4 || hs[0] != 1) return -1;
    body = (size_t)hs[1] << 16 | (size_t)hs[2] << 8 | hs[3];
    if (body + 4 > len || body < 2 + 32 + 1) return -1;
    end = 4 + body;
    h->version = u16(hs + 4);
    p = 4 + 2 + 32;
    p += 1 + hs[p];                                     /* session id */
    if (p + 2 > end) return -1;
    n = u16(hs + p);
    p += 2;
    if (p + n > end || n % 2) return -1;
    for (size_t i = 0; i < n; i += 2) {
        unsigned c = u16(hs + p + i);
        if (grease(c)) continue;
        h->ciphers_seen++;
        if (h->nciphers < MAX_CIPHERS) h->ciphers[h->nciphers++] = (uint16_t)c;
    }
    p += n;
    if (p + 1 > end || p + 1 + hs[p] > end) return -1;
    p += 1 + hs[p];                                     /* compression methods */
    if (p == end) return 0;                             /* no extensions */
    if (p + 2 > end || p + 2 + u16(hs + p) > end) return -1;
    end = p + 2 + u16(hs + p);
    for (p += 2; p + 4 <= end; p += 4 + n) {
        n = u16(hs + p + 2);
        if (p + 4 + n > end) return -1;
        extension(h, u16(hs + p), hs + p + 4, n);
    }
    return p == end ? 0 : -1;
}

static int by_value(const void *a, const void *b)
{
    return (int)*(const uint16_t *)a - (int)*(const uint16_t *)b;
}

/* "0403,0804" of list into s at *at (room checked by the caller's size). */
static void hex_list(char *s, size_t *at, const uint16_t *list, int n)
{
    for (int i = 0; i < n; i++) *at += (size_t)sprintf(s + *at, i ? ",%04x" : "%04x", list[i]);
}

/* The first 12 hex digits of SHA-256(s), or twelve zeros for nothing to hash. */
static void hash12(const char *s, size_t len, char *out)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned mdlen = 0;

    if (len == 0 || !EVP_Digest(s, len, md, &mdlen, EVP_sha256(), NULL)) {
        memcpy(out, "000000000000", 12);
        return;
    }
    for (int i = 0; i < 6; i++) sprintf(out + 2 * i, "%02x", md[i]);
}

static const char *version_code(unsigned v)
{
    switch (v) {
    case 0x0304: return "13";
    case 0x0303: return "12";
    case 0x0302: return "11";
    case 0x0301: return "10";
    case 0x0300: return "s3";
    case 0x0002: return "s2";
    case 0xfeff: return "d1";
    case 0xfefd: return "d2";
    case 0xfefc: return "d3";
    default: return "00";
    }
}

static int alnum(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

/* The first and last characters of the first ALPN value; for a value that does not start
 * and end with a letter or digit, the first hex digit of its first byte and the last of its
 * last byte; "00" without ALPN. */
static void alpn_code(const struct hello *h, char *out)
{
    static const char hex[] = "0123456789abcdef";
    unsigned char first, last;

    if (!h->alpn) {
        memcpy(out, "00", 2);
        return;
    }
    first = h->alpn[0];
    last = h->alpn[h->alpn_len - 1];
    if (alnum(first) && alnum(last)) {
        out[0] = (char)first;
        out[1] = (char)last;
    } else {
        out[0] = hex[first >> 4];
        out[1] = hex[last & 15];
    }
}

int np_ja4(const unsigned char *hs, size_t len, char *out)
{
    struct hello h;
    char *s, alpn[2];
    size_t at = 0;

    memset(&h, 0, sizeof h);
    if (parse(hs, len, &h) < 0) return -1;
    s = malloc(5 * (MAX_CIPHERS + MAX_EXTS + MAX_SIGALGS) + 2);
    if (!s) return -1;
    alpn_code(&h, alpn);
    sprintf(out, "t%s%c%02d%02d%c%c_", version_code(h.highest ? h.highest : h.version), h.sni ? 'd' : 'i',
            h.ciphers_seen > 99 ? 99 : h.ciphers_seen, h.exts_seen > 99 ? 99 : h.exts_seen, alpn[0], alpn[1]);
    qsort(h.ciphers, (size_t)h.nciphers, sizeof h.ciphers[0], by_value);
    hex_list(s, &at, h.ciphers, h.nciphers);
    hash12(s, at, out + 11);
    out[23] = '_';
    at = 0;
    qsort(h.exts, (size_t)h.nexts, sizeof h.exts[0], by_value);
    hex_list(s, &at, h.exts, h.nexts);
    if (h.nsigalgs) {
        s[at++] = '_';
        hex_list(s, &at, h.sigalgs, h.nsigalgs);
    }
    hash12(s, h.nexts ? at : 0, out + 24);
    out[NP_JA4_LEN] = '\0';
    free(s);
    return 0;
}
