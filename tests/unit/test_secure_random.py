"""Random bytes drawn in bulk: each byte handed out once, across threads and forked workers."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

from simkit.secure_random import POOL_BYTES, secure_bytes


def test_every_draw_is_new_bytes_of_the_size_asked() -> None:
    draws = [secure_bytes(16) for _ in range(3 * POOL_BYTES // 16)]  # across three pools
    assert all(len(draw) == 16 for draw in draws)
    assert len(set(draws)) == len(draws)


def test_threads_drawing_at_once_never_get_the_same_bytes() -> None:
    with ThreadPoolExecutor(max_workers=8) as pool:
        draws = list(pool.map(lambda _: secure_bytes(16), range(8 * POOL_BYTES // 16)))
    assert len(set(draws)) == len(draws)


def test_a_forked_worker_never_hands_out_what_its_parent_will() -> None:
    secure_bytes(16)  # the parent holds a pool with bytes still to hand out
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report its first draw and leave at once
        os.write(write_end, secure_bytes(16))
        os._exit(0)
    os.close(write_end)
    childs = os.read(read_end, 16)
    os.close(read_end)
    os.waitpid(pid, 0)
    assert len(childs) == 16
    assert childs != secure_bytes(16)


def test_a_large_draw_is_served_whole() -> None:
    big = secure_bytes(POOL_BYTES)
    assert len(big) == POOL_BYTES
    assert big != secure_bytes(POOL_BYTES)
