"""One sweep process per store, across nodes: the lock file ``STORE.lock`` beside the store.

A sweep writes its store only while it holds this lock. The lock must hold where the store
lives, which on a cluster is a shared filesystem (NFS, Lustre, GPFS) seen by several login and
compute nodes at once; ``flock`` alone is node-local or unsupported on many such mounts, so the
lock is a file whose existence is the lock:

* **Atomic creation.** The holder's record (host, pid, process start time, SLURM job id, a
  random token, start time and heartbeat) is written to a private temporary file in the store's
  directory and hard-linked to ``STORE.lock``. ``link`` fails if the name exists, atomically on
  every POSIX filesystem including NFS (where the link count of the private file confirms a
  link whose reply was lost), so of two clients racing on two nodes exactly one creates the lock,
  and the lock file never exists half-written.
* **Heartbeat.** While the lock is held a background thread rewrites the record's heartbeat
  (wall-clock time, s since the epoch) every ``heartbeat_interval_s`` seconds. Before each
  refresh it checks that the lock file is still its own; if another client has taken it over,
  a warning is logged at once and leaving the ``with`` block raises :class:`StoreLocked`.
* **Refusal.** A live lock held by anyone else is refused with :class:`StoreLocked`, naming its
  host, pid, SLURM job id and the age of its last heartbeat.
* **Staleness.** A lock on another host (another host name, or another kernel boot id) is
  stale once its heartbeat is older than ``stale_after_s`` seconds; a lock on this host is
  stale at once when its process is gone
  (its ``flock`` is free, its pid is dead or a zombie, or the pid now belongs to a process with
  another start time). A stale lock is taken over with a logged warning naming the old holder:
  it is removed only by the holder of a second, short-lived lock file ``STORE.lock.break``
  (made the same way) after checking that the name still holds the very file judged stale, so
  of several clients taking over at once exactly one wins.
* **Same-node guard.** The holder also keeps an exclusive ``flock`` on the lock file where the
  filesystem grants one, so another process on the same node sees a live holder without
  trusting pids; where ``flock`` is refused the lock works without it.
* **Release** stops the heartbeat and removes the lock file (only if it is still this
  holder's).

Heartbeat ages compare the holder's clock with the reader's, so ``stale_after_s`` must exceed
the clock skew between nodes (NTP keeps it well below a second). Both times are Dask config
keys (``sweep.lock.heartbeat_interval_s``, ``sweep.lock.stale_after_s``; env
``DASK_SWEEP__LOCK__HEARTBEAT_INTERVAL_S``, ``DASK_SWEEP__LOCK__STALE_AFTER_S``; numbers in
seconds or strings like ``"2 minutes"``), defaulting to :data:`HEARTBEAT_INTERVAL_S` and
:data:`STALE_AFTER_S`; the bound must be at least :data:`MIN_BEATS_PER_BOUND` heartbeats.
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import secrets
import socket
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

__all__ = ["HEARTBEAT_INTERVAL_S", "STALE_AFTER_S", "MIN_BEATS_PER_BOUND", "LockHolder",
           "LockUnavailable", "StoreLock", "StoreLockError", "StoreLocked", "lock_path",
           "lock_settings", "read_holder", "store_lock"]

log = logging.getLogger(__name__)

#: Default seconds between two heartbeats of a held lock (Dask config
#: ``sweep.lock.heartbeat_interval_s``).
HEARTBEAT_INTERVAL_S = 15.0
#: Default age in seconds after which a heartbeat from another host marks its lock stale (Dask
#: config ``sweep.lock.stale_after_s``): a client on another node that died is taken over this
#: long after its last heartbeat.
STALE_AFTER_S = 120.0
#: The staleness bound must span at least this many heartbeat intervals, so that a few late
#: heartbeats (a loaded node, a slow filesystem) never make a live lock look stale.
MIN_BEATS_PER_BOUND = 4

#: Attempts at creating the lock before giving up (each failed attempt means another client
#: created, took over or removed the lock in between).
_ATTEMPTS = 20
#: Length of a lock record (one JSON line padded with spaces; a hostname has at most 255 bytes).
_RECORD_BYTES = 1024
#: Errors of ``flock`` that mean the filesystem does not offer it (the lock then works without).
_NO_FLOCK = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EINVAL, errno.ENOSYS,
             errno.EBADF}


class StoreLockError(RuntimeError):
    """The store's lock cannot be taken (base of :class:`StoreLocked`, :class:`LockUnavailable`)."""


