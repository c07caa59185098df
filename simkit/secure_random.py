"""Random bytes for identifiers drawn on every request, without a system call each time.

`os.urandom` asks the kernel for every call, and CPython lets go of the interpreter lock
around that call. On a busy server the lock then goes to another thread that wants it (the
batch writer, most often) and the request waits to get it back: a thread switch each way
for every QR code issued, which cost the QR Code API more than drawing the bytes did. Here
the kernel's random bytes are drawn a few kilobytes at a time and handed out in order,
each byte once. They are the same bytes `os.urandom` gives (the kernel's CSPRNG), only fetched
in bulk; a forked worker throws away what its parent drew, so no two processes ever hand out
the same bytes.
"""

from __future__ import annotations

import os
import threading

POOL_BYTES = 4096  # one system call per 256 QR codes (16 random bytes each)


class _SecureBytes:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._forget()
        os.register_at_fork(after_in_child=self._after_fork)

    def _forget(self) -> None:
        self._pool = b""
        self._used = 0

    def _after_fork(self) -> None:
        self._lock = threading.Lock()  # a lock held by another thread at fork stays held
        self._forget()

    def take(self, size: int) -> bytes:
        """`size` bytes from the kernel's CSPRNG that no other caller was given."""
        if size > POOL_BYTES // 4:
            return os.urandom(size)
        with self._lock:
            start = self._used
            if start + size > len(self._pool):
                self._pool, start = os.urandom(POOL_BYTES), 0
            self._used = start + size
            return self._pool[start:start + size]


secure_bytes = _SecureBytes().take
