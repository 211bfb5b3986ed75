/* JA4: the fingerprint of a TLS ClientHello (FoxIO's JA4, the TLS-over-TCP part). */
#ifndef NP_JA4_H
#define NP_JA4_H
#include <stddef.h>

#define NP_JA4_LEN 36   /* "t13d1516h2_8daaf6152771_d8a2da3f94cd" */

/* The JA4 of a ClientHello handshake message (its 4-byte header included: type 1, length)
 * into out (NP_JA4_LEN + 1 bytes); 0, or -1 when hs is no whole, well-formed ClientHello. */
int np_ja4(const unsigned char *hs, size_t len, char *out);

#endif