class StoreLocked(StoreLockError):
    """Another process is running a sweep on this store (or took the lock over from this one)."""


class LockUnavailable(StoreLockError):
    """The filesystem refuses what the lock needs (creating files, hard links), or the lock
    settings are invalid."""


@dataclass(frozen=True)
class LockHolder:
    """Who holds (or held) a lock, as its lock file records it.

    ``heartbeat`` is wall-clock seconds since the epoch of the holder's last refresh (the lock
    file's modification time where the record names none); ``proc_start`` the holder process's
    start time in clock ticks since boot (Linux ``/proc/PID/stat`` field 22), which tells a
    live holder from an unrelated process that reuses its pid; ``flock`` whether the holder
    keeps an ``flock`` on the file.
    """

    host: str | None
    pid: int | None
    slurm_job_id: str | None
    heartbeat: float
    started: float | None = None
    proc_start: str | None = None
    token: str | None = None
    flock: bool = False
    boot_id: str | None = None

    def on_this_host(self) -> bool:
        """Whether the holder runs on this machine: the same host name and, where both sides
        record one, the same kernel boot id (so that nodes sharing a host name, as some
        container setups do, are not mistaken for one another)."""
        mine = _boot_id()
        return (self.host == _hostname()
                and (self.boot_id is None or mine is None or self.boot_id == mine))

    def describe(self, now: float | None = None) -> str:
        """``pid 123 on node7, SLURM job 4567, last heartbeat 3 s ago``."""
        now = time.time() if now is None else now
        age = now - self.heartbeat
        who = f"pid {self.pid if self.pid is not None else 'unknown'} on " \
              f"{self.host or 'an unknown host'}"
        job = f"SLURM job {self.slurm_job_id}" if self.slurm_job_id else "no SLURM job"
        beat = (f"last heartbeat {age:.0f} s ago" if age >= 0
                else f"last heartbeat {-age:.0f} s in the future (clocks differ)")
        return f"{who}, {job}, {beat}"


def lock_path(path: str | os.PathLike) -> Path:
    """The lock file of a store: ``STORE.lock`` beside it."""
    path = Path(path)
    return path.with_name(path.name + ".lock")


def lock_settings() -> tuple[float, float]:
    """``(heartbeat_interval_s, stale_after_s)`` from the Dask config, validated.

    Raises :class:`LockUnavailable` naming the key of a value that is not a positive time or a
    bound shorter than :data:`MIN_BEATS_PER_BOUND` heartbeats.
    """
    import dask.config  # noqa: PLC0415
    from dask.utils import parse_timedelta  # noqa: PLC0415

    values = {}
    for key, default in (("sweep.lock.heartbeat_interval_s", HEARTBEAT_INTERVAL_S),
                         ("sweep.lock.stale_after_s", STALE_AFTER_S)):
        raw = dask.config.get(key, default)
        try:
            value = float(parse_timedelta(raw, default="seconds"))
        except (TypeError, ValueError, KeyError):
            raise LockUnavailable(f"{key} = {raw!r} is not a time (seconds or e.g. '2 minutes')"
                                  ) from None
        if not value > 0 or value == float("inf"):
            raise LockUnavailable(f"{key} = {raw!r} must be a finite positive time")
        values[key] = value
    interval, stale = values.values()
    if stale < MIN_BEATS_PER_BOUND * interval:
        raise LockUnavailable(
            f"sweep.lock.stale_after_s = {stale:g} s must be at least {MIN_BEATS_PER_BOUND} "
            f"heartbeats (sweep.lock.heartbeat_interval_s = {interval:g} s), or a live lock "
            "with a few late heartbeats would be taken over")
    return interval, stale


# --------------------------------------------------------------------------- records

