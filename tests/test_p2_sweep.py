"""The P2 W-screw experiment end to end: a tiny real spec through Dask into Zarr."""

import re

import numpy as np
import pytest
import xarray as xr
from distributed import Client, LocalCluster

from sweep.runner import run_sweep
from sweep.spec import builtin_specs, parse_spec


def tiny_p2_text(builtin: str = "p2-w-screw-quick", name: str = "tiny-p2"):
    """A built-in P2 quick spec shrunk to two points (L = 4 ≤ L_D = 4, 20 functions per element,
    E+F and E+F+CLE, an 8 a0 simulation cell, 4 + 2 configurations)."""
    t = builtin_specs()[builtin]
    for pat, rep in [(r'^name = ".*"$', f'name = "{name}"'), (r"^L = \[.*\]$", "L = [4]"),
                     (r"^basis_size = \[.*\]$", "basis_size = [20]"),
                     (r'^observations = \[.*\]$', 'observations = ["E+F", "E+F+CLE"]'),
                     (r"^rattle_A = \[.*\]$", "rattle_A = [0.1]"), (r"^size = \d+$", "size = 8"),
                     (r"^n_train = \d+$", "n_train = 4"), (r"^n_test = \d+$", "n_test = 2"),
                     (r"^fmax_eV_per_A = .*$", "fmax_eV_per_A = 1e-4"),
                     (r"^nradmax_by_orders = .*$", "nradmax_by_orders = [8, 4, 3]"),
                     (r"^lmax_by_orders = .*$", "lmax_by_orders = [0, 3, 2]")]:
        t = re.sub(pat, rep, t, flags=re.M)
    return t


def run_local(spec, store, n_workers: int = 1):
    """Run a spec on a local Dask cluster of single-threaded worker processes; open the store."""
    with LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True,
                      dashboard_address=":0") as cluster, Client(cluster) as client:
        run_sweep(spec, store, client, progress=False)
    return xr.open_zarr(store)


def test_tiny_p2_sweep_into_zarr(tmp_path):
    spec = parse_spec(tiny_p2_text())
    assert spec.n_points == 2
    ds = run_local(spec, tmp_path / "p2.zarr")
    assert ds.sizes["rattle_A"] == 1 and ds.sizes["observations"] == 2
    assert np.all(ds["status"].values == "done")
    assert ds["rmse_virial"].attrs["units"] == "eV"
    assert ds["elastic_constant_error"].attrs["units"] == "%"
    el = ds["elastic_constant_error"].sel(observations=["E+F", "E+F+CLE"]).values.ravel()
    assert el[1] < el[0]  # fitting the elastic rows lowers the elastic-constant error
    assert np.all(np.isfinite(ds["geometry_error"].values))
    assert ds.attrs["a0_A"] == pytest.approx(3.1648, abs=1e-4)
    # the evidence on where the error sits, with units
    from sweep.experiments.p2_dislocations import EVIDENCE_VARIABLES

    for name, (_, units, long_name, _) in EVIDENCE_VARIABLES.items():
        assert ds[name].attrs["units"] == units and ds[name].attrs["long_name"] == long_name
        assert np.all(np.isfinite(ds[name].values)), name
    assert ds["geometry_error_core"].attrs["units"] == "Å"
    assert ds["elastic_c44"].attrs["units"] == "GPa"
    g, core, far = (ds[v].values for v in ("geometry_error", "geometry_error_core",
                                           "geometry_error_far"))
    np.testing.assert_allclose(core**2 + far**2, g**2, rtol=1e-12)
    assert np.all(core > 0) and np.all(far > 0)
    assert np.all(ds["geometry_error_far_line"].values <= far)
    assert np.all(ds["cle_far_field_error_line"].values <= ds["cle_far_field_error"].values)
    # the energy error is the difference of its two stored parts, each signed
    pred, relaxed = (ds[v].values for v in ("energy_predictor_difference",
                                            "energy_relaxed_difference"))
    np.testing.assert_allclose(np.abs(relaxed - pred), ds["energy_error"].values, rtol=1e-9)
    assert ds["energy_predictor_difference"].attrs["units"] == "eV"
    from kernels.dislocations import cubic_constants_and_anisotropy, lattice_reference
    from kernels.eam import zhou2001_tungsten

    ref = cubic_constants_and_anisotropy(lattice_reference(zhou2001_tungsten()).elastic_eV_per_A3)
    for k, name in enumerate(("reference_c11", "reference_c12", "reference_c44",
                              "reference_zener_anisotropy")):
        np.testing.assert_allclose(ds[name].values, ref[k], rtol=1e-9)
    # the CLE rows bring the fitted C to the reference's, and with it the CLE prediction to 0
    c44 = np.abs(ds["elastic_c44"].sel(observations=["E+F", "E+F+CLE"]).values.ravel() - ref[2])
    cle = ds["cle_far_field_error"].sel(observations=["E+F", "E+F+CLE"]).values.ravel()
    assert c44[1] < c44[0] and cle[1] < cle[0]


@pytest.mark.slow
def test_quick_spec_runs(tmp_path):
    ds = run_local(parse_spec(builtin_specs()["p2-w-screw-quick"]), tmp_path / "q.zarr", 2)
    assert np.all(ds["status"].values == "done")
