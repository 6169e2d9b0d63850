"""The result store: a labelled xarray Dataset in Zarr, written point by point.

Layout
------
Dimensions are :data:`sweep.spec.DIMENSIONS`; every data variable spans all six, chunked with
size 1 along each, so every grid point owns its chunks and a write can never clobber another
point's values. The full template (all points ``pending``, floats NaN, ints −1) is written before
any work starts; each finished point is then written by region from ONE writer (the client):
first its values, then, in a second call, its ``status`` — the commit marker. A crash therefore
loses nothing finished, and a point whose status is ``done`` has all its values.

Variables, units and meanings are in :data:`VARIABLES`; provenance is in the Dataset attrs.
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

from .spec import DIMENSIONS, Spec

__all__ = ["VARIABLES", "COORD_ATTRS", "StoreMismatch", "PointIndex", "create_store",
           "open_store", "check_compatible", "point_status", "write_point", "write_failure",
           "update_attrs", "SEEDS_POLICY", "STATUS_VALUES"]

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
    "weight_energy": {"long_name": "energy weight W_E (on energies per atom)", "units": "1"},
    "weight_forces": {"long_name": "force weight W_F", "units": "1"},
}

SEEDS_POLICY = ("Every random number comes from numpy's default_rng seeded with an integer "
                "derived by SHA-256 from (training.seed, experiment, defect, L, set name); a "
                "re-run of the same spec reproduces every training and test set bit for bit.")


class StoreMismatch(RuntimeError):
    """An existing store was written by a different spec (or is damaged)."""


@dataclass(frozen=True)
class PointIndex:
    """Integer position of one grid point along each dimension."""

    idx: tuple[int, ...]

    def region(self) -> dict:
        return {d: slice(i, i + 1) for d, i in zip(DIMENSIONS, self.idx)}

    def labels(self, spec: Spec) -> dict:
        return {d: spec.grid[d][i] for d, i in zip(DIMENSIONS, self.idx)}


def _coords(spec: Spec) -> dict:
    coords = {}
    for d in DIMENSIONS:
        vals = spec.grid[d]
        arr = np.array(vals, dtype=_STR) if isinstance(vals[0], str) else np.array(vals, "i8")
        coords[d] = xr.Variable(d, arr, COORD_ATTRS[d])
    coords["weight_energy"] = xr.Variable(
        "weights", np.array([spec.weights[w]["energy"] for w in spec.grid["weights"]]),
        COORD_ATTRS["weight_energy"])
    coords["weight_forces"] = xr.Variable(
        "weights", np.array([spec.weights[w]["forces"] for w in spec.grid["weights"]]),
        COORD_ATTRS["weight_forces"])
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
    for name, (dtype, units, long_name, fill) in VARIABLES.items():
        data = np.full(shape, fill, dtype=dtype)
        data_vars[name] = xr.Variable(DIMENSIONS, data, {"units": units, "long_name": long_name})
    ds = xr.Dataset(data_vars, coords=_coords(spec))
    ds.attrs = {
        "title": f"MLIP generalisation sweep {spec.name}",
        "spec_name": spec.name,
        "experiment": spec.experiment,
        "spec_toml": spec.text,
        "spec_fingerprint": spec.fingerprint(),
        "fixed_parameters": json.dumps(spec.fixed_parameters(), sort_keys=True),
        "spatial_dimension": 2,
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
    enc = {name: {"chunks": (1,) * len(DIMENSIONS)} for name in ds.data_vars}
    for name in ("n_basis", "rank", "n_observations", "relax_steps"):
        enc[name]["_FillValue"] = None  # ints are never missing: −1 marks "not computed"
    return enc


def create_store(path: str | os.PathLike, spec: Spec) -> xr.Dataset:
    """Write the template of ``spec`` to a new store at ``path`` and return it.

    The template is written beside ``path`` and renamed into place, so a store either exists
    complete or not at all.
    """
    ds = template(spec)
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    ds.to_zarr(tmp, mode="w-", encoding=_encoding(ds), consolidated=True,
               zarr_format=ZARR_FORMAT)
    os.rename(tmp, path)
    return ds


def open_store(path: str | os.PathLike) -> xr.Dataset:
    """Open a store eagerly enough to read statuses (no dask)."""
    return xr.open_zarr(path, chunks=None, consolidated=True)


def check_compatible(ds: xr.Dataset, spec: Spec) -> None:
    """Refuse a store written by another spec; say what differs."""
    problems = []
    if ds.attrs.get("spec_fingerprint") != spec.fingerprint():
        old = json.loads(ds.attrs.get("fixed_parameters", "{}"))
        new = spec.fixed_parameters()
        problems += [f"{k}: store has {old.get(k)!r}, spec has {new.get(k)!r}"
                     for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
        if not problems:
            problems.append("the fixed parameters differ (fingerprint mismatch)")
    for d in DIMENSIONS:
        if d not in ds.sizes:
            problems.append(f"dimension {d!r} missing from the store")
            continue
        have = [v.item() if hasattr(v, "item") else v for v in ds[d].values]
        want = list(spec.grid[d])
        if [str(v) for v in have] != [str(v) for v in want]:
            problems.append(f"grid.{d}: store has {have}, spec has {want}")
    missing = [v for v in VARIABLES if v not in ds.data_vars]
    if missing:
        problems.append(f"variables missing from the store: {missing}")
    if problems:
        raise StoreMismatch("the store was written by a different spec and will not be "
                            "overwritten:\n  " + "\n  ".join(problems))


def point_status(ds: xr.Dataset) -> np.ndarray:
    """Status of every grid point as a numpy string array of the grid's shape."""
    return np.array(np.asarray(ds["status"].values).tolist(), dtype=str)


def _point_dataset(values: dict, names) -> xr.Dataset:
    data = {}
    for name in names:
        dtype = VARIABLES[name][0]
        data[name] = (DIMENSIONS, np.full((1,) * len(DIMENSIONS), values[name], dtype=dtype))
    return xr.Dataset(data)


def write_point(path, point: PointIndex, values: dict) -> None:
    """Write one finished point: its values, then (second call) ``status = done``."""
    names = [n for n in VARIABLES if n not in ("status", "error")]
    _point_dataset({**{n: VARIABLES[n][3] for n in names}, **values}, names).to_zarr(
        path, region=point.region(), consolidated=True)
    _point_dataset({"status": "done", "error": ""}, ["error", "status"]).to_zarr(
        path, region=point.region(), consolidated=True)


def write_failure(path, point: PointIndex, message: str) -> None:
    """Record a failed point: its message, then ``status = failed``."""
    _point_dataset({"error": message}, ["error"]).to_zarr(path, region=point.region(),
                                                          consolidated=True)
    _point_dataset({"status": "failed"}, ["status"]).to_zarr(path, region=point.region(),
                                                             consolidated=True)


def update_attrs(path, **attrs) -> None:
    """Add or replace Dataset attributes (e.g. run start/end times) and reconsolidate."""
    group = zarr.open_group(str(path), mode="r+")
    group.attrs.update(attrs)
    zarr.consolidate_metadata(str(path))
