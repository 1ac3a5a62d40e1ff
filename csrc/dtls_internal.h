/* dtls_internal.h - definitions shared by the C files of the record layer; not part of the API.
 */
#ifndef DTLS_INTERNAL_H
#define DTLS_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>

#include "dtls_native.h"

#define DTLS_MAX_SEQ ((UINT64_C(1) << 48) - 1)   /* RFC 9147 §4: 48-bit sequence numbers */
#define DTLS_MAX_PLAINTEXT 16384u                /* RFC 9846 §5.1: 2^14 */
#define DTLS_MAX_INNER (DTLS_MAX_PLAINTEXT + 1u) /* RFC 9846 §5.4: TLSInnerPlaintext limit */
#define DTLS_MAX_CIPHERTEXT (DTLS_MAX_PLAINTEXT + 256u) /* RFC 9846 §5.2 */
#define DTLS_MAX_CID 255u                               /* RFC 9146 §3: opaque cid<0..2^8-1> */
#define DTLS_MAX_UNIFIED_HDR (1u + DTLS_MAX_CID + 2u + 2u)
#define DTLS_NONCE_LEN 12u

enum dtls_aead_kind { DTLS_AEAD_GCM = 1, DTLS_AEAD_CHACHA = 2, DTLS_AEAD_CCM = 3 };

struct dtls_cipher {
    /* The record AEAD, keyed once per direction on first use (an epoch is sealed or
     * opened, rarely both); per record only the nonce changes. One context per direction:
     * OpenSSL binds some AEAD contexts (CCM) to a direction when keyed. */
    EVP_CIPHER_CTX *seal_ctx;
    EVP_CIPHER_CTX *open_ctx;
    const EVP_CIPHER *aead;
    uint8_t key[32]; /* for the direction not keyed yet; wiped with the cipher */
    EVP_CIPHER_CTX *sn_ecb;     /* record-number encryption with AES-ECB (RFC 9147 §4.2.3) */
    uint32_t sn_chacha_key[8];  /* ... or with the ChaCha20 block function (RFC 8439 §2.3) */
    uint16_t suite;
    uint8_t kind;    /* enum dtls_aead_kind */
    uint8_t tag_len; /* 16, or 8 for CCM_8 */
    uint8_t whole_iv_param; /* the nonce goes in by EVP_CIPHER_CTX_set_params (record.c) */
    uint8_t iv[DTLS_NONCE_LEN];
};

/* The AEAD context of one direction (enc: sealing), keyed on first use; NULL on failure. */
EVP_CIPHER_CTX *dtls__key_direction(dtls_cipher *c, int enc);
static inline EVP_CIPHER_CTX *dtls__aead_ctx(dtls_cipher *c, int enc)
{
    EVP_CIPHER_CTX *a = enc ? c->seal_ctx : c->open_ctx;
    return a != NULL ? a : dtls__key_direction(c, enc);
}

/* The AEAD key length of a cipher suite, 16 or 32 (RFC 9846 Appendix B.4); 0 if unknown. */
size_t dtls__suite_key_len(uint16_t suite);

/* AEAD-seal in_len bytes (in may equal ct) with additional data aad; writes in_len bytes of
 * ciphertext to ct and tag_len bytes of tag to tag. Returns 1 on success, 0 on failure. */
int dtls__aead_seal(dtls_cipher *c, const uint8_t nonce[DTLS_NONCE_LEN], const uint8_t *aad,
                    size_t aad_len, const uint8_t *in, size_t in_len, uint8_t *ct, uint8_t *tag);

/* nonce = iv XOR pad_left(seq, 12) (RFC 9846 §5.3). */
static inline void dtls__nonce(const dtls_cipher *c, uint64_t seq, uint8_t nonce[DTLS_NONCE_LEN])
{
    for (unsigned i = 0; i < 4; i++)
        nonce[i] = c->iv[i];
    for (unsigned i = 0; i < 8; i++)
        nonce[4 + i] = (uint8_t)(c->iv[4 + i] ^ (uint8_t)(seq >> (56 - 8 * i)));
}

/* Mask of RFC 9147 §4.2.3 from the 16-byte ciphertext sample. Returns 1 on success. */
int dtls__sn_mask(dtls_cipher *c, const uint8_t sample[16], uint8_t mask[16]);

/* The per-record result arrays of the batch opens (dtls_open_records, dtls_open_segments). */
typedef struct {
    uint64_t *seqs;
    uint8_t *content_types;
    uint32_t *plaintext_offsets; /* from the start of the caller's buffer */
    uint32_t *plaintext_lens;
    int8_t *status;
} dtls__open_columns;

/* Store record i's outcome (rc, res) for a record at offset `at` of the caller's buffer: a
 * failed record gets 0, 0, its own offset, 0. Moves *next past an opened record's number
 * (the reconstruction base without a window). Returns 1 when the record opened. */
static inline int dtls__store_opened(const dtls__open_columns *out, size_t i, size_t at, int rc,
                                     const dtls_open_result *res, uint64_t *next)
{
    out->status[i] = (int8_t)rc;
    if (rc != 0) {
        out->seqs[i] = 0;
        out->content_types[i] = 0;
        out->plaintext_offsets[i] = (uint32_t)at;
        out->plaintext_lens[i] = 0;
        return 0;
    }
    out->seqs[i] = res->seq;
    out->content_types[i] = res->content_type;
    out->plaintext_offsets[i] = (uint32_t)(at + res->header_len);
    out->plaintext_lens[i] = res->plaintext_len;
    if (res->seq + 1 > *next)
        *next = res->seq + 1;
    return 1;
}

#endif
