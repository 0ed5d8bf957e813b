"""The C-heap trimmer: found on glibc, and returning memory that was freed but kept."""

from __future__ import annotations

import ctypes

from controller.memory import heap_trimmer


def rss_kib() -> int:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))


def test_the_trimmer_gives_freed_heap_memory_back() -> None:
    trim = heap_trimmer()
    assert trim is not None  # this project runs on glibc (Debian)
    libc = ctypes.CDLL(None)
    libc.malloc.restype = ctypes.c_void_p
    libc.free.argtypes = [ctypes.c_void_p]
    # Many small blocks (below mmap's threshold, so on the heap), then all but the last freed: the
    # last one pins the heap's top, so glibc keeps the freed memory until trimmed.
    blocks = [libc.malloc(64 * 1024) for _ in range(400)]
    for block in blocks:
        ctypes.memset(block, 1, 64 * 1024)
    for block in blocks[:-1]:
        libc.free(block)
    before = rss_kib()
    trim()
    after = rss_kib()
    libc.free(blocks[-1])
    assert before - after > 10 * 1024  # of the ~25 MiB freed, well over 10 MiB went back
