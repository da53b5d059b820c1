import threading

import numpy as np

from deadtree.buffers import BufferPool, Scratch


def test_a_returned_block_serves_any_later_array_that_fits_in_it():
    pool = BufferPool()
    first = pool.take((4, 8, 8), np.float32)
    pool.give_back(first)
    narrower = pool.take((4, 8, 5), np.float32)  # an edge tile: fits in the full tile's block
    assert narrower.shape == (4, 8, 5) and narrower.dtype == np.float32 and narrower.flags.c_contiguous
    assert np.shares_memory(narrower, first)
    assert not np.shares_memory(pool.take((4, 8, 8), np.float32), first)  # the block is taken: a new one
    pool.give_back(narrower)
    as_bytes = pool.take((4, 8, 8), np.uint8)
    assert np.shares_memory(as_bytes, first)
    pool.give_back(as_bytes)
    larger = pool.take((4, 8, 9), np.float32)  # does not fit
    assert not np.shares_memory(larger, first)


def test_the_smallest_block_that_fits_is_handed_out():
    pool = BufferPool()
    big, small = pool.take((100,), np.uint8), pool.take((10,), np.uint8)
    pool.give_back(big)
    pool.give_back(small)
    assert np.shares_memory(pool.take((8,), np.uint8), small)
    assert np.shares_memory(pool.take((8,), np.uint8), big)


def test_the_pool_keeps_at_most_its_limit_and_never_one_block_twice():
    pool = BufferPool(keep=2)
    arrays = [pool.take((4,), np.uint8) for _ in range(3)]
    for a in arrays:
        pool.give_back(a)
    pool.give_back(arrays[0])  # twice: kept once
    held = [pool.take((4,), np.uint8) for _ in range(3)]
    assert sum(any(np.shares_memory(h, a) for a in arrays) for h in held) == 2
    assert not any(np.shares_memory(h, k) for i, h in enumerate(held) for k in held[i + 1:])


def test_arrays_the_pool_did_not_hand_out_are_not_taken_in():
    pool = BufferPool()
    foreign = np.zeros(64, np.uint8)
    pool.give_back(foreign)
    pool.give_back(foreign[:32])  # a view of memory the caller still owns
    assert not np.shares_memory(pool.take((16,), np.uint8), foreign)


def test_threads_never_share_an_array_they_hold():
    pool, held, lock, clashes = BufferPool(), set(), threading.Lock(), []

    def work():
        for _ in range(200):
            a = pool.take((8,), np.float32)
            with lock:
                if a.base is None or id(a.base) in held:  # ids are unique among blocks alive at once
                    clashes.append(a)
                held.add(id(a.base))
            with lock:
                held.remove(id(a.base))
            pool.give_back(a)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert clashes == []


def test_scratch_arrays_share_their_name_s_buffer_and_grow_when_needed():
    scratch = Scratch()
    a = scratch.get("values", (4, 5), np.float32)
    b = scratch.get("values", (2, 5), np.float32)
    assert b.shape == (2, 5) and b.dtype == np.float32 and np.shares_memory(a, b)
    assert not np.shares_memory(scratch.get("codes", (4, 5), np.uint8), a)
    c = scratch.get("values", (40, 50), np.float32)  # larger: a new buffer
    c[...] = 1.5
    assert c.shape == (40, 50) and (c == 1.5).all()
