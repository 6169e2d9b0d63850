"""The result store: a labelled xarray Dataset in Zarr, written point by point.

Layout
------
Dimensions are the spec's (:attr:`sweep.spec.Spec.dims`: the six common ones, then any the
experiment adds); every data variable spans all of them. A variable's chunk holds up to
:data:`POINTS_PER_CHUNK` grid points (:func:`chunk_shape`: the trailing dimensions whole first),
so a store has a few files per variable rather than one per point; stores written earlier with one
chunk per point (chunk size 1 along every dimension) are read, resumed and extended the same way.
The full template (all points ``pending``, floats NaN, ints −1) is written before any work
starts, every chunk file included.

Writing
-------
ONE writer, the client, writes finished points, in batches (:class:`PointWriter`): it keeps the
store's values in memory, applies the finished points to that copy, and rewrites every chunk
file a batch touches whole — first every variable but ``status``, then ``status``, the commit
marker. Each chunk file is replaced atomically (Zarr's local store writes a temporary file and
renames it into place, zarr >= 3.1.3), so a crash leaves every chunk either as it was or as
written, never half written: the points of an unfinished batch stay ``pending`` (and are
recomputed), the points of every earlier batch keep their values, and a point whose status is
``done`` has all its values.

Variables, units and meanings are in :data:`VARIABLES` (plus the experiment's own, see
:func:`variables_for`); provenance is in the Dataset attrs.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

import numpy as np
import xarray as xr
import zarr

from .spec import Spec

__all__ = ["VARIABLES", "COORD_ATTRS", "variables_for", "StoreMismatch", "PointIndex", "create_store",
           "open_store", "open_existing", "is_store", "missing_chunks", "grid_difference", "extend_store", "verify_store",
           "recover_interrupted_extension", "StoreDamaged", "point_status", "write_point", "write_failure",
           "update_attrs", "SEEDS_POLICY", "STATUS_VALUES", "FORMATION_ENERGY_NOT_OBSERVED",
           "POINTS_PER_CHUNK", "chunk_shape", "chunk_file", "PointWriter", "lost_points",
           "unreadable_arrays"]

STATUS_VALUES = ("pending", "done", "failed")
#: Zarr format 2: consolidated metadata and variable-length UTF-8 strings are part of its spec,
#: so any Zarr reader opens the store.
ZARR_FORMAT = 2
#: Grid points per chunk file of a new store (see :func:`chunk_shape`). A batch rewrites the chunks
#: it touches whole, so this bounds the bytes a batch of neighbouring points rewrites per variable
#: (4096 × 8 B = 32 kB of floats); 10⁵ points make 25 files per variable.
POINTS_PER_CHUNK = 4096
#: Strings are written from object arrays (Zarr v2 variable-length UTF-8, any length) and read
#: back by xarray as numpy StringDType: compare with numpy masks, not ``.where``.
_STR = object

#: name → (dtype, units, long_name, fill value for unfinished points)
VARIABLES = {
    "geometry_error": ("f8", "Å", "geometry error ‖Dū − Dũ‖ on the simulation cell", np.nan),
    "energy_error": ("f8", "eV", "energy error |E(ū) − Ẽ(ũ)|, energies from x₀", np.nan),
    "formation_energy_error": ("f8", "eV", "formation-energy error, each model vs its own "
                               "perfect crystal", np.nan),
    "rmse_energy": ("f8", "meV/atom", "test-set RMSE of the energy per atom", np.nan),
    "rmse_forces": ("f8", "eV/Å", "test-set RMSE of the force components", np.nan),
    "force_constant_error": ("f8", "%", "relative force-constant error on the homogeneous "
                             "lattice ε_FC_hom", np.nan),
    "n_basis": ("i8", "1", "realised number of ACE basis functions", -1),
    "rank": ("i8", "1", "numerical rank kept by the truncated rank-revealing QR", -1),
    "n_observations": ("i8", "1", "number of least-squares rows (observations)", -1),
    "fit_time": ("f8", "s", "least-squares solve time", np.nan),
    "design_time": ("f8", "s", "time to build the training and test design rows", np.nan),
    "predict_time": ("f8", "s", "time to relax the simulation cell with the fitted model and "
                     "measure its errors", np.nan),
    "relax_steps": ("i8", "1", "optimiser steps of the fitted model's relaxation", -1),
    "worker_host": (_STR, "1", "host of the worker that relaxed the simulation cell", ""),
    "slurm_job_id": (_STR, "1", "SLURM job id of that worker (empty outside SLURM)", ""),
    "status": (_STR, "1", "point status: pending, done or failed", "pending"),
    "error": (_STR, "1", "error message and traceback summary of a failed point", ""),
}

COORD_ATTRS = {
    "defect": {"long_name": "defect kind", "units": "1"},
    "n_defects": {"long_name": "number of defects n_D in the simulation cell", "units": "1"},
    "L": {"long_name": "training-cell size L (= defect separation L_D)", "units": "r0"},
    "basis_size": {"long_name": "requested number of ACE basis functions", "units": "1"},
    "weights": {"long_name": "weight set", "units": "1"},
    "observations": {"long_name": "observation set fitted", "units": "1"},
}

#: Why a store's ``formation_energy_error`` is NaN (its ``comment`` attribute) when the spec's fits
#: have no bulk-energy row.
FORMATION_ENERGY_NOT_OBSERVED = (
    "NaN: fit.bulk_energy_row = false (the papers' loss). A training set of one defect cell "
    "fixes only the sum of its site energies, not the model's energy per atom of the perfect "
    "crystal, so the formation energy of the fitted model is not determined by the data; set "
    "[fit] bulk_energy_row = true to fit the perfect cell's energy and store it.")


SEEDS_POLICY = ("Every random number comes from numpy's default_rng seeded with an integer "
                "derived by SHA-256 from (training.seed, experiment, defect, L, set name); a "
                "re-run of the same spec reproduces every training and test set bit for bit.")


class StoreMismatch(RuntimeError):
    """An existing store was written by a different spec (or is damaged)."""


class StoreDamaged(StoreMismatch):
    """An existing store's metadata or finished chunks cannot be read."""


