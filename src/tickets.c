/* TLS session ticket keys in shared memory. OpenSSL makes random ticket keys for each
 * SSL_CTX: the workers shared them only because they inherit the master's contexts by fork,
 * and a reload or a binary upgrade (new contexts) made every ticket issued before useless.
 * Here the keys live in a memfd mapped before the first fork and handed to a new binary, so
 * every context of every process encrypts with the same current key.
 *
 * Rotation needs no timer: the key callback, run at each handshake that issues or presents
 * a ticket, replaces the current key once it is ticket_rotate seconds old (the first process
 * to see it under the lock does it; the others then see the new key). A ticket under a
 * previous key is accepted and renewed; one older than NP_TICKET_KEYS rotations is not
 * decrypted (a full handshake). The keys never leave memory (no file on disk). */
#include "tickets.h"
#include "log.h"

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <sched.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

struct key {
    unsigned char name[16];     /* sent in the clear at the head of the ticket */
    unsigned char aes[32];      /* AES-256-CBC */
    unsigned char hmac[32];     /* HMAC-SHA256 */
    int64_t made_ms;            /* CLOCK_MONOTONIC: the same clock for every process */
};

struct region {
    int32_t lock;
    int32_t count;              /* keys made so far (0: none yet) */
    int64_t rotate_ms;
    struct key keys[NP_TICKET_KEYS];    /* [0] is the current one */
};

static struct region *reg;
static int reg_fd = -1;

#define DEFAULT_ROTATE_MS (12 * 3600 * 1000LL)

int np_tickets_init(void)
{
    const char *inherited = getenv("NETPROXY_TICKETS_FD");
    int fresh = inherited == NULL;

    reg_fd = fresh ? memfd_create("netproxy-tickets", MFD_CLOEXEC) : atoi(inherited);
    if (reg_fd < 0 || (fresh && ftruncate(reg_fd, sizeof *reg) < 0)) return -1;
    reg = mmap(NULL, sizeof *reg, PROT_READ | PROT_WRITE, MAP_SHARED, reg_fd, 0);
    if (reg == MAP_FAILED) {
        reg = NULL;
        return -1;
    }
    if (fresh) reg->rotate_ms = DEFAULT_ROTATE_MS;
    unsetenv("NETPROXY_TICKETS_FD");
    return 0;
}

int np_tickets_fd(void)
{
    return reg_fd;
}

void np_tickets_set_rotate(double seconds)
{
    if (reg && seconds > 0) __atomic_store_n(&reg->rotate_ms, (int64_t)(seconds * 1000), __ATOMIC_RELAXED);
}

static int64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void lock(void)
{
    while (__atomic_exchange_n(&reg->lock, 1, __ATOMIC_ACQUIRE)) sched_yield();
}

static void unlock(void)
{
    __atomic_store_n(&reg->lock, 0, __ATOMIC_RELEASE);
}

/* Under the lock: a new current key when there is none or it is due; the oldest goes. */
static int rotate_if_due(int64_t now)
{
    struct key fresh;

    if (reg->count > 0 && now - reg->keys[0].made_ms < reg->rotate_ms) return 0;
    if (RAND_bytes(fresh.name, sizeof fresh.name) != 1 || RAND_bytes(fresh.aes, sizeof fresh.aes) != 1 ||
        RAND_bytes(fresh.hmac, sizeof fresh.hmac) != 1)
        return -1;
    fresh.made_ms = now;
    memmove(&reg->keys[1], &reg->keys[0], (NP_TICKET_KEYS - 1) * sizeof reg->keys[0]);
    reg->keys[0] = fresh;
    reg->count++;
    return 1;
}

/* A copy of the key to use: the current one (enc), or the one named (decryption; its index
 * in *index, or -1 when none has that name any more). */
static int take_key(const unsigned char *name, struct key *out, int *index)
{
    int rotated, n;

    lock();
    rotated = rotate_if_due(now_ms());
    n = reg->count < NP_TICKET_KEYS ? reg->count : NP_TICKET_KEYS;
    *index = -1;
    for (int i = 0; i < n; i++) {
        if (!name || memcmp(reg->keys[i].name, name, sizeof reg->keys[i].name) == 0) {
            *out = reg->keys[i];
            *index = i;
            break;
        }
    }
    unlock();
    if (rotated > 0)
        np_log(NP_INFO, "tls: new session ticket key (every %.0f s; %d kept for resumption)",
               reg->rotate_ms / 1000.0, NP_TICKET_KEYS);
    return rotated < 0 ? -1 : 0;
}

static int set_keys(EVP_CIPHER_CTX *cipher, EVP_MAC_CTX *mac, const struct key *k,
                    unsigned char *iv, int enc)
{
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, "SHA256", 0),
        OSSL_PARAM_construct_end(),
    };

    if (!EVP_CipherInit_ex(cipher, EVP_aes_256_cbc(), NULL, k->aes, iv, enc)) return -1;
    if (!EVP_MAC_CTX_set_params(mac, params) || !EVP_MAC_init(mac, k->hmac, sizeof k->hmac, NULL)) return -1;
    return 0;
}

/* OpenSSL's ticket key callback (SSL_CTX_set_tlsext_ticket_key_evp_cb): enc 1 fills name
 * and iv for a new ticket; enc 0 finds the key of name. Returns -1 error, 0 no key (a full
 * handshake), 1 this key, 2 this key but issue a new ticket (an older key). */
static int on_ticket_key(SSL *ssl, unsigned char name[16], unsigned char *iv,
                         EVP_CIPHER_CTX *cipher, EVP_MAC_CTX *mac, int enc)
{
    struct key k;
    int index;

    (void)ssl;
    if (take_key(enc ? NULL : name, &k, &index) < 0) return -1;
    if (index < 0) return 0;
    if (enc) {
        if (RAND_bytes(iv, EVP_CIPHER_iv_length(EVP_aes_256_cbc())) != 1) return -1;
        memcpy(name, k.name, sizeof k.name);
    }
    if (set_keys(cipher, mac, &k, iv, enc) < 0) {
        OPENSSL_cleanse(&k, sizeof k);
        return -1;
    }
    OPENSSL_cleanse(&k, sizeof k);
    return enc || index == 0 ? 1 : 2;
}

void np_tickets_use(SSL_CTX *ctx)
{
    if (reg) SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx, on_ticket_key);
}
