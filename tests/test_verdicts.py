"""Verdicts, regimes and grid-change suggestions (sweep/analysis.py, sweep/rates.py,
sweep/report.py) on data built by construction: log–log points with a known slope and known
residuals, and fit errors whose dominant bound term is known by arithmetic."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from scipy import stats

from sweep import paper_values, rates
from sweep.analysis import MAX_HALF_WIDTH, TARGET_HALF_WIDTH, fit_loglog, grid_suggestion, verdict
from sweep.report import plot_error_vs_L, slope_table, write_report

STR = np.dtypes.StringDType()


def _points(Ls, slope, residuals, c=0.3):
    """y = c · L^slope · 10^residual: a known slope with a known scatter (log10 residuals)."""
    L = np.asarray(Ls, float)
    return L, c * L**slope * 10.0 ** np.asarray(residuals, float)


def _fit(L, y):
    out = fit_loglog(L[None, :], y[None, :])
    return {k: v[0] for k, v in out.items() if k != "residuals"}


def _half(fit):
    return 0.5 * (fit["ci_high"] - fit["ci_low"])


# --------------------------------------------------------------------------- verdicts
def test_wide_interval_around_the_prediction_is_inconclusive():
    # three L values over a factor 1.5 with ±0.1 log10 scatter: the slope is −1 ± several
    L, y = _points([4, 5, 6], -1.0, [0.1, -0.2, 0.1])
    fit = _fit(L, y)
    assert _half(fit) > MAX_HALF_WIDTH
    assert fit["ci_low"] <= -1.0 <= fit["ci_high"]
    v = verdict(fit["slope"], fit["ci_low"], fit["ci_high"], -1.0, "L", int(fit["n_points"]))
    assert v.startswith("inconclusive") and "agrees" not in v


def test_narrow_interval_around_the_prediction_agrees():
    Ls = np.geomspace(4, 32, 8)
    L, y = _points(Ls, -1.0, 0.01 * np.array([1, -1, 0, 1, -1, 0, -1, 1]))
    fit = _fit(L, y)
    assert _half(fit) < 0.1
    assert verdict(fit["slope"], fit["ci_low"], fit["ci_high"], -1.0, "L", 8) == "agrees (within CI)"


def test_narrow_interval_away_from_the_prediction_disagrees():
    Ls = np.geomspace(4, 32, 8)
    L, y = _points(Ls, -3.0, 0.01 * np.array([1, -1, 0, 1, -1, 0, -1, 1]))
    fit = _fit(L, y)
    assert fit["ci_high"] < -1.0
    # the error falls faster in L than the predicted L^-1 (consistent with an upper bound) ...
    assert verdict(fit["slope"], fit["ci_low"], fit["ci_high"], -1.0, "L", 8) == "faster than predicted"
    # ... and slower than a predicted L^-4; against the RMSE a shallower slope is "slower"
    assert verdict(fit["slope"], fit["ci_low"], fit["ci_high"], -4.0, "L", 8) == "slower than predicted"
    assert verdict(1.0, 0.9, 1.1, 2.0, "rmse_forces", 8) == "slower than predicted"
    assert verdict(np.nan, np.nan, np.nan, -1.0, "L", 2) == "too few points (2 < 3)"
    assert verdict(-1.0, -1.1, -0.9, None, "L", 5) == "no prediction"


# --------------------------------------------------------------------------- regimes
L_GRID = [4, 5, 6, 8]


def test_p1_regime_without_fit_errors_is_the_truncation_column():
    r = rates.p1_regime(L_GRID, 2, 0.0, 0.0, 0.0)
    assert r.column == "ε_E,F = ε_FC_hom = 0" and r.geometry_vs_L == -3.0
    assert r.energy_column == "ε_E,F = 0" and r.energy_vs_L == -2.0
    r3 = rates.p1_regime(L_GRID, 3, 0.0, 0.0, 0.0)
    assert (r3.geometry_vs_L, r3.energy_vs_L) == (-4.5, -3.0)


def test_p1_regime_force_constant_term_dominates():
    # ε_FC_hom = 50 %: L^-1 · 0.5 ≥ 0.0625 against L^-3 ≤ 0.0156 and ε_F = 1e-5: ≥ 3.9× everywhere
    r = rates.p1_regime(L_GRID, 2, 1e-5, 1e-3, 50.0)
    assert r.column == "ε_E,F = 0" and r.geometry_vs_L == -1.0
    assert "L^{-d/2} ε_FC_hom dominates" in r.reason
    terms = r.terms["geometry: L^{-d/2} ε_FC_hom"]
    np.testing.assert_allclose(terms, 0.5 / np.asarray(L_GRID, float))


def test_p1_regime_force_error_dominates_means_no_decay_in_L():
    r = rates.p1_regime(L_GRID, 2, 1.0, 1.0, 5.0)
    assert r.column == "L sufficiently large" and r.geometry_vs_L == 0.0
    # ε_F² = 1 ≫ ε_E = 1e-3 eV/atom and L^-2: the energy bound is the flat geometry bound squared
    assert r.energy_column == "geometry² (L sufficiently large)"
    L = np.asarray(L_GRID, float)
    gsum = 1.0 + 0.05 / L + L**-3.0
    assert r.energy_vs_L == pytest.approx(2 * np.polyfit(np.log(L), np.log(gsum), 1)[0], rel=1e-12)
    assert -0.1 < r.energy_vs_L < 0.0
    # with ε_E large instead (10 eV/atom, against ε_F² = 1e-4), the ε_E term holds the energy flat
    r = rates.p1_regime(L_GRID, 2, 1e-2, 1e4, 5.0)
    assert r.energy_column == "L sufficiently large" and r.energy_vs_L == 0.0


def test_p1_regime_crossover_predicts_the_bound_s_own_slope():
    # ε_FC_hom chosen so that L^-1 ε_FC = L^-3 at L = 5.66: neither term dominates on 4–8
    eFC = 100.0 / 32.0
    r = rates.p1_regime(L_GRID, 2, 0.0, 0.0, eFC)
    assert r.column == "crossover"
    L = np.asarray(L_GRID, float)
    bound = L**-1 * eFC / 100 + L**-3.0
    expected = np.polyfit(np.log(L), np.log(bound), 1)[0]
    assert r.geometry_vs_L == pytest.approx(expected, rel=1e-12)
    assert -3.0 < r.geometry_vs_L < -1.0


def test_measured_steep_interstitial_slope_is_not_faster_once_fc_error_vanishes():
    # a geometry slope of −4 ± 2 (4 L values) was "faster" than the design L^-1; with ε_FC_hom → 0
    # the regime predicts L^-3, which the interval contains — and ±2 is too wide to "agree"
    r = rates.p1_regime(L_GRID, 2, 1e-5, 1e-6, 1e-4)
    assert r.geometry_vs_L == -3.0
    assert verdict(-4.0, -6.0, -2.0, -1.0, "L", 4) == "faster than predicted"
    assert verdict(-4.0, -6.0, -2.0, r.geometry_vs_L, "L", 4).startswith("inconclusive")


def test_p2_regimes_follow_the_measured_elastic_error_and_the_observation_set():
    Ls = [5, 8, 10, 14]
    nl = rates.p2_regime(Ls, 15.0, "E+F+CLE+NL", 1e-5, 1e-4, 1e-3)
    assert nl.column == "ε_E,F = ε_V1 = ε_V2 = 0" and nl.geometry_vs_L == -2.0 and nl.energy_vs_L == -2.0
    cle = rates.p2_regime(Ls, 15.0, "E+F+CLE", 1e-5, 1e-4, 1e-3)
    assert cle.column == "ε_E,F = ε_V1 = 0" and cle.geometry_vs_L == -1.0
    assert "not measured" in cle.reason
    # no elasticity fitted: ε_V1 = 100 % makes log^1/2(15) · 1 = 1.65 ≥ 6.9× the L terms: stalls
    ef = rates.p2_regime(Ls, 15.0, "E+F", 1e-5, 1e-4, 100.0)
    assert ef.column == "ε_E,F = 0" and ef.geometry_vs_L == 0.0
    assert rates.P2_TABLE1[ef.column]["geometry_vs_L"] == 0.0


# --------------------------------------------------------------------------- grid suggestion
def _even_half(s, m, x_min, x_max):
    u = np.log10(np.geomspace(x_min, x_max, m))
    return stats.t.ppf(0.975, m - 2) * s / np.sqrt(np.sum((u - u.mean()) ** 2))


def test_grid_suggestion_reaches_the_target_half_width():
    L, y = _points([4, 5, 6, 8], -1.0, [0.03, -0.03, -0.02, 0.02])
    fit = _fit(L, y)
    s, n = float(fit["residual_sd"]), int(fit["n_points"])
    assert _half(fit) > MAX_HALF_WIDTH
    g = grid_suggestion(s, n, 4.0, 8.0, sxx=float(fit["sxx"]))
    assert g["half_width"] == pytest.approx(_half(fit), rel=1e-9)
    m = g["n_same_range"]
    # the suggested number of L values over 4–8 r0 is the fewest that reach ≤ 0.3
    assert _even_half(s, m, 4, 8) <= TARGET_HALF_WIDTH < _even_half(s, m - 1, 4, 8)
    # n L values from 4 r0 to the suggested L_max reach exactly 0.3
    assert _even_half(s, n, 4, g["x_max_same_n"]) == pytest.approx(TARGET_HALF_WIDTH, rel=1e-9)
    assert f"{m} L values" in g["text"] and "r0" in g["text"]


def test_grid_suggestion_says_when_only_the_scatter_can_help():
    g = grid_suggestion(0.4, 4, 5.0, 14.0)
    assert g["n_same_range"] is None and "no practical grid change" in g["text"]
    assert g["scatter_needed"] < 0.4


# --------------------------------------------------------------------------- report
def _store(Ls, *, resid, eps_F=1e-4, eps_FC=1e-3, defect="vacancy", basis=(60, 180, 540)):
    """A P1 store whose geometry error falls like L^-3 with the given log10 residuals per L and
    tiny fit errors (so the truncation column applies), RMSE ∝ B^-1/2."""
    L = np.asarray(Ls, float)[:, None]
    B = np.asarray(basis, float)[None, :]
    shape = (1, 1, len(Ls), len(basis), 1, 1)
    f = eps_F * (B / basis[0]) ** -0.5
    geo = 0.3 * L**-3.0 * 10.0 ** np.asarray(resid, float)[:, None] * (f / eps_F)
    dims = ("defect", "n_defects", "L", "basis_size", "weights", "observations")

    def full(a):
        return np.broadcast_to(a, (len(Ls), len(basis))).reshape(shape).copy()

    ds = xr.Dataset(
        {
            "geometry_error": (dims, full(geo), {"units": "Å"}),
            "energy_error": (dims, full(geo**2), {"units": "eV"}),
            "rmse_forces": (dims, full(f), {"units": "eV/Å"}),
            "rmse_energy": (dims, full(1e3 * f**2), {"units": "meV/atom"}),
            "force_constant_error": (dims, full(eps_FC * f / eps_F), {"units": "%"}),
            "n_basis": (dims, full(B.astype(np.int64) + 0 * L.astype(np.int64)), {"units": "1"}),
            "n_observations": (dims, full((300 * L * L).astype(np.int64) + 0 * B.astype(np.int64)),
                               {"units": "1"}),
            "fit_time": (dims, full(1e-3 * B * L), {"units": "s"}),
            "status": (dims, np.full(shape, "done", dtype=STR)),
        },
        coords={"defect": ("defect", np.asarray([defect], dtype=STR)), "n_defects": [2],
                "L": ("L", np.asarray(Ls, np.int64)), "basis_size": list(basis),
                "weights": ("weights", np.asarray(["WE100-WF1"], dtype=STR)),
                "observations": ("observations", np.asarray(["E+F"], dtype=STR))},
        attrs={"experiment": "p1-point-defects-2d", "spatial_dimension": 2, "spec_name": "by-construction"},
    )
    return ds


def test_report_states_regime_evidence_and_grid_change(tmp_path):
    ds = _store([4, 5, 6, 8], resid=[0.15, -0.2, -0.05, 0.1])
    rows, _ = slope_table(ds)
    geo = next(r for r in rows if r["variable"] == "geometry_error" and r["against"] == "L")
    assert geo["regime"] == "ε_E,F = ε_FC_hom = 0" and geo["predicted"] == -3.0
    assert geo["design_predicted"] == -1.0
    assert geo["verdict"].startswith("inconclusive")
    assert "L values" in geo["suggestion"] or "scatter must fall" in geo["suggestion"]
    assert geo["points"].count("L=") == 4 and (geo["x_min"], geo["x_max"]) == (4.0, 8.0)
    # the figure's guide line is the regime's L^-3, not the design column's L^-1
    sub = ds.sweep.matched_accuracy().isel(defect=0, weights=0, observations=0)
    fig = plot_error_vs_L(sub, curves="n_defects", regimes=ds.sweep.regimes())
    guide = next(ln for ln in fig.axes[0].get_lines() if ln.get_linestyle() == "--")
    gx, gy = np.asarray(guide.get_xdata(), float), np.asarray(guide.get_ydata(), float)
    assert np.log(gy[-1] / gy[0]) / np.log(gx[-1] / gx[0]) == pytest.approx(-3.0)
    md = write_report(ds, tmp_path / "rep").read_text()
    assert "Regime (which column of Table 1 applies)" in md and "L^{-3d/2} dominates" in md
    assert "Grid: to bring the 95 % half-width" in md and "Points: L=4:" in md
    # the store is a P1 vacancy store with L = 8 r0: the paper's Table 2 column sits next to it
    assert "P1 Table 2 side by side (L = 8 r0)" in md
    paper = paper_values.p1_table2(8)
    assert [r.n_basis for r in paper] == [383, 668, 1119, 1809, 2849]
    for r in paper:
        assert f"| paper | {r.n_basis} | 41600 |" in md
    assert md.count("| this store |") == 3


def test_narrow_store_agrees_and_interstitial_store_has_no_paper_table(tmp_path):
    Ls = [4, 5, 6, 7, 8, 10, 12, 14, 16]
    ds = _store(Ls, resid=0.005 * np.array([1, -1, 0, 1, -1, 0, -1, 1, 0]))
    rows, _ = slope_table(ds)
    geo = next(r for r in rows if r["variable"] == "geometry_error" and r["against"] == "L")
    assert geo["verdict"] == "agrees (within CI)" and geo["suggestion"] == ""
    md = write_report(_store([4, 6, 8], resid=[0, 0, 0], defect="interstitial+vacancy"),
                      tmp_path / "rep").read_text()
    assert "side by side" not in md
