import threading

import numpy as np

from deadtree.buffers import BufferPool, Scratch


def test_a_returned_array_is_handed_out_again_for_its_shape_and_dtype_only():
    pool = BufferPool()
    first = pool.take((2, 3), np.float32)
    pool.give_back(first)
    assert pool.take((2, 4), np.float32) is not first
    assert pool.take((2, 3), np.float64) is not first
    assert pool.take((2, 3), np.float32) is first
    assert pool.take((2, 3), np.float32) is not first  # taken already: a new one


def test_the_pool_keeps_at_most_its_limit_and_never_one_array_twice():
    pool = BufferPool(keep=2)
    arrays = [pool.take((4,), np.uint8) for _ in range(3)]
    for a in arrays:
        pool.give_back(a)
    pool.give_back(arrays[0])
    held = [pool.take((4,), np.uint8) for _ in range(3)]
    assert sum(any(h is a for a in arrays) for h in held) == 2
    assert len({id(h) for h in held}) == 3


def test_threads_never_share_an_array_they_hold():
    pool, held, lock, clashes = BufferPool(), set(), threading.Lock(), []

    def work():
        for _ in range(200):
            a = pool.take((8,), np.float32)
            with lock:
                if id(a) in held:  # ids are unique among arrays alive at once, and held ones are alive
                    clashes.append(a)
                held.add(id(a))
            with lock:
                held.remove(id(a))
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
