"""The P2 NiAl-screw experiment end to end: a tiny real spec through Dask into Zarr."""

import re

import numpy as np
import pytest
import xarray as xr
from distributed import Client, LocalCluster

from sweep.runner import run_sweep
from sweep.spec import builtin_specs, parse_spec


def tiny_nial_text():
    t = builtin_specs()["p2-nial-screw-quick"]
    for pat, rep in [(r'^name = ".*"$', 'name = "tiny-p2-nial"'), (r"^L = \[.*\]$", "L = [5]"),
                     (r"^basis_size = \[.*\]$", "basis_size = [20]"),
                     (r'^observations = \[.*\]$', 'observations = ["E+F", "E+F+CLE"]'),
                     (r"^size = \d+$", "size = 8"),
                     (r"^n_train = \d+$", "n_train = 4"), (r"^n_test = \d+$", "n_test = 2"),
                     (r"^fmax_eV_per_A = .*$", "fmax_eV_per_A = 1e-4"),
                     (r"^nradmax_by_orders = .*$", "nradmax_by_orders = [8, 4, 3]"),
                     (r"^lmax_by_orders = .*$", "lmax_by_orders = [0, 3, 2]")]:
        t = re.sub(pat, rep, t, flags=re.M)
    return t


def test_tiny_nial_sweep_into_zarr(tmp_path):
    spec = parse_spec(tiny_nial_text())
    assert spec.experiment == "p2-dislocations-nial-screw" and spec.n_points == 2
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                      dashboard_address=":0") as cluster, Client(cluster) as client:
        run_sweep(spec, tmp_path / "nial.zarr", client, progress=False)
    ds = xr.open_zarr(tmp_path / "nial.zarr")
    assert np.all(ds["status"].values == "done")
    assert ds.attrs["a0_A"] == pytest.approx(2.8587, abs=1e-4)
    assert np.all(ds["n_basis"].values == 40)  # 20 functions per element, two elements
    el = ds["elastic_constant_error"].sel(observations=["E+F", "E+F+CLE"]).values.ravel()
    assert el[1] < el[0]  # fitting the elastic rows lowers the elastic-constant error
    for v in ("geometry_error", "energy_error", "rmse_forces", "rmse_virial"):
        assert np.all(np.isfinite(ds[v].values)), v
    assert np.all(ds["geometry_error"].values > 0)
    assert ds["geometry_error"].attrs["units"] == "Å"


def test_nial_spec_rejects_the_w_reference():
    from sweep.spec import SpecError

    text = tiny_nial_text().replace('model = "eam-nial-mishin2002"', 'model = "eam-w-zhou2001"')
    with pytest.raises(SpecError):
        parse_spec(text)


@pytest.mark.slow
def test_quick_spec_runs(tmp_path):
    spec = parse_spec(builtin_specs()["p2-nial-screw-quick"])
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=":0") as cluster, Client(cluster) as client:
        run_sweep(spec, tmp_path / "q.zarr", client, progress=False)
    ds = xr.open_zarr(tmp_path / "q.zarr")
    assert np.all(ds["status"].values == "done")
    assert np.all(np.isfinite(ds["geometry_error"].values))
    assert np.all(np.isfinite(ds["energy_error"].values))
