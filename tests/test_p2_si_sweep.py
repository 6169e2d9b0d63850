"""The P2 Si-edge experiment: its stages on the Kumagai reference, and a tiny sweep into Zarr."""

import re

import numpy as np
import pytest
import xarray as xr
from distributed import Client, LocalCluster

from kernels import dislocations as dk
from kernels.elasticity import cubic_constants_GPa
from kernels.kumagai import kumagai2007_silicon
from kernels.si_edge import SI_EDGE
from sweep.runner import run_sweep
from sweep.spec import builtin_specs, parse_spec


def tiny_si_text():
    t = builtin_specs()["p2-si-edge-quick"]
    for pat, rep in [(r'^name = ".*"$', 'name = "tiny-p2-si"'), (r"^L = \[.*\]$", "L = [4]"),
                     (r"^basis_size = \[.*\]$", "basis_size = [40]"),
                     (r'^observations = \[.*\]$', 'observations = ["E+F", "E+F+CLE"]'),
                     (r"^size = \d+$", "size = 8"),
                     (r"^n_train = \d+$", "n_train = 6"), (r"^n_test = \d+$", "n_test = 2"),
                     (r"^nradmax_by_orders = .*$", "nradmax_by_orders = [8, 4, 3]"),
                     (r"^lmax_by_orders = .*$", "lmax_by_orders = [0, 3, 2]")]:
        t = re.sub(pat, rep, t, flags=re.M)
    return t


@pytest.fixture(scope="module")
def lattice():
    return dk.lattice_reference(kumagai2007_silicon(), SI_EDGE)


def test_lattice_stage_has_clamped_rows_and_relaxed_predictor_constants(lattice):
    lat = lattice
    assert lat.a0_A == pytest.approx(5.429, abs=5e-4)
    assert lat.bulk_energy_eV_per_atom == pytest.approx(-4.630, abs=5e-4)
    assert cubic_constants_GPa(lat.relaxed_elastic_eV_per_A3) == pytest.approx(
        (166.4, 65.3, 77.1), abs=0.05)
    c11, c12, c44 = cubic_constants_GPa(lat.elastic_eV_per_A3)  # clamped ion
    assert (c11, c12) == pytest.approx((166.4, 65.3), abs=0.05) and c44 > 110.0
    assert lat.nonlinear_elastic_eV_per_A3.shape == (6, 6, 6)
    # the internal strain and Γ-point force constants stored for the fit's rows reproduce the
    # relaxed C through C⁰ − M_sΦ_s⁺M_sᵀ/Ω (measured 1.4e-7 eV/Å³ from the full-Φ route)
    from kernels.relaxed_elasticity import relaxed_from_sublattices

    assert lat.internal_strain_eV_per_A.shape == (6, 6)
    assert lat.force_constants_eV_per_A2.shape == (6, 6)
    assert lat.primitive_volume_A3 == pytest.approx(lat.a0_A**3 / 4, rel=1e-12)
    C = relaxed_from_sublattices(lat.elastic_eV_per_A3, lat.internal_strain_eV_per_A,
                                 lat.force_constants_eV_per_A2, lat.primitive_volume_A3)
    np.testing.assert_allclose(C, lat.relaxed_elastic_eV_per_A3, atol=1e-6)
    # Kleinman's internal strain: only shears move the two sublattices against each other
    M = lat.internal_strain_eV_per_A.reshape(6, 2, 3)
    assert np.abs(M[:3]).max() < 1e-6 and M[3, 0, 0] == pytest.approx(-M[3, 1, 0], abs=1e-9)
    assert abs(M[3, 0, 0]) > 10.0  # eV/Å per unit strain (measured 14.6)


