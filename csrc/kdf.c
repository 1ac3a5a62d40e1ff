/* kdf.c - HKDF (RFC 5869) over HMAC-SHA-256/384 and the record keys of a DTLS 1.3 traffic
 * secret (RFC 9846 §7.3 with the "dtls13" label prefix of RFC 9147 §5.9, and sn_key from
 * RFC 9147 §4.2.3), so that installing an epoch is one C call.
 *
 * HMAC (RFC 2104) hashes the inner and outer pads once per key and copies the two states
 * for each message: SHA-2 states where libcrypto still has SHA256_Init & co. (deprecated
 * since OpenSSL 3.0, kept), else EVP digests fetched once.
 */
#include <string.h>

#define OPENSSL_SUPPRESS_DEPRECATED /* SHA256_Init & co., see above; before any OpenSSL header */
#include <openssl/opensslconf.h>
#if !defined(OPENSSL_NO_DEPRECATED_3_0)
#define DTLS_KDF_SHA_STATES 1
#else
#define DTLS_KDF_SHA_STATES 0
#endif

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/sha.h>

#include "dtls_internal.h"

#if !defined(_WIN32)
#include <pthread.h>
#define DTLS_KDF_HAVE_PTHREAD_ONCE 1
#endif

#define MAX_BLOCK 128 /* SHA-384's block */
#define MAX_HASH 48

static const EVP_MD *g_mds[3];

static const EVP_MD *legacy_md(unsigned hash)
{
    return hash == DTLS_HASH_SHA256 ? EVP_sha256() : hash == DTLS_HASH_SHA384 ? EVP_sha384() : NULL;
}

static void fetch_mds(void)
{
#if OPENSSL_VERSION_NUMBER >= 0x30000000L
    EVP_MD *sha256 = EVP_MD_fetch(NULL, "SHA2-256", NULL);
    EVP_MD *sha384 = EVP_MD_fetch(NULL, "SHA2-384", NULL);
    g_mds[DTLS_HASH_SHA256] = sha256 != NULL ? sha256 : EVP_sha256();
    g_mds[DTLS_HASH_SHA384] = sha384 != NULL ? sha384 : EVP_sha384();
#else
    g_mds[DTLS_HASH_SHA256] = EVP_sha256();
    g_mds[DTLS_HASH_SHA384] = EVP_sha384();
#endif
}

static const EVP_MD *get_md(unsigned hash)
{
    if (hash != DTLS_HASH_SHA256 && hash != DTLS_HASH_SHA384)
        return NULL;
#ifdef DTLS_KDF_HAVE_PTHREAD_ONCE
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    if (pthread_once(&once, fetch_mds) != 0)
        return legacy_md(hash);
    return g_mds[hash];
#else
    return legacy_md(hash);
#endif
}

/* ---- HMAC with precomputed pads (RFC 2104 §2) ---- */

#if DTLS_KDF_SHA_STATES
/* The SHA-2 states themselves: a copy per message is a struct copy, where EVP_MD_CTX_copy_ex
 * allocates (about 3x the cost of the hashing for the short messages of a key schedule). */
typedef union {
    SHA256_CTX s256;
    SHA512_CTX s384;
} sha_state;

typedef struct {
    sha_state inner; /* H(K ^ ipad) absorbed */
    sha_state outer; /* H(K ^ opad) absorbed */
    unsigned hash;
    size_t hash_len;
} hmac_key;

static void sha_init(unsigned hash, sha_state *s)
{
    if (hash == DTLS_HASH_SHA384)
        SHA384_Init(&s->s384);
    else
        SHA256_Init(&s->s256);
}

static void sha_update(unsigned hash, sha_state *s, const uint8_t *p, size_t n)
{
    if (n == 0)
        return;
    if (hash == DTLS_HASH_SHA384)
        SHA384_Update(&s->s384, p, n);
    else
        SHA256_Update(&s->s256, p, n);
}

static void sha_final(unsigned hash, sha_state *s, uint8_t *out)
{
    if (hash == DTLS_HASH_SHA384)
        SHA384_Final(out, &s->s384);
    else
        SHA256_Final(out, &s->s256);
}

static void hmac_key_free(hmac_key *h) { OPENSSL_cleanse(h, sizeof(*h)); }

