/* record.c - DTLS 1.3 record protection (RFC 9147 §4): unified header, record-number
 * encryption (§4.2.3), AEAD seal/open (RFC 9846 §5.2), sequence number reconstruction
 * (§4.2.2) and datagram splitting (§4.1).
 */
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#if OPENSSL_VERSION_NUMBER >= 0x30000000L
#include <openssl/core_names.h>
#include <openssl/params.h>
#include <openssl/provider.h>
#endif

#include "dtls_internal.h"

#if !defined(_WIN32)
#include <pthread.h>
#define DTLS_HAVE_PTHREAD_ONCE 1
#endif

/* ---- EVP_CIPHER objects, fetched once per process ---- */

enum { CI_AES128_GCM, CI_AES256_GCM, CI_CHACHA_POLY, CI_AES128_CCM, CI_AES128_ECB, CI_AES256_ECB,
       CI_COUNT };

static const EVP_CIPHER *g_ciphers[CI_COUNT];

static const EVP_CIPHER *legacy_cipher(int which)
{
    switch (which) {
    case CI_AES128_GCM: return EVP_aes_128_gcm();
    case CI_AES256_GCM: return EVP_aes_256_gcm();
    case CI_CHACHA_POLY: return EVP_chacha20_poly1305();
    case CI_AES128_CCM: return EVP_aes_128_ccm();
    case CI_AES128_ECB: return EVP_aes_128_ecb();
    case CI_AES256_ECB: return EVP_aes_256_ecb();
    default: return NULL;
    }
}

static void fetch_ciphers(void)
{
#if OPENSSL_VERSION_NUMBER >= 0x30000000L
    /* Explicit fetches: no implicit provider lookup when a context is initialised. */
    static const char *const names[CI_COUNT] = {"AES-128-GCM", "AES-256-GCM",
                                                "ChaCha20-Poly1305", "AES-128-CCM",
                                                "AES-128-ECB", "AES-256-ECB"};
    for (int i = 0; i < CI_COUNT; i++) {
        EVP_CIPHER *fetched = EVP_CIPHER_fetch(NULL, names[i], NULL);
        g_ciphers[i] = fetched != NULL ? fetched : legacy_cipher(i);
    }
#else
    for (int i = 0; i < CI_COUNT; i++)
        g_ciphers[i] = legacy_cipher(i);
#endif
}

#ifdef DTLS_HAVE_PTHREAD_ONCE
static pthread_once_t g_ciphers_once = PTHREAD_ONCE_INIT;
static const EVP_CIPHER *get_cipher(int which)
{
    if (pthread_once(&g_ciphers_once, fetch_ciphers) != 0)
        return legacy_cipher(which);
    return g_ciphers[which];
}
#else
static const EVP_CIPHER *get_cipher(int which) { return legacy_cipher(which); }
#endif

const char *dtls_openssl_version(void) { return OpenSSL_version(OPENSSL_VERSION); }

/* ---- the cipher object ---- */

static uint32_t load32_le(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) |
           ((uint32_t)p[3] << 24);
}

/* Key an AEAD context for one direction. CCM fixes its nonce length (L = 3) and tag length
 * before the key. */
static int aead_ctx_init(EVP_CIPHER_CTX *a, const EVP_CIPHER *cipher, uint8_t kind,
                         uint8_t tag_len, const uint8_t *key, int enc)
{
    if (EVP_CipherInit_ex(a, cipher, NULL, NULL, NULL, enc) != 1 ||
        EVP_CIPHER_CTX_ctrl(a, EVP_CTRL_AEAD_SET_IVLEN, DTLS_NONCE_LEN, NULL) != 1)
        return 0;
    if (kind == DTLS_AEAD_CCM && EVP_CIPHER_CTX_ctrl(a, EVP_CTRL_AEAD_SET_TAG, tag_len, NULL) != 1)
        return 0;
    return EVP_CipherInit_ex(a, NULL, NULL, key, NULL, enc) == 1;
}

size_t dtls__suite_key_len(uint16_t suite)
{
    switch (suite) { /* RFC 9846 Appendix B.4 */
    case DTLS_TLS_AES_128_GCM_SHA256:
    case DTLS_TLS_AES_128_CCM_SHA256:
    case DTLS_TLS_AES_128_CCM_8_SHA256:
        return 16;
    case DTLS_TLS_AES_256_GCM_SHA384:
    case DTLS_TLS_CHACHA20_POLY1305_SHA256:
        return 32;
    default:
        return 0;
    }
}

/* Whether `aead` is the GCM of OpenSSL 3.0's default or FIPS provider, whose
 * set_ctx_params takes a whole nonce as AEAD_TLS1_IV_FIXED of length -1 (`aead_start`); a
 * provider of another kind might ignore that parameter and leave the previous nonce in
 * place. From 3.1 on EVP_CipherInit_ex keeps the IV length and is the cheaper of the two
 * (3.5: ~0.2k instructions a record fewer). */
static uint8_t gcm_whole_iv_param(const EVP_CIPHER *aead)
{
#if OPENSSL_VERSION_NUMBER >= 0x30000000L
    if (OpenSSL_version_num() >= 0x30100000L)
        return 0;
    const OSSL_PROVIDER *prov = EVP_CIPHER_get0_provider(aead);
    const char *name = prov != NULL ? OSSL_PROVIDER_get0_name(prov) : NULL;
    return name != NULL && (strcmp(name, "default") == 0 || strcmp(name, "fips") == 0);
#else
    (void)aead;
    return 0;
#endif
}