def _proc_start(pid: int) -> tuple[str, str] | None:
    """``(state, start time in ticks)`` of a process from ``/proc``; None where unavailable."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read().decode(errors="replace")
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2:].split()  # the name in parentheses may hold spaces
    if len(fields) < 20:
        return None
    return fields[0], fields[19]


def _boot_id() -> str | None:
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip() or None
    except OSError:
        return None


def _job_id() -> str | None:
    return os.environ.get("SLURM_JOB_ID") or None


def _hostname() -> str:
    return socket.gethostname()


def _record(token: str, started: float, heartbeat: float, flock: bool) -> bytes:
    proc = _proc_start(os.getpid())
    line = json.dumps({"host": _hostname(), "pid": os.getpid(), "slurm_job_id": _job_id(),
                       "boot_id": _boot_id(), "proc_start": proc[1] if proc else None,
                       "token": token,
                       "started": started, "heartbeat": heartbeat, "flock": flock,
                       "heartbeat_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                      time.gmtime(heartbeat))})
    # padded to a fixed length, so a heartbeat rewrites the same bytes in place and a reader
    # never sees the tail of a longer earlier record
    return (line.ljust(_RECORD_BYTES - 1) + "\n").encode()


def _parse(text: bytes, mtime: float) -> LockHolder:
    """The holder a lock file's bytes record. Unreadable bytes give an unknown holder whose
    heartbeat is the file's modification time; the one-line ``pid N on HOST`` of earlier
    versions of this module is read as such, with that heartbeat and an ``flock``."""
    s = text.decode(errors="replace").strip()
    try:
        d = json.loads(s)
        if isinstance(d, dict):
            hb = d.get("heartbeat")
            return LockHolder(
                host=d.get("host"), pid=int(d["pid"]) if d.get("pid") is not None else None,
                slurm_job_id=(str(d["slurm_job_id"]) if d.get("slurm_job_id") else None),
                heartbeat=float(hb) if isinstance(hb, (int, float)) else mtime,
                started=d.get("started"), proc_start=d.get("proc_start"),
                token=d.get("token"), flock=bool(d.get("flock")), boot_id=d.get("boot_id"))
    except (ValueError, TypeError, KeyError):
        pass
    words = s.split()
    if len(words) == 4 and words[0] == "pid" and words[2] == "on" and words[1].isdigit():
        return LockHolder(host=words[3], pid=int(words[1]), slurm_job_id=None,
                          heartbeat=mtime, flock=True)
    return LockHolder(host=None, pid=None, slurm_job_id=None, heartbeat=mtime)


def _read_fd(fd: int) -> tuple[bytes, float]:
    st = os.fstat(fd)
    chunks, off = [], 0
    while True:
        b = os.pread(fd, 65536, off)
        if not b:
            break
        chunks.append(b)
        off += len(b)
    return b"".join(chunks), st.st_mtime


def read_holder(path: str | os.PathLike) -> LockHolder | None:
    """Who holds the lock of the store at ``path`` (from its lock file), or None if unlocked."""
    try:
        fd = os.open(lock_path(path), os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        return _parse(*_read_fd(fd))
    finally:
        os.close(fd)


def _try_flock(fd: int) -> bool | None:
    """Take an exclusive ``flock`` without waiting: True if taken, False if another open file
    holds it, None if the filesystem offers none."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    except OSError as e:
        if e.errno in _NO_FLOCK:
            return None
        raise


def _stale_reason(holder: LockHolder, fd: int, now: float, stale_after_s: float) -> str | None:
    """Why the lock open on ``fd`` is stale, or None if its holder may be alive."""
    if holder.pid is not None and holder.on_this_host():
        # same node: the process is either there or not; no need to wait for the heartbeat.
        # The pid first: a child the holder forked may keep the flock after the holder died.
        try:
            os.kill(holder.pid, 0)
        except ProcessLookupError:
            return "its process is no longer running on this host"
        except PermissionError:
            pass  # another user's live process
        proc = _proc_start(holder.pid)
        if proc is not None:
            if proc[0] in ("Z", "X"):
                return "its process has exited on this host"
            if holder.proc_start is not None and proc[1] != holder.proc_start:
                return "its pid now belongs to another process on this host"
        # a live pid may be another process that reuses it where /proc cannot tell: the flock
        if holder.flock and _try_flock(fd) is True:
            return "its process no longer holds it (its flock is free)"
        return None
    if now - holder.heartbeat > stale_after_s:
        return f"its heartbeat is older than sweep.lock.stale_after_s = {stale_after_s:g} s"
    return None


# --------------------------------------------------------------------------- the lock