/* Key h with `key` (h may have been keyed before). */
static int hmac_key_init(hmac_key *h, unsigned hash, const uint8_t *key, size_t key_len)
{
    uint8_t pad[MAX_BLOCK], hashed[MAX_HASH];
    size_t block = hash == DTLS_HASH_SHA384 ? 128 : 64;
    sha_state s;

    if (hash != DTLS_HASH_SHA256 && hash != DTLS_HASH_SHA384)
        return 0;
    h->hash = hash;
    h->hash_len = hash == DTLS_HASH_SHA384 ? 48 : 32;
    if (key_len > block) { /* a long key is hashed first */
        sha_init(hash, &s);
        sha_update(hash, &s, key, key_len);
        sha_final(hash, &s, hashed);
        key = hashed, key_len = h->hash_len;
    }
    memset(pad, 0x36, block);
    for (size_t i = 0; i < key_len; i++)
        pad[i] ^= key[i];
    sha_init(hash, &h->inner);
    sha_update(hash, &h->inner, pad, block);
    for (size_t i = 0; i < block; i++)
        pad[i] ^= 0x36 ^ 0x5c;
    sha_init(hash, &h->outer);
    sha_update(hash, &h->outer, pad, block);
    OPENSSL_cleanse(pad, sizeof(pad));
    OPENSSL_cleanse(hashed, sizeof(hashed));
    OPENSSL_cleanse(&s, sizeof(s));
    return 1;
}

/* HMAC(K, a || b || c) into out (hash_len bytes); any part may be empty. */
static int hmac3(hmac_key *h, const uint8_t *a, size_t a_len, const uint8_t *b, size_t b_len,
                 const uint8_t *c, size_t c_len, uint8_t *out)
{
    uint8_t inner[MAX_HASH];
    sha_state s = h->inner;
    sha_update(h->hash, &s, a, a_len);
    sha_update(h->hash, &s, b, b_len);
    sha_update(h->hash, &s, c, c_len);
    sha_final(h->hash, &s, inner);
    s = h->outer;
    sha_update(h->hash, &s, inner, h->hash_len);
    sha_final(h->hash, &s, out);
    OPENSSL_cleanse(inner, sizeof(inner));
    OPENSSL_cleanse(&s, sizeof(s));
    return 1;
}

#else /* EVP digests (an OpenSSL built without the deprecated SHA-2 functions) */

typedef struct {
    EVP_MD_CTX *inner; /* H(K ^ ipad) absorbed */
    EVP_MD_CTX *outer; /* H(K ^ opad) absorbed */
    EVP_MD_CTX *work;
    size_t hash_len;
} hmac_key;

static void hmac_key_free(hmac_key *h)
{
    EVP_MD_CTX_free(h->inner);
    EVP_MD_CTX_free(h->outer);
    EVP_MD_CTX_free(h->work);
}

/* Key h with `key`, reusing its contexts when it was keyed before (h zeroed the first
 * time; hmac_key_free releases it either way). */
static int hmac_key_init(hmac_key *h, unsigned hash, const uint8_t *key, size_t key_len)
{
    const EVP_MD *md = get_md(hash);
    uint8_t pad[MAX_BLOCK], hashed[MAX_HASH];
    int ok = 0;

    if (md == NULL)
        return 0;
    int block = EVP_MD_get_block_size(md), hash_len = EVP_MD_get_size(md);
    if (h->inner == NULL)
        h->inner = EVP_MD_CTX_new();
    if (h->outer == NULL)
        h->outer = EVP_MD_CTX_new();
    if (h->work == NULL)
        h->work = EVP_MD_CTX_new();
    h->hash_len = (size_t)hash_len;
    if (h->inner == NULL || h->outer == NULL || h->work == NULL || block <= 0 ||
        block > MAX_BLOCK || hash_len <= 0 || hash_len > MAX_HASH)
        goto done;
    if (key_len > (size_t)block) { /* a long key is hashed first */
        unsigned int n = 0;
        if (EVP_Digest(key, key_len, hashed, &n, md, NULL) != 1)
            goto done;
        key = hashed, key_len = n;
    }
    memset(pad, 0x36, (size_t)block);
    for (size_t i = 0; i < key_len; i++)
        pad[i] ^= key[i];
    if (EVP_DigestInit_ex(h->inner, md, NULL) != 1 ||
        EVP_DigestUpdate(h->inner, pad, (size_t)block) != 1)
        goto done;
    for (int i = 0; i < block; i++)
        pad[i] ^= 0x36 ^ 0x5c;
    if (EVP_DigestInit_ex(h->outer, md, NULL) != 1 ||
        EVP_DigestUpdate(h->outer, pad, (size_t)block) != 1)
        goto done;
    ok = 1;
done:
    OPENSSL_cleanse(pad, sizeof(pad));
    OPENSSL_cleanse(hashed, sizeof(hashed));
    return ok;
}

