/* replay.c - the anti-replay sliding window (RFC 9147 §4.5.1, after RFC 4303 §3.4.3).
 *
 * A ring of 64-bit blocks indexed by (seq / 64) mod blocks, as in RFC 6479: moving the right
 * edge clears only the blocks it enters, so marking and checking are O(1) for any size.
 * The ring has one block more than the window (rounded up to a power of two), so every
 * sequence number inside the window has a block of its own.
 */
#include <stdlib.h>
#include <string.h>

#include "dtls_native.h"

#define REPLAY_MAX_BITS 65536u

struct dtls_replay {
    uint64_t top;     /* highest sequence number marked */
    uint32_t size;    /* window width in bits, a multiple of 64 */
    uint32_t blocks;  /* ring length, a power of two > size / 64 */
    uint8_t any;      /* anything marked since creation or reset */
    uint64_t bits[];  /* the ring */
};

dtls_replay *dtls_replay_new(uint32_t size_bits)
{
    if (size_bits == 0 || size_bits > REPLAY_MAX_BITS)
        return NULL;
    uint32_t size = (size_bits + 63u) & ~63u;
    uint32_t blocks = 2;
    while (blocks < size / 64u + 1u)
        blocks <<= 1;
    dtls_replay *w = calloc(1, sizeof(*w) + (size_t)blocks * sizeof(uint64_t));
    if (w == NULL)
        return NULL;
    w->size = size;
    w->blocks = blocks;
    return w;
}

void dtls_replay_free(dtls_replay *w) { free(w); }

void dtls_replay_reset(dtls_replay *w)
{
    if (w == NULL)
        return;
    w->top = 0;
    w->any = 0;
    memset(w->bits, 0, (size_t)w->blocks * sizeof(uint64_t));
}

static inline size_t block_index(const dtls_replay *w, uint64_t seq)
{
    return (size_t)((seq >> 6) & (uint64_t)(w->blocks - 1u));
}

int dtls_replay_check(const dtls_replay *w, uint64_t seq)
{
    if (w == NULL)
        return DTLS_ERR_ARGUMENT;
    if (!w->any || seq > w->top)
        return 0; /* right of the window: new */
    if (w->top - seq >= w->size)
        return DTLS_ERR_REPLAYED; /* left of the window: too old */
    return (w->bits[block_index(w, seq)] >> (seq & 63u)) & 1u ? DTLS_ERR_REPLAYED : 0;
}

void dtls_replay_mark(dtls_replay *w, uint64_t seq)
{
    if (w == NULL)
        return;
    if (!w->any) {
        w->any = 1;
        w->top = seq;
    } else if (seq > w->top) {
        uint64_t old_block = w->top >> 6, new_block = seq >> 6;
        if (new_block - old_block >= w->blocks) {
            memset(w->bits, 0, (size_t)w->blocks * sizeof(uint64_t));
        } else {
            for (uint64_t b = old_block + 1; b <= new_block; b++)
                w->bits[block_index(w, b << 6)] = 0;
        }
        w->top = seq;
    } else if (w->top - seq >= w->size) {
        return; /* behind the window: nothing to remember */
    }
    w->bits[block_index(w, seq)] |= UINT64_C(1) << (seq & 63u);
}

uint64_t dtls_replay_next(const dtls_replay *w)
{
    return (w != NULL && w->any) ? w->top + 1 : 0;
}