class StoreLock:
    """A held lock of one store (what ``with store_lock(path) as lock`` gives).

    ``path`` is the store, ``file`` its lock file, ``holder`` this process's record as written
    at acquisition; ``lost`` becomes the new holder once the heartbeat finds the lock taken over
    by another client (None while the lock is this process's).
    """

    def __init__(self, path: Path, fd: int, token: str, started: float, flock: bool,
                 interval_s: float):
        self.path = path
        self.file = lock_path(path)
        self._fd = fd
        self._token = token
        self._started = started
        self._flock = flock
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._mutex = threading.Lock()
        self.lost: LockHolder | None = None
        self.holder = _parse(*_read_fd(fd))
        self._thread = threading.Thread(target=self._beat, name=f"lock heartbeat {path.name}",
                                        daemon=True)
        self._thread.start()

    def _still_mine(self) -> bool:
        """Whether the lock file at its name is this holder's (else record the new holder)."""
        try:
            fd = os.open(self.file, os.O_RDONLY)
        except FileNotFoundError:
            self.lost = LockHolder(host=None, pid=None, slurm_job_id=None,
                                   heartbeat=time.time())
            return False
        try:
            holder = _parse(*_read_fd(fd))
        finally:
            os.close(fd)
        if holder.token != self._token:
            self.lost = holder
            return False
        return True

    def _lost_text(self) -> str:
        if self.lost.host is None and self.lost.pid is None and self.lost.token is None:
            return "another process (its lock file is gone or unreadable)"
        return self.lost.describe()

    def refresh(self) -> None:
        """Write a new heartbeat into the lock file now (the background thread calls this every
        ``heartbeat_interval_s``); stops refreshing once the lock is found taken over."""
        with self._mutex:
            if self.lost is not None or self._fd < 0:
                return
            if not self._still_mine():
                log.warning("the lock of %s was taken over by %s while this sweep held it; "
                            "two writers may be writing the store", self.path,
                            self._lost_text())
                return
            rec = _record(self._token, self._started, time.time(), self._flock)
            os.pwrite(self._fd, rec, 0)
            os.ftruncate(self._fd, len(rec))

    def _beat(self) -> None:
        while not self._stop.wait(self._interval_s):
            try:
                self.refresh()
            except OSError as e:  # a filesystem hiccup: try again at the next beat
                log.warning("could not refresh the lock of %s: %s", self.path, e)

    def release(self) -> None:
        """Stop the heartbeat and remove the lock file if it is still this holder's; raise
        :class:`StoreLocked` if another client took it over meanwhile."""
        self._stop.set()
        self._thread.join()
        with self._mutex:
            if self._fd < 0:
                return
            try:
                if self.lost is None and self._still_mine():
                    os.unlink(self.file)  # while the flock is still held
            finally:
                os.close(self._fd)
                self._fd = -1
        if self.lost is not None:
            raise StoreLocked(f"the lock of {self.path} was taken over by "
                              f"{self._lost_text()} while this sweep held it: another "
                              "sweep may have written the store meanwhile (check it with "
                              "`sweep status`)")


def _unavailable(path: Path, what: str, e: OSError) -> LockUnavailable:
    return LockUnavailable(f"cannot lock {path}: {what} in {path.parent} failed "
                           f"({e.strerror or e}); the store needs a directory where this "
                           "process can create files and hard links")


def _create(path: Path, token: str, started: float, target: Path | None = None
            ) -> tuple[int, bool] | None:
    """Create the lock file (or ``target``) by linking a private, complete copy to its name.
    Returns the open file and whether it carries an ``flock``, or None if the name exists."""
    lock = lock_path(path) if target is None else target
    tmp = lock.with_name(f"{lock.name}.{token}.tmp")
    try:
        fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
    except OSError as e:
        raise _unavailable(path, "creating a file", e) from None
    try:
        flock = _try_flock(fd) is True  # a new inode: nobody else can hold its flock
        rec = _record(token, started, time.time(), flock)
        os.pwrite(fd, rec, 0)
        os.fsync(fd)
        try:
            os.link(tmp, lock)
            linked = True
        except FileExistsError:
            # over NFS a link whose reply was lost fails although it was made: the link count
            # of the private file tells
            linked = os.fstat(fd).st_nlink == 2
        except OSError as e:
            raise _unavailable(path, "hard-linking a file", e) from None
        if not linked:
            os.close(fd)
            fd = -1
            return None
        if os.fstat(fd).st_nlink != 2:
            raise LockUnavailable(f"cannot lock {path}: the filesystem of {path.parent} reports "
                                  "a hard link it did not make, so no lock there is atomic")
        return fd, flock
    except BaseException:
        if fd >= 0:
            os.close(fd)
        raise
    finally:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass


def _take_over(path: Path, fd: int, token: str, stale_after_s: float) -> bool:
    """Remove the stale lock file open on ``fd``. False if another client is taking it over,
    or the name no longer holds that file.

    Only the holder of a second lock file, ``STORE.lock.break`` (made like the lock itself, and
    itself taken over when stale), removes a lock: so between checking that the name still holds
    the file judged stale and removing it, no other client can replace it."""
    lock = lock_path(path)
    guard = lock.with_name(lock.name + ".break")
    made = _create(path, token, time.time(), target=guard)
    if made is None:
        try:
            gfd = os.open(guard, os.O_RDWR)
        except FileNotFoundError:
            return False
        try:
            breaker = _parse(*_read_fd(gfd))
            reason = _stale_reason(breaker, gfd, time.time(), stale_after_s)
        finally:
            os.close(gfd)
        if reason is not None:  # a client died while taking over
            log.warning("removing the stale take-over guard %s of %s: %s", guard,
                        breaker.describe(), reason)
            try:
                os.unlink(guard)
            except FileNotFoundError:
                pass
        return False
    gfd = made[0]
    try:
        judged = os.fstat(fd)
        judged_bytes = _read_fd(fd)[0]
        try:
            cfd = os.open(lock, os.O_RDONLY)
        except FileNotFoundError:
            return False
        try:
            same = os.fstat(cfd).st_ino == judged.st_ino and _read_fd(cfd)[0] == judged_bytes
        finally:
            os.close(cfd)
        if same:
            os.unlink(lock)
        return same
    finally:
        os.unlink(guard)
        os.close(gfd)


def acquire(path: str | os.PathLike) -> StoreLock:
    """Take the lock of the store at ``path`` (see the module's description), or raise
    :class:`StoreLocked` if a live process holds it, :class:`LockUnavailable` if the
    filesystem refuses what the lock needs."""
    path = Path(path)
    interval_s, stale_after_s = lock_settings()
    lock = lock_path(path)
    token = secrets.token_hex(8)
    started = time.time()
    for attempt in range(_ATTEMPTS):
        if attempt:
            # another client created, removed or is taking over the lock right now: give it
            # the moment it needs before looking again
            time.sleep(min(0.5, 0.01 * 2 ** attempt))
        made = _create(path, token, started)
        if made is not None:
            return StoreLock(path, made[0], token, started, made[1], interval_s)
        try:
            fd = os.open(lock, os.O_RDWR)
        except FileNotFoundError:
            continue  # released meanwhile
        except PermissionError:
            fd = os.open(lock, os.O_RDONLY)  # another user's lock: judged without its flock
        try:
            holder = _parse(*_read_fd(fd))
            now = time.time()
            reason = _stale_reason(holder, fd, now, stale_after_s)
            if reason is None:
                later = ("it is freed when that process ends" if holder.on_this_host()
                         else "it is taken over once its heartbeat is older than "
                              f"sweep.lock.stale_after_s = {stale_after_s:g} s")
                raise StoreLocked(f"another sweep is writing {path} ({holder.describe(now)}); "
                                  f"refusing to run two writers on one store ({later})")
            if _take_over(path, fd, token, stale_after_s):
                log.warning("taking over the stale lock of %s from %s: %s", path,
                            holder.describe(now), reason)
        finally:
            os.close(fd)
    raise StoreLocked(f"could not lock {path}: {_ATTEMPTS} attempts each found the lock file "
                      "changed by another client; try again")


@contextmanager
def store_lock(path: str | os.PathLike):
    """Hold the store's lock for the duration of the block (yielding the :class:`StoreLock`),
    or raise :class:`StoreLocked` / :class:`LockUnavailable` before the block starts."""
    held = acquire(path)
    try:
        yield held
    except BaseException:
        try:
            held.release()
        except StoreLocked as e:
            log.warning("%s", e)
        raise
    held.release()
