/* bench.c - loops for bench/bench_record.py: the cost of the record layer inside C, and
 * the floor it is compared with (a plain AEAD seal through the same libcrypto calls).
 */
#include <string.h>

#include "dtls_internal.h"

int dtls_bench_raw_aead_seal(dtls_cipher *c, const uint8_t *aad, size_t aad_len,
                             const uint8_t *payload, size_t payload_len, uint8_t *out,
                             size_t out_cap, uint64_t n)
{
    if (c == NULL || aad == NULL || payload == NULL || out == NULL ||
        aad_len > DTLS_MAX_UNIFIED_HDR || payload_len > DTLS_MAX_INNER ||
        out_cap < payload_len + c->tag_len)
        return DTLS_ERR_ARGUMENT;
    uint8_t nonce[DTLS_NONCE_LEN];
    for (uint64_t i = 0; i < n; i++) {
        dtls__nonce(c, i, nonce);
        if (!dtls__aead_seal(c, nonce, aad, aad_len, payload, payload_len, out,
                             out + payload_len))
            return DTLS_ERR_CRYPTO;
    }
    return 0;
}

int dtls_bench_seal(dtls_cipher *c, unsigned flags, const uint8_t *payload, size_t payload_len,
                    uint8_t *out, size_t out_cap, uint64_t n)
{
    static const uint8_t cid[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    size_t cid_len = (flags & DTLS_HDR_CID) ? sizeof(cid) : 0;
    for (uint64_t i = 0; i < n; i++) {
        int r = dtls_seal(c, 3, i & DTLS_MAX_SEQ, flags, cid, cid_len, 23, payload, payload_len,
                          0, out, out_cap);
        if (r < 0)
            return r;
    }
    return 0;
}

int dtls_bench_open(dtls_cipher *c, const uint8_t *rec, size_t rec_len, uint8_t *out,
                    size_t out_cap, uint64_t n)
{
    dtls_open_result res;
    for (uint64_t i = 0; i < n; i++) {
        int r = dtls_open(c, NULL, 0, rec, rec_len, 0, out, out_cap, &res);
        if (r < 0)
            return r;
    }
    return 0;
}

int dtls_bench_frame_mask(dtls_cipher *c, unsigned flags, uint8_t *out, size_t out_cap,
                          uint64_t n)
{
    if (c == NULL || out == NULL || out_cap < 1 + 2 + 2 + 16 || (flags & DTLS_HDR_CID))
        return DTLS_ERR_ARGUMENT;
    uint8_t mask[16];
    size_t hdr_len = 1 + ((flags & DTLS_HDR_SEQ16) ? 2 : 1) + ((flags & DTLS_HDR_LENGTH) ? 2 : 0);
    for (uint64_t i = 0; i < n; i++) {
        /* what dtls_seal does besides the AEAD: header, tail, nonce, mask */
        uint8_t *p = out;
        *p++ = (uint8_t)(0x20u | flags | 3u);
        uint8_t *seq_pos = p;
        if (flags & DTLS_HDR_SEQ16)
            *p++ = (uint8_t)(i >> 8);
        *p++ = (uint8_t)i;
        if (flags & DTLS_HDR_LENGTH) {
            *p++ = 0;
            *p++ = 16;
        }
        out[hdr_len] = (uint8_t)(i | 1u); /* stands in for the first ciphertext byte */
        uint8_t nonce[DTLS_NONCE_LEN];
        dtls__nonce(c, i, nonce);
        out[hdr_len + 1] ^= nonce[11];
        if (!dtls__sn_mask(c, out + hdr_len, mask))
            return DTLS_ERR_CRYPTO;
        seq_pos[0] ^= mask[0];
        if (flags & DTLS_HDR_SEQ16)
            seq_pos[1] ^= mask[1];
    }
    return 0;
}
