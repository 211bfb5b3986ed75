/* TLS with OpenSSL: contexts built from Lua tables (certificates chosen by SNI, client and
 * server verification, ALPN, versions, ciphers, groups, CRL, key passwords, no
 * renegotiation), the non-blocking handshake, read and write steps that the cosockets and
 * the relay share, and what a session tells of its client (identity, JA4). */
#include "tls.h"
#include "ja4.h"
#include "luavm.h"
#include "tickets.h"

#include <errno.h>
#include <lauxlib.h>
#include <openssl/err.h>
#include <openssl/ocsp.h>
#include <openssl/x509v3.h>
#include <strings.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CTX_MT "netproxy.tls_context"
#define MAX_SNI 64

struct sni_entry {
    char *pattern;              /* "www.example.org" or "*.example.org" */
    SSL_CTX *ctx;
};

struct tls_ctx {
    SSL_CTX *ctx;
    int server;
    struct sni_entry sni[MAX_SNI];
    int nsni;
    unsigned char alpn[256];    /* wire format: length-prefixed names */
    unsigned int alpn_len;
};

/* ---------------------------------------------------------------- errors */

static void openssl_error(char *err, size_t errlen, const char *what)
{
    unsigned long e = ERR_peek_last_error();
    const char *reason = e ? ERR_reason_error_string(e) : NULL;
    char buf[256];

    if (reason) snprintf(buf, sizeof buf, "%s", reason);           /* "wrong version number" */
    else if (e) ERR_error_string_n(e, buf, sizeof buf);
    else snprintf(buf, sizeof buf, "%s", errno ? strerror(errno) : "unknown error");
    snprintf(err, errlen, "%s: %s", what, buf);
    ERR_clear_error();
}

static int raise_openssl(lua_State *L, const char *what)
{
    char err[400];

    openssl_error(err, sizeof err, what);
    return luaL_error(L, "%s", err);
}

/* ---------------------------------------------------------------- contexts */

static int name_matches(const char *pattern, const char *name)
{
    if (pattern[0] == '*' && pattern[1] == '.') {   /* one label */
        const char *dot = strchr(name, '.');
        return dot && dot != name && strcasecmp(dot + 1, pattern + 2) == 0;
    }
    return strcasecmp(pattern, name) == 0;
}

static int on_servername(SSL *ssl, int *alert, void *arg)
{
    struct tls_ctx *t = arg;
    const char *name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);

    if (!name) return SSL_TLSEXT_ERR_OK;
    for (int i = 0; i < t->nsni; i++) {
        if (t->sni[i].pattern && name_matches(t->sni[i].pattern, name)) {
            SSL_set_SSL_CTX(ssl, t->sni[i].ctx);
            break;
        }
    }
    return SSL_TLSEXT_ERR_OK;       /* unknown names get the default certificate */
}

static int on_alpn(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                   const unsigned char *in, unsigned int inlen, void *arg)
{
    struct tls_ctx *t = arg;

    if (SSL_select_next_proto((unsigned char **)out, outlen, t->alpn, t->alpn_len, in, inlen) ==
        OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_OK;
    return SSL_TLSEXT_ERR_NOACK;    /* no protocol in common: go on without ALPN */
}

/* OpenSSL says "system lib" for a file it cannot open: say what the system said. */
static void check_readable(lua_State *L, const char *what, const char *path)
{
    if (access(path, R_OK) < 0) luaL_error(L, "%s %s: %s", what, path, strerror(errno));
}

/* ---------------------------------------------------------------- JA4 */

static int ja4_index = -1;          /* the SSL's ex_data slot for its client's JA4 */

static void ja4_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl, void *argp)
{
    (void)parent, (void)ad, (void)idx, (void)argl, (void)argp;
    free(ptr);
}

/* OpenSSL's message callback sees each handshake message whole, however the client split
 * it over records and segments: the ClientHello's JA4 is taken from it, then the callback
 * is let go (it would be called for every record). SSL_client_hello_get1_extensions_present
 * would not do: OpenSSL 3.0 lists only the extensions it knows, and JA4 counts them all. */
