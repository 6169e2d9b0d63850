"""The loss conventions of the fits (``[fit] energy_weighting``, ``weight_form``,
``bulk_energy_row``): the weighted residual vector built by hand against the assembled rows, the
bulk-energy row present or absent, the sliced path against the full path for every convention,
P2's fit, and the spec rules."""

import math
import re

import numpy as np
import pytest

from kernels import dislocations as dk
from kernels import point_defects as pd
from kernels.ace import ACEBasis, ace_potential_config
from kernels.eam import zhou2001_tungsten
from kernels.finnis_sinclair import wang2014_tungsten
from kernels.least_squares import (ENERGY_WEIGHTINGS, WEIGHT_FORMS, energy_row_scale,
                                   row_weight)
from kernels.point_defect_slices import fit_from_factors, slice_factors
from sweep import store, tasks
from sweep.spec import SpecError, builtin_specs, parse_spec
from tests.tiny import tiny_spec_text

CONVENTIONS = [(ew, wf) for ew in ENERGY_WEIGHTINGS for wf in WEIGHT_FORMS]
SHAPE = ([10, 4, 3], [0, 3, 2])


@pytest.fixture(scope="module")
def cells():
    """Two real training cells with different atom counts (interstitial: 17 atoms, vacancy: 15,
    L = 4 r0) and their rows in one small basis."""
    model = wang2014_tungsten()
    opts = pd.RelaxOptions(1e-6, 3000, "lbfgs")
    lat = pd.lattice_reference(model)
    basis = ACEBasis(ace_potential_config(["W"], 12, 4.5, *SHAPE))
    parts = {}
    for k, kind in enumerate(("interstitial", "vacancy")):
        data = pd.training_data(model, lat.r0_A, 4, kind, 3, 2, 0.03, 40 + k, 50 + k, opts)
        parts[kind] = (pd.design_rows(basis, data), data)
    return lat, basis, parts


def test_energy_row_scale_and_row_weight():
    assert energy_row_scale(16, "total") == 1.0
    assert energy_row_scale(16, "per-atom") == 1.0 / 16
    assert energy_row_scale(16, "sqrt-n") == 0.25
    np.testing.assert_array_equal(energy_row_scale(np.array([4, 9]), "sqrt-n"), [0.5, 1 / 3])
    assert row_weight(100.0, "squared-residual") == 100.0
    assert row_weight(100.0, "residual") == 1e4
    with pytest.raises(ValueError, match="energy_weighting"):
        energy_row_scale(16, "per-configuration")
    with pytest.raises(ValueError, match="weight_form"):
        row_weight(1.0, "linear")


@pytest.mark.parametrize("energy_weighting, weight_form", CONVENTIONS)
@pytest.mark.parametrize("bulk", [False, True])
def test_residual_vector_by_construction(cells, energy_weighting, weight_form, bulk):
    """Residual A c − y of the assembled union system, for some coefficients c, against the
    residuals written out by hand: energy entries f(W_E)·s_N·(Ẽ − E) with s_N = 1, 1/N, 1/√N
    of each configuration's own atom count N and f(W) = √W (weights on the squared residual)
    or W (weights on the residual); force entries f(W_F)·(F̃ − F); then the perfect cells'
    rows, present only with the bulk row."""
    _, _, parts = cells
    w = {"interstitial": (100.0, 10.0), "vacancy": (10.0, 1.0)}
    comps = [pd.TrainingComponent(k, *parts[k], *w[k]) for k in ("interstitial", "vacancy")]
    system = pd.union_system(comps, None if bulk else 0.0, energy_weighting, weight_form)
    c = np.random.default_rng(3).standard_normal(system.A.shape[1])
    r = system.A @ c - system.y
    f = (np.sqrt if weight_form == "squared-residual" else (lambda x: x))
    s_of = {"total": lambda n: 1.0, "per-atom": lambda n: 1.0 / n,
            "sqrt-n": lambda n: 1.0 / math.sqrt(n)}[energy_weighting]
    expected = []
    for comp in comps:
        rows, data = comp.rows, comp.data
        n = data.train.positions_A.shape[1]
        dE = rows.train.energy @ c - data.train.energy_eV
        dF = (rows.train.forces @ c - data.train.forces_eV_per_A[:, :, :2]).ravel()
        expected += [f(comp.weight_energy) * s_of(n) * dE, f(comp.weight_forces) * dF]
    if bulk:
        for comp in comps:
            n_p = comp.data.perfect.positions_A.shape[1]
            dE = comp.rows.perfect.energy @ c - comp.data.perfect.energy_eV
            expected.append(f(comp.weight_energy) * s_of(n_p) * dE)
    expected = np.concatenate(expected)
    assert [p[1].train.positions_A.shape[1] for p in parts.values()] == [17, 15]
    assert r.shape == expected.shape
    np.testing.assert_allclose(r, expected, rtol=1e-12, atol=1e-12 * np.abs(expected).max())


