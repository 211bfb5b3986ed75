/* TLS session ticket keys shared by every process (the master, its workers, the workers of
 * a reload and a binary upgrade's new binary), so that a ticket one of them issued is taken
 * by any other. A current key encrypts; the previous ones still decrypt (the ticket is then
 * renewed) until they age out; the current key is replaced every ticket_rotate seconds. */
#ifndef NP_TICKETS_H
#define NP_TICKETS_H
#include <openssl/ssl.h>

#define NP_TICKET_KEYS 3        /* the current key and two previous ones */

/* Maps the keys (before any fork): new ones, or those a binary upgrade handed over
 * (NETPROXY_TICKETS_FD). 0, or -1. */
int np_tickets_init(void);
int np_tickets_fd(void);

/* server{ ticket_rotate }: seconds a key encrypts before the next one replaces it. */
void np_tickets_set_rotate(double seconds);

/* Makes ctx (a server context) encrypt and decrypt its tickets with the shared keys. */
void np_tickets_use(SSL_CTX *ctx);

#endif
