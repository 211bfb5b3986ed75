/* QUIC client Initials read by a middlebox: keys from the Destination Connection ID, header
 * protection removed, AES-128-GCM payload decrypted, CRYPTO frames reassembled into the
 * ClientHello (quic.h). Every length is checked against the bytes there before use: the input
 * is anyone's datagram. */
#include "quic.h"

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>

/* RFC 9001 5.2 and RFC 9369 3.3.1: the salts; 3.3.2: version 2's labels */
static const uint8_t SALT_V1[20] = { 0x38, 0x76, 0x2c, 0xf7, 0xf5, 0x59, 0x34, 0xb3, 0x4d, 0x17,
                                     0x9a, 0xe6, 0xa4, 0xc8, 0x0c, 0xad, 0xcc, 0xbb, 0x7f, 0x0a };
static const uint8_t SALT_V2[20] = { 0x0d, 0xed, 0xe3, 0xde, 0xf7, 0x00, 0xa6, 0xdb, 0x81, 0x93,
                                     0x81, 0xbe, 0x6e, 0x26, 0x9d, 0xcb, 0xf9, 0xbd, 0x2e, 0xd9 };

#define MAX_CID 20
#define TAG 16
#define SAMPLE 16

struct np_quic_hello {
    uint32_t version;
    uint8_t dcid[MAX_CID];
    size_t dcidlen;                     /* the keys' DCID (0: no keys yet) */
    struct np_quic_keys keys;
    int64_t largest_pn;                 /* -1: none yet */
    uint8_t *data, *have;               /* the CRYPTO bytes, and a bit per byte received */
    size_t size, contig;                /* data's size; bytes received from offset 0 on */
    size_t want;                        /* the ClientHello's length, once its header is here */
    int verdict;                        /* 1 or -1 once decided */
    const char *why;
};

/* ---------------------------------------------------------------- keys */

/* The algorithms, fetched once and their contexts kept for the process (a serving process
 * runs one thread): OpenSSL 3 fetches an algorithm named by EVP_sha256() or EVP_aes_128_gcm()
 * at each use, which was most of the cost of a new flow. */
static EVP_MAC_CTX *mac_ctx;
static EVP_CIPHER *ecb, *gcm;
static EVP_CIPHER_CTX *ecb_ctx, *gcm_ctx;

static int crypto_ready(void)
{
    OSSL_PARAM params[] = { OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, "SHA256", 0),
                            OSSL_PARAM_construct_end() };
    EVP_MAC *mac;

    if (gcm_ctx) return 0;
    if (!mac_ctx) {
        if (!(mac = EVP_MAC_fetch(NULL, "HMAC", NULL))) return -1;
        mac_ctx = EVP_MAC_CTX_new(mac);
        EVP_MAC_free(mac);              /* (the context holds it) */
        if (!mac_ctx || EVP_MAC_CTX_set_params(mac_ctx, params) != 1) return -1;
    }
    if (!ecb && !(ecb = EVP_CIPHER_fetch(NULL, "AES-128-ECB", NULL))) return -1;
    if (!gcm && !(gcm = EVP_CIPHER_fetch(NULL, "AES-128-GCM", NULL))) return -1;
    if (!ecb_ctx && !(ecb_ctx = EVP_CIPHER_CTX_new())) return -1;
    return (gcm_ctx = EVP_CIPHER_CTX_new()) ? 0 : -1;
}

/* HMAC-SHA256(key, data) into out: 0, or -1. */
static int hmac(const uint8_t *key, size_t keylen, const uint8_t *data, size_t len, uint8_t out[32])
{
    size_t n = 0;

    return EVP_MAC_init(mac_ctx, key, keylen, NULL) == 1 && EVP_MAC_update(mac_ctx, data, len) == 1 &&
           EVP_MAC_final(mac_ctx, out, &n, 32) == 1 && n == 32 ? 0 : -1;
}

/* HKDF-Expand-Label(secret, label, "", len) of TLS 1.3 (RFC 8446 7.1), len <= 32: one
 * block of HKDF-Expand. */
static int expand_label(const uint8_t secret[32], const char *label, uint8_t *out, size_t len)
{
    uint8_t info[2 + 1 + 6 + 32 + 1 + 1], block[32];
    size_t ll = strlen(label), n = 0;

    if (ll > 32 || len > 32) return -1;
    info[n++] = 0;
    info[n++] = (uint8_t)len;
    info[n++] = (uint8_t)(6 + ll);
    memcpy(info + n, "tls13 ", 6);
    memcpy(info + n + 6, label, ll);
    n += 6 + ll;
    info[n++] = 0;                      /* no context */
    info[n++] = 1;                      /* T(1) */
    if (hmac(secret, 32, info, n, block) < 0) return -1;
    memcpy(out, block, len);
    return 0;
}