def test_bulk_row_is_off_by_default_and_counted(cells):
    lat, basis, parts = cells
    rows, data = parts["vacancy"]
    plain = pd.fit(basis, rows, data, lat, 100.0, 1.0)
    with_bulk = pd.fit(basis, rows, data, lat, 100.0, 1.0, weight_bulk_energy=None)
    n_rows = data.train.energy_eV.size + data.train.forces_eV_per_A[..., :2].size
    assert plain.n_observations == n_rows and not plain.bulk_energy_observed
    assert with_bulk.n_observations == n_rows + 1 and with_bulk.bulk_energy_observed
    # the bulk row pins the model's energy per atom of the perfect lattice
    assert with_bulk.bulk_energy_error_meV_per_atom < plain.bulk_energy_error_meV_per_atom


@pytest.fixture(scope="module")
def slice_setup():
    model = wang2014_tungsten()
    opts = pd.RelaxOptions(1e-6, 2000, "lbfgs")
    lat = pd.lattice_reference(model)
    data = pd.training_data(model, lat.r0_A, 4, "vacancy", 8, 3, 0.03, 61, 62, opts)
    bases = [ACEBasis(ace_potential_config(["W"], s, 4.5, *SHAPE)) for s in (8, 20)]
    return lat, data, bases


@pytest.mark.parametrize("energy_weighting", ENERGY_WEIGHTINGS)
def test_sliced_path_equals_full_path(slice_setup, energy_weighting):
    """Factors built with a convention give, for every basis, weight form and bulk choice, the
    fit of the full rows under that convention."""
    lat, data, bases = slice_setup
    factors = slice_factors(bases, data, energy_weighting=energy_weighting)
    assert factors.energy_weighting == energy_weighting
    e_meV = 1e3 * abs(lat.bulk_energy_eV_per_atom)
    for b, basis in enumerate(bases):
        rows = pd.design_rows(basis, data)
        for weight_form in WEIGHT_FORMS:
            for w_bulk in (0.0, None):
                ref = pd.fit(basis, rows, data, lat, 100.0, 2.0, 1e-6, w_bulk,
                             energy_weighting=energy_weighting, weight_form=weight_form)
                fast = fit_from_factors(factors, b, basis, lat, 100.0, 2.0, 1e-6, w_bulk,
                                        energy_weighting=energy_weighting,
                                        weight_form=weight_form)
                assert (fast.rank, fast.n_observations, fast.bulk_energy_observed) == \
                    (ref.rank, ref.n_observations, ref.bulk_energy_observed)
                np.testing.assert_allclose(fast.coeffs, ref.coeffs, rtol=0,
                                           atol=1e-8 * np.abs(ref.coeffs).max())
                assert fast.rmse_forces_eV_per_A == pytest.approx(ref.rmse_forces_eV_per_A,
                                                                  rel=1e-8)
                # energies per atom ~6,600 meV: compare ε_E on that scale (see
                # tests/test_kernels_point_defect_slices.py)
                assert fast.rmse_energy_meV_per_atom == pytest.approx(
                    ref.rmse_energy_meV_per_atom, abs=1e-9 * e_meV)
    other = next(e for e in ENERGY_WEIGHTINGS if e != energy_weighting)
    with pytest.raises(ValueError, match="energy_weighting"):
        fit_from_factors(factors, 0, bases[0], lat, 100.0, 1.0, energy_weighting=other)