dtls_cipher *dtls_cipher_new(uint16_t suite, const uint8_t *key, size_t key_len,
                             const uint8_t *iv, size_t iv_len, const uint8_t *sn_key,
                             size_t sn_key_len)
{
    int aead_id, sn_id;
    size_t want_key = dtls__suite_key_len(suite);
    uint8_t kind, tag_len = 16;

    switch (suite) { /* RFC 9846 Appendix B.4; RFC 9147 §4.2.3 for the sn cipher */
    case DTLS_TLS_AES_128_GCM_SHA256:
        aead_id = CI_AES128_GCM, sn_id = CI_AES128_ECB, kind = DTLS_AEAD_GCM;
        break;
    case DTLS_TLS_AES_256_GCM_SHA384:
        aead_id = CI_AES256_GCM, sn_id = CI_AES256_ECB, kind = DTLS_AEAD_GCM;
        break;
    case DTLS_TLS_CHACHA20_POLY1305_SHA256:
        aead_id = CI_CHACHA_POLY, sn_id = -1, kind = DTLS_AEAD_CHACHA;
        break;
    case DTLS_TLS_AES_128_CCM_SHA256:
        aead_id = CI_AES128_CCM, sn_id = CI_AES128_ECB, kind = DTLS_AEAD_CCM;
        break;
    case DTLS_TLS_AES_128_CCM_8_SHA256:
        aead_id = CI_AES128_CCM, sn_id = CI_AES128_ECB, kind = DTLS_AEAD_CCM;
        tag_len = 8;
        break;
    default:
        return NULL;
    }
    if (key == NULL || iv == NULL || sn_key == NULL || key_len != want_key ||
        iv_len != DTLS_NONCE_LEN || sn_key_len != want_key)
        return NULL;
    const EVP_CIPHER *aead = get_cipher(aead_id);
    const EVP_CIPHER *snc = sn_id >= 0 ? get_cipher(sn_id) : NULL;
    if (aead == NULL || (sn_id >= 0 && snc == NULL))
        return NULL;

    dtls_cipher *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return NULL;
    c->suite = suite;
    c->kind = kind;
    c->tag_len = tag_len;
    memcpy(c->iv, iv, DTLS_NONCE_LEN);
    memcpy(c->key, key, key_len);
    c->aead = aead; /* the AEAD contexts are keyed on first use (dtls__key_direction) */
    c->whole_iv_param = kind == DTLS_AEAD_GCM ? gcm_whole_iv_param(aead) : 0;
    if (kind == DTLS_AEAD_CHACHA) {
        for (int i = 0; i < 8; i++)
            c->sn_chacha_key[i] = load32_le(sn_key + 4 * i);
    } else {
        c->sn_ecb = EVP_CIPHER_CTX_new();
        if (c->sn_ecb == NULL || EVP_EncryptInit_ex(c->sn_ecb, snc, NULL, sn_key, NULL) != 1 ||
            EVP_CIPHER_CTX_set_padding(c->sn_ecb, 0) != 1)
            goto fail;
    }
    return c;
fail:
    dtls_cipher_free(c);
    return NULL;
}

EVP_CIPHER_CTX *dtls__key_direction(dtls_cipher *c, int enc)
{
    EVP_CIPHER_CTX **slot = enc ? &c->seal_ctx : &c->open_ctx;
    if (*slot != NULL)
        return *slot;
    EVP_CIPHER_CTX *a = EVP_CIPHER_CTX_new();
    if (a == NULL || !aead_ctx_init(a, c->aead, c->kind, c->tag_len, c->key, enc)) {
        EVP_CIPHER_CTX_free(a);
        return NULL;
    }
    return *slot = a;
}

void dtls_cipher_free(dtls_cipher *c)
{
    if (c == NULL)
        return;
    /* EVP_CIPHER_CTX_free cleanses the key schedules */
    EVP_CIPHER_CTX_free(c->seal_ctx);
    EVP_CIPHER_CTX_free(c->open_ctx);
    EVP_CIPHER_CTX_free(c->sn_ecb);
    OPENSSL_cleanse(c, sizeof(*c));
    free(c);
}

size_t dtls_cipher_tag_len(const dtls_cipher *c) { return c != NULL ? c->tag_len : 0; }

#define ROTL32(v, n) (((v) << (n)) | ((v) >> (32 - (n))))
#define QUARTER(a, b, c, d)                                                                    \
    do {                                                                                       \
        a += b, d ^= a, d = ROTL32(d, 16);                                                     \
        c += d, b ^= c, b = ROTL32(b, 12);                                                     \
        a += b, d ^= a, d = ROTL32(d, 8);                                                      \
        c += d, b ^= c, b = ROTL32(b, 7);                                                      \
    } while (0)

/* RFC 9147 §4.2.3: Mask = ChaCha20(sn_key, counter = sample[0..3], nonce = sample[4..15]),
 * i.e. the first 16 bytes of the RFC 8439 §2.3 block function (what EVP_chacha20 with the
 * sample as its 16-byte IV produces, without re-initialising a context per record). */
static void chacha20_mask(const uint32_t key[8], const uint8_t sample[16], uint8_t mask[16])
{
    uint32_t s[16], x[16];
    s[0] = 0x61707865u, s[1] = 0x3320646eu, s[2] = 0x79622d32u, s[3] = 0x6b206574u;
    for (int i = 0; i < 8; i++)
        s[4 + i] = key[i];
    for (int i = 0; i < 4; i++)
        s[12 + i] = load32_le(sample + 4 * i);
    memcpy(x, s, sizeof(x));
    for (int i = 0; i < 10; i++) {
        QUARTER(x[0], x[4], x[8], x[12]);
        QUARTER(x[1], x[5], x[9], x[13]);
        QUARTER(x[2], x[6], x[10], x[14]);
        QUARTER(x[3], x[7], x[11], x[15]);
        QUARTER(x[0], x[5], x[10], x[15]);
        QUARTER(x[1], x[6], x[11], x[12]);
        QUARTER(x[2], x[7], x[8], x[13]);
        QUARTER(x[3], x[4], x[9], x[14]);
    }
    for (int i = 0; i < 4; i++) {
        uint32_t v = x[i] + s[i];
        mask[4 * i] = (uint8_t)v, mask[4 * i + 1] = (uint8_t)(v >> 8);
        mask[4 * i + 2] = (uint8_t)(v >> 16), mask[4 * i + 3] = (uint8_t)(v >> 24);
    }
}