static void on_message(int write_p, int version, int content_type, const void *buf, size_t len,
                       SSL *ssl, void *arg)
{
    const unsigned char *hs = buf;
    char *ja4;

    (void)version, (void)arg;
    if (write_p || content_type != SSL3_RT_HANDSHAKE || len < 1 || hs[0] != SSL3_MT_CLIENT_HELLO) return;
    SSL_set_msg_callback(ssl, NULL);
    if (SSL_get_ex_data(ssl, ja4_index) || !(ja4 = malloc(NP_JA4_LEN + 1))) return;
    if (np_ja4(hs, len, ja4) < 0 || !SSL_set_ex_data(ssl, ja4_index, ja4)) free(ja4);
}

/* "1.0" .. "1.3" (connectors/ssl.lua turns "TLSv1.3" into "1.3"); dflt for none. */
static int tls_version(lua_State *L, const char *what, const char *v, int dflt)
{
    if (!v) return dflt;
    if (!strcmp(v, "1.2")) return TLS1_2_VERSION;
    if (!strcmp(v, "1.3")) return TLS1_3_VERSION;
    if (!strcmp(v, "1.1")) return TLS1_1_VERSION;
    if (!strcmp(v, "1.0")) return TLS1_VERSION;
    return luaL_error(L, "%s: want \"1.0\", \"1.1\", \"1.2\" or \"1.3\", not \"%s\"", what, v);
}

/* ciphers (TLS 1.2 and older), ciphersuites (TLS 1.3), groups, versions, verify_depth:
 * each refused at load when OpenSSL takes none of it. */
static void set_algorithms(lua_State *L, SSL_CTX *ctx, int t)
{
    const char *ciphers = np_lua_string(L, t, "ciphers");
    const char *suites = np_lua_string(L, t, "ciphersuites");
    const char *groups = np_lua_string(L, t, "groups");
    int min = tls_version(L, "min_version", np_lua_string(L, t, "min_version"), TLS1_2_VERSION);
    int max = tls_version(L, "max_version", np_lua_string(L, t, "max_version"), 0);
    int depth = (int)np_lua_number(L, t, "verify_depth", -1);

    if (max && max < min) luaL_error(L, "max_version is older than min_version");
    SSL_CTX_set_min_proto_version(ctx, min);
    SSL_CTX_set_max_proto_version(ctx, max);
    if (ciphers && !SSL_CTX_set_cipher_list(ctx, ciphers))
        raise_openssl(L, lua_pushfstring(L, "ciphers \"%s\"", ciphers));
    if (suites && !SSL_CTX_set_ciphersuites(ctx, suites))
        raise_openssl(L, lua_pushfstring(L, "ciphersuites \"%s\"", suites));
    if (groups && !SSL_CTX_set1_groups_list(ctx, groups))
        raise_openssl(L, lua_pushfstring(L, "groups \"%s\"", groups));
    if (depth >= 0) SSL_CTX_set_verify_depth(ctx, depth);
}

/* crl: a PEM file of revocation lists; the peer's certificate is checked against them
 * (X509_V_FLAG_CRL_CHECK: the leaf; a list missing for its issuer fails the check). */
static void load_crl(lua_State *L, SSL_CTX *ctx, const char *crl)
{
    X509_STORE *store = SSL_CTX_get_cert_store(ctx);
    X509_LOOKUP *lookup = X509_STORE_add_lookup(store, X509_LOOKUP_file());

    check_readable(L, "crl", crl);
    if (!lookup || X509_load_crl_file(lookup, crl, X509_FILETYPE_PEM) <= 0)
        raise_openssl(L, lua_pushfstring(L, "crl %s", crl));
    X509_STORE_set_flags(store, X509_V_FLAG_CRL_CHECK);
}

static void load_ca(lua_State *L, SSL_CTX *ctx, const char *ca, int server)
{
    if (!ca) {
        if (!server && !SSL_CTX_set_default_verify_paths(ctx)) raise_openssl(L, "system CA store");
        return;
    }
    check_readable(L, "ca", ca);
    if (!SSL_CTX_load_verify_locations(ctx, ca, NULL) &&
        !SSL_CTX_load_verify_locations(ctx, NULL, ca))
        raise_openssl(L, lua_pushfstring(L, "ca %s", ca));
    if (server) {
        STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(ca);
        if (names) SSL_CTX_set_client_CA_list(ctx, names);
    }
    ERR_clear_error();
}

/* The password of an encrypted key, or none: never OpenSSL's default, which would ask on
 * the terminal. */