def test_conventions_differ_on_one_cell_by_a_rescaled_energy_weight(slice_setup):
    """On one training cell (every configuration has N atoms) total-energy weighting with W_E
    is per-atom weighting with W_E·N², √N-weighting with W_E·N; and weights on the residual
    are weights W² on the squared residual: the same fits. The conventions are not cosmetic —
    the per-atom fit at the same W_E is another one."""
    lat, data, bases = slice_setup
    basis = bases[1]
    rows = pd.design_rows(basis, data)
    n = data.train.positions_A.shape[1]

    def coeffs(w_e, w_f, ew, wf="squared-residual"):
        return pd.fit(basis, rows, data, lat, w_e, w_f, energy_weighting=ew,
                      weight_form=wf).coeffs

    total = coeffs(100.0, 1.0, "total")
    scale = np.abs(total).max()
    np.testing.assert_allclose(coeffs(100.0 * n * n, 1.0, "per-atom"), total, atol=1e-7 * scale)
    np.testing.assert_allclose(coeffs(100.0 * n, 1.0, "sqrt-n"), total, atol=1e-7 * scale)
    np.testing.assert_allclose(coeffs(10.0, 1.0, "total", "residual"), total, atol=1e-7 * scale)
    assert not np.allclose(coeffs(100.0, 1.0, "per-atom"), total, atol=1e-3 * scale)


@pytest.fixture(scope="module")
def p2_setup():
    """A rattled 2 × 2 × 2 perfect bcc W cell (16 atoms, Zhou EAM) as a P2 training set, with
    the perfect 3 × 3 × 3 crystal (54 atoms) of the elastic rows."""
    model = zhou2001_tungsten()
    lat = dk.lattice_reference(model)
    x, cell, sym = dk.bcc_cubic_cell(lat.a0_A, 2)
    rng = np.random.default_rng(5)
    pos = x[None] + dk.rattle_displacements_A(rng, (6, len(x)), 0.1)
    obs, vir = [], []
    for p in pos:
        r = model.evaluate(p, cell, sym)
        obs.append((r.energy_eV, r.forces_eV_per_A))
        vir.append(r.virial_eV)
    sets = pd.Observations(pos, np.array([o[0] for o in obs]), np.array([o[1] for o in obs]))
    xp, cp, sp = dk.bcc_cubic_cell(lat.a0_A)
    pr = model.evaluate(xp, cp, sp)
    data = dk.TrainingData(cell, x, sets, sets, np.array(vir), np.array(vir),
                           pd.Observations(xp[None], np.array([pr.energy_eV]),
                                           pr.forces_eV_per_A[None]))
    basis = ACEBasis(ace_potential_config(["W"], 15, 5.0, *SHAPE))
    return lat, data, basis, dk.design_rows(basis, data, lat.a0_A)


def test_p2_fit_conventions(p2_setup):
    """P2's fit: the same equivalences as P1's on one cell, and the bulk row is one more row."""
    lat, data, basis, rows = p2_setup
    n = data.train.positions_A.shape[1]

    def fit(w_e, ew="total", wf="squared-residual", bulk=False, obs="E+F+CLE"):
        w = dk.Weights(w_e, 10.0 if wf == "squared-residual" else math.sqrt(10.0),
                       10.0 if wf == "squared-residual" else math.sqrt(10.0), 0.0)
        return dk.fit(basis, rows, data, lat, w.for_observations(obs), "rrqr",
                      bulk_energy_row=bulk, energy_weighting=ew, weight_form=wf)

    total = fit(50.0)
    scale = np.abs(total.coeffs).max()
    assert not total.bulk_energy_observed
    np.testing.assert_allclose(fit(50.0 * n * n, "per-atom").coeffs, total.coeffs,
                               atol=1e-7 * scale)
    np.testing.assert_allclose(fit(50.0 * n, "sqrt-n").coeffs, total.coeffs, atol=1e-7 * scale)
    np.testing.assert_allclose(fit(math.sqrt(50.0), wf="residual").coeffs, total.coeffs,
                               atol=1e-7 * scale)
    bulk = fit(50.0, bulk=True)
    assert bulk.bulk_energy_observed and bulk.n_observations == total.n_observations + 1


