"""The P2 W-screw experiment end to end: a tiny real spec through Dask into Zarr."""

import re

import numpy as np
import pytest
import xarray as xr
from distributed import Client, LocalCluster

from sweep.runner import run_sweep
from sweep.spec import builtin_specs, parse_spec


def tiny_p2_text():
    t = builtin_specs()["p2-w-screw-quick"]
    for pat, rep in [(r'^name = ".*"$', 'name = "tiny-p2"'), (r"^L = \[.*\]$", "L = [5]"),
                     (r"^basis_size = \[.*\]$", "basis_size = [20]"),
                     (r'^observations = \[.*\]$', 'observations = ["E+F", "E+F+CLE"]'),
                     (r"^rattle_A = \[.*\]$", "rattle_A = [0.1]"), (r"^size = \d+$", "size = 8"),
                     (r"^n_train = \d+$", "n_train = 4"), (r"^n_test = \d+$", "n_test = 2"),
                     (r"^fmax_eV_per_A = .*$", "fmax_eV_per_A = 1e-4"),
                     (r"^nradmax_by_orders = .*$", "nradmax_by_orders = [8, 4, 3]"),
                     (r"^lmax_by_orders = .*$", "lmax_by_orders = [0, 3, 2]")]:
        t = re.sub(pat, rep, t, flags=re.M)
    return t


def test_tiny_p2_sweep_into_zarr(tmp_path):
    spec = parse_spec(tiny_p2_text())
    assert spec.n_points == 2
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                      dashboard_address=":0") as cluster, Client(cluster) as client:
        run_sweep(spec, tmp_path / "p2.zarr", client, progress=False)
    ds = xr.open_zarr(tmp_path / "p2.zarr")
    assert ds.sizes["rattle_A"] == 1 and ds.sizes["observations"] == 2
    assert np.all(ds["status"].values == "done")
    assert ds["rmse_virial"].attrs["units"] == "eV"
    assert ds["elastic_constant_error"].attrs["units"] == "%"
    el = ds["elastic_constant_error"].sel(observations=["E+F", "E+F+CLE"]).values.ravel()
    assert el[1] < el[0]  # fitting the elastic rows lowers the elastic-constant error
    assert np.all(np.isfinite(ds["geometry_error"].values))
    assert ds.attrs["a0_A"] == pytest.approx(3.1648, abs=1e-4)


@pytest.mark.slow
def test_quick_spec_runs(tmp_path):
    spec = parse_spec(builtin_specs()["p2-w-screw-quick"])
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=":0") as cluster, Client(cluster) as client:
        run_sweep(spec, tmp_path / "q.zarr", client, progress=False)
    ds = xr.open_zarr(tmp_path / "q.zarr")
    assert np.all(ds["status"].values == "done")