int np_quic_initial_keys(uint32_t version, const uint8_t *dcid, size_t dcidlen, struct np_quic_keys *k)
{
    uint8_t initial[32], client[32];
    int v2 = version == NP_QUIC_V2;

    if ((version != NP_QUIC_V1 && !v2) || crypto_ready() < 0) return -1;
    /* HKDF-Extract(salt, dcid) */
    if (hmac(v2 ? SALT_V2 : SALT_V1, 20, dcid, dcidlen, initial) < 0) return -1;
    if (expand_label(initial, "client in", client, 32) < 0) return -1;
    if (expand_label(client, v2 ? "quicv2 key" : "quic key", k->key, 16) < 0) return -1;
    if (expand_label(client, v2 ? "quicv2 iv" : "quic iv", k->iv, 12) < 0) return -1;
    return expand_label(client, v2 ? "quicv2 hp" : "quic hp", k->hp, 16);
}

/* ---------------------------------------------------------------- ciphers */

/* The header protection mask: AES-128-ECB of the sample. 0, or -1. */
static int hp_mask(const uint8_t hp[16], const uint8_t *sample, uint8_t mask[16])
{
    int n = 0;

    if (EVP_EncryptInit_ex2(ecb_ctx, ecb, hp, NULL, NULL) != 1) return -1;
    EVP_CIPHER_CTX_set_padding(ecb_ctx, 0);
    return EVP_EncryptUpdate(ecb_ctx, mask, &n, sample, SAMPLE) == 1 && n == SAMPLE ? 0 : -1;
}

/* AES-128-GCM open of ct (its tag in the last 16 bytes) into out: the plaintext's length,
 * or -1 (it does not decrypt: not this flow's keys, or altered). */
static long aead_open(const struct np_quic_keys *k, uint64_t pn, const uint8_t *aad, size_t aadlen,
                      const uint8_t *ct, size_t ctlen, uint8_t *out)
{
    uint8_t nonce[12];
    int n = 0, fin = 0;

    if (ctlen < TAG) return -1;
    memcpy(nonce, k->iv, 12);
    for (int i = 0; i < 8; i++) nonce[11 - i] ^= (uint8_t)(pn >> (8 * i));
    if (EVP_DecryptInit_ex2(gcm_ctx, gcm, k->key, nonce, NULL) != 1) return -1;
    if (EVP_DecryptUpdate(gcm_ctx, NULL, &n, aad, (int)aadlen) != 1) return -1;
    if (EVP_DecryptUpdate(gcm_ctx, out, &n, ct, (int)(ctlen - TAG)) != 1) return -1;
    if (EVP_CIPHER_CTX_ctrl(gcm_ctx, EVP_CTRL_GCM_SET_TAG, TAG, (void *)(ct + ctlen - TAG)) != 1) return -1;
    if (EVP_DecryptFinal_ex(gcm_ctx, out + n, &fin) != 1) return -1;
    return (long)n + fin;
}

/* ---------------------------------------------------------------- reading bytes */

/* A variable-length integer (RFC 9000 16) at *p, below end: 0 and *p past it, or -1. */
static int varint(const uint8_t **p, const uint8_t *end, uint64_t *v)
{
    size_t n;

    if (*p >= end) return -1;
    n = (size_t)1 << (**p >> 6);
    if ((size_t)(end - *p) < n) return -1;
    *v = **p & 0x3f;
    for (size_t i = 1; i < n; i++) *v = (*v << 8) | (*p)[i];
    *p += n;
    return 0;
}

/* RFC 9000 A.3: the full packet number from its truncated form. */
static uint64_t decode_pn(int64_t largest, uint64_t truncated, int bits)
{
    uint64_t expected = (uint64_t)(largest + 1), win = (uint64_t)1 << bits, hwin = win / 2, mask = win - 1;
    uint64_t candidate = (expected & ~mask) | truncated;

    if (candidate + hwin <= expected && candidate < ((uint64_t)1 << 62) - win) return candidate + win;
    if (candidate > expected + hwin && candidate >= win) return candidate - win;
    return candidate;
}

/* ---------------------------------------------------------------- the ClientHello */

static int fail(struct np_quic_hello *h, const char *why)
{
    h->verdict = -1;
    h->why = why;
    return -1;
}