int dtls__sn_mask(dtls_cipher *c, const uint8_t sample[16], uint8_t mask[16])
{
    if (c->kind == DTLS_AEAD_CHACHA) {
        chacha20_mask(c->sn_chacha_key, sample, mask);
        return 1;
    }
    /* Mask = AES-ECB(sn_key, sample) */
    int outl = 0;
    return EVP_EncryptUpdate(c->sn_ecb, mask, &outl, sample, 16) == 1 && outl == 16;
}

int dtls_cipher_mask(dtls_cipher *c, const uint8_t *sample, size_t sample_len, uint8_t *mask)
{
    if (c == NULL || sample == NULL || mask == NULL || sample_len < 16)
        return DTLS_ERR_ARGUMENT;
    return dtls__sn_mask(c, sample, mask) ? 0 : DTLS_ERR_CRYPTO;
}

/* ---- AEAD ---- */

/* Start a record: the nonce, and for opening the expected tag (tag != NULL). The GCM of
 * OpenSSL 3.0's own providers take the whole nonce as the TLS "fixed IV" with the length -1
 * (their "restore the whole IV" case) in one EVP_CIPHER_CTX_set_params call, with the tag
 * in the same call: EVP_CipherInit_ex would first ask the provider for the IV length
 * (OpenSSL 3.0: ~0.8k instructions a record). Anything else, or a refusal, gets the nonce
 * from EVP_CipherInit_ex and the tag from EVP_CTRL_AEAD_SET_TAG. */
static int aead_start(dtls_cipher *c, EVP_CIPHER_CTX *a, const uint8_t nonce[DTLS_NONCE_LEN],
                      const uint8_t *tag, int enc)
{
    /* The EVP API takes the nonce and expected tag as void *; it only reads them. */
    void *noncep = (void *)(uintptr_t)nonce, *tagp = (void *)(uintptr_t)tag;
#if OPENSSL_VERSION_NUMBER >= 0x30000000L
    if (c->whole_iv_param) {
        OSSL_PARAM params[3] = {
            OSSL_PARAM_construct_octet_string(OSSL_CIPHER_PARAM_AEAD_TLS1_IV_FIXED, noncep,
                                              (size_t)-1),
            OSSL_PARAM_END, OSSL_PARAM_END};
        if (tag != NULL)
            params[1] = OSSL_PARAM_construct_octet_string(OSSL_CIPHER_PARAM_AEAD_TAG, tagp,
                                                          c->tag_len);
        if (EVP_CIPHER_CTX_set_params(a, params) == 1)
            return 1;
    }
#endif
    if (EVP_CipherInit_ex(a, NULL, NULL, NULL, nonce, enc) != 1)
        return 0;
    return tag == NULL || EVP_CIPHER_CTX_ctrl(a, EVP_CTRL_AEAD_SET_TAG, c->tag_len, tagp) == 1;
}

/* The tag of the record just sealed: on the `aead_start` path, read with one
 * EVP_CIPHER_CTX_get_params call (EVP_CTRL_AEAD_GET_TAG builds the same parameter). */
static int aead_tag(dtls_cipher *c, EVP_CIPHER_CTX *a, uint8_t *tag)
{
#if OPENSSL_VERSION_NUMBER >= 0x30000000L
    if (c->whole_iv_param) {
        OSSL_PARAM params[2] = {
            OSSL_PARAM_construct_octet_string(OSSL_CIPHER_PARAM_AEAD_TAG, tag, c->tag_len),
            OSSL_PARAM_END};
        return EVP_CIPHER_CTX_get_params(a, params) == 1;
    }
#endif
    return EVP_CIPHER_CTX_ctrl(a, EVP_CTRL_AEAD_GET_TAG, c->tag_len, tag) == 1;
}

int dtls__aead_seal(dtls_cipher *c, const uint8_t nonce[DTLS_NONCE_LEN], const uint8_t *aad,
                    size_t aad_len, const uint8_t *in, size_t in_len, uint8_t *ct, uint8_t *tag)
{
    EVP_CIPHER_CTX *a = dtls__aead_ctx(c, 1);
    int outl = 0;
    if (a == NULL || !aead_start(c, a, nonce, NULL, 1))
        return 0;
    /* CCM needs the total plaintext length before the additional data. */
    if (c->kind == DTLS_AEAD_CCM && EVP_CipherUpdate(a, NULL, &outl, NULL, (int)in_len) != 1)
        return 0;
    if (EVP_CipherUpdate(a, NULL, &outl, aad, (int)aad_len) != 1)
        return 0;
    if ((in_len > 0 || c->kind == DTLS_AEAD_CCM) &&
        EVP_CipherUpdate(a, ct, &outl, in, (int)in_len) != 1)
        return 0;
    if (EVP_CipherFinal_ex(a, ct + in_len, &outl) != 1)
        return 0;
    return aead_tag(c, a, tag);
}

/* Seal payload || type || zeros[tail_len - 1] without first copying a large payload:
 * GCM and ChaCha20-Poly1305 take it in two updates; CCM allows one, so it gets a copy. */
