"""The buffer pool: slabs as memoryviews over one allocation, a free list, statistics."""

from __future__ import annotations

import gc
import threading

import pytest

from dtls._native import ffi, lib
from dtls.record import BufferPool, PoolStats


def test_acquire_release_and_stats() -> None:
    pool = BufferPool(slab_size=1500, count=4)
    assert pool.stats() == PoolStats(0, 0, 0, 0, 0, 4, 1500)
    got = [pool.acquire() for _ in range(4)]
    assert all(g is not None for g in got)
    indices = [g[0] for g in got]  # type: ignore[index]
    assert sorted(indices) == [0, 1, 2, 3]
    assert pool.acquire() is None  # a miss
    assert pool.acquire() is None
    stats = pool.stats()
    assert (stats.acquired, stats.misses, stats.in_use, stats.peak) == (4, 2, 4, 4)
    pool.release(indices[1])
    pool.release(indices[3])
    again = pool.acquire()
    assert again is not None and again[0] == indices[3]  # LIFO: the warmest slab first
    stats = pool.stats()
    assert (stats.acquired, stats.released, stats.in_use, stats.peak) == (5, 2, 3, 4)
    for i in (indices[0], indices[2], indices[3]):
        pool.release(i)
    assert pool.stats().in_use == 0 and pool.stats().peak == 4


def test_bad_releases() -> None:
    pool = BufferPool(64, 2)
    slab = pool.acquire()
    assert slab is not None
    pool.release(slab[0])
    with pytest.raises(ValueError):
        pool.release(slab[0])  # twice
    for bad in (-1, 2, 1000):
        with pytest.raises(ValueError):
            pool.release(bad)
    assert pool.stats().released == 1
    for args in ((0, 4), (64, 0), (2**25, 1)):
        with pytest.raises(ValueError):
            BufferPool(*args)


def test_slabs_are_views_of_distinct_memory() -> None:
    pool = BufferPool(slab_size=100, count=8)
    slabs = [pool.acquire() for _ in range(8)]
    for index, view in slabs:  # type: ignore[misc]
        assert isinstance(view, memoryview) and len(view) == 100 and not view.readonly
        view[:] = bytes([index]) * 100
    for index, view in slabs:  # type: ignore[misc]
        assert bytes(view) == bytes([index]) * 100  # no slab overlaps another
        assert pool.view(index) is view  # the same view every time: no copies
        # the view is the C slab itself
        assert ffi.buffer(lib.dtls_pool_slab(pool._pool, index), 100)[:] == bytes(view)
    # alignment of every slab (64 bytes)
    for i in range(8):
        assert int(ffi.cast("uintptr_t", lib.dtls_pool_slab(pool._pool, i))) % 64 == 0
    assert lib.dtls_pool_slab(pool._pool, 8) == ffi.NULL


def test_views_outlive_the_pool_object() -> None:
    pool = BufferPool(32, 2)
    got = pool.acquire()
    assert got is not None
    view = got[1]
    view[:5] = b"hello"
    del pool, got
    gc.collect()
    view[5:10] = b"world"  # the memory is still the pool's, kept alive by the view
    assert bytes(view[:10]) == b"helloworld"


def test_threads_share_a_pool() -> None:
    pool = BufferPool(16, 64)
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            for _ in range(2000):
                got = pool.acquire()
                if got is not None:
                    index, view = got
                    view[0] = index % 256
                    assert view[0] == index % 256
                    pool.release(index)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    stats = pool.stats()
    assert stats.in_use == 0 and stats.acquired == stats.released
    assert stats.acquired + stats.misses == 4 * 2000