static int key_password(char *buf, int size, int rwflag, void *arg)
{
    const char *password = arg;
    size_t len = password ? strlen(password) : 0;

    (void)rwflag;
    if (!password || len > (size_t)size) return 0;
    memcpy(buf, password, len);
    return (int)len;
}

static void load_cert(lua_State *L, SSL_CTX *ctx, const char *cert, const char *key, const char *password)
{
    int loaded;

    check_readable(L, "cert", cert);
    if (key) check_readable(L, "key", key);
    if (!SSL_CTX_use_certificate_chain_file(ctx, cert))
        raise_openssl(L, lua_pushfstring(L, "cert %s", cert));
    SSL_CTX_set_default_passwd_cb(ctx, key_password);
    SSL_CTX_set_default_passwd_cb_userdata(ctx, (void *)password);
    loaded = SSL_CTX_use_PrivateKey_file(ctx, key ? key : cert, SSL_FILETYPE_PEM);
    SSL_CTX_set_default_passwd_cb_userdata(ctx, NULL);      /* the Lua string is not kept */
    if (!loaded && !password)
        raise_openssl(L, lua_pushfstring(L, "key %s (an encrypted key needs key_password)", key ? key : cert));
    if (!loaded) raise_openssl(L, lua_pushfstring(L, "key %s (wrong key_password?)", key ? key : cert));
    if (!SSL_CTX_check_private_key(ctx))
        raise_openssl(L, lua_pushfstring(L, "key %s does not match cert %s", key ? key : cert, cert));
}

/* ---------------------------------------------------------------- OCSP stapling */

struct ocsp_blob {
    unsigned char *der;
    long len;
};

static int ocsp_index = -1;         /* the SSL_CTX's ex_data slot for its stapled response */

static void ocsp_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl, void *argp)
{
    struct ocsp_blob *b = ptr;

    (void)parent, (void)ad, (void)idx, (void)argl, (void)argp;
    if (b) OPENSSL_free(b->der);
    free(b);
}

/* A client that asked (status_request) gets the context's response; the others nothing.
 * OpenSSL frees what it is given, so each handshake takes a copy. */
static int on_status(SSL *ssl, void *arg)
{
    struct ocsp_blob *b = SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), ocsp_index);
    unsigned char *copy;

    (void)arg;
    if (!b || !(copy = OPENSSL_memdup(b->der, (size_t)b->len))) return SSL_TLSEXT_ERR_NOACK;
    if (!SSL_set_tlsext_status_ocsp_resp(ssl, copy, b->len)) {
        OPENSSL_free(copy);
        return SSL_TLSEXT_ERR_NOACK;
    }
    return SSL_TLSEXT_ERR_OK;
}

/* ocsp = FILE: a DER OCSP response (`openssl ocsp -respout`), read at each (re)load and
 * stapled as it is; a file that is not one is refused at load. Whoever fetches fresh
 * responses rewrites the file and reloads. */
static void load_ocsp(lua_State *L, SSL_CTX *ctx, const char *path)
{
    struct ocsp_blob *b;
    OCSP_RESPONSE *resp;
    BIO *in;

    check_readable(L, "ocsp", path);
    if (!(in = BIO_new_file(path, "rb"))) raise_openssl(L, lua_pushfstring(L, "ocsp %s", path));
    resp = d2i_OCSP_RESPONSE_bio(in, NULL);
    BIO_free(in);
    if (!resp) raise_openssl(L, lua_pushfstring(L, "ocsp %s: not a DER OCSP response", path));
    b = calloc(1, sizeof *b);
    if (b) b->len = i2d_OCSP_RESPONSE(resp, &b->der);
    OCSP_RESPONSE_free(resp);
    if (!b || b->len <= 0 || !SSL_CTX_set_ex_data(ctx, ocsp_index, b)) {
        if (b) OPENSSL_free(b->der);
        free(b);
        luaL_error(L, "ocsp %s: out of memory", path);
    }
    SSL_CTX_set_tlsext_status_cb(ctx, on_status);
}

/* The ticket keys are shared by every server context: a session is resumed only by a
 * context with the same certificate and the same client verification (OpenSSL compares
 * the session id context), so that a ticket from a proxy without verify cannot skip the
 * client certificate of one with it. */