static int aead_seal_inner(dtls_cipher *c, const uint8_t nonce[DTLS_NONCE_LEN],
                           const uint8_t *aad, size_t aad_len, const uint8_t *payload,
                           size_t payload_len, uint8_t *ct, size_t tail_len)
{
    /* ct[payload_len ..] already holds the tail (type, zeros) in the clear. */
    if (c->kind == DTLS_AEAD_CCM || payload_len <= 256) {
        if (payload_len > 0 && payload != ct)
            memcpy(ct, payload, payload_len);
        return dtls__aead_seal(c, nonce, aad, aad_len, ct, payload_len + tail_len, ct,
                               ct + payload_len + tail_len);
    }
    EVP_CIPHER_CTX *a = dtls__aead_ctx(c, 1);
    int outl = 0;
    if (a == NULL || !aead_start(c, a, nonce, NULL, 1) ||
        EVP_CipherUpdate(a, NULL, &outl, aad, (int)aad_len) != 1 ||
        EVP_CipherUpdate(a, ct, &outl, payload, (int)payload_len) != 1 ||
        EVP_CipherUpdate(a, ct + payload_len, &outl, ct + payload_len, (int)tail_len) != 1 ||
        EVP_CipherFinal_ex(a, ct + payload_len + tail_len, &outl) != 1)
        return 0;
    return aead_tag(c, a, ct + payload_len + tail_len);
}

/* Returns 1 when the tag verifies (out holds ct_len plaintext bytes), 0 when it does not,
 * -1 on a libcrypto failure. */
static int aead_open(dtls_cipher *c, const uint8_t nonce[DTLS_NONCE_LEN], const uint8_t *aad,
                     size_t aad_len, const uint8_t *ct, size_t ct_len, const uint8_t *tag,
                     uint8_t *out)
{
    EVP_CIPHER_CTX *a = dtls__aead_ctx(c, 0);
    int outl = 0;
    if (a == NULL || !aead_start(c, a, nonce, tag, 0))
        return -1;
    if (c->kind == DTLS_AEAD_CCM) {
        /* CCM verifies inside its single update. */
        if (EVP_CipherUpdate(a, NULL, &outl, NULL, (int)ct_len) != 1 ||
            EVP_CipherUpdate(a, NULL, &outl, aad, (int)aad_len) != 1)
            return -1;
        return EVP_CipherUpdate(a, out, &outl, ct, (int)ct_len) == 1;
    }
    if (EVP_CipherUpdate(a, NULL, &outl, aad, (int)aad_len) != 1)
        return -1;
    if (ct_len > 0 && EVP_CipherUpdate(a, out, &outl, ct, (int)ct_len) != 1)
        return -1;
    return EVP_CipherFinal_ex(a, out + ct_len, &outl) == 1;
}

/* ---- the unified header (RFC 9147 §4, Figure 3) ---- */

static size_t unified_header_len(unsigned flags, size_t cid_len)
{
    return 1 + ((flags & DTLS_HDR_CID) ? cid_len : 0) + ((flags & DTLS_HDR_SEQ16) ? 2 : 1) +
           ((flags & DTLS_HDR_LENGTH) ? 2 : 0);
}

/* The DTLSInnerPlaintext length for a payload and requested padding: padding is raised
 * so that the ciphertext holds a 16-byte sample (§4.2.3). 0 when over the RFC 9846 §5.4
 * limit of 2^14 + 1. */
static size_t inner_len(const dtls_cipher *c, size_t payload_len, size_t padding)
{
    if (payload_len > DTLS_MAX_PLAINTEXT || padding > DTLS_MAX_INNER)
        return 0;
    size_t inner = payload_len + 1 + padding;
    if (inner + c->tag_len < 16)
        inner = 16 - (size_t)c->tag_len;
    return inner <= DTLS_MAX_INNER ? inner : 0;
}

size_t dtls_sealed_len(const dtls_cipher *c, unsigned flags, size_t cid_len, size_t payload_len,
                       size_t padding)
{
    if (c == NULL || cid_len > DTLS_MAX_CID)
        return 0;
    size_t inner = inner_len(c, payload_len, padding);
    if (inner == 0)
        return 0;
    return unified_header_len(flags, (flags & DTLS_HDR_CID) ? cid_len : 0) + inner + c->tag_len;
}

static int ranges_overlap(const void *a, size_t alen, const void *b, size_t blen)
{
    uintptr_t x = (uintptr_t)a, y = (uintptr_t)b;
    return x < y + blen && y < x + alen;
}

