"""Tests of the ``ds.sweep`` accessor (sweep/analysis.py) and the rates table (sweep/rates.py).

Synthetic Datasets in the store schema are written to a real Zarr store and reopened with plain
``xarray.open_zarr`` so that the StringDType status/error variables round-trip as in a real sweep.
"""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from scipy import stats

import sweep.analysis  # noqa: F401  (registers ds.sweep)
from sweep import rates
from sweep.analysis import fit_loglog

STR = np.dtypes.StringDType()
FLOAT_VARS = {
    "geometry_error": ("Å", "geometry error ||Dy - Dy_ML||"),
    "energy_error": ("eV", "energy error |E - E_ML|"),
    "formation_energy_error": ("eV", "formation-energy error"),
    "rmse_energy": ("meV/atom", "test RMSE of energy per atom"),
    "rmse_forces": ("eV/Å", "test RMSE of forces"),
    "force_constant_error": ("%", "relative force-constant error on the homogeneous lattice"),
    "fit_time": ("s", "fit time"),
}
DIMS = ("defect", "n_defects", "L", "basis_size", "weights", "observations")


def make_dataset(
    *,
    defects=("vacancy",),
    n_defects=(2, 3),
    Ls=(4, 5, 6, 7, 8, 10),
    basis_sizes=(50, 100, 200, 400, 800),
    weights=("WE100-WF1",),
    observations=("E+F",),
    p_geom_L=-1.0,
    p_energy_L=-2.0,
    noise=0.03,
    seed=0,
    experiment="p1-point-defects-2d",
) -> xr.Dataset:
    """A finished sweep where geometry = a √n_D ε_F L^p_geom and energy = b n_D ε_F² L^p_energy,
    ε_F = rmse_forces depending on the basis size only, all with multiplicative log-normal noise."""
    rng = np.random.default_rng(seed)
    shape = (len(defects), len(n_defects), len(Ls), len(basis_sizes), len(weights), len(observations))
    nd = np.asarray(n_defects, float).reshape(1, -1, 1, 1, 1, 1)
    L = np.asarray(Ls, float).reshape(1, 1, -1, 1, 1, 1)
    B = np.asarray(basis_sizes, float).reshape(1, 1, 1, -1, 1, 1)

    def noisy(a):
        return np.broadcast_to(a, shape) * np.exp(noise * rng.standard_normal(shape))

    rmse_f = noisy(0.2 * (B / 50.0) ** -0.5)
    geometry = noisy(0.5 * np.sqrt(nd) * rmse_f * L**p_geom_L)
    energy = noisy(3.0 * nd * rmse_f**2 * L**p_energy_L)
    values = {
        "geometry_error": geometry,
        "energy_error": energy,
        "formation_energy_error": 0.5 * energy,
        "rmse_energy": noisy(1e3 * rmse_f**2),
        "rmse_forces": rmse_f,
        "force_constant_error": noisy(5.0 * rmse_f / 0.2),
        "fit_time": noisy(0.01 * B * L),
    }
    data = {
        name: (DIMS, values[name], {"units": u, "long_name": ln}) for name, (u, ln) in FLOAT_VARS.items()
    }
    data["n_basis"] = (DIMS, np.broadcast_to(B.astype(np.int64), shape).copy(),
                       {"units": "1", "long_name": "number of ACE basis functions"})
    data["n_observations"] = (DIMS, np.broadcast_to((L * L * 300).astype(np.int64), shape).copy(),
                              {"units": "1", "long_name": "number of observations"})
    data["status"] = (DIMS, np.full(shape, "done", dtype=STR), {"units": "1", "long_name": "status"})
    data["error"] = (DIMS, np.full(shape, "", dtype=STR), {"units": "1", "long_name": "error message"})
    coords = {
        "defect": ("defect", np.asarray(defects, dtype=STR)),
        "n_defects": ("n_defects", np.asarray(n_defects, np.int64)),
        "L": ("L", np.asarray(Ls, np.int64), {"units": "r0"}),
        "basis_size": ("basis_size", np.asarray(basis_sizes, np.int64)),
        "weights": ("weights", np.asarray(weights, dtype=STR)),
        "weight_energy": ("weights", np.full(len(weights), 100.0)),
        "weight_forces": ("weights", np.ones(len(weights))),
        "observations": ("observations", np.asarray(observations, dtype=STR)),
    }
    attrs = {"experiment": experiment, "spec_name": "synthetic", "spec_toml": "", "dimension": "2",
             "spatial_dimension": 2}
    return xr.Dataset(data, coords=coords, attrs=attrs)


