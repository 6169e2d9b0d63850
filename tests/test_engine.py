"""The sweep engine end to end: real LocalCluster, real pyace fits, real Zarr stores."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import xarray as xr
from distributed import Client, LocalCluster, get_task_stream

from kernels.finnis_sinclair import FinnisSinclair, wang2014_tungsten
from sweep import spec as spec_module
from sweep import tasks
from sweep.runner import run_sweep
from sweep.spec import DIMENSIONS, parse_spec
from sweep.store import StoreMismatch, VARIABLES
from tests.tiny import TIMINGS, tiny_spec, tiny_spec_text



@pytest.fixture(scope="module")
def client(local_client):
    """The session's LocalCluster client (2 single-threaded worker processes)."""
    return local_client


@pytest.fixture(scope="module")
def clean_run(client, tmp_path_factory):
    """A complete run of the tiny spec, opened with plain xarray."""
    path = tmp_path_factory.mktemp("clean") / "tiny.zarr"
    summary = run_sweep(tiny_spec(), path, client, progress=False)
    return path, summary, xr.open_zarr(path)


def _values(ds):
    return ds.drop_vars(TIMINGS).load()


def test_end_to_end_store_layout(clean_run):
    path, summary, ds = clean_run
    assert summary.done == 4 and summary.failed == 0
    assert tuple(ds["geometry_error"].dims) == DIMENSIONS
    assert dict(ds.sizes) == {"defect": 1, "n_defects": 1, "L": 2, "basis_size": 2,
                              "weights": 1, "observations": 1}
    for name in VARIABLES:
        assert ds[name].attrs["units"] and ds[name].attrs["long_name"], name
    assert ds["geometry_error"].attrs["units"] == "Å"
    assert ds["rmse_energy"].attrs["units"] == "meV/atom"
    assert (np.asarray(ds.status.values) == "done").all()
    assert (np.asarray(ds.error.values) == "").all()
    for name in ("geometry_error", "energy_error", "rmse_energy",
                 "rmse_forces", "force_constant_error", "fit_time"):
        v = ds[name].values
        assert np.isfinite(v).all() and (v >= 0).all(), name
    # the papers' loss (no bulk-energy row) leaves formation energies undetermined: NaN, and
    # the attribute says why
    assert np.isnan(ds["formation_energy_error"].values).all()
    assert "bulk_energy_row = false" in ds["formation_energy_error"].attrs["comment"]
    assert (ds.n_basis.values > 0).all() and (ds.n_basis.values <= 30).all()
    # rows = n_train × (1 energy + 2 force components × (L² − 1) atoms); no perfect-cell row
    n_obs = ds.n_observations.isel(basis_size=0).squeeze().values
    assert list(n_obs) == [10 * (1 + 2 * (L * L - 1)) for L in (4, 5)]
    assert ds.attrs["spec_name"] == "tiny"
    assert "[grid]" in ds.attrs["spec_toml"]
    assert json.loads(ds.attrs["package_versions"])["python-ace"]
    assert ds.attrs["run_started_at"] and ds.attrs["run_finished_at"]
    assert "SHA-256" in ds.attrs["seeds_policy"]
    assert 2.6 < ds.attrs["r0_A"] < 2.9


def test_intermediates_are_shared(clean_run):
    """One lattice, one reference relaxation per (defect, n_D, L), one training set per L."""
    _, summary, _ = clean_run
    # one design pass per (defect, L) serves both basis sizes (kernels.point_defect_slices)
    assert summary.stages == {"lattice": 1, "simulation": 2, "training": 2, "design": 2,
                              "fit": 4, "point": 4}


