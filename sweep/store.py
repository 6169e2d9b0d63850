"""The result store: a labelled xarray Dataset in Zarr, written point by point.

Layout
------
Dimensions are the spec's (:attr:`sweep.spec.Spec.dims`: the six common ones, then any the
experiment adds); every data variable spans all of them, chunked with size 1 along each, so every grid point owns its chunks and a write can never clobber another
point's values. The full template (all points ``pending``, floats NaN, ints −1) is written before
any work starts; each finished point is then written by region from ONE writer (the client):
first its values, then, in a second call, its ``status`` — the commit marker. A crash therefore
loses nothing finished, and a point whose status is ``done`` has all its values.

Variables, units and meanings are in :data:`VARIABLES` (plus the experiment's own, see
:func:`variables_for`); provenance is in the Dataset attrs.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
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
           "update_attrs", "SEEDS_POLICY", "STATUS_VALUES", "FORMATION_ENERGY_NOT_OBSERVED"]

STATUS_VALUES = ("pending", "done", "failed")
#: Zarr format 2: consolidated metadata and variable-length UTF-8 strings are part of its spec,
#: so any Zarr reader opens the store.
ZARR_FORMAT = 2
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


def _git_commit() -> str:
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
        "git_commit": _git_commit(),
        "created_at": _now(),
        "units_note": "lengths Å, energies eV, forces eV/Å; L and N in units of r0 (attr r0_A)",
    }
    return ds


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _encoding(ds: xr.Dataset) -> dict:
    enc = {name: {"chunks": (1,) * ds[name].ndim} for name in ds.data_vars}
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
            dropped = [v for v in have if v not in want]
            if dropped:
                problems.append(f"grid.{d}: the spec drops {dropped} that the store holds "
                                f"(store has {have}, spec has {want})")
            new_values = [v for v in want if v not in have]
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
    where = {d: [str(v) for v in new[d].values] for d in spec.dims}
    index = tuple(np.array([where[d].index(str(v)) for v in _grid_values(old, d)])
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


def verify_store(path: str | os.PathLike, ds: xr.Dataset, spec: Spec) -> None:
    """Refuse a damaged store: every array's own metadata must parse, and every finished
    (done or failed) point must have the chunks of every variable.

    Raises
    ------
    StoreDamaged
        Naming what is damaged and which points it touches.
    """
    path = Path(path)
    problems = []
    for name in variables_for(spec):
        meta = path / name / ".zarray"
        try:
            json.loads(meta.read_text())
        except (OSError, ValueError) as e:
            problems.append(f"{meta.relative_to(path.parent)}: unreadable ({e})")
    status = point_status(ds)
    finished = np.argwhere(np.isin(status, ["done", "failed"]))
    for name in variables_for(spec):
        folder = path / name
        if not folder.is_dir():
            continue
        present = {f.name for f in folder.iterdir()}
        lost = [tuple(int(i) for i in idx) for idx in finished
                if ".".join(str(int(i)) for i in idx) not in present]
        if lost:
            labels = [{d: spec.grid[d][i] for d, i in zip(spec.dims, idx)} for idx in lost[:3]]
            more = f" and {len(lost) - 3} more" if len(lost) > 3 else ""
            problems.append(f"{name}: chunks of {len(lost)} finished point(s) are missing, "
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
    """Variable name → grid indices of the done points whose chunk of that variable is
    missing (a store written one chunk per point per variable: a done point must have all)."""
    path = Path(path)
    status = point_status(ds)
    dims = ds["status"].dims
    done = [tuple(int(i) for i in idx) for idx in np.argwhere(status == "done")]
    lost = {}
    for name in ds.data_vars:
        if ds[name].dims != dims:
            continue
        folder = path / name
        present = {f.name for f in folder.iterdir()} if folder.is_dir() else set()
        gone = [idx for idx in done if ".".join(map(str, idx)) not in present]
        if gone:
            lost[name] = gone
    return lost


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


def _point_dataset(values: dict, names, variables: dict, dims: tuple) -> xr.Dataset:
    data = {}
    for name in names:
        dtype = variables[name][0]
        data[name] = (dims, np.full((1,) * len(dims), values[name], dtype=dtype))
    return xr.Dataset(data)


def _write_region(ds: xr.Dataset, path, point: PointIndex) -> None:
    ds.to_zarr(path, region=point.region(), consolidated=True, write_empty_chunks=True)


def write_point(path, spec: Spec, point: PointIndex, values: dict) -> None:
    """Write one finished point: its values, then (second call) ``status = done``."""
    variables = variables_for(spec)
    names = [n for n in variables if n not in ("status", "error")]
    _write_region(_point_dataset({**{n: variables[n][3] for n in names}, **values}, names,
                                 variables, point.dims), path, point)
    _write_region(_point_dataset({"status": "done", "error": ""}, ["error", "status"],
                                 variables, point.dims), path, point)


def write_failure(path, spec: Spec, point: PointIndex, message: str) -> None:
    """Record a failed point: its values reset to unfinished, its message, then
    ``status = failed``."""
    variables = variables_for(spec)
    names = [n for n in variables if n != "status"]
    _write_region(_point_dataset({**{n: variables[n][3] for n in names}, "error": message},
                                 names, variables, point.dims), path, point)
    _write_region(_point_dataset({"status": "failed"}, ["status"], variables, point.dims),
                  path, point)


def update_attrs(path, **attrs) -> None:
    """Add or replace Dataset attributes (e.g. run start/end times) and reconsolidate."""
    group = zarr.open_group(str(path), mode="r+")
    group.attrs.update(attrs)
    zarr.consolidate_metadata(str(path))