/* HMAC(K, a || b || c) into out (hash_len bytes); any part may be empty. */
static int hmac3(hmac_key *h, const uint8_t *a, size_t a_len, const uint8_t *b, size_t b_len,
                 const uint8_t *c, size_t c_len, uint8_t *out)
{
    uint8_t inner[MAX_HASH];
    int ok = EVP_MD_CTX_copy_ex(h->work, h->inner) == 1 &&
             EVP_DigestUpdate(h->work, a, a_len) == 1 &&
             EVP_DigestUpdate(h->work, b, b_len) == 1 &&
             EVP_DigestUpdate(h->work, c, c_len) == 1 &&
             EVP_DigestFinal_ex(h->work, inner, NULL) == 1 &&
             EVP_MD_CTX_copy_ex(h->work, h->outer) == 1 &&
             EVP_DigestUpdate(h->work, inner, h->hash_len) == 1 &&
             EVP_DigestFinal_ex(h->work, out, NULL) == 1;
    OPENSSL_cleanse(inner, sizeof(inner));
    return ok;
}
#endif

/* ---- HKDF (RFC 5869 §2.2, §2.3) ---- */

int dtls_hkdf_extract(unsigned hash, const uint8_t *salt, size_t salt_len, const uint8_t *ikm,
                      size_t ikm_len, uint8_t *out, size_t out_cap)
{
    const EVP_MD *md = get_md(hash);
    static const uint8_t empty[1] = {0};
    hmac_key h = {0};

    if (md == NULL || (salt == NULL && salt_len) || (ikm == NULL && ikm_len) || out == NULL)
        return DTLS_ERR_ARGUMENT;
    if (out_cap < (size_t)EVP_MD_get_size(md))
        return DTLS_ERR_BUFFER;
    /* An empty salt is HashLen zeros: HMAC pads the key with zeros either way. */
    int ok = hmac_key_init(&h, hash, salt_len ? salt : empty, salt_len) &&
             hmac3(&h, ikm_len ? ikm : empty, ikm_len, empty, 0, empty, 0, out);
    size_t n = h.hash_len;
    hmac_key_free(&h);
    return ok ? (int)n : DTLS_ERR_CRYPTO;
}

static int expand(hmac_key *h, const uint8_t *info, size_t info_len, uint8_t *out, size_t len)
{
    uint8_t block[MAX_HASH];
    size_t done = 0, prev = 0;
    int ok = 1;

    for (uint8_t counter = 1; ok && done < len; counter++) {
        ok = hmac3(h, block, prev, info, info_len, &counter, 1, block);
        size_t take = len - done < h->hash_len ? len - done : h->hash_len;
        if (ok)
            memcpy(out + done, block, take);
        done += take;
        prev = h->hash_len;
    }
    OPENSSL_cleanse(block, sizeof(block));
    return ok;
}

int dtls_hkdf_expand(unsigned hash, const uint8_t *prk, size_t prk_len, const uint8_t *info,
                     size_t info_len, uint8_t *out, size_t out_len)
{
    const EVP_MD *md = get_md(hash);
    static const uint8_t empty[1] = {0};
    hmac_key h = {0};

    if (md == NULL || prk == NULL || prk_len == 0 || (info == NULL && info_len) ||
        out == NULL || out_len == 0 || out_len > 255 * (size_t)EVP_MD_get_size(md))
        return DTLS_ERR_ARGUMENT;
    int ok = hmac_key_init(&h, hash, prk, prk_len) &&
             expand(&h, info_len ? info : empty, info_len, out, out_len);
    hmac_key_free(&h);
    if (!ok)
        OPENSSL_cleanse(out, out_len);
    return ok ? 0 : DTLS_ERR_CRYPTO;
}

