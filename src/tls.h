/* TLS with OpenSSL: contexts built from Lua tables (certificates, SNI, verification,
 * ALPN), and non-blocking handshake, read and write steps shared by the cosockets and the
 * relay. */
#ifndef NP_TLS_H
#define NP_TLS_H
#include <stddef.h>
#include <sys/types.h>
#include <lua.h>
#include <openssl/ssl.h>

enum np_tls_want { NP_TLS_DONE = 0, NP_TLS_WANT_READ, NP_TLS_WANT_WRITE, NP_TLS_FAILED };

/* core.tls_context(opts) -> context userdata (see docs/tls.md); adds it to the module
 * table on the top of the stack. */
void np_tls_open(lua_State *L);

/* The SSL_CTX of the context userdata at idx (raises a Lua error if it is not one). */
SSL_CTX *np_tls_check_ctx(lua_State *L, int idx, int *is_server);

/* A new SSL for fd in the context's role. For a client, sni (may be NULL) is sent and,
 * when verify_name is not NULL, the server certificate must be valid for it. */
SSL *np_tls_new(SSL_CTX *ctx, int is_server, int fd, const char *sni, const char *verify_name);

/* One handshake step. On NP_TLS_FAILED, err says why (the verification result included). */
enum np_tls_want np_tls_handshake(SSL *ssl, char *err, size_t errlen);

/* SSL_read/SSL_write with errno conventions: >0 bytes; 0 EOF (read); -1 with errno EAGAIN
 * and *want set, or errno EPROTO/ECONNRESET with err filled. */
ssize_t np_tls_read(SSL *ssl, void *buf, size_t len, enum np_tls_want *want, char *err, size_t errlen);
ssize_t np_tls_write(SSL *ssl, const void *buf, size_t len, enum np_tls_want *want, char *err, size_t errlen);

/* "TLSv1.3 TLS_AES_256_GCM_SHA384 h2 ktls=tx,rx": what was negotiated, for the logs. */
void np_tls_describe(SSL *ssl, char *out, size_t outlen);

/* What a server-side session tells of its client once the handshake is done (empty strings
 * for what it did not say), kept on the connection for its log line and on_close
 * (conn_impl.h: c->tls) and handed to Lua as conn.tls. After a failed handshake only ja4 is
 * set (done = 0). */
struct np_tls_identity {
    int done;                   /* the handshake finished */
    char version[16];           /* "TLSv1.3" */
    char cipher[64];            /* "TLS_AES_256_GCM_SHA384" */
    char sni[256];
    char alpn[256];
    char ja4[40];               /* "t13d1516h2_8daaf6152771_d8a2da3f94cd" */
    int has_cert, verified;     /* a client certificate; it passed verification */
    char subject[256];          /* "CN=client,O=Example" (RFC 2253) */
    char cn[128];
    char issuer[256];
    char serial[80];            /* hex */
    char fingerprint[65];       /* SHA-256 of the DER certificate, hex */
};

void np_tls_identity(SSL *ssl, struct np_tls_identity *id);

/* conn.tls: a table of the non-empty fields (verified only with a certificate). */
void np_tls_push_identity(lua_State *L, const struct np_tls_identity *id);

#endif
