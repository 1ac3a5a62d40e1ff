/* pool.c - a pool of datagram-sized slabs: one allocation up front, a LIFO free list,
 * no allocation on acquire or release. A spinlock makes it safe to share between threads
 * (cffi releases the GIL around every call).
 */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "dtls_native.h"

#define POOL_ALIGN 64u
#define POOL_MAX_SLAB (1u << 24)
#define POOL_MAX_COUNT (1u << 20)

struct dtls_pool {
    uint8_t *mem;         /* count slabs, stride bytes apart */
    size_t stride;        /* slab_size rounded up to POOL_ALIGN */
    uint32_t *free_list;  /* free slab indices; free_list[0 .. free_top) */
    uint8_t *in_use;      /* per slab: 1 while acquired */
    uint32_t free_top;
    dtls_pool_stats stats;
    atomic_flag lock;
};

static void pool_lock(dtls_pool *p)
{
    while (atomic_flag_test_and_set_explicit(&p->lock, memory_order_acquire))
        ;
}

static void pool_unlock(dtls_pool *p)
{
    atomic_flag_clear_explicit(&p->lock, memory_order_release);
}

dtls_pool *dtls_pool_new(size_t slab_size, size_t count)
{
    if (slab_size == 0 || slab_size > POOL_MAX_SLAB || count == 0 || count > POOL_MAX_COUNT)
        return NULL;
    size_t stride = (slab_size + POOL_ALIGN - 1) & ~(size_t)(POOL_ALIGN - 1);
    if (stride > SIZE_MAX / count)
        return NULL;
    dtls_pool *p = calloc(1, sizeof(*p));
    if (p == NULL)
        return NULL;
    atomic_flag_clear(&p->lock);
    p->stride = stride;
    p->mem = aligned_alloc(POOL_ALIGN, stride * count); /* stride * count is a multiple */
    p->free_list = malloc(count * sizeof(uint32_t));
    p->in_use = calloc(count, 1);
    if (p->mem == NULL || p->free_list == NULL || p->in_use == NULL) {
        dtls_pool_free(p);
        return NULL;
    }
    memset(p->mem, 0, stride * count);
    /* LIFO: slab 0 is handed out first */
    for (size_t i = 0; i < count; i++)
        p->free_list[i] = (uint32_t)(count - 1 - i);
    p->free_top = (uint32_t)count;
    p->stats.capacity = (uint32_t)count;
    p->stats.slab_size = (uint32_t)slab_size;
    return p;
}

void dtls_pool_free(dtls_pool *p)
{
    if (p == NULL)
        return;
    free(p->mem);
    free(p->free_list);
    free(p->in_use);
    free(p);
}

int dtls_pool_acquire(dtls_pool *p)
{
    if (p == NULL)
        return -1;
    int idx = -1;
    pool_lock(p);
    if (p->free_top == 0) {
        p->stats.misses++;
    } else {
        uint32_t i = p->free_list[--p->free_top];
        p->in_use[i] = 1;
        p->stats.acquired++;
        p->stats.in_use++;
        if (p->stats.in_use > p->stats.peak)
            p->stats.peak = p->stats.in_use;
        idx = (int)i;
    }
    pool_unlock(p);
    return idx;
}

int dtls_pool_release(dtls_pool *p, int idx)
{
    if (p == NULL || idx < 0 || (uint32_t)idx >= p->stats.capacity)
        return DTLS_ERR_ARGUMENT;
    int rc = 0;
    pool_lock(p);
    if (!p->in_use[idx]) {
        rc = DTLS_ERR_ARGUMENT; /* not acquired: a double release */
    } else {
        p->in_use[idx] = 0;
        p->free_list[p->free_top++] = (uint32_t)idx;
        p->stats.released++;
        p->stats.in_use--;
    }
    pool_unlock(p);
    return rc;
}

uint8_t *dtls_pool_slab(dtls_pool *p, int idx)
{
    if (p == NULL || idx < 0 || (uint32_t)idx >= p->stats.capacity)
        return NULL;
    return p->mem + (size_t)idx * p->stride;
}

void dtls_pool_get_stats(const dtls_pool *p, dtls_pool_stats *stats)
{
    if (p == NULL || stats == NULL)
        return;
    dtls_pool *q = (dtls_pool *)(uintptr_t)p; /* the lock is not part of the value */
    pool_lock(q);
    *stats = p->stats;
    pool_unlock(q);
}
