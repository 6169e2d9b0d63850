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


@pytest.mark.parametrize("elements, crystal, repeats", [
    (["W"], ("W", "bcc", 3.16), (3, 3, 1)),            # thinner than the cutoff along z
    (["Ni", "Al"], ("NiAl", "cesiumchloride", 2.88), (4, 3, 2)),
])
def test_model_evaluation_equals_pyace_own_calculator(elements, crystal, repeats):
    """ACEModel.evaluate builds pyace's atomic environment from matscipy's neighbour list; its
    energy, forces and virial are those of pyace's own ASE calculator on a sheared, rattled
    cell (to rounding), for one and two species."""
    from ase import Atoms
    from ase.build import bulk

    rng = np.random.default_rng(1)
    at = bulk(crystal[0], crystal[1], crystal[2], cubic=crystal[1] == "bcc") * repeats
    basis = ACEBasis(ace_potential_config(elements, 40, 5.0, [8, 4, 3], [0, 3, 2]))
    model = ACEModel(basis, rng.normal(0, 1e-2, basis.n_functions))
    x = at.positions + rng.normal(0, 0.05, at.positions.shape)
    cell = np.array(at.cell)
    cell[0, 1] = 0.3
    sym = at.get_chemical_symbols()
    ref = Atoms(symbols=sym, positions=x, cell=cell, pbc=True)
    ref.calc = model.ase_calculator()
    r = model.evaluate(x, cell, sym)
    assert r.energy_eV == pytest.approx(ref.get_potential_energy(), abs=1e-10)
    np.testing.assert_allclose(r.forces_eV_per_A, ref.get_forces(), rtol=0, atol=1e-10)
    np.testing.assert_allclose(r.virial_eV, -ref.get_stress(voigt=False) * ref.get_volume(),
                               rtol=0, atol=1e-10)