/* Room for the CRYPTO bytes up to end (<= NP_QUIC_HELLO_MAX): 0, or -1. */
static int grow(struct np_quic_hello *h, size_t end)
{
    size_t size = (end + 1023) & ~(size_t)1023;
    uint8_t *data, *have;

    if (size <= h->size) return 0;
    if (!(data = realloc(h->data, size))) return -1;
    h->data = data;
    if (!(have = realloc(h->have, size / 8))) return -1;
    memset(have + h->size / 8, 0, (size - h->size) / 8);
    h->have = have;
    h->size = size;
    return 0;
}

/* A CRYPTO frame's bytes at offset: kept; 1 the ClientHello is whole, 0 not yet, -1. */
static int crypto(struct np_quic_hello *h, uint64_t off, const uint8_t *b, uint64_t len)
{
    if (off > NP_QUIC_HELLO_MAX || len > NP_QUIC_HELLO_MAX - off) return fail(h, "a ClientHello longer than 16 KiB");
    if (len == 0) return 0;
    if (grow(h, (size_t)(off + len)) < 0) return fail(h, "out of memory");
    /* the first copy of a byte stands: a resent frame that differs (a liar) changes nothing
     * read already, the hello's length included */
    for (uint64_t i = off; i < off + len; i++) {
        if (h->have[i / 8] >> (i % 8) & 1) continue;
        h->data[i] = b[i - off];
        h->have[i / 8] |= (uint8_t)(1u << (i % 8));
    }
    while (h->contig < h->size && (h->have[h->contig / 8] >> (h->contig % 8) & 1)) h->contig++;
    if (!h->want && h->contig >= 4) {
        if (h->data[0] != 0x01) return fail(h, "the CRYPTO stream is not a ClientHello");
        h->want = 4 + ((size_t)h->data[1] << 16 | (size_t)h->data[2] << 8 | h->data[3]);
        if (h->want > NP_QUIC_HELLO_MAX) return fail(h, "a ClientHello longer than 16 KiB");
    }
    return h->want && h->contig >= h->want ? 1 : 0;
}

/* The frames of a decrypted Initial payload (RFC 9000 17.2.2: PADDING, PING, ACK, CRYPTO,
 * CONNECTION_CLOSE): 1, 0 or -1 as crypto(). */
static int frames(struct np_quic_hello *h, const uint8_t *p, const uint8_t *end)
{
    int done = 0;
    uint64_t type, a, b, n;

    while (p < end) {
        if (varint(&p, end, &type) < 0) return fail(h, "a truncated frame");
        if (type == 0x00 || type == 0x01) continue;                         /* PADDING, PING */
        if (type == 0x02 || type == 0x03) {                                 /* ACK */
            if (varint(&p, end, &a) < 0 || varint(&p, end, &a) < 0 || varint(&p, end, &n) < 0 ||
                varint(&p, end, &a) < 0) return fail(h, "a truncated ACK frame");
            for (uint64_t i = 0; i < n; i++)
                if (varint(&p, end, &a) < 0 || varint(&p, end, &b) < 0) return fail(h, "a truncated ACK frame");
            for (int i = 0; type == 0x03 && i < 3; i++)
                if (varint(&p, end, &a) < 0) return fail(h, "a truncated ACK frame");
            continue;
        }
        if (type == 0x1c) return fail(h, "the client closed (CONNECTION_CLOSE)");
        if (type != 0x06) return fail(h, "a frame an Initial cannot hold");
        if (varint(&p, end, &a) < 0 || varint(&p, end, &b) < 0 || b > (uint64_t)(end - p))
            return fail(h, "a truncated CRYPTO frame");
        if ((done = crypto(h, a, p, b)) < 0) return -1;
        p += b;
    }
    return done || (h->want && h->contig >= h->want);
}

/* The long header's packet type as version 1 numbers it (RFC 9369 3.2 swaps them). */
static int v1_type(uint32_t version, uint8_t first)
{
    int t = (first >> 4) & 3;

    return version == NP_QUIC_V2 ? (t + 3) % 4 : t;
}

static uint8_t plain[65536];

/* One Initial packet at p (its first byte checked) of at most avail bytes: decrypted and its
 * frames read; *used is its length. 1, 0 or -1. */
