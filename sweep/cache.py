"""The intermediate cache: shared stages of a sweep persisted on disk, so that a resumed or
extended sweep loads them instead of recomputing them.

What is cached
--------------
Every stage an experiment submits except ``point`` (whose values the store itself holds): the
lattice constants, the reference relaxations of the simulation cells, the training and test sets,
the design rows or R factors, and the fits. At paper scale the reference relaxations and design
passes are the costly tasks (hours each); a rerun after ``--max-points``, a killed client or a
failed point loads them.

Where
-----
In ``<store>.cache/`` beside the store (the Dask config key ``sweep.cache.dir`` names another
directory, e.g. one shared by several stores). Not inside the store: growing a store's grid
rewrites the whole store directory (:func:`sweep.store.extend_store`), which would drop it, and
the store's integrity checks treat its directory as Zarr arrays only. Workers read and write the
entries, so the directory must be on a file system every worker and the client see (as on a
cluster's shared scratch).

Layout: ``<root>/<environment>/<spec fingerprint>/<stage>/<key>.pkl``, one pickle per entry.

Keys
----
An entry's key is its task's name, the stage's coordinates and a SHA-256 digest of everything
that determines its value: the graph's deterministic task key (stage, coordinates and the spec's
fingerprint, :func:`sweep.graph.task_key`), the task function's qualified name, every argument
(numbers, strings, tables, arrays by their bytes, dataclasses field by field, functions by
qualified name) with the futures among them replaced by the keys of the entries they stand for,
and the environment token (:func:`environment`). Equal inputs give equal keys in any process;
an argument that cannot be reduced so (an arbitrary object) leaves its stage and every stage
that depends on it uncached.

Invalidation
------------
An entry is found only under the same key, so it is never reused after a change of the spec's
fingerprint (any fixed parameter or weight set), of any argument of its task (e.g. the basis
sizes of a design pass, which the grid gives), of the versions of the packages that determine
values (:data:`VALUE_PACKAGES`), or of the project's source (:data:`SOURCE_FILES`: a digest of
the files' bytes, so an uncommitted edit counts too). Superseded entries are not read again and
age out through the size bound.

Bounds
------
``sweep.cache.max_bytes`` (default :data:`MAX_BYTES`) caps the total size of the entries under
the root: after each write the least recently used entries (by modification time, which a load
refreshes) are deleted until the total fits. An entry larger than ``sweep.cache.max_entry_bytes``
(default: the total cap) is not written at all.

Consistency
-----------
An entry is written to a temporary file in its directory, flushed to disk, then renamed over its
name (:func:`os.replace`): a reader sees either no entry or a complete one, and a crash leaves at
most a ``.tmp-*`` file, which readers ignore and eviction removes after
:data:`STALE_TMP_S`. Two workers that compute the same key write identical bytes; the last rename
wins. An entry that disappears between the client's lookup and a worker's load (evicted, or the
directory cleared by hand) raises :class:`CacheEntryGone`, and the runner resubmits the points
that needed it, which then compute it.

Turning it off
--------------
``sweep run --no-cache``, ``run_sweep(..., cache=False)``, or the config key
``sweep.cache.enabled: false`` (env ``DASK_SWEEP__CACHE__ENABLED=false``). Clearing it is
deleting its directory (``rm -r <store>.cache``) while no sweep runs on it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import pickle
import re
import secrets
import time
from dataclasses import dataclass
from functools import lru_cache
from importlib import metadata
from pathlib import Path

import numpy as np

__all__ = ["IntermediateCache", "CacheEntryGone", "Uncacheable", "environment", "canonical",
           "digest", "source_digest", "environment_token", "from_config", "cache_root", "usage", "compute_and_store", "load",
           "store_entry", "evict", "VALUE_PACKAGES", "SOURCE_FILES", "MAX_BYTES", "STALE_TMP_S",
           "UNCACHED_STAGES"]

log = logging.getLogger("sweep.cache")

#: Packages whose versions determine the values of a stage (a new version: new keys).
VALUE_PACKAGES = ("mlip-sweep", "numpy", "scipy", "ase", "python-ace", "matscipy", "numba",
                  "pyamg", "quippy-ase", "scikit-learn")

#: The project's files whose bytes determine the value of a stage from its arguments (globs
#: relative to the repository): the kernels with their potential tables, and the modules that
#: hold the task functions. What turns a spec into arguments (spec defaults, seeds) needs no
#: entry here, since the arguments themselves are part of the key; the engine, reports and the
#: CLI are left out, so editing them keeps the cache.
SOURCE_FILES = ("kernels/**/*", "sweep/tasks.py", "sweep/experiments/*.py")

#: Default cap on the total size of the entries (bytes): 20 GB.
MAX_BYTES = 20 * 10**9

#: Temporary files older than this (s) are a crashed writer's leftovers: eviction removes them.
STALE_TMP_S = 24 * 3600.0

#: Stages never cached: the store holds their values.
UNCACHED_STAGES = ("point",)

#: Version of the entry format (part of the environment token).
FORMAT = 1

_REPO = Path(__file__).resolve().parent.parent
_SAFE = re.compile(r"[^A-Za-z0-9._+=-]")


class CacheEntryGone(RuntimeError):
    """An entry the client found was gone (or unreadable) when a worker came to load it."""


class Uncacheable(TypeError):
    """An argument that cannot be reduced to a process-independent canonical form."""


@lru_cache(maxsize=1)
def environment() -> dict:
    """Versions of :data:`VALUE_PACKAGES` and the digest of :data:`SOURCE_FILES` (what a
    stage's value depends on besides its arguments), with the entry format."""
    versions = {}
    for pkg in VALUE_PACKAGES:
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = "not installed"
    return {"format": FORMAT, "packages": versions, "source_sha256": source_digest(_REPO)}


def source_digest(repo: Path) -> str:
    """SHA-256 (hex) of the paths and bytes of the :data:`SOURCE_FILES` under ``repo``."""
    h = hashlib.sha256()
    files = sorted({p for pattern in SOURCE_FILES for p in Path(repo).glob(pattern)
                    if p.is_file() and "__pycache__" not in p.parts})
    for p in files:
        h.update(str(p.relative_to(repo)).encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()


@lru_cache(maxsize=1)
def environment_token() -> str:
    """16 hex digits naming :func:`environment` (the first level of the cache's layout)."""
    return digest(canonical(environment()))[:16]


def canonical(obj):
    """A process-independent, hashable description of ``obj``: builtins as themselves (floats by
    their exact ``repr``), tables sorted by key, arrays by dtype, shape and the SHA-256 of their
    bytes, dataclasses by class and fields, functions and classes by qualified name, and an
    object with a ``cache_ident`` attribute (a graph node) by that. Raises :class:`Uncacheable`
    for anything else."""
    ident = getattr(obj, "cache_ident", None)
    if ident is not None or hasattr(obj, "cache_ident"):
        if ident is None:
            raise Uncacheable(f"depends on an uncached stage {getattr(obj, 'key', obj)!r}")
        return ("node", ident)
    if obj is None or isinstance(obj, (bool, int, str)):
        return (type(obj).__name__, obj)
    if isinstance(obj, float):
        return ("float", repr(obj))
    if isinstance(obj, (np.integer, np.floating, np.bool_)):
        return (type(obj).__name__, repr(obj.item()))
    if isinstance(obj, (list, tuple)):
        return (type(obj).__name__, tuple(canonical(v) for v in obj))
    if isinstance(obj, (set, frozenset)):
        return ("set", tuple(sorted(repr(canonical(v)) for v in obj)))
    if isinstance(obj, dict):
        return ("dict", tuple(sorted((repr(canonical(k)), canonical(v)) for k, v in obj.items())))
    if isinstance(obj, np.ndarray):
        if obj.dtype.hasobject:
            return ("ndarray-object", obj.shape, canonical(obj.tolist()))
        data = np.ascontiguousarray(obj)
        return ("ndarray", str(data.dtype), data.shape, hashlib.sha256(data.tobytes()).hexdigest())
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return ("dataclass", _qualname(type(obj)),
                tuple((f.name, canonical(getattr(obj, f.name))) for f in dataclasses.fields(obj)))
    if callable(obj) and hasattr(obj, "__qualname__") and hasattr(obj, "__module__"):
        if "<locals>" in obj.__qualname__ or "<lambda>" in obj.__qualname__:
            raise Uncacheable(f"local function {obj.__qualname__!r} has no stable name")
        return ("callable", _qualname(obj))
    if hasattr(obj, "func") and hasattr(obj, "args") and hasattr(obj, "keywords"):
        return ("partial", canonical(obj.func), canonical(obj.args), canonical(obj.keywords))
    raise Uncacheable(f"no canonical form for a {type(obj).__name__}")


def _qualname(obj) -> str:
    return f"{obj.__module__}:{obj.__qualname__}"


def digest(canon) -> str:
    """SHA-256 (hex) of a :func:`canonical` description."""
    return hashlib.sha256(repr(canon).encode()).hexdigest()


def _config(key: str, default):
    import dask.config  # noqa: PLC0415

    return dask.config.get(f"sweep.cache.{key}", default)


def _as_bool(value) -> bool:
    if isinstance(value, str):
        return value.strip().lower() not in ("0", "false", "no", "off", "")
    return bool(value)


def cache_root(store_path) -> Path:
    """The cache directory of a store: ``sweep.cache.dir`` if set, else ``<store>.cache``
    beside it."""
    configured = _config("dir", None)
    if configured:
        return Path(configured)
    store_path = Path(store_path)
    return store_path.with_name(store_path.name + ".cache")


@dataclass(frozen=True)
class IntermediateCache:
    """The cache of one sweep run (client side): where entries live and how large they may be.

    Attributes
    ----------
    root : Path
        The cache directory.
    max_bytes : int
        Cap on the total size of all entries under ``root`` (bytes; LRU eviction).
    max_entry_bytes : int
        Entries larger than this (bytes) are not written.
    env : str
        :func:`environment_token` of the client.
    """

    root: Path
    max_bytes: int = MAX_BYTES
    max_entry_bytes: int = MAX_BYTES
    env: str = ""

    def __post_init__(self):
        if not self.env:
            object.__setattr__(self, "env", environment_token())

    def entry_path(self, fingerprint: str, stage: str, key: str) -> Path:
        """Where the entry ``key`` of ``stage`` under the spec ``fingerprint`` lives."""
        return self.root / self.env / fingerprint / stage / f"{_SAFE.sub('_', key)}.pkl"

    def lookup(self, path: Path) -> bool:
        """Whether the entry at ``path`` exists; if so it becomes the most recently used (so an
        eviction during this run removes other entries first)."""
        try:
            os.utime(path)
            return True
        except FileNotFoundError:
            return False
        except OSError:
            return path.is_file()

    def worker_args(self) -> tuple:
        """The settings a worker needs to write an entry (plain, picklable)."""
        return str(self.root), int(self.max_bytes), int(self.max_entry_bytes)


def from_config(store_path, enabled: bool | None = None) -> IntermediateCache | None:
    """The cache of the store at ``store_path`` as the Dask config sets it (``sweep.cache.*``),
    or None when disabled (``enabled=False``, or ``sweep.cache.enabled`` false when ``enabled``
    is None)."""
    if enabled is None:
        enabled = _as_bool(_config("enabled", True))
    if not enabled:
        return None
    max_bytes = int(float(_config("max_bytes", MAX_BYTES)))
    entry = _config("max_entry_bytes", None)
    max_entry = max_bytes if entry is None else int(float(entry))
    if max_bytes < 0 or max_entry < 0:
        raise ValueError(f"sweep.cache.max_bytes = {max_bytes} and sweep.cache.max_entry_bytes = "
                         f"{max_entry} must be non-negative (bytes)")
    return IntermediateCache(cache_root(store_path), max_bytes, min(max_entry, max_bytes))


# ---------------------------------------------------------------------------------------------
# Worker side: the task wrappers.

def compute_and_store(path: str, key: str, settings: tuple, fn, *args):
    """Run ``fn(*args)`` and persist its value as the entry ``key`` at ``path`` (a failure to
    write is logged, never the task's failure); return the value.

    If the entry exists when the task starts, its value is returned instead: a task that runs
    again because the worker holding its result died (a nanny's memory restart, a lost node)
    reloads what its first run stored rather than computing it twice."""
    try:
        return load(path, key)
    except CacheEntryGone:
        pass  # absent, or unreadable and removed by load: computed below
    value = fn(*args)
    root, max_bytes, max_entry_bytes = settings
    try:
        store_entry(Path(path), key, value, max_entry_bytes)
        evict(Path(root), max_bytes)
    except Exception as e:  # noqa: BLE001 -- a full disk or an unpicklable value: just uncached
        log.warning("sweep.cache: could not write %s: %s: %s", path, type(e).__name__, e)
    return value


def load(path: str, key: str):
    """The value of the entry ``key`` at ``path``; :class:`CacheEntryGone` if it is missing or
    unreadable (an unreadable one is removed, so the resubmitted point computes it)."""
    p = Path(path)
    try:
        with open(p, "rb") as f:
            entry = pickle.load(f)
    except FileNotFoundError as e:
        raise CacheEntryGone(f"cache entry {key} is gone: {path}") from e
    except Exception as e:  # noqa: BLE001 -- any unreadable entry is recomputed, not trusted
        _unlink(p)
        raise CacheEntryGone(f"cache entry {key} was unreadable ({type(e).__name__}: {e}) and "
                             f"was removed: {path}") from e
    if not isinstance(entry, dict) or entry.get("key") != key:
        _unlink(p)
        raise CacheEntryGone(f"cache entry {path} is not {key}; removed")
    try:
        os.utime(p)
    except OSError:
        pass
    return entry["value"]


def store_entry(path: Path, key: str, value, max_entry_bytes: int) -> bool:
    """Write the entry atomically (temporary file, fsync, rename); False (nothing written) when
    it would exceed ``max_entry_bytes``."""
    from dask.sizeof import sizeof  # noqa: PLC0415

    if sizeof(value) > max_entry_bytes:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".tmp-{path.name}-{os.getpid()}-{secrets.token_hex(4)}")
    try:
        with open(tmp, "wb") as f:
            pickle.dump({"key": key, "value": value}, f, protocol=pickle.HIGHEST_PROTOCOL)
            f.flush()
            os.fsync(f.fileno())
        if tmp.stat().st_size > max_entry_bytes:
            return False
        os.replace(tmp, path)
        return True
    finally:
        _unlink(tmp)


def _unlink(p: Path) -> None:
    try:
        p.unlink()
    except FileNotFoundError:
        pass


def _entries(root: Path):
    """(path, size, mtime) of every entry and stale temporary file under ``root``."""
    out, stale = [], []
    now = time.time()
    for dirpath, _, files in os.walk(root):
        for name in files:
            p = Path(dirpath, name)
            try:
                s = p.stat()
            except FileNotFoundError:
                continue
            if name.startswith(".tmp-"):
                if now - s.st_mtime > STALE_TMP_S:
                    stale.append(p)
            elif name.endswith(".pkl"):
                out.append((p, s.st_size, s.st_mtime))
    return out, stale


def evict(root: Path, max_bytes: int) -> list[Path]:
    """Delete least recently used entries under ``root`` until their total is at most
    ``max_bytes``, and stale temporary files; return the entries deleted."""
    entries, stale = _entries(root)
    for p in stale:
        _unlink(p)
    total = sum(s for _, s, _ in entries)
    gone = []
    for p, size, _ in sorted(entries, key=lambda e: e[2]):
        if total <= max_bytes:
            break
        _unlink(p)
        total -= size
        gone.append(p)
    return gone


def usage(root: Path, env: str | None = None, fingerprint: str | None = None) -> dict:
    """What the cache at ``root`` holds: ``entries``, ``bytes``, ``tmp_files``, and the entries
    of environment ``env`` and spec ``fingerprint`` (``current_entries``, ``current_bytes``,
    ``current_by_stage``)."""
    env = env or environment_token()
    out = {"entries": 0, "bytes": 0, "current_entries": 0, "current_bytes": 0,
           "current_by_stage": {}, "tmp_files": 0}
    if not root.is_dir():
        return out
    for dirpath, _, files in os.walk(root):
        rel = Path(dirpath).relative_to(root).parts
        for name in files:
            if name.startswith(".tmp-"):
                out["tmp_files"] += 1
                continue
            if not name.endswith(".pkl"):
                continue
            try:
                size = Path(dirpath, name).stat().st_size
            except FileNotFoundError:
                continue
            out["entries"] += 1
            out["bytes"] += size
            if len(rel) == 3 and rel[0] == env and (fingerprint is None or rel[1] == fingerprint):
                out["current_entries"] += 1
                out["current_bytes"] += size
                by = out["current_by_stage"]
                by[rel[2]] = by.get(rel[2], 0) + 1
    return out
