/* QUIC client Initial packets read by a middlebox (RFC 9000, 9001; version 2: RFC 9369): the
 * Initial keys derived from the Destination Connection ID, header protection removed, the
 * payload decrypted, and the CRYPTO frames reassembled (in any order, across packets and
 * datagrams) into the TLS ClientHello. Nothing is answered or re-encrypted. A leaf: OpenSSL's
 * libcrypto only (built alone as libnpquic.so too, for the unit spec and the fuzzer). */
#ifndef NP_QUIC_H
#define NP_QUIC_H
#include <stddef.h>
#include <stdint.h>

#define NP_QUIC_V1 0x00000001u
#define NP_QUIC_V2 0x6b3343cfu
#define NP_QUIC_HELLO_MAX 16384     /* the longest ClientHello read (then: not one we read) */

struct np_quic_keys {
    uint8_t key[16], iv[12], hp[16];
};

/* The client's Initial keys of version (v1 or v2) for the Destination Connection ID dcid:
 * 0, or -1 (another version, or libcrypto failed). */
int np_quic_initial_keys(uint32_t version, const uint8_t *dcid, size_t dcidlen, struct np_quic_keys *k);

/* One flow's ClientHello, reassembled from the CRYPTO frames of its Initial packets. */
struct np_quic_hello;

struct np_quic_hello *np_quic_hello_new(void);
void np_quic_hello_free(struct np_quic_hello *h);

/* Reads one datagram from the client (its Initial packets; the packets coalesced after them
 * are skipped): 1 the ClientHello is whole, 0 more wanted, -1 not a client Initial this reads
 * (another version, a short header, a packet that does not decrypt, a frame an Initial cannot
 * hold, a ClientHello past NP_QUIC_HELLO_MAX): *why says which. After 1 or -1, further
 * datagrams answer the same. */
int np_quic_hello_feed(struct np_quic_hello *h, const uint8_t *d, size_t len, const char **why);

/* The ClientHello (handshake header included) once feed answered 1, else NULL. */
const uint8_t *np_quic_hello_bytes(const struct np_quic_hello *h, size_t *len);

/* The version of the Initials read, 0 before the first. */
uint32_t np_quic_hello_version(const struct np_quic_hello *h);

#endif