static int initial(struct np_quic_hello *h, uint8_t *p, size_t avail, const uint8_t *dcid, size_t dcidlen,
                   const uint8_t *after_scid, size_t *used)
{
    const uint8_t *q = after_scid, *end = p + avail;
    uint64_t token, length, truncated = 0, pn;
    uint8_t mask[16];
    size_t pn_off, pn_len;
    long n;

    if (varint(&q, end, &token) < 0 || token > (uint64_t)(end - q)) return fail(h, "a truncated Initial");
    q += token;
    if (varint(&q, end, &length) < 0 || length > (uint64_t)(end - q)) return fail(h, "a truncated Initial");
    pn_off = (size_t)(q - p);
    if (length < 4 + SAMPLE) return fail(h, "an Initial too short to sample");
    *used = pn_off + (size_t)length;
    if (!h->dcidlen || h->dcidlen != dcidlen || memcmp(h->dcid, dcid, dcidlen)) {
        if (np_quic_initial_keys(h->version, dcid, dcidlen, &h->keys) < 0) return fail(h, "no Initial keys");
        memcpy(h->dcid, dcid, dcidlen);
        h->dcidlen = dcidlen;
    }
    if (hp_mask(h->keys.hp, p + pn_off + 4, mask) < 0) return fail(h, "libcrypto failed");
    p[0] ^= mask[0] & 0x0f;             /* p is the caller's copy of the datagram */
    pn_len = (p[0] & 3) + 1;
    for (size_t i = 0; i < pn_len; i++) {
        p[pn_off + i] ^= mask[1 + i];
        truncated = truncated << 8 | p[pn_off + i];
    }
    pn = decode_pn(h->largest_pn, truncated, (int)(8 * pn_len));
    n = aead_open(&h->keys, pn, p, pn_off + pn_len, p + pn_off + pn_len, (size_t)length - pn_len, plain);
    if (n < 0) return fail(h, "an Initial that does not decrypt");
    if ((int64_t)pn > h->largest_pn) h->largest_pn = (int64_t)pn;
    return frames(h, plain, plain + n);
}

/* One packet at p: an Initial is read, another long header packet skipped. 1, 0, -1; *used. */
static int packet(struct np_quic_hello *h, uint8_t *p, size_t avail, int first, size_t *used)
{
    const uint8_t *q = p + 1, *end = p + avail, *dcid;
    uint32_t version;
    size_t dcidlen, scidlen;
    uint64_t length;

    if (!(p[0] & 0x80)) return first ? fail(h, "a short header") : (*used = avail, 0);
    if (avail < 7) return fail(h, "a truncated long header");
    version = (uint32_t)q[0] << 24 | (uint32_t)q[1] << 16 | (uint32_t)q[2] << 8 | q[3];
    q += 4;
    if (version != NP_QUIC_V1 && version != NP_QUIC_V2) return fail(h, "a QUIC version other than 1 and 2");
    if (h->version && version != h->version) return fail(h, "Initials of two versions");
    if (!(p[0] & 0x40)) return fail(h, "the fixed bit is 0");
    dcidlen = *q++;
    if (dcidlen > MAX_CID || dcidlen > (size_t)(end - q)) return fail(h, "a bad Destination Connection ID");
    dcid = q;
    q += dcidlen;
    if (q >= end || (scidlen = *q++) > MAX_CID || scidlen > (size_t)(end - q)) return fail(h, "a bad Source Connection ID");
    q += scidlen;
    h->version = version;
    switch (v1_type(version, p[0])) {
    case 0:
        return initial(h, p, avail, dcid, dcidlen, q, used);
    case 3:
        return fail(h, "a Retry from a client");
    default:                            /* 0-RTT, Handshake: their Length skips them */
        if (first && h->largest_pn < 0) return fail(h, "no Initial first");
        if (varint(&q, end, &length) < 0 || length > (uint64_t)(end - q)) return fail(h, "a truncated long header");
        *used = (size_t)(q - p) + (size_t)length;
        return 0;
    }
}

int np_quic_hello_feed(struct np_quic_hello *h, const uint8_t *d, size_t len, const char **why)
{
    static uint8_t copy[65536];         /* header protection is removed on a copy */
    size_t off = 0, used = 0;
    int rc = 0;

    if (!h->verdict) {
        if (len > sizeof copy) len = sizeof copy;
        memcpy(copy, d, len);
        if (len == 0) rc = fail(h, "an empty datagram");
        while (rc == 0 && off < len) {
            rc = packet(h, copy + off, len - off, off == 0, &used);
            off += used;
        }
        if (rc == 1) h->verdict = 1;
    }
    *why = h->why;
    return h->verdict ? h->verdict : rc;
}

/* ---------------------------------------------------------------- the flow's state */

struct np_quic_hello *np_quic_hello_new(void)
{
    struct np_quic_hello *h = calloc(1, sizeof *h);

    if (h) h->largest_pn = -1;
    return h;
}

void np_quic_hello_free(struct np_quic_hello *h)
{
    if (!h) return;
    free(h->data);
    free(h->have);
    free(h);
}

const uint8_t *np_quic_hello_bytes(const struct np_quic_hello *h, size_t *len)
{
    if (h->verdict != 1) return NULL;
    *len = h->want;
    return h->data;
}

uint32_t np_quic_hello_version(const struct np_quic_hello *h)
{
    return h->version;
}