def test_formation_energy_is_nan_without_the_bulk_row(cells):
    """The stored formation-energy error of a fit without the bulk row is NaN, with it the
    prediction's value; the store's attribute says why it is NaN."""
    lat, basis, parts = cells
    rows, data = parts["vacancy"]
    model = wang2014_tungsten()
    opts = pd.RelaxOptions(1e-6, 3000, "lbfgs")
    sim = pd.simulation_reference(model, lat.r0_A, 8, ["vacancy"], 4, opts)
    for w_bulk in (0.0, None):
        fitted = pd.fit(basis, rows, data, lat, 100.0, 1.0, weight_bulk_energy=w_bulk)
        p = pd.predict(basis, fitted.coeffs, sim, lat, opts)
        value = tasks.point_values(fitted, p, 0.0)["formation_energy_error"]
        if w_bulk == 0.0:
            assert math.isnan(value)
        else:
            assert value == p.formation_energy_error_eV and math.isfinite(value)
    off = parse_spec(tiny_spec_text())
    on = parse_spec(_with_fit(tiny_spec_text(), "bulk_energy_row = true"))
    assert "bulk_energy_row = false" in store.template(off)["formation_energy_error"].attrs[
        "comment"]
    assert "comment" not in store.template(on)["formation_energy_error"].attrs


def _with_fit(text: str, line: str) -> str:
    new = re.sub(r"^\[fit\]$", f"[fit]\n{line}", text, count=1, flags=re.M)
    assert new != text
    return new


def test_spec_defaults_are_the_papers_loss():
    for name, text in builtin_specs().items():
        fit = parse_spec(text, name).params["fit"]
        assert fit["bulk_energy_row"] is False, name
        assert fit["energy_weighting"] == "total", name
        assert fit["weight_form"] == "squared-residual", name


@pytest.mark.parametrize("line, field, words", [
    ("bulk_energy_row = 1", "fit.bulk_energy_row", "a boolean"),
    ('bulk_energy_row = "true"', "fit.bulk_energy_row", "a boolean"),
    ('energy_weighting = "per-config"', "fit.energy_weighting", "'sqrt-n'"),
    ("energy_weighting = 1", "fit.energy_weighting", "a non-empty string"),
    ('weight_form = "linear"', "fit.weight_form", "'residual'"),
])
def test_spec_refuses_bad_conventions(line, field, words):
    for base in (tiny_spec_text(), builtin_specs()["p2-w-screw-quick"]):
        with pytest.raises(SpecError) as err:
            parse_spec(_with_fit(base, line))
        assert err.value.field == field
        assert words in str(err.value)


def test_spec_conventions_reach_the_fit_and_the_fingerprint():
    base = parse_spec(tiny_spec_text())
    other = parse_spec(_with_fit(tiny_spec_text(), 'energy_weighting = "sqrt-n"\n'
                                                   'weight_form = "residual"\n'
                                                   "bulk_energy_row = true"))
    assert other.params["fit"]["energy_weighting"] == "sqrt-n"
    assert other.params["fit"]["weight_form"] == "residual"
    assert other.params["fit"]["bulk_energy_row"] is True
    assert other.fingerprint() != base.fingerprint()
    assert tasks.fit_conventions(other.params["fit"]) == {
        "bulk_energy_row": True, "energy_weighting": "sqrt-n", "weight_form": "residual"}