def roundtrip(ds: xr.Dataset, path) -> xr.Dataset:
    ds.to_zarr(path, mode="w")
    return xr.open_zarr(path)


def set_point(ds: xr.Dataset, status: str, message: str = "", **where) -> None:
    """Set status (and error message) of the points selected by label, in place (numpy masks)."""
    index = tuple(
        int(np.flatnonzero(ds[d].values == where[d])[0]) if d in where else slice(None) for d in DIMS
    )
    ds["status"].values[index] = status
    ds["error"].values[index] = message


def test_slope_vs_L_recovers_exponents_with_noise(tmp_path):
    ds = roundtrip(make_dataset(p_geom_L=-1.0, p_energy_L=-2.0, seed=1), tmp_path / "s.zarr")
    assert ds["status"].dtype == STR  # the StringDType round trip this test exercises
    geo = ds.sweep.slope("geometry_error", against="L")
    en = ds.sweep.slope("energy_error", against="L")
    assert set(geo.dims) == {"defect", "n_defects", "basis_size", "weights", "observations"}
    assert "L" not in geo.coords
    assert np.all(geo.n_points.values == 6)
    for res, true in ((geo, -1.0), (en, -2.0)):
        # each of the 10 curves within ~3 standard errors, their mean much closer
        assert np.all(np.abs(res.slope.values - true) < 0.3), res.slope.values
        assert abs(float(res.slope.mean()) - true) < 0.05
        assert np.all(res.stderr.values < 0.15)
        covered = (res.ci_low.values <= true) & (true <= res.ci_high.values)
        assert covered.mean() >= 0.7
        assert np.all(res.ci_low.values < res.slope.values)
        assert np.all(res.slope.values < res.ci_high.values)
    # the theory slopes for this experiment are attached
    assert np.all(geo.predicted.values == -1.0) and np.all(en.predicted.values == -2.0)
    assert geo.slope.attrs["units"] == "1" and geo.intercept.attrs["units"] == "log10(Å)"


def test_slope_matches_scipy_linregress_and_t_interval(tmp_path):
    ds = roundtrip(make_dataset(noise=0.1, seed=2), tmp_path / "s.zarr")
    res = ds.sweep.slope("geometry_error", against="L", confidence=0.9)
    sel = dict(defect="vacancy", n_defects=3, basis_size=200, weights="WE100-WF1", observations="E+F")
    y = ds.geometry_error.sel(**sel).values
    x = ds.L.values.astype(float)
    ref = stats.linregress(np.log10(x), np.log10(y))
    one = res.sel(**sel)
    half = stats.t.ppf(0.95, len(x) - 2) * ref.stderr
    np.testing.assert_allclose(one.slope.item(), ref.slope, rtol=1e-10)
    np.testing.assert_allclose(one.intercept.item(), ref.intercept, rtol=1e-10)
    np.testing.assert_allclose(one.stderr.item(), ref.stderr, rtol=1e-10)
    np.testing.assert_allclose([one.ci_low.item(), one.ci_high.item()], [ref.slope - half, ref.slope + half],
                               rtol=1e-10)


def test_slope_vs_rmse_is_per_L_over_basis_size(tmp_path):
    ds = roundtrip(make_dataset(seed=3), tmp_path / "s.zarr")
    geo = ds.sweep.slope("geometry_error", against="rmse_forces")
    en = ds.sweep.slope("energy_error", against="rmse_forces")
    assert "L" in geo.dims and "basis_size" not in geo.dims
    assert np.all(geo.n_points.values == 5)
    assert np.all(np.abs(geo.slope.values - 1.0) < 0.2)
    assert np.all(np.abs(en.slope.values - 2.0) < 0.3)
    assert np.all(geo.predicted.values == 1.0) and np.all(en.predicted.values == 2.0)
    # pooling L and basis_size: one fit per remaining group over all 30 points, tighter interval
    pooled = ds.sweep.slope("energy_error", against="rmse_forces", dims=("basis_size", "L"))
    assert set(pooled.dims) == {"defect", "n_defects", "weights", "observations"}
    assert np.all(pooled.n_points.values == 30)