static void set_session_context(lua_State *L, SSL_CTX *ctx, int t, const char *cert)
{
    const char *fields[] = { "ca", "crl", "min_version", "max_version" };
    unsigned char md[SHA256_DIGEST_LENGTH];
    EVP_MD_CTX *h = EVP_MD_CTX_new();
    unsigned int len = 0;
    char flags[32];

    snprintf(flags, sizeof flags, "%d/%d", np_lua_bool(L, t, "verify", 0), (int)np_lua_number(L, t, "verify_depth", -1));
    if (!h || !EVP_DigestInit_ex(h, EVP_sha256(), NULL)) goto out;
    EVP_DigestUpdate(h, cert ? cert : "", cert ? strlen(cert) + 1 : 1);
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
        const char *v = np_lua_string(L, t, fields[i]);
        EVP_DigestUpdate(h, v ? v : "", v ? strlen(v) + 1 : 1);
    }
    EVP_DigestUpdate(h, flags, strlen(flags));
    if (EVP_DigestFinal_ex(h, md, &len)) SSL_CTX_set_session_id_context(ctx, md, len);
out:
    EVP_MD_CTX_free(h);
}

/* One SSL_CTX with the settings of opts (table at t) and the given certificate, stored in
 * *slot at once so that the userdata frees it even when a setting raises an error. */
static SSL_CTX *new_ctx(lua_State *L, int t, struct tls_ctx *owner, const char *cert,
                        const char *key, const char *ocsp, SSL_CTX **slot)
{
    SSL_CTX *ctx = SSL_CTX_new(owner->server ? TLS_server_method() : TLS_client_method());
    int verify = np_lua_bool(L, t, "verify", !owner->server);
    long opts = SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION | SSL_OP_IGNORE_UNEXPECTED_EOF;

    if (!ctx) raise_openssl(L, "SSL_CTX_new");
    *slot = ctx;
#ifdef SSL_OP_ENABLE_KTLS
    opts |= SSL_OP_ENABLE_KTLS;     /* used when the kernel has its tls module */
#endif
    SSL_CTX_set_options(ctx, opts);
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                          SSL_MODE_RELEASE_BUFFERS);
    set_algorithms(L, ctx, t);
    if (cert) load_cert(L, ctx, cert, key, np_lua_string(L, t, "key_password"));
    if (verify) {
        load_ca(L, ctx, np_lua_string(L, t, "ca"), owner->server);
        if (np_lua_string(L, t, "crl")) load_crl(L, ctx, np_lua_string(L, t, "crl"));
        SSL_CTX_set_verify(ctx, owner->server ? SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT
                                              : SSL_VERIFY_PEER, NULL);
    } else {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    }
    if (owner->server) {
        SSL_CTX_set_tlsext_servername_callback(ctx, on_servername);
        SSL_CTX_set_tlsext_servername_arg(ctx, owner);
        if (owner->alpn_len) SSL_CTX_set_alpn_select_cb(ctx, on_alpn, owner);
        SSL_CTX_set_msg_callback(ctx, on_message);      /* the ClientHello, for its JA4 */
        /* tickets under the keys every process shares; the session cache of one process
         * still serves the clients that resume by session id alone (TLS 1.2) */
        np_tickets_use(ctx);
        if (ocsp) load_ocsp(L, ctx, ocsp);
        set_session_context(L, ctx, t, cert);
        SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER);
    } else if (owner->alpn_len && SSL_CTX_set_alpn_protos(ctx, owner->alpn, owner->alpn_len)) {
        raise_openssl(L, "alpn");
    }
    return ctx;
}

static void read_alpn(lua_State *L, int t, struct tls_ctx *c)
{
    lua_getfield(L, t, "alpn");
    for (int i = 1; lua_istable(L, -1); i++) {
        size_t len;
        lua_rawgeti(L, -1, i);
        const char *p = lua_tolstring(L, -1, &len);
        lua_pop(L, 1);
        if (!p) break;
        if (len == 0 || len > 255 || c->alpn_len + 1 + len > sizeof c->alpn)
            luaL_error(L, "alpn: bad protocol name '%s'", p);
        c->alpn[c->alpn_len++] = (unsigned char)len;
        memcpy(c->alpn + c->alpn_len, p, len);
        c->alpn_len += len;
    }
    lua_pop(L, 1);
}