int dtls_seal(dtls_cipher *c, uint64_t epoch, uint64_t seq, unsigned flags, const uint8_t *cid,
              size_t cid_len, uint8_t content_type, const uint8_t *payload, size_t payload_len,
              size_t padding, uint8_t *out, size_t out_cap)
{
    if (c == NULL || out == NULL || (payload == NULL && payload_len > 0))
        return DTLS_ERR_ARGUMENT;
    if ((flags & ~(unsigned)(DTLS_HDR_CID | DTLS_HDR_SEQ16 | DTLS_HDR_LENGTH)) != 0 ||
        seq > DTLS_MAX_SEQ || content_type == 0)
        return DTLS_ERR_ARGUMENT;
    /* §9: a CID is carried (C=1) only when it is not empty */
    if (flags & DTLS_HDR_CID) {
        if (cid == NULL || cid_len == 0 || cid_len > DTLS_MAX_CID)
            return DTLS_ERR_ARGUMENT;
    } else if (cid_len != 0) {
        return DTLS_ERR_ARGUMENT;
    }
    size_t inner = inner_len(c, payload_len, padding); /* RFC 9846 §5.1, §5.4; §4.2.3 */
    if (inner == 0)
        return DTLS_ERR_ARGUMENT;
    padding = inner - 1 - payload_len;
    size_t ct_len = inner + c->tag_len;
    size_t hdr_len = unified_header_len(flags, cid_len);
    if (out_cap < hdr_len + ct_len)
        return DTLS_ERR_BUFFER;
    uint8_t *ct = out + hdr_len;
    /* The payload may already sit at the ciphertext position (seal in place), or
     * anywhere outside the record. */
    if (payload_len > 0 && payload != ct &&
        ranges_overlap(payload, payload_len, out, hdr_len + ct_len))
        return DTLS_ERR_ARGUMENT;

    uint8_t *p = out;
    *p++ = (uint8_t)(0x20u | flags | (unsigned)(epoch & 3u));
    if (flags & DTLS_HDR_CID) {
        memcpy(p, cid, cid_len);
        p += cid_len;
    }
    uint8_t *seq_pos = p;
    if (flags & DTLS_HDR_SEQ16) {
        *p++ = (uint8_t)(seq >> 8);
        *p++ = (uint8_t)seq;
    } else {
        *p++ = (uint8_t)seq;
    }
    if (flags & DTLS_HDR_LENGTH) {
        *p++ = (uint8_t)(ct_len >> 8);
        *p++ = (uint8_t)ct_len;
    }
    /* DTLSInnerPlaintext tail: type, zeros */
    ct[payload_len] = content_type;
    if (padding > 0)
        memset(ct + payload_len + 1, 0, padding);

    uint8_t nonce[DTLS_NONCE_LEN];
    dtls__nonce(c, seq, nonce);
    /* §4: the additional data is the header before record number encryption */
    if (!aead_seal_inner(c, nonce, out, hdr_len, payload, payload_len, ct, 1 + padding))
        return DTLS_ERR_CRYPTO;
    uint8_t mask[16];
    if (!dtls__sn_mask(c, ct, mask))
        return DTLS_ERR_CRYPTO;
    seq_pos[0] ^= mask[0];
    if (flags & DTLS_HDR_SEQ16)
        seq_pos[1] ^= mask[1];
    return (int)(hdr_len + ct_len);
}

int dtls_seal_plaintext(uint8_t content_type, uint16_t epoch, uint64_t seq,
                        const uint8_t *payload, size_t payload_len, uint8_t *out, size_t out_cap)
{
    if (out == NULL || (payload == NULL && payload_len > 0) || seq > DTLS_MAX_SEQ ||
        payload_len > DTLS_MAX_PLAINTEXT)
        return DTLS_ERR_ARGUMENT;
    if (out_cap < 13 + payload_len)
        return DTLS_ERR_BUFFER;
    if (payload_len > 0 && ranges_overlap(payload, payload_len, out, 13 + payload_len))
        return DTLS_ERR_ARGUMENT;
    out[0] = content_type;
    out[1] = 254; /* legacy_record_version {254, 253} (RFC 9147 §4) */
    out[2] = 253;
    out[3] = (uint8_t)(epoch >> 8);
    out[4] = (uint8_t)epoch;
    for (int i = 0; i < 6; i++)
        out[5 + i] = (uint8_t)(seq >> (40 - 8 * i));
    out[11] = (uint8_t)(payload_len >> 8);
    out[12] = (uint8_t)payload_len;
    if (payload_len > 0)
        memcpy(out + 13, payload, payload_len);
    return (int)(13 + payload_len);
}

/* ---- parsing ---- */

typedef struct {
    size_t hdr_len;
    size_t ct_len; /* encrypted_record length */
    size_t seq_off;
    uint8_t flags;
} unified_hdr;

/* Parse a unified header at rec[0..avail). The C bit must agree with cid_len (§9: a
 * zero-length CID is never sent, and a negotiated CID is always sent). With L=0 the
 * record takes the rest. Returns 0 or DTLS_ERR_MALFORMED. */
static int parse_unified(const uint8_t *rec, size_t avail, size_t cid_len, unified_hdr *h)
{
    if (cid_len > DTLS_MAX_CID || avail < 1 || (rec[0] & 0xE0u) != 0x20u)
        return DTLS_ERR_MALFORMED;
    uint8_t b = rec[0];
    int has_cid = (b & DTLS_HDR_CID) != 0;
    if (has_cid != (cid_len > 0))
        return DTLS_ERR_MALFORMED;
    size_t hdr = unified_header_len(b, cid_len);
    if (avail < hdr)
        return DTLS_ERR_MALFORMED;
    h->flags = b;
    h->seq_off = 1 + (has_cid ? cid_len : 0);
    h->hdr_len = hdr;
    if (b & DTLS_HDR_LENGTH) {
        size_t len = ((size_t)rec[hdr - 2] << 8) | rec[hdr - 1];
        if (len > avail - hdr)
            return DTLS_ERR_MALFORMED;
        h->ct_len = len;
    } else {
        h->ct_len = avail - hdr;
    }
    return 0;
}

int dtls_split_datagram(const uint8_t *data, size_t len, size_t cid_len, dtls_record_span *spans,
                        size_t max_spans, size_t *dropped)
{
    size_t pos = 0, n = 0;
    if (dropped != NULL)
        *dropped = 0;
    if (data == NULL || (spans == NULL && max_spans > 0) || len > UINT32_MAX ||
        cid_len > DTLS_MAX_CID)
        return DTLS_ERR_ARGUMENT;
    while (pos < len && n < max_spans) {
        const uint8_t *r = data + pos;
        size_t avail = len - pos;
        dtls_record_span *s = &spans[n];
        uint8_t b = r[0];
        if (b == 21 || b == 22 || b == 26) { /* §4.1: DTLSPlaintext alert, handshake, ack */
            if (avail < 13)
                break;
            size_t flen = ((size_t)r[11] << 8) | r[12];
            if (flen > DTLS_MAX_PLAINTEXT || flen > avail - 13) /* RFC 9846 §5.1 */
                break;
            s->offset = (uint32_t)pos;
            s->length = (uint32_t)(13 + flen);
            s->kind = DTLS_RECORD_PLAINTEXT;
            s->first_byte = b;
            s->epoch = (uint16_t)(((unsigned)r[3] << 8) | r[4]);
            uint64_t seq = 0;
            for (int i = 5; i < 11; i++)
                seq = (seq << 8) | r[i];
            s->seq = seq;
            pos += 13 + flen;
        } else if ((b & 0xE0u) == 0x20u) { /* §4.1: 001xxxxx, DTLSCiphertext */
            unified_hdr h;
            if (parse_unified(r, avail, cid_len, &h) != 0)
                break;
            s->offset = (uint32_t)pos;
            s->length = (uint32_t)(h.hdr_len + h.ct_len);
            s->kind = DTLS_RECORD_CIPHERTEXT;
            s->first_byte = b;
            s->epoch = (uint16_t)(b & 3u);
            s->seq = 0;
            pos += h.hdr_len + h.ct_len;
        } else {
            break; /* §4.5.2: cannot be demultiplexed: discard the rest */
        }
        n++;
    }
    if (dropped != NULL)
        *dropped = len - pos;
    return (int)n;
}