def test_failed_and_pending_points_are_skipped(tmp_path):
    ds = make_dataset(noise=0.0, seed=4)
    clean = ds.sweep.slope("geometry_error", against="L")
    np.testing.assert_allclose(clean.slope.values, -1.0, atol=1e-12)
    # poison two points with wild but finite values: they must not enter the fit
    ds["geometry_error"].loc[dict(n_defects=2, L=6, basis_size=100)] = 1e6
    ds["geometry_error"].loc[dict(n_defects=2, L=8, basis_size=100)] = 1e-9
    set_point(ds, "failed", "relaxation did not converge", n_defects=2, L=6, basis_size=100)
    set_point(ds, "pending", n_defects=2, L=8, basis_size=100)
    # and a done point with a non-positive value: skipped too
    ds["geometry_error"].loc[dict(n_defects=3, L=5, basis_size=400)] = 0.0
    ds = roundtrip(ds, tmp_path / "s.zarr")
    assert ds.sweep.counts() == {"pending": 1, "done": 58, "failed": 1}
    assert int(ds.sweep.done.sum()) == 58
    fails = ds.sweep.failures()
    assert len(fails) == 1 and fails[0]["error"] == "relaxation did not converge"
    assert fails[0]["n_defects"] == 2 and fails[0]["L"] == 6
    res = ds.sweep.slope("geometry_error", against="L")
    np.testing.assert_allclose(res.slope.values, -1.0, atol=1e-9)
    assert res.n_points.sel(n_defects=2, basis_size=100).values.ravel().tolist() == [4]
    assert res.n_points.sel(n_defects=3, basis_size=400).values.ravel().tolist() == [5]
    assert res.n_points.sel(n_defects=3, basis_size=50).values.ravel().tolist() == [6]
    assert res.attrs["skipped_not_done"] == 2


def test_fewer_than_three_points_refuses_with_message(tmp_path):
    ds = make_dataset(Ls=(4, 6, 8), n_defects=(2,), basis_sizes=(50, 100), seed=5)
    set_point(ds, "pending", L=8, basis_size=50)
    ds = roundtrip(ds, tmp_path / "s.zarr")
    # one curve with only two done points: refuses
    curve = ds.sel(basis_size=[50])
    with pytest.raises(ValueError, match="fewer than 3 finite points"):
        curve.sweep.slope("geometry_error", against="L")
    # vectorised: the 2-point group is NaN with n_points 2, the full one is fitted
    res = ds.sweep.slope("geometry_error", against="L")
    short = res.sel(basis_size=50).squeeze()
    full = res.sel(basis_size=100).squeeze()
    assert np.isnan(short.slope.item()) and np.isnan(short.ci_low.item()) and short.n_points.item() == 2
    assert np.isfinite(full.slope.item()) and full.n_points.item() == 3
    assert res.attrs["groups_refused"] == 1
    # strict: any refused group raises, naming it
    with pytest.raises(ValueError, match=r"1 of 2 groups.*'basis_size': 50.*\(2 points\)"):
        ds.sweep.slope("geometry_error", against="L", strict=True)


def test_size_one_dimensions(tmp_path):
    ds = roundtrip(make_dataset(Ls=(6,), n_defects=(2,), seed=6), tmp_path / "s.zarr")
    with pytest.raises(ValueError, match="fewer than 3"):
        ds.sweep.slope("geometry_error", against="L")
    res = ds.sweep.slope("geometry_error", against="rmse_forces")
    assert res.slope.shape == (1, 1, 1, 1, 1)
    assert abs(res.slope.item() - 1.0) < 0.2


def test_constant_regressor_refuses():
    ds = make_dataset(Ls=(6,), n_defects=(2,), seed=7)
    ds["rmse_forces"][:] = 0.1
    with pytest.raises(ValueError, match="does not vary"):
        ds.sweep.slope("geometry_error", against="rmse_forces")


def test_unknown_names_raise():
    ds = make_dataset(Ls=(4, 5, 6), seed=8)
    with pytest.raises(ValueError, match="no data variable 'nope'"):
        ds.sweep.slope("nope")
    with pytest.raises(ValueError, match="cannot fit against 'T'"):
        ds.sweep.slope("geometry_error", against="T")
    with pytest.raises(ValueError, match="cannot regress over 'rattle'"):
        ds.sweep.slope("geometry_error", against="L", dims=("L", "rattle"))