/* certs = { { names = { "a.example", "*.b.example" }, cert = ..., key = ... }, ... } */
static void read_sni_certs(lua_State *L, int t, struct tls_ctx *c)
{
    lua_getfield(L, t, "certs");
    for (int i = 1; lua_istable(L, -1); i++) {
        lua_rawgeti(L, -1, i);
        if (lua_isnil(L, -1)) {
            lua_pop(L, 1);
            break;
        }
        int e = lua_gettop(L), first = c->nsni;
        if (c->nsni == MAX_SNI) luaL_error(L, "certs: at most %d names", MAX_SNI);
        /* the first entry owns the context; further names of it take references */
        SSL_CTX *ctx = new_ctx(L, t, c, np_lua_string(L, e, "cert"), np_lua_string(L, e, "key"),
                               np_lua_string(L, e, "ocsp"), &c->sni[c->nsni++].ctx);
        lua_getfield(L, e, "names");
        for (int j = 1; lua_istable(L, -1); j++) {
            lua_rawgeti(L, -1, j);
            const char *name = lua_tostring(L, -1);
            lua_pop(L, 1);
            if (!name) break;
            if (j > 1) {
                if (c->nsni == MAX_SNI) luaL_error(L, "certs: at most %d names", MAX_SNI);
                SSL_CTX_up_ref(ctx);
                c->sni[c->nsni++].ctx = ctx;
            }
            c->sni[first + j - 1].pattern = strdup(name);
        }
        lua_pop(L, 2);
    }
    lua_pop(L, 1);
}

static int ctx_gc(lua_State *L)
{
    struct tls_ctx *c = luaL_checkudata(L, 1, CTX_MT);

    for (int i = 0; i < c->nsni; i++) {
        free(c->sni[i].pattern);
        SSL_CTX_free(c->sni[i].ctx);
    }
    c->nsni = 0;
    if (c->ctx) SSL_CTX_free(c->ctx);
    c->ctx = NULL;
    return 0;
}

/* core.tls_context{ server =, cert =, key =, certs =, ca =, verify =, alpn =, min_version = }
 * Raises an error naming the file or setting at fault. The context must stay referenced
 * as long as connections use it (the ssl connector keeps it in its config table). */
static int core_tls_context(lua_State *L)
{
    struct tls_ctx *c;
    int t = 1;

    luaL_checktype(L, t, LUA_TTABLE);
    c = lua_newuserdata(L, sizeof *c);
    memset(c, 0, sizeof *c);
    luaL_getmetatable(L, CTX_MT);
    lua_setmetatable(L, -2);
    c->server = np_lua_bool(L, t, "server", 0);
    read_alpn(L, t, c);
    if (c->server && !np_lua_string(L, t, "cert")) luaL_error(L, "a TLS server needs cert (and key)");
    new_ctx(L, t, c, np_lua_string(L, t, "cert"), np_lua_string(L, t, "key"), np_lua_string(L, t, "ocsp"), &c->ctx);
    if (c->server) read_sni_certs(L, t, c);
    return 1;
}

SSL_CTX *np_tls_check_ctx(lua_State *L, int idx, int *is_server)
{
    struct tls_ctx *c = luaL_checkudata(L, idx, CTX_MT);

    if (!c->ctx) luaL_argerror(L, idx, "TLS context already freed");
    *is_server = c->server;
    return c->ctx;
}

void np_tls_open(lua_State *L)
{
    if (ja4_index < 0) ja4_index = SSL_get_ex_new_index(0, "ja4", NULL, NULL, ja4_free);
    if (ocsp_index < 0) ocsp_index = SSL_CTX_get_ex_new_index(0, "ocsp", NULL, NULL, ocsp_free);
    luaL_newmetatable(L, CTX_MT);
    lua_pushcfunction(L, ctx_gc);
    lua_setfield(L, -2, "__gc");
    lua_pop(L, 1);
    lua_pushcfunction(L, core_tls_context);
    lua_setfield(L, -2, "tls_context");
}

/* ---------------------------------------------------------------- connections */