uint64_t dtls_reconstruct_seq(uint64_t expected, uint64_t low, unsigned bits)
{
    if (bits != 8 && bits != 16)
        return low;
    if (expected > DTLS_MAX_SEQ)
        expected = DTLS_MAX_SEQ;
    uint64_t win = UINT64_C(1) << bits, hwin = win >> 1, m = win - 1;
    uint64_t cand = (expected & ~m) | (low & m);
    /* the candidate closest to expected (cf. RFC 9000 Appendix A.3) */
    if (cand + hwin <= expected && cand + win <= DTLS_MAX_SEQ)
        return cand + win;
    if (cand > expected + hwin && cand >= win)
        return cand - win;
    return cand;
}

static int open_record(dtls_cipher *c, dtls_replay *window, uint64_t next_seq,
                       const uint8_t *rec, size_t rec_len, size_t cid_len, uint8_t *out,
                       size_t out_cap, int in_place, dtls_open_result *result)
{
    unified_hdr h;
    if (c == NULL || result == NULL || (rec == NULL && rec_len > 0) || cid_len > DTLS_MAX_CID)
        return DTLS_ERR_ARGUMENT;
    if (rec == NULL || parse_unified(rec, rec_len, cid_len, &h) != 0)
        return DTLS_ERR_MALFORMED;
    /* §4.2.3: at least 16 bytes for the sample; RFC 9846 §5.2: at most 2^14 + 256 */
    if (h.ct_len < 16 || h.ct_len > DTLS_MAX_CIPHERTEXT)
        return DTLS_ERR_MALFORMED;
    const uint8_t *ct = rec + h.hdr_len;
    size_t pt_len = h.ct_len - c->tag_len;
    if (in_place) {
        out = (uint8_t *)(uintptr_t)ct; /* the caller's record memory is writable */
    } else {
        if (out == NULL)
            return DTLS_ERR_ARGUMENT;
        if (out_cap < pt_len)
            return DTLS_ERR_BUFFER;
        if (out != ct && ranges_overlap(out, pt_len, rec, h.hdr_len + h.ct_len))
            return DTLS_ERR_ARGUMENT;
    }

    /* §4.2.3: unmask the record number, then §4.2.2: reconstruct it */
    uint8_t mask[16];
    if (!dtls__sn_mask(c, ct, mask))
        return DTLS_ERR_CRYPTO;
    uint8_t aad[DTLS_MAX_UNIFIED_HDR];
    memcpy(aad, rec, h.hdr_len);
    unsigned bits;
    uint64_t low;
    aad[h.seq_off] ^= mask[0];
    if (h.flags & DTLS_HDR_SEQ16) {
        aad[h.seq_off + 1] ^= mask[1];
        low = ((uint64_t)aad[h.seq_off] << 8) | aad[h.seq_off + 1];
        bits = 16;
    } else {
        low = aad[h.seq_off];
        bits = 8;
    }
    uint64_t expected = window != NULL ? dtls_replay_next(window) : next_seq;
    uint64_t seq = dtls_reconstruct_seq(expected, low, bits);

    uint8_t nonce[DTLS_NONCE_LEN];
    dtls__nonce(c, seq, nonce);
    int ok = aead_open(c, nonce, aad, h.hdr_len, ct, pt_len, ct + pt_len, out);
    if (ok < 0) {
        memset(out, 0, pt_len);
        return DTLS_ERR_CRYPTO;
    }
    if (ok == 0) {
        memset(out, 0, pt_len); /* release no unauthenticated plaintext */
        return DTLS_ERR_AUTH;
    }
    /* RFC 9846 §5.4: the content type is the last non-zero byte */
    size_t i = pt_len;
    while (i > 0 && out[i - 1] == 0)
        i--;
    if (i == 0)
        return DTLS_ERR_AUTH;
    /* §4.5.1: duplicates are rejected after deprotection; the window moves only now */
    if (window != NULL) {
        if (dtls_replay_check(window, seq) != 0)
            return DTLS_ERR_REPLAYED;
        dtls_replay_mark(window, seq);
    }
    result->seq = seq;
    result->plaintext_len = (uint32_t)(i - 1);
    result->header_len = (uint16_t)h.hdr_len;
    result->content_type = out[i - 1];
    return 0;
}

int dtls_open(dtls_cipher *c, dtls_replay *window, uint64_t next_seq, const uint8_t *rec,
              size_t rec_len, size_t cid_len, uint8_t *out, size_t out_cap,
              dtls_open_result *result)
{
    return open_record(c, window, next_seq, rec, rec_len, cid_len, out, out_cap, 0, result);
}

int dtls_open_in_place(dtls_cipher *c, dtls_replay *window, uint64_t next_seq, uint8_t *rec,
                       size_t rec_len, size_t cid_len, dtls_open_result *result)
{
    return open_record(c, window, next_seq, rec, rec_len, cid_len, NULL, 0, 1, result);
}