def test_matched_accuracy_picks_closest_basis_per_L():
    ds = make_dataset(noise=0.0, seed=9)
    # make the RMSE depend on L as well, so the matched basis size differs between L values
    ds["rmse_forces"] = ds["rmse_forces"] * (ds.L / 4.0) ** 1.0
    m = ds.sweep.matched_accuracy()
    assert "basis_size" not in m.dims and "basis_size" in m.coords
    target = m.rmse_target.isel(defect=0, n_defects=0, weights=0, observations=0, L=0).item()
    # default target: the best accuracy the worst L reaches
    best_per_L = ds.rmse_forces.isel(defect=0, n_defects=0, weights=0, observations=0).min("basis_size")
    assert target == pytest.approx(float(best_per_L.max()))
    chosen = m.basis_size.isel(defect=0, n_defects=0, weights=0, observations=0)
    assert chosen.sel(L=10).item() == 800 and chosen.sel(L=4).item() < 800
    r = m.rmse_forces.isel(defect=0, n_defects=0, weights=0, observations=0)
    assert np.all(np.abs(np.log10(r.values / target)) <= np.log10(2.0) / 4 + 1e-12)


def test_counts_without_status_and_with_unknown_status():
    ds = make_dataset(Ls=(4, 5, 6), seed=10)
    ds["status"].values[0, 0, 0, 0, 0, 0] = "running"
    c = ds.sweep.counts()
    assert list(c)[:3] == ["pending", "done", "failed"] and c["running"] == 1
    assert sum(c.values()) == ds.status.size
    assert ds.drop_vars(["status", "error"]).sweep.counts()["done"] == ds.status.size


def test_fit_loglog_exact_power_law():
    x = np.array([[1.0, 2.0, 4.0, 8.0], [1.0, 2.0, 4.0, np.nan]])
    y = 3.0 * x**-1.5
    out = fit_loglog(x, y)
    np.testing.assert_allclose(out["slope"], [-1.5, -1.5])
    np.testing.assert_allclose(out["intercept"], np.log10(3.0))
    np.testing.assert_allclose(out["stderr"], 0.0, atol=1e-12)
    assert out["n_points"].tolist() == [4, 3]


def test_rates_table_cites_the_theorems():
    p1 = rates.predicted_rates("p1-point-defects-2d", "E+F")
    assert (p1.geometry_vs_L, p1.energy_vs_L, p1.geometry_vs_rmse, p1.energy_vs_rmse) == (-1.0, -2.0, 1.0, 2.0)
    assert "P1 Theorem 3.1" in p1.source
    si = rates.predicted_rates("p1-si", "E+F")
    assert (si.geometry_vs_L, si.energy_vs_L) == (-1.5, -3.0)
    assert rates.predicted_slope("p2-dislocations", "E+F", "geometry_error", "L") == 0.0
    assert rates.predicted_slope("p2-dislocations", "E+F+CLE", "geometry_error", "L") == -1.0
    assert rates.predicted_slope("p2-dislocations", "E+F+CLE+NL", "geometry_error", "L") == -2.0
    assert rates.predicted_slope("p2-dislocations", "e+f+cle+nonlinear", "energy_error", "L") == -2.0
    assert rates.predicted_slope("p2-w-screw", "E+F+CLE", "energy_error", "rmse_forces") == 2.0
    assert "P2 Theorem 3.1" in rates.RATES["p2-dislocations", "E+F+CLE"].source
    # a p1 experiment not in the table falls back on its spatial dimension
    assert rates.predicted_slope("p1-other", "E+F", "energy_error", "L", spatial_dimension=3) == -3.0
    assert rates.predicted_slope("unknown", "E+F", "geometry_error", "L") is None
    assert rates.predicted_slope("p1-si", "E+F", "fit_time", "L") is None
    # the accessor uses the table, per observation set
    ds = make_dataset(Ls=(4, 5, 6), observations=("E+F", "E+F+CLE", "E+F+CLE+NL"),
                      experiment="p2-dislocations", seed=11)
    res = ds.sweep.slope("geometry_error", against="L")
    assert res.predicted.sel(observations="E+F+CLE").values.ravel()[0] == -1.0
    assert res.predicted.sel(observations="E+F").values.ravel()[0] == 0.0