SSL *np_tls_new(SSL_CTX *ctx, int is_server, int fd, const char *sni, const char *verify_name)
{
    SSL *ssl = SSL_new(ctx);

    if (!ssl) return NULL;
    SSL_set_fd(ssl, fd);
    if (is_server) {
        SSL_set_accept_state(ssl);
        return ssl;
    }
    SSL_set_connect_state(ssl);
    if (sni) SSL_set_tlsext_host_name(ssl, sni);
    if (verify_name && SSL_get_verify_mode(ssl) != SSL_VERIFY_NONE) {
        X509_VERIFY_PARAM *param = SSL_get0_param(ssl);
        /* an address is checked against the certificate's IP entries, a name against DNS */
        if (!X509_VERIFY_PARAM_set1_ip_asc(param, verify_name)) {
            ERR_clear_error();
            X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
            SSL_set1_host(ssl, verify_name);
        }
    }
    return ssl;
}

/* What a failed SSL call means: a wait, a clean end, or an error with its reason. */
static enum np_tls_want classify(SSL *ssl, int rc, char *err, size_t errlen, const char *what)
{
    int e = SSL_get_error(ssl, rc);
    long vr;

    switch (e) {
    case SSL_ERROR_WANT_READ: return NP_TLS_WANT_READ;
    case SSL_ERROR_WANT_WRITE: return NP_TLS_WANT_WRITE;
    case SSL_ERROR_ZERO_RETURN:
        snprintf(err, errlen, "%s: closed", what);
        return NP_TLS_FAILED;
    default:
        vr = SSL_get_verify_result(ssl);
        if (vr != X509_V_OK && ERR_peek_last_error()) {
            snprintf(err, errlen, "%s: certificate verify failed: %s", what,
                     X509_verify_cert_error_string(vr));
            ERR_clear_error();
        } else if (e == SSL_ERROR_SYSCALL && !ERR_peek_last_error()) {
            snprintf(err, errlen, "%s: %s", what, errno ? strerror(errno) : "peer closed");
        } else {
            openssl_error(err, errlen, what);
        }
        return NP_TLS_FAILED;
    }
}

enum np_tls_want np_tls_handshake(SSL *ssl, char *err, size_t errlen)
{
    int rc;

    ERR_clear_error();
    errno = 0;
    rc = SSL_do_handshake(ssl);
    if (rc == 1) return NP_TLS_DONE;
    return classify(ssl, rc, err, errlen, "handshake");
}

ssize_t np_tls_read(SSL *ssl, void *buf, size_t len, enum np_tls_want *want, char *err, size_t errlen)
{
    int rc, e;

    ERR_clear_error();
    errno = 0;
    rc = SSL_read(ssl, buf, len > INT32_MAX ? INT32_MAX : (int)len);
    if (rc > 0) return rc;
    e = SSL_get_error(ssl, rc);
    if (e == SSL_ERROR_ZERO_RETURN) return 0;      /* close_notify, or an unexpected EOF */
    *want = classify(ssl, rc, err, errlen, "read");
    errno = *want == NP_TLS_FAILED ? EPROTO : EAGAIN;
    return -1;
}

ssize_t np_tls_write(SSL *ssl, const void *buf, size_t len, enum np_tls_want *want, char *err, size_t errlen)
{
    int rc;

    ERR_clear_error();
    errno = 0;
    rc = SSL_write(ssl, buf, len > INT32_MAX ? INT32_MAX : (int)len);
    if (rc > 0) return rc;
    *want = classify(ssl, rc, err, errlen, "write");
    errno = *want == NP_TLS_FAILED ? EPROTO : EAGAIN;
    return -1;
}

void np_tls_describe(SSL *ssl, char *out, size_t outlen)
{
    const unsigned char *alpn = NULL;
    unsigned int alpn_len = 0;
    int ktls_tx = 0, ktls_rx = 0;

    SSL_get0_alpn_selected(ssl, &alpn, &alpn_len);
#ifdef SSL_OP_ENABLE_KTLS
    ktls_tx = BIO_get_ktls_send(SSL_get_wbio(ssl));
    ktls_rx = BIO_get_ktls_recv(SSL_get_rbio(ssl));
#endif
    snprintf(out, outlen, "%s %s alpn=%.*s ktls=%s%s", SSL_get_version(ssl), SSL_get_cipher_name(ssl),
             alpn_len ? (int)alpn_len : 1, alpn_len ? (const char *)alpn : "-",
             ktls_tx && ktls_rx ? "tx,rx" : ktls_tx ? "tx" : ktls_rx ? "rx" : "no",
             SSL_session_reused(ssl) ? " resumed" : "");
}