@dataclass(frozen=True)
class PointIndex:
    """Integer position ``idx`` of one grid point along each of the dimensions ``dims``."""

    idx: tuple[int, ...]
    dims: tuple[str, ...]

    def region(self) -> dict:
        return {d: slice(i, i + 1) for d, i in zip(self.dims, self.idx)}

    def labels(self, spec: Spec) -> dict:
        return {d: spec.grid[d][i] for d, i in zip(self.dims, self.idx)}


def variables_for(spec: Spec) -> dict:
    """Every stored variable of ``spec``: the common ones, the experiment's, then status/error."""
    common = {k: v for k, v in VARIABLES.items() if k not in ("status", "error")}
    return {**common, **spec.definition.variables,
            "status": VARIABLES["status"], "error": VARIABLES["error"]}


def _coords(spec: Spec) -> dict:
    coords = {}
    extra = {d.name: d.attrs for d in spec.definition.extra_dims}
    for d in spec.dims:
        vals = spec.grid[d]
        if isinstance(vals[0], str):
            arr = np.array(vals, dtype=_STR)
        else:
            arr = np.array(vals, "f8" if isinstance(vals[0], float) else "i8")
        coords[d] = xr.Variable(d, arr, COORD_ATTRS.get(d) or extra[d])
    for f in spec.definition.all_weight_fields:
        long_name, units = spec.definition.weight_attrs.get(f, (f"weight of {f}", "1"))
        coords[f"weight_{f}"] = xr.Variable(
            "weights", np.array([spec.weights[w][f] for w in spec.grid["weights"]]),
            {"long_name": long_name, "units": units})
    return coords


def _package_versions() -> dict:
    out = {}
    for pkg in ("mlip-sweep", "python-ace", "numpy", "scipy", "ase", "matscipy", "dask",
                "distributed", "dask-jobqueue", "xarray", "zarr"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def git_commit() -> str:
    """The checkout's HEAD commit, with ``-dirty`` when tracked files differ from it; "unknown"
    outside a git checkout. Recorded in store attributes and by the benchmarks."""
    try:
        here = Path(__file__).resolve().parent
        r = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True,
                           text=True, timeout=5)
        if r.returncode == 0:
            dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                                   cwd=here, capture_output=True, text=True, timeout=5).stdout
            return r.stdout.strip() + ("-dirty" if dirty.strip() else "")
    except (OSError, subprocess.SubprocessError):
        pass
    return "unknown"


