"""One sweep process per store: an exclusive, non-blocking ``flock`` on ``STORE.lock``.

The lock file sits beside the store; the kernel drops the lock when the process dies (even by
SIGKILL), so a crashed run never leaves a stale lock behind.
"""

from __future__ import annotations

import fcntl
import os
from contextlib import contextmanager
from pathlib import Path

__all__ = ["StoreLocked", "store_lock"]


class StoreLocked(RuntimeError):
    """Another process is running a sweep on this store."""


@contextmanager
def store_lock(path: str | os.PathLike):
    """Hold the store's lock for the duration of the block, or raise :class:`StoreLocked`."""
    path = Path(path)
    lock_path = path.with_name(path.name + ".lock")
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip()
            raise StoreLocked(f"another sweep is writing {path} ({holder or 'pid unknown'}); "
                              "refusing to run two writers on one store") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {os.uname().nodename}\n".encode(), 0)
        yield
    finally:
        os.close(fd)