/* ---------------------------------------------------------------- who the client is */

static void copy(char *dst, size_t size, const void *src, size_t len)
{
    if (len >= size) len = size - 1;
    memcpy(dst, src, len);
    dst[len] = '\0';
}

/* "CN=client,O=Example" (RFC 2253), and the CN alone. */
static void name_text(X509_NAME *name, char *out, size_t size, char *cn, size_t cn_size)
{
    BIO *b = BIO_new(BIO_s_mem());
    char *text;
    long len;

    if (!b) return;
    X509_NAME_print_ex(b, name, 0, XN_FLAG_RFC2253 & ~ASN1_STRFLGS_ESC_MSB);
    len = BIO_get_mem_data(b, &text);
    copy(out, size, text, len > 0 ? (size_t)len : 0);
    BIO_free(b);
    if (cn && X509_NAME_get_text_by_NID(name, NID_commonName, cn, (int)cn_size) < 0) cn[0] = '\0';
}

static void peer_certificate(SSL *ssl, struct np_tls_identity *id)
{
    X509 *cert = SSL_get1_peer_certificate(ssl);
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned mdlen = 0;
    BIGNUM *serial;

    if (!cert) return;
    id->has_cert = 1;
    id->verified = SSL_get_verify_result(ssl) == X509_V_OK;
    name_text(X509_get_subject_name(cert), id->subject, sizeof id->subject, id->cn, sizeof id->cn);
    name_text(X509_get_issuer_name(cert), id->issuer, sizeof id->issuer, NULL, 0);
    if ((serial = ASN1_INTEGER_to_BN(X509_get0_serialNumber(cert), NULL))) {
        char *hex = BN_bn2hex(serial);
        if (hex) copy(id->serial, sizeof id->serial, hex, strlen(hex));
        OPENSSL_free(hex);
        BN_free(serial);
    }
    if (X509_digest(cert, EVP_sha256(), md, &mdlen))
        for (unsigned i = 0; i < mdlen && 2 * i + 2 < sizeof id->fingerprint; i++)
            sprintf(id->fingerprint + 2 * i, "%02x", md[i]);
    X509_free(cert);
}

void np_tls_identity(SSL *ssl, struct np_tls_identity *id)
{
    const unsigned char *alpn = NULL;
    unsigned int alpn_len = 0;
    const char *sni = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
    const char *ja4 = ja4_index >= 0 ? SSL_get_ex_data(ssl, ja4_index) : NULL;

    memset(id, 0, sizeof *id);
    if (ja4) copy(id->ja4, sizeof id->ja4, ja4, strlen(ja4));
    if (!SSL_is_init_finished(ssl)) return;             /* a failed handshake: its JA4 only */
    id->done = 1;
    copy(id->version, sizeof id->version, SSL_get_version(ssl), strlen(SSL_get_version(ssl)));
    copy(id->cipher, sizeof id->cipher, SSL_get_cipher_name(ssl), strlen(SSL_get_cipher_name(ssl)));
    if (sni) copy(id->sni, sizeof id->sni, sni, strlen(sni));
    SSL_get0_alpn_selected(ssl, &alpn, &alpn_len);
    if (alpn) copy(id->alpn, sizeof id->alpn, alpn, alpn_len);
    peer_certificate(ssl, id);
}

static void set_text(lua_State *L, const char *name, const char *value)
{
    if (!value[0]) return;
    lua_pushstring(L, value);
    lua_setfield(L, -2, name);
}

void np_tls_push_identity(lua_State *L, const struct np_tls_identity *id)
{
    lua_createtable(L, 0, 12);
    set_text(L, "version", id->version);
    set_text(L, "cipher", id->cipher);
    set_text(L, "sni", id->sni);
    set_text(L, "alpn", id->alpn);
    set_text(L, "ja4", id->ja4);
    if (!id->has_cert) return;
    set_text(L, "subject", id->subject);
    set_text(L, "cn", id->cn);
    set_text(L, "issuer", id->issuer);
    set_text(L, "serial", id->serial);
    set_text(L, "fingerprint", id->fingerprint);
    lua_pushboolean(L, id->verified);
    lua_setfield(L, -2, "verified");
}