def template(spec: Spec) -> xr.Dataset:
    """The all-pending Dataset of a spec (values NaN / −1, status ``pending``)."""
    shape = spec.shape
    data_vars = {}
    for name, (dtype, units, long_name, fill) in variables_for(spec).items():
        data = np.full(shape, fill, dtype=dtype)
        attrs = {"units": units, "long_name": long_name}
        if name == "geometry_error" and "stencil" in spec.params.get("geometry", {}):
            # which pairs ‖Dw‖ sums over (kernels.errors.STENCILS; P1 eq. 6.3, P2 eq. A.2)
            attrs["stencil"] = spec.params["geometry"]["stencil"]
        data_vars[name] = xr.Variable(spec.dims, data, attrs)
    if not spec.params.get("fit", {}).get("bulk_energy_row", True):
        data_vars["formation_energy_error"].attrs["comment"] = FORMATION_ENERGY_NOT_OBSERVED
    ds = xr.Dataset(data_vars, coords=_coords(spec))
    ds.attrs = {
        "title": f"MLIP generalisation sweep {spec.name}",
        "spec_name": spec.name,
        "experiment": spec.experiment,
        "spec_toml": spec.text,
        "spec_fingerprint": spec.fingerprint(),
        "fixed_parameters": json.dumps(spec.fixed_parameters(), sort_keys=True),
        "spatial_dimension": spec.definition.spatial_dimension,
        "seeds_policy": SEEDS_POLICY,
        "package_versions": json.dumps(_package_versions(), sort_keys=True),
        "git_commit": git_commit(),
        "created_at": _now(),
        "units_note": "lengths Å, energies eV, forces eV/Å; L and N in units of r0 (attr r0_A)",
    }
    return ds


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def chunk_shape(shape: tuple, points: int = POINTS_PER_CHUNK) -> tuple:
    """Chunk shape of a new store's variables of grid ``shape``: whole along the trailing
    dimensions while at most ``points`` points fit, then as many as fit along the next one, 1
    along the rest (the order in which the points of a grid are submitted and mostly finish)."""
    chunks = [1] * len(shape)
    room = max(1, int(points))
    for k in range(len(shape) - 1, -1, -1):
        chunks[k] = max(1, min(shape[k], room))
        room //= max(1, shape[k])
        if room < 1:
            break
    return tuple(chunks)


def _encoding(ds: xr.Dataset) -> dict:
    chunks = chunk_shape(tuple(ds["status"].shape))
    enc = {name: {"chunks": chunks} for name in ds.data_vars}
    for name in ds.data_vars:
        if ds[name].dtype.kind == "i":
            enc[name]["_FillValue"] = None  # ints are never missing: −1 marks "not computed"
    return enc


def create_store(path: str | os.PathLike, spec: Spec) -> xr.Dataset:
    """Write the template of ``spec`` to a new store at ``path`` and return it.

    The template is written beside ``path`` and renamed into place, so a store either exists
    complete or not at all.
    """
    ds = template(spec)
    _write_whole(ds, Path(path))
    return ds