/* ---- batches ---- */

int dtls_seal_batch(dtls_cipher *c, uint64_t epoch, unsigned flags, const uint8_t *cid,
                    size_t cid_len, size_t padding, dtls_seal_item *items, size_t n)
{
    int ok = 0;
    if (items == NULL)
        return n == 0 ? 0 : DTLS_ERR_ARGUMENT;
    for (size_t i = 0; i < n; i++) {
        dtls_seal_item *it = &items[i];
        it->result = dtls_seal(c, epoch, it->seq, flags, cid, cid_len, it->content_type,
                               it->payload, it->payload_len, padding, it->out, it->out_cap);
        if (it->result >= 0)
            ok++;
    }
    return ok;
}

/* The loop of dtls_seal_records and dtls_seal_run: sequence number seqs[i] (or seq + i
 * when seqs is NULL), content type content_types[i] (or content_type when NULL). */
static int seal_records(dtls_cipher *c, uint64_t epoch, unsigned flags, const uint8_t *cid,
                        size_t cid_len, size_t padding, const uint64_t *seqs, uint64_t seq,
                        const uint8_t *content_types, uint8_t content_type,
                        const uint8_t *payloads, size_t payloads_len,
                        const uint32_t *payload_lens, size_t n, uint8_t *out, size_t out_cap,
                        uint32_t *record_ends)
{
    if (n == 0)
        return 0;
    if (payload_lens == NULL || out == NULL || record_ends == NULL || n > INT32_MAX ||
        out_cap > UINT32_MAX)
        return DTLS_ERR_ARGUMENT;
    size_t in_pos = 0, out_pos = 0;
    for (size_t i = 0; i < n; i++) {
        size_t plen = payload_lens[i];
        if (plen > payloads_len - in_pos || (plen > 0 && payloads == NULL))
            return i == 0 ? DTLS_ERR_ARGUMENT : (int)i;
        /* dtls_seal refuses a sequence number past 2^48 - 1 (RFC 9147 §4.2.1) */
        if (seqs == NULL && seq + i < seq)
            return i == 0 ? DTLS_ERR_ARGUMENT : (int)i;
        int r = dtls_seal(c, epoch, seqs != NULL ? seqs[i] : seq + i, flags, cid, cid_len,
                          content_types != NULL ? content_types[i] : content_type,
                          plen > 0 ? payloads + in_pos : NULL, plen, padding, out + out_pos,
                          out_cap - out_pos);
        if (r < 0)
            return i == 0 ? r : (int)i;
        in_pos += plen;
        out_pos += (size_t)r;
        record_ends[i] = (uint32_t)out_pos;
    }
    return (int)n;
}

int dtls_seal_records(dtls_cipher *c, uint64_t epoch, unsigned flags, const uint8_t *cid,
                      size_t cid_len, size_t padding, const uint64_t *seqs,
                      const uint8_t *content_types, const uint8_t *payloads,
                      size_t payloads_len, const uint32_t *payload_lens, size_t n, uint8_t *out,
                      size_t out_cap, uint32_t *record_ends)
{
    if (n > 0 && (seqs == NULL || content_types == NULL))
        return DTLS_ERR_ARGUMENT;
    return seal_records(c, epoch, flags, cid, cid_len, padding, seqs, 0, content_types, 0,
                        payloads, payloads_len, payload_lens, n, out, out_cap, record_ends);
}

int dtls_seal_run(dtls_cipher *c, uint64_t epoch, uint64_t seq, unsigned flags,
                  const uint8_t *cid, size_t cid_len, uint8_t content_type, size_t padding,
                  const uint8_t *payloads, size_t payloads_len, const uint32_t *payload_lens,
                  size_t n, uint8_t *out, size_t out_cap, uint32_t *record_ends)
{
    return seal_records(c, epoch, flags, cid, cid_len, padding, NULL, seq, NULL, content_type,
                        payloads, payloads_len, payload_lens, n, out, out_cap, record_ends);
}

int dtls_open_batch(dtls_cipher *c, dtls_replay *window, size_t cid_len, dtls_open_item *items,
                    size_t n)
{
    int ok = 0;
    uint64_t next = 0;
    if (items == NULL)
        return n == 0 ? 0 : DTLS_ERR_ARGUMENT;
    for (size_t i = 0; i < n; i++) {
        dtls_open_item *it = &items[i];
        it->status = open_record(c, window, next, it->rec, it->rec_len, cid_len, it->out,
                                 it->out_cap, it->out == NULL, &it->result);
        if (it->status == 0) {
            ok++;
            if (it->result.seq + 1 > next)
                next = it->result.seq + 1;
        }
    }
    return ok;
}

int dtls_open_records(dtls_cipher *c, dtls_replay *window, uint64_t next_seq, size_t cid_len,
                      uint8_t *data, size_t data_len, const uint32_t *record_lens, size_t n,
                      uint64_t *seqs, uint8_t *content_types, uint32_t *plaintext_offsets,
                      uint32_t *plaintext_lens, int8_t *status)
{
    if (n == 0)
        return 0;
    if (c == NULL || data == NULL || record_lens == NULL || seqs == NULL ||
        content_types == NULL || plaintext_offsets == NULL || plaintext_lens == NULL ||
        status == NULL || n > INT32_MAX || data_len > UINT32_MAX)
        return DTLS_ERR_ARGUMENT;
    const dtls__open_columns out = {seqs, content_types, plaintext_offsets, plaintext_lens, status};
    size_t pos = 0;
    int ok = 0;
    uint64_t next = next_seq;
    for (size_t i = 0; i < n; i++) {
        size_t len = record_lens[i];
        if (len > data_len - pos)
            return DTLS_ERR_ARGUMENT;
        dtls_open_result res;
        int rc = open_record(c, window, next, data + pos, len, cid_len, NULL, 0, 1, &res);
        ok += dtls__store_opened(&out, i, pos, rc, &res, &next);
        pos += len;
    }
    return ok;
}