def test_resume_computes_only_missing_points_with_identical_values(client, clean_run, tmp_path):
    path = tmp_path / "resumed.zarr"
    first = run_sweep(tiny_spec(), path, client, max_points=1, progress=False)
    assert first.done == 1 and first.remaining == 3
    status = np.asarray(xr.open_zarr(path).status.values)
    assert (status == "done").sum() == 1 and (status == "pending").sum() == 3
    with get_task_stream(client) as ts:
        second = run_sweep(tiny_spec(), path, client, progress=False)
    assert second.done == 3 and second.skipped == 1
    ran = [t["key"] for t in ts.data]
    assert sum(k.startswith("point-") for k in ran) == 3  # the finished point is not recomputed
    third = run_sweep(tiny_spec(), path, client, progress=False)
    assert third.done == 0 and third.skipped == 4 and third.stages == {}
    xr.testing.assert_equal(_values(xr.open_zarr(path)), _values(clean_run[2]))


def test_store_of_another_spec_is_refused(client, clean_run):
    path = clean_run[0]
    other = parse_spec(tiny_spec_text().replace("rattle_A = 0.03", "rattle_A = 0.02"))
    with pytest.raises(StoreMismatch, match="rattle_A"):
        run_sweep(other, path, client, progress=False)
    assert (np.asarray(xr.open_zarr(path).status.values) == "done").all()


class _FailsOnSmallCells(FinnisSinclair):
    """The real W potential, except that it refuses cells of fewer than 20 atoms."""

    def evaluate(self, positions_A, cell_A, symbols=None, pbc=(True, True, True)):
        if len(positions_A) < 20:
            raise FloatingPointError(f"refusing a cell of {len(positions_A)} atoms")
        return super().evaluate(positions_A, cell_A, symbols, pbc)


def _failing_model():
    w = wang2014_tungsten()
    return _FailsOnSmallCells(w.r_A, w.pair_eV, w.density_eV2, "fails-on-small-cells")


def test_failing_point_is_recorded_and_the_sweep_goes_on(tmp_path, monkeypatch):
    """Points whose training cell (L = 4: 15 atoms) makes the kernel raise are stored as failed
    with the message; the L = 5 points (24 atoms) finish. Threads, so the registry is shared."""
    monkeypatch.setitem(tasks.REFERENCE_MODELS, "fails-on-small-cells", _failing_model)
    exp = spec_module.EXPERIMENTS["p1-point-defects-2d"]
    allowed = {**exp.allowed, "reference.model": ("fs-w-wang2014", "fails-on-small-cells")}
    monkeypatch.setitem(spec_module.EXPERIMENTS, "p1-point-defects-2d",
                        dataclasses.replace(exp, allowed=allowed))
    spec = parse_spec(tiny_spec_text().replace('model = "fs-w-wang2014"',
                                               'model = "fails-on-small-cells"'))
    path = tmp_path / "failing.zarr"
    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                      dashboard_address=":0") as cluster, Client(cluster) as c:
        summary = run_sweep(spec, path, c, progress=False)
    assert summary.failed == 2 and summary.done == 2
    ds = xr.open_zarr(path)
    status = np.asarray(ds.status.sel(L=4).values)
    errors = np.asarray(ds.error.sel(L=4).values)
    assert (status == "failed").all()
    assert all("FloatingPointError: refusing a cell of 15 atoms" in e for e in errors.ravel())
    assert np.isnan(ds.geometry_error.sel(L=4).values).all()
    assert (np.asarray(ds.status.sel(L=5).values) == "done").all()
    assert np.isfinite(ds.geometry_error.sel(L=5).values).all()


def test_report_on_a_real_store(clean_run, tmp_path):
    """`sweep report` on the store of a real tiny sweep writes decodable figures and tables."""
    import matplotlib.image

    from sweep.cli import main

    out = tmp_path / "report"
    assert main(["report", str(clean_run[0]), "--out", str(out)]) == 0
    index = (out / "index.md").read_text()
    assert "done" in index and "4" in index
    pngs = sorted(out.rglob("*.png"))
    assert pngs
    for png in pngs:
        img = matplotlib.image.imread(png)
        assert img.ndim == 3 and img.shape[0] > 100 and img.std() > 0
    assert (out / "fit_quality.csv").read_text().count("\n") >= 4