/* HkdfLabel (RFC 9846 §7.1) for "dtls13" + label with an empty context. */
static size_t traffic_label(uint8_t *info, const char *label, size_t length)
{
    static const char prefix[] = "dtls13";
    size_t label_len = strlen(label), n = 0;
    info[n++] = (uint8_t)(length >> 8);
    info[n++] = (uint8_t)length;
    info[n++] = (uint8_t)(sizeof(prefix) - 1 + label_len);
    memcpy(info + n, prefix, sizeof(prefix) - 1);
    n += sizeof(prefix) - 1;
    memcpy(info + n, label, label_len);
    n += label_len;
    info[n++] = 0; /* context */
    return n;
}

int dtls_traffic_keys(uint16_t suite, const uint8_t *secret, size_t secret_len, uint8_t *key,
                      size_t key_len, uint8_t *iv, uint8_t *sn_key)
{
    unsigned hash = suite == DTLS_TLS_AES_256_GCM_SHA384 ? DTLS_HASH_SHA384 : DTLS_HASH_SHA256;
    const EVP_MD *md = get_md(hash);
    uint8_t info[32];
    hmac_key h = {0};

    if (md == NULL || secret == NULL || secret_len == 0 ||
        key == NULL || iv == NULL || sn_key == NULL || key_len == 0 || key_len > MAX_HASH)
        return DTLS_ERR_ARGUMENT;
    int ok = hmac_key_init(&h, hash, secret, secret_len) &&
             expand(&h, info, traffic_label(info, "key", key_len), key, key_len) &&
             expand(&h, info, traffic_label(info, "iv", DTLS_NONCE_LEN), iv, DTLS_NONCE_LEN) &&
             expand(&h, info, traffic_label(info, "sn", key_len), sn_key, key_len);
    hmac_key_free(&h);
    return ok ? 0 : DTLS_ERR_CRYPTO;
}

dtls_cipher *dtls_cipher_from_secret(uint16_t suite, const uint8_t *secret, size_t secret_len)
{
    uint8_t key[32], iv[DTLS_NONCE_LEN], sn_key[32];
    size_t key_len = dtls__suite_key_len(suite);

    if (key_len == 0 || key_len > sizeof(key))
        return NULL;
    dtls_cipher *c = NULL;
    if (dtls_traffic_keys(suite, secret, secret_len, key, key_len, iv, sn_key) == 0)
        c = dtls_cipher_new(suite, key, key_len, iv, sizeof(iv), sn_key, key_len);
    OPENSSL_cleanse(key, sizeof(key));
    OPENSSL_cleanse(iv, sizeof(iv));
    OPENSSL_cleanse(sn_key, sizeof(sn_key));
    return c;
}

/* HkdfLabel (RFC 9846 §7.1): uint16 length || opaque label<7..255> = prefix + label ||
 * opaque context<0..255>. info holds at least 2 + 1 + 255 + 1 + 255 bytes. */
static size_t hkdf_label(uint8_t *info, const uint8_t *prefix, size_t prefix_len,
                         const uint8_t *label, size_t label_len, const uint8_t *context,
                         size_t context_len, size_t length)
{
    size_t n = 0;
    info[n++] = (uint8_t)(length >> 8);
    info[n++] = (uint8_t)length;
    info[n++] = (uint8_t)(prefix_len + label_len);
    memcpy(info + n, prefix, prefix_len);
    n += prefix_len;
    memcpy(info + n, label, label_len);
    n += label_len;
    info[n++] = (uint8_t)context_len;
    if (context_len)
        memcpy(info + n, context, context_len);
    return n + context_len;
}

#define MAX_STAGE_LABELS 8