def test_internal_strain_rows_pin_the_relaxed_elastic_constants(lattice):
    """A strongly weighted CLE block (W_V1 = 2e5) pins the relaxed C with the M_s, Φ_s rows
    (measured error 0.006 %), while the clamped-ion rows alone pin C⁰ (0.017 %) but leave the
    relaxed C 3.2 % off (40 functions, 4 + 2 configurations of the 144-atom L = 4 a0 cell;
    ~10 s). At W_V1 = 20 they measured 5.0 % and 8.4 %."""
    import dataclasses

    from kernels.ace import ACEBasis, ace_potential_config
    from kernels.relaxed_elasticity import relaxed_from_sublattices

    model = kumagai2007_silicon()
    data = dk.training_data(model, lattice.a0_A, 4, 4, 2, 0.1, 1, 2,
                            dk.RelaxOptions(1e-3, 2000, "precon-lbfgs"), SI_EDGE, lattice)
    basis = ACEBasis(ace_potential_config(["Si"], 40, 5.0, [8, 4, 3], [0, 3, 2]))
    rows = dk.design_rows(basis, data, lattice.a0_A, SI_EDGE)
    assert rows.internal_strain.shape == (6, 6, basis.n_functions)
    w = dk.Weights(100.0, 20.0, 2e5, 0.0)
    full = dk.fit(basis, rows, data, lattice, w, system=SI_EDGE)
    assert full.elastic_constant_error_percent < 0.05
    assert full.clamped_elastic_constant_error_percent < 0.05
    clamped_only = dk.fit(basis, dataclasses.replace(rows, internal_strain=None,
                                                     force_constants=None),
                          data, lattice, w, system=SI_EDGE)
    assert clamped_only.n_observations == full.n_observations - 72
    c = clamped_only.coeffs
    C = relaxed_from_sublattices(rows.elastic @ c, rows.internal_strain @ c,
                                 rows.force_constants @ c, lattice.primitive_volume_A3)
    ref = lattice.relaxed_elastic_eV_per_A3
    assert clamped_only.elastic_constant_error_percent < 0.05  # C⁰'s error, no M_s/Φ_s rows
    assert 100 * np.linalg.norm(C - ref) / np.linalg.norm(ref) > 2.0


def test_tiny_si_sweep_into_zarr(tmp_path):
    """Plumbing: every stage of the Si experiment through Dask into Zarr (~45 s). The physics is
    not checked here: fits this small (40 functions, 6 configurations, ε_F ≈ 0.07 eV/Å) let the
    four edges of the 384-atom cell glide together and annihilate (measured: geometry error
    15.945 Å, that of the perfect crystal); the quick preset keeps them (slow test below)."""
    spec = parse_spec(tiny_si_text())
    assert spec.experiment == "p2-dislocations-si-edge" and spec.n_points == 2
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                      dashboard_address=":0") as cluster, Client(cluster) as client:
        run_sweep(spec, tmp_path / "si.zarr", client, progress=False)
    ds = xr.open_zarr(tmp_path / "si.zarr")
    assert list(ds["defect"].values) == ["edge"]
    assert np.all(ds["status"].values == "done"), ds["error"].values
    el = ds["elastic_constant_error"].sel(observations=["E+F", "E+F+CLE"]).values.ravel()
    assert el[1] < el[0]  # fitting the elastic rows lowers the (relaxed) elastic-constant error
    clamped = ds["clamped_elastic_constant_error"].sel(observations=["E+F", "E+F+CLE"]).values
    assert np.all(np.isfinite(clamped)) and np.all(clamped.ravel() != el)
    # the CLE set adds C⁰ (36), zero stress (6), M_s (6 × 6) and Φ_s (6 × 6) rows
    n_obs = ds["n_observations"].sel(observations=["E+F", "E+F+CLE"]).values.ravel()
    assert n_obs[1] - n_obs[0] == 36 + 6 + 36 + 36
    for v in ("geometry_error", "energy_error", "rmse_forces", "rmse_virial"):
        assert np.all(np.isfinite(ds[v].values)) and np.all(ds[v].values > 0)
    assert ds.attrs["a0_A"] == pytest.approx(5.429, abs=5e-4)
    # the core/far split adds up; the CLE rows bring the predicted far-field error from C down
    g, core, far = (ds[v].values for v in ("geometry_error", "geometry_error_core",
                                           "geometry_error_far"))
    np.testing.assert_allclose(core**2 + far**2, g**2, rtol=1e-12)
    cle = ds["cle_far_field_error"].sel(observations=["E+F", "E+F+CLE"]).values.ravel()
    assert np.all(np.isfinite(cle)) and cle[1] < cle[0]
    assert ds["reference_c11"].attrs["units"] == "GPa"


@pytest.mark.slow
def test_quick_spec_runs(tmp_path):
    """The whole p2-si-edge-quick preset (9 points; 3 min on 2 shared cores)."""
    spec = parse_spec(builtin_specs()["p2-si-edge-quick"])
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=":0") as cluster, Client(cluster) as client:
        run_sweep(spec, tmp_path / "q.zarr", client, progress=False)
    ds = xr.open_zarr(tmp_path / "q.zarr")
    assert np.all(ds["status"].values == "done")
    assert np.all(np.isfinite(ds["energy_error"].values))
    # measured 0.29-4.0 Å; a fitted model that let the edges annihilate would give the perfect
    # crystal's 26.7 Å on this 1152-atom cell
    assert np.all(ds["geometry_error"].values < 10.0)
