"""Linear ACE through pyace: fitted-model forces, design rows × coefficients, basis sizes."""

import numpy as np
import pytest

from kernels import point_defects as pd
from kernels.ace import ACEBasis, ACEModel, ace_potential_config
from kernels.finnis_sinclair import wang2014_tungsten

R0 = 2.7328662547


@pytest.fixture(scope="module")
def fitted():
    model = wang2014_tungsten()
    opts = pd.RelaxOptions(1e-6, 2000, "lbfgs")
    lat = pd.lattice_reference(model)
    data = pd.training_data(model, lat.r0_A, 4, "vacancy", 6, 2, 0.03, 11, 12, opts)
    basis = ACEBasis(ace_potential_config(["W"], 30, 4.5, [10, 4, 3], [0, 3, 2]))
    rows = pd.design_rows(basis, data)
    fit = pd.fit(basis, rows, data, lat, 100.0, 1.0, weight_bulk_energy=None)
    return basis, fit, data, rows, lat


def test_requested_size_is_realised():
    basis = ACEBasis(ace_potential_config(["W"], 37, 4.5, [15, 6, 4, 3], [0, 4, 3, 2]))
    assert basis.n_functions == 37


def test_fitted_model_forces_are_minus_gradient(fitted):
    basis, fit, data, _, _ = fitted
    model = ACEModel(basis, fit.coeffs)
    x = data.test.positions_A[0]
    f = model.evaluate(x, data.cell_A).forces_eV_per_A
    assert np.abs(f[:, :2]).max() > 1e-2
    h = 1e-5
    for i in (0, 5, 11):
        for a in (0, 1):
            xp, xm = x.copy(), x.copy()
            xp[i, a] += h
            xm[i, a] -= h
            fd = -(model.evaluate(xp, data.cell_A).energy_eV
                   - model.evaluate(xm, data.cell_A).energy_eV) / (2 * h)
            assert f[i, a] == pytest.approx(fd, abs=1e-6)


def test_design_rows_times_coefficients_equal_model(fitted):
    basis, fit, data, rows, _ = fitted
    model = ACEModel(basis, fit.coeffs)
    for s in range(2):
        r = model.evaluate(data.test.positions_A[s], data.cell_A)
        assert rows.test.energy[s] @ fit.coeffs == pytest.approx(r.energy_eV, abs=1e-9)
        np.testing.assert_allclose(rows.test.forces[s] @ fit.coeffs, r.forces_eV_per_A[:, :2],
                                   atol=1e-9)
        assert np.abs(r.forces_eV_per_A[:, 2]).max() < 1e-12


def test_fit_learns_bulk_energy(fitted):
    """Regression for the unidentifiable bulk energy: the perfect-cell row pins ẽ_bulk."""
    basis, fit, data, rows, lat = fitted
    assert fit.bulk_energy_error_meV_per_atom < 1.0
    assert fit.n_observations == data.train.energy_eV.size + rows.train.forces[..., 0, 0].size * 2 + 1
    assert fit.bulk_energy_observed
    no_bulk = pd.fit(basis, rows, data, lat, 100.0, 1.0)  # the default: the papers' loss
    assert no_bulk.n_observations == fit.n_observations - 1
    assert not no_bulk.bulk_energy_observed