int dtls_key_stage(unsigned hash, const uint8_t *prefix, size_t prefix_len, const uint8_t *prev,
                   size_t prev_len, const uint8_t *ikm, size_t ikm_len, const uint8_t *context,
                   size_t context_len, const uint8_t *labels, size_t labels_len,
                   size_t n_finished, uint8_t *out, size_t out_cap)
{
    static const uint8_t derived[] = "derived", finished[] = "finished";
    const EVP_MD *md = get_md(hash);
    uint8_t info[2 + 1 + 255 + 1 + 255], zeros[MAX_HASH] = {0}, empty_hash[MAX_HASH];
    uint8_t secret[MAX_HASH], salt[MAX_HASH];
    const uint8_t *label_at[MAX_STAGE_LABELS];
    size_t label_len[MAX_STAGE_LABELS], n_labels = 0;
    hmac_key h = {0};
    int ok = 0;

    if (md == NULL || prefix == NULL || (prev == NULL && prev_len) || ikm == NULL ||
        ikm_len == 0 || (context == NULL && context_len) || context_len > 255 ||
        (labels == NULL && labels_len) || out == NULL)
        return DTLS_ERR_ARGUMENT;
    for (size_t at = 0; at < labels_len; at += 1 + label_len[n_labels++]) {
        if (n_labels == MAX_STAGE_LABELS || labels[at] == 0 || at + 1 + labels[at] > labels_len)
            return DTLS_ERR_ARGUMENT;
        label_at[n_labels] = labels + at + 1;
        label_len[n_labels] = labels[at];
    }
    size_t hl = (size_t)EVP_MD_get_size(md);
    if (n_finished > n_labels || prefix_len + sizeof(finished) - 1 > 255 ||
        (prev != NULL && prev_len != hl))
        return DTLS_ERR_ARGUMENT;
    for (size_t i = 0; i < n_labels; i++)
        if (prefix_len + label_len[i] > 255)
            return DTLS_ERR_ARGUMENT;
    size_t total = (1 + n_labels + n_finished) * hl;
    if (out_cap < total)
        return DTLS_ERR_BUFFER;
#if DTLS_KDF_SHA_STATES
    sha_state s;
    sha_init(hash, &s);
    sha_final(hash, &s, empty_hash);
#else
    if (EVP_Digest(NULL, 0, empty_hash, NULL, md, NULL) != 1)
        return DTLS_ERR_CRYPTO;
#endif

    /* the previous stage's secret; none: the Early Secret without a PSK, Extract(0, 0) */
    if (prev == NULL) {
        if (!hmac_key_init(&h, hash, zeros, hl) || !hmac3(&h, zeros, hl, zeros, 0, zeros, 0, secret))
            goto done;
        prev = secret;
    }
    /* salt = Derive-Secret(prev, "derived", ""); secret = HKDF-Extract(salt, ikm) */
    if (!hmac_key_init(&h, hash, prev, hl) ||
        !expand(&h, info, hkdf_label(info, prefix, prefix_len, derived, sizeof(derived) - 1,
                                     empty_hash, hl, hl), salt, hl) ||
        !hmac_key_init(&h, hash, salt, hl) || !hmac3(&h, ikm, ikm_len, zeros, 0, zeros, 0, out))
        goto done;
    /* Derive-Secret(secret, label, context) for each label */
    if (n_labels && !hmac_key_init(&h, hash, out, hl))
        goto done;
    for (size_t i = 0; i < n_labels; i++)
        if (!expand(&h, info, hkdf_label(info, prefix, prefix_len, label_at[i], label_len[i],
                                         context, context_len, hl), out + (1 + i) * hl, hl))
            goto done;
    /* finished_key = HKDF-Expand-Label(secret_i, "finished", "", HashLen) (RFC 9846 §4.4.4) */
    for (size_t i = 0; i < n_finished; i++)
        if (!hmac_key_init(&h, hash, out + (1 + i) * hl, hl) ||
            !expand(&h, info, hkdf_label(info, prefix, prefix_len, finished,
                                         sizeof(finished) - 1, NULL, 0, hl),
                    out + (1 + n_labels + i) * hl, hl))
            goto done;
    ok = 1;
done:
    hmac_key_free(&h);
    OPENSSL_cleanse(secret, sizeof(secret));
    OPENSSL_cleanse(salt, sizeof(salt));
    if (!ok) {
        OPENSSL_cleanse(out, total);
        return DTLS_ERR_CRYPTO;
    }
    return (int)total;
}