/* ---- the application epoch, one record per call ---- */

struct dtls_app_sender {
    dtls_cipher *cipher;
    uint64_t epoch;
    uint64_t records, bytes; /* sealed since the last dtls_app_sender_take */
    unsigned flags;
    size_t cid_len;
    uint8_t cid[]; /* cid_len bytes */
};

dtls_app_sender *dtls_app_sender_new(dtls_cipher *c, uint64_t epoch, const uint8_t *cid,
                                     size_t cid_len)
{
    if (c == NULL || cid_len > DTLS_MAX_CID || (cid == NULL && cid_len > 0))
        return NULL;
    dtls_app_sender *s = malloc(sizeof(*s) + cid_len);
    if (s == NULL)
        return NULL;
    s->cipher = c;
    s->epoch = epoch;
    s->records = s->bytes = 0;
    /* §4: the header this library sends; C=1 only with a CID (§9) */
    s->flags = DTLS_HDR_SEQ16 | DTLS_HDR_LENGTH | (cid_len ? DTLS_HDR_CID : 0u);
    s->cid_len = cid_len;
    if (cid_len)
        memcpy(s->cid, cid, cid_len);
    return s;
}

void dtls_app_sender_free(dtls_app_sender *s) { free(s); }

int dtls_app_seal(dtls_app_sender *s, uint64_t seq, const uint8_t *payload, size_t payload_len,
                  uint8_t *out, size_t out_cap)
{
    if (s == NULL)
        return DTLS_ERR_ARGUMENT;
    int r = dtls_seal(s->cipher, s->epoch, seq, s->flags, s->cid, s->cid_len,
                      23 /* application_data */, payload, payload_len, 0, out, out_cap);
    if (r >= 0) {
        s->records++;
        s->bytes += (uint64_t)r;
    }
    return r;
}

/* Hand out and reset a sender's or receiver's (records, bytes) counts. */
static void take_counts(uint64_t *records, uint64_t *bytes, uint64_t counts[2])
{
    counts[0] = *records;
    counts[1] = *bytes;
    *records = *bytes = 0;
}

void dtls_app_sender_take(dtls_app_sender *s, uint64_t counts[2])
{
    if (s != NULL && counts != NULL)
        take_counts(&s->records, &s->bytes, counts);
}

struct dtls_app_receiver {
    dtls_cipher *cipher;
    dtls_replay *window;
    dtls_open_result result;
    uint64_t records, bytes; /* opened (datagram bytes) since the last dtls_app_receiver_take */
    uint8_t bits;
    size_t cid_len;
    uint8_t cid[]; /* cid_len bytes */
};

dtls_app_receiver *dtls_app_receiver_new(dtls_cipher *c, dtls_replay *window, unsigned epoch_bits,
                                         const uint8_t *cid, size_t cid_len)
{
    if (c == NULL || window == NULL || epoch_bits > 3 || cid_len > DTLS_MAX_CID ||
        (cid == NULL && cid_len > 0))
        return NULL;
    dtls_app_receiver *r = calloc(1, sizeof(*r) + cid_len);
    if (r == NULL)
        return NULL;
    r->cipher = c;
    r->window = window;
    r->bits = (uint8_t)epoch_bits;
    r->cid_len = cid_len;
    if (cid_len)
        memcpy(r->cid, cid, cid_len);
    return r;
}

void dtls_app_receiver_free(dtls_app_receiver *r) { free(r); }

int dtls_app_open(dtls_app_receiver *r, const uint8_t *datagram, size_t datagram_len,
                  size_t max_plaintext, uint8_t *out, size_t out_cap)
{
    size_t len = datagram_len;
    if (r == NULL || datagram == NULL || len < 1)
        return DTLS_APP_GENERAL;
    uint8_t b = datagram[0];
    /* §4.1: 001CSLEE with our epoch bits, C exactly when a CID is in use (§9) */
    if ((b & 0xE0u) != 0x20u || (b & 3u) != r->bits ||
        ((b & DTLS_HDR_CID) != 0) != (r->cid_len > 0))
        return DTLS_APP_GENERAL;
    size_t hdr = unified_header_len(b, r->cid_len);
    if (len < hdr || (r->cid_len && memcmp(datagram + 1, r->cid, r->cid_len) != 0))
        return DTLS_APP_GENERAL;
    size_t ct_len = len - hdr;
    if ((b & DTLS_HDR_LENGTH) &&
        (((size_t)datagram[hdr - 2] << 8) | datagram[hdr - 1]) != ct_len)
        return DTLS_APP_GENERAL; /* not one record filling the datagram */
    if (ct_len < 16 || ct_len > DTLS_MAX_CIPHERTEXT)
        return DTLS_APP_GENERAL; /* malformed: the general path counts it */
    int rc = open_record(r->cipher, r->window, 0, datagram, len, r->cid_len, out, out_cap, 0,
                         &r->result);
    if (rc != 0)
        return rc == DTLS_ERR_MALFORMED || rc == DTLS_ERR_ARGUMENT ? DTLS_APP_GENERAL : rc;
    if (r->result.content_type != 23 || r->result.plaintext_len > max_plaintext)
        return DTLS_APP_OTHER;
    r->records++;
    r->bytes += len;
    return (int)r->result.plaintext_len;
}

void dtls_app_receiver_take(dtls_app_receiver *r, uint64_t counts[2])
{
    if (r != NULL && counts != NULL)
        take_counts(&r->records, &r->bytes, counts);
}

const dtls_open_result *dtls_app_result(const dtls_app_receiver *r)
{
    return r != NULL ? &r->result : NULL;
}