def _write_whole(ds: xr.Dataset, path: Path) -> Path:
    """Write ``ds`` to a temporary store beside ``path``; return the temporary path (renamed
    into place when ``path`` does not exist yet)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    ds.to_zarr(tmp, mode="w-", encoding=_encoding(ds), consolidated=True,
               zarr_format=ZARR_FORMAT, write_empty_chunks=True)
    if not path.exists():
        os.rename(tmp, path)
        return path
    return tmp


def open_store(path: str | os.PathLike) -> xr.Dataset:
    """Open a store eagerly enough to read statuses (no dask).

    Raises
    ------
    StoreDamaged
        When its metadata cannot be read.
    """
    try:
        return xr.open_zarr(path, chunks=None, consolidated=True)
    except Exception as e:  # noqa: BLE001 - any unreadable metadata is damage, say which
        raise StoreDamaged(f"the store {path} is damaged: its metadata cannot be read "
                           f"({type(e).__name__}: {e}). It will not be overwritten; move it "
                           "aside to start a new sweep, or restore it from a backup.") from e


def _grid_values(ds: xr.Dataset, d: str) -> list:
    return [v.item() if hasattr(v, "item") else v for v in ds[d].values]


def grid_difference(ds: xr.Dataset, spec: Spec) -> dict:
    """Per dimension, the spec's values the store lacks (an extension); raises
    :class:`StoreMismatch` if the store was written by another spec or holds values the spec
    dropped (which an extension would lose)."""
    problems = []
    if ds.attrs.get("spec_fingerprint") != spec.fingerprint():
        old = json.loads(ds.attrs.get("fixed_parameters", "{}"))
        new = spec.fixed_parameters()
        problems += [f"{k}: store has {old.get(k)!r}, spec has {new.get(k)!r}"
                     for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
        if not problems:
            problems.append("the fixed parameters differ (fingerprint mismatch)")
    added = {}
    store_dims = tuple(ds["status"].dims) if "status" in ds else ()
    if store_dims != spec.dims:
        problems.append(f"dimensions: store has {list(store_dims)}, spec has {list(spec.dims)}")
    else:
        for d in spec.dims:
            have = [str(v) for v in _grid_values(ds, d)]
            want = [str(v) for v in spec.grid[d]]
            have_set, want_set = set(have), set(want)
            dropped = [v for v in have if v not in want_set]
            if dropped:
                problems.append(f"grid.{d}: the spec drops {dropped} that the store holds "
                                f"(store has {have}, spec has {want})")
            new_values = [v for v in want if v not in have_set]
            if new_values:
                added[d] = new_values
    missing = [v for v in variables_for(spec) if v not in ds.data_vars]
    if missing:
        problems.append(f"variables missing from the store: {missing} (this version of the "
                        f"experiment stores them; a store written before they were added "
                        f"cannot be resumed: run into a new --store)")
    if problems:
        raise StoreMismatch("the store was written by a different spec and will not be "
                            "overwritten:\n  " + "\n  ".join(problems))
    return added


def _backup_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.before-extension")


def recover_interrupted_extension(path: str | os.PathLike) -> None:
    """If a run died between the two renames of :func:`extend_store`, put the old store back."""
    path = Path(path)
    backup = _backup_path(path)
    if backup.exists():
        if path.exists():
            shutil.rmtree(backup)  # the new store is complete; the backup is surplus
        else:
            os.rename(backup, path)


def extend_store(path: str | os.PathLike, ds: xr.Dataset, spec: Spec, added: dict
                 ) -> xr.Dataset:
    """Rewrite the store for ``spec``'s larger grid, keeping every point already written.

    The new template is filled with the old store's values at the old labels, written beside the
    store, and swapped in by two renames (old → backup, new → path); the backup is removed last,
    and :func:`recover_interrupted_extension` undoes a crash between the renames. ``added`` (the
    values :func:`grid_difference` found) is recorded in the ``extensions`` attribute.
    """
    path = Path(path)
    old = ds.load()
    new = template(spec)
    new.attrs.update({k: v for k, v in old.attrs.items()
                      if k in ("created_at", "r0_A") or k.startswith("cluster_")})
    history = json.loads(old.attrs.get("extensions", "[]"))
    history.append({"at": _now(), "added": added})
    new.attrs["extensions"] = json.dumps(history)
    where = {d: {str(v): i for i, v in enumerate(new[d].values)} for d in spec.dims}
    index = tuple(np.array([where[d][str(v)] for v in _grid_values(old, d)])
                  for d in spec.dims)
    for name in variables_for(spec):
        arr = np.array(new[name].values)
        arr[np.ix_(*index)] = np.asarray(old[name].values, dtype=arr.dtype)
        new[name] = new[name].copy(data=arr)
    tmp = _write_whole(new, path)
    backup = _backup_path(path)
    os.rename(path, backup)
    os.rename(tmp, path)
    shutil.rmtree(backup)
    return open_store(path)


def _array_meta(path: Path, name: str) -> dict:
    """The Zarr (format 2) metadata of one variable, as stored in its ``.zarray``."""
    return json.loads((path / name / ".zarray").read_text())


def _chunk_key(meta: dict, chunk_idx) -> str:
    return meta.get("dimension_separator", ".").join(str(int(c)) for c in chunk_idx)


def chunk_file(path: str | os.PathLike, name: str, idx: tuple) -> Path:
    """The file holding the value of variable ``name`` at grid indices ``idx`` (whatever the
    store's chunk shape: one point per chunk in older stores, :func:`chunk_shape` in newer)."""
    path = Path(path)
    meta = _array_meta(path, name)
    return path / name / _chunk_key(meta, [i // c for i, c in zip(idx, meta["chunks"])])


def _points_in_missing_chunks(path: Path, name: str, points: np.ndarray) -> np.ndarray:
    """The rows of ``points`` (grid indices, one point a row) whose chunk file of ``name`` is
    missing."""
    if len(points) == 0:
        return points
    meta = _array_meta(path, name)
    folder = path / name
    chunks = np.asarray(meta["chunks"], dtype=points.dtype)
    grid = -(-np.asarray(meta["shape"], dtype=points.dtype) // chunks)
    chunk_ids = np.ravel_multi_index(tuple((points // chunks).T), tuple(grid))
    wanted, inverse = np.unique(chunk_ids, return_inverse=True)
    present = np.array([(folder / _chunk_key(meta, np.unravel_index(c, tuple(grid)))).is_file()
                        for c in wanted], dtype=bool)
    return points[~present[np.ravel(inverse)]]


def unreadable_arrays(path: str | os.PathLike, names) -> dict:
    """Variable name → why its array metadata (``.zarray``) cannot be read, for those of
    ``names`` that are damaged so."""
    path = Path(path)
    bad = {}
    for name in names:
        try:
            meta = _array_meta(path, name)
            tuple(meta["chunks"]), tuple(meta["shape"])
        except (OSError, ValueError, KeyError, TypeError) as e:
            bad[name] = f"{type(e).__name__}: {e}"
    return bad


def lost_points(path: str | os.PathLike, ds: xr.Dataset, statuses: tuple = ("done",),
                names=None) -> dict:
    """Variable name → grid indices of the points with a status in ``statuses`` whose chunk
    file of that variable is missing; under ``"status"``, every point whose status chunk is
    missing (its status itself is lost, whatever it read as). Empty when nothing is lost.
    ``names``: the variables to check (default: every variable on the grid's dimensions)."""
    path = Path(path)
    dims = ds["status"].dims
    finished = np.argwhere(np.isin(point_status(ds), statuses))
    every = np.argwhere(np.ones(ds["status"].shape, dtype=bool))
    lost = {}
    names = [n for n in (ds.data_vars if names is None else names)
             if n in ds.data_vars and ds[n].dims == dims]
    unreadable = unreadable_arrays(path, names)
    for name in names:
        if name in unreadable:  # its chunks cannot be located: reported by unreadable_arrays
            continue
        gone = _points_in_missing_chunks(path, name, every if name == "status" else finished)
        if len(gone):
            lost[name] = [tuple(int(i) for i in idx) for idx in gone]
    return lost


def verify_store(path: str | os.PathLike, ds: xr.Dataset, spec: Spec) -> None:
    """Refuse a damaged store: every array's own metadata must parse, every finished (done or
    failed) point must have the chunks of every variable, and every status chunk must exist.

    Raises
    ------
    StoreDamaged
        Naming what is damaged and which points it touches.
    """
    path = Path(path)
    unreadable = unreadable_arrays(path, variables_for(spec))
    problems = [f"{(path / name / '.zarray').relative_to(path.parent)}: unreadable ({why})"
                for name, why in unreadable.items()]
    for name, idxs in lost_points(path, ds, ("done", "failed"), variables_for(spec)).items():
        labels = [{d: spec.grid[d][i] for d, i in zip(spec.dims, idx)} for idx in idxs[:3]]
        more = f" and {len(idxs) - 3} more" if len(idxs) > 3 else ""
        what = ("the status chunks of" if name == "status" else "chunks of")
        kind = "" if name == "status" else " finished"
        problems.append(f"{name}: {what} {len(idxs)}{kind} point(s) are missing, "
                        f"e.g. {labels}{more}")
    if problems:
        raise StoreDamaged(f"the store {path} is damaged and will not be written to:\n  "
                           + "\n  ".join(problems) + "\nMove it aside to start a new sweep, "
                           "or restore it from a backup.")


def is_store(path: str | os.PathLike) -> bool:
    """Whether ``path`` looks like a sweep store at all: a Zarr group directory with a
    ``status`` array (anything else is not a store, rather than a damaged one)."""
    path = Path(path)
    return (path.is_dir() and ((path / ".zgroup").is_file() or (path / ".zmetadata").is_file())
            and (path / "status").is_dir())


def missing_chunks(path: str | os.PathLike, ds: xr.Dataset) -> dict:
    """Variable name → grid indices of the done points whose chunk file of that variable is
    missing (and, under ``"status"``, the points whose status chunk is missing): a done point
    must have all its values. See :func:`lost_points`."""
    return lost_points(path, ds, ("done",))


def open_existing(path: str | os.PathLike, spec: Spec) -> tuple[xr.Dataset, dict]:
    """Open the store at ``path`` for ``spec`` after every check a run needs: another spec's
    store (:class:`StoreMismatch`) and a damaged one (:class:`StoreDamaged`) are refused.
    Returns the Dataset and the grid values the spec adds (see :func:`grid_difference`; empty
    when the grids are equal). Call :func:`recover_interrupted_extension` first."""
    ds = open_store(path)
    added = grid_difference(ds, spec)
    verify_store(path, ds, spec)
    return ds, added


def point_status(ds: xr.Dataset) -> np.ndarray:
    """Status of every grid point as a numpy string array of the grid's shape."""
    return np.array(np.asarray(ds["status"].values).tolist(), dtype=str)


#: Default bounds of :class:`PointWriter`'s buffer: it is written once it holds this many points
#: (Dask config ``sweep.store.flush_points``) ...
FLUSH_POINTS = 2000
#: ... or once its oldest point has waited this long, in seconds (``sweep.store.flush_seconds``).
FLUSH_SECONDS = 10.0


def _config(key: str, default: float) -> float:
    import dask  # noqa: PLC0415

    value = dask.config.get(key, default)
    return float(default if value is None else value)


class PointWriter:
    """The client's writer of finished points: buffers them and writes them in batches.

    The writer holds the store's values in memory (read once, ~8 bytes per point per variable:
    14 MB for 10⁵ points of 17 variables). :meth:`add_done` / :meth:`add_failed` put a point in
    the buffer; :meth:`flush` applies the buffer to the copy in memory and rewrites every chunk
    file the buffered points touch whole — every variable but ``status`` first, ``status`` last —
    so a crash before or during a flush leaves the buffered points ``pending`` (recomputed by the
    next run) and every earlier point as it was written.

    Parameters
    ----------
    path : path-like
        An existing store (created by :func:`create_store`).
    spec : Spec
        Its spec.
    max_points : int, optional
        :meth:`due` once the buffer holds this many points (default: Dask config
        ``sweep.store.flush_points``, else :data:`FLUSH_POINTS`); 1 writes every point alone.
    max_age_s : float, optional
        :meth:`due` once the oldest buffered point has waited this long, in seconds (default:
        config ``sweep.store.flush_seconds``, else :data:`FLUSH_SECONDS`). The runner flushes
        when due and at the end of a run (also on Ctrl-C and errors), so no finished point waits
        longer than this unwritten unless the client is killed (SIGKILL, a lost node).
    """

    def __init__(self, path: str | os.PathLike, spec: Spec, max_points: int | None = None,
                 max_age_s: float | None = None):
        self.path = Path(path)
        self.variables = variables_for(spec)
        self.max_points = max(1, int(max_points if max_points is not None
                                     else _config("sweep.store.flush_points", FLUSH_POINTS)))
        self.max_age_s = float(max_age_s if max_age_s is not None
                               else _config("sweep.store.flush_seconds", FLUSH_SECONDS))
        group = zarr.open_group(str(self.path), mode="r+", zarr_format=ZARR_FORMAT)
        # a chunk of fill values only (e.g. all-NaN formation energies) must still be written:
        # every chunk file exists, and a missing one is damage (verify_store)
        self._arrays = {name: group[name].with_config({"write_empty_chunks": True})
                        for name in self.variables}
        self._values = {}
        for name, arr in self._arrays.items():
            data = np.asarray(arr[...])
            self._values[name] = (data.astype(object) if self.variables[name][0] is _STR
                                  else np.array(data, dtype=self.variables[name][0]))
        self._buffer: list = []
        self._oldest = 0.0
        self.flushes = 0
        self.points_written = 0
        self.seconds = 0.0

    def __len__(self) -> int:
        return len(self._buffer)

    def add_done(self, point: PointIndex, values: dict) -> None:
        """Buffer a finished point: its ``values`` (missing variables: their fill), ``done``."""
        self._add(point, values, None)

    def add_failed(self, point: PointIndex, message: str) -> None:
        """Buffer a failed point: values reset to unfinished, ``error = message``, ``failed``."""
        self._add(point, {}, message)

    def _add(self, point, values, error) -> None:
        if not self._buffer:
            self._oldest = time.monotonic()
        self._buffer.append((point.idx, values, error))

    def seconds_until_due(self) -> float:
        """Seconds until the buffer is due (0: now; inf: empty)."""
        if not self._buffer:
            return math.inf
        if len(self._buffer) >= self.max_points:
            return 0.0
        return max(0.0, self.max_age_s - (time.monotonic() - self._oldest))

    def due(self) -> bool:
        """Whether the buffer should be written now (see the class parameters)."""
        return self.seconds_until_due() == 0.0

    def flush(self) -> int:
        """Write the buffered points (values first, then status); returns how many."""
        if not self._buffer:
            return 0
        t0 = time.perf_counter()
        n = len(self._buffer)
        points = self._stage()
        self._write_chunks([n for n in self.variables if n != "status"], points)
        self._write_chunks(["status"], points)  # the commit marker, last
        self.flushes += 1
        self.points_written += n
        self.seconds += time.perf_counter() - t0
        return n

    def _stage(self) -> np.ndarray:
        """Apply the buffer to the values in memory and empty it; the grid indices of its
        points, one a row (what :meth:`_write_chunks` writes)."""
        batch, self._buffer = self._buffer, []
        where = tuple(np.array([idx for idx, _, _ in batch]).T)
        for name, (dtype, _, _, fill) in self.variables.items():
            if name == "status":
                column = ["done" if err is None else "failed" for _, _, err in batch]
            elif name == "error":
                column = ["" if err is None else err for _, _, err in batch]
            else:
                column = [values.get(name, fill) for _, values, _ in batch]
            self._values[name][where] = np.array(column, dtype=dtype)
        return np.stack(where, axis=1)

    def _write_chunks(self, names, points: np.ndarray) -> None:
        """Rewrite, whole, every chunk file of the variables ``names`` that holds one of
        ``points``, from the values in memory (each file replaced atomically)."""
        for name in names:
            arr = self._arrays[name]
            chunks = np.asarray(arr.chunks)
            for c in np.unique(points // chunks, axis=0):
                region = tuple(slice(int(i) * int(k), min((int(i) + 1) * int(k), int(n)))
                               for i, k, n in zip(c, chunks, arr.shape))
                arr[region] = self._values[name][region]


def write_point(path, spec: Spec, point: PointIndex, values: dict) -> None:
    """Write one finished point at once: its values, then ``status = done`` (a
    :class:`PointWriter` of one point; a run batches its points instead)."""
    writer = PointWriter(path, spec, max_points=1)
    writer.add_done(point, values)
    writer.flush()


def write_failure(path, spec: Spec, point: PointIndex, message: str) -> None:
    """Record one failed point at once: its values reset to unfinished, its message, then
    ``status = failed``."""
    writer = PointWriter(path, spec, max_points=1)
    writer.add_failed(point, message)
    writer.flush()


def update_attrs(path, **attrs) -> None:
    """Add or replace Dataset attributes (e.g. run start/end times) and reconsolidate."""
    group = zarr.open_group(str(path), mode="r+")
    group.attrs.update(attrs)
    zarr.consolidate_metadata(str(path))
