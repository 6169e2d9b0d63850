"""Sparse reference Hessian and the Hessian-preconditioned relaxation (kernels.
hessian_precon_relax): Hessian columns against dense central differences of one atom at a time
(kernels.force_constants), and the relaxed configuration of a *different* model (a perturbed
reference, standing in for a fitted model) against ase's L-BFGS from the same start."""

import numpy as np
import pytest

from kernels import point_defects as pd
from kernels.defects import point_defect_cell
from kernels.finnis_sinclair import FinnisSinclair, wang2014_tungsten
from kernels.force_constants import force_constants
from kernels.hessian_precon_relax import (HessianPreconditioner, relax_preconditioned,
                                          sparse_hessian)
from kernels.relax import relax


@pytest.fixture(scope="module")
def cell_and_reference():
    ref = wang2014_tungsten()
    lat = pd.lattice_reference(ref)
    x0, cell, _ = point_defect_cell(14, lat.r0_A, ["vacancy", "vacancy"], 7)
    sym = ["W"] * len(x0)
    ubar = relax(ref, x0, cell, sym, 1e-8, 5000).positions_A
    return ref, ubar, cell, sym


def test_sparse_hessian_columns_equal_single_atom_differences(cell_and_reference):
    ref, ubar, cell, sym = cell_and_reference
    H = sparse_hessian(ref, ubar, cell, sym, ref.cutoff_A, components=2, symmetric=False)
    Hs = sparse_hessian(ref, ubar, cell, sym, ref.cutoff_A, components=2)
    assert abs(Hs - 0.5 * (H + H.T)).max() == 0
    n = len(ubar)
    assert H.shape == (2 * n, 2 * n)
    assert H.nnz < 0.2 * (2 * n) ** 2  # sparse
    for atom in (0, 37, n - 1):
        x = np.roll(ubar, -atom, axis=0)  # force_constants displaces atom 0
        K = force_constants(ref, x, cell, sym, 2, step_A=1e-4)  # (n, 2, 2): −∂F_j/∂x_0
        K = np.roll(K, atom, axis=0)
        for a in range(2):
            col = H[:, 2 * atom + a].toarray().reshape(n, 2)
            np.testing.assert_allclose(col, K[:, :, a], atol=1e-6 * np.abs(K).max())


def test_preconditioned_relaxation_reaches_the_lbfgs_minimum(cell_and_reference):
    ref, ubar, cell, sym = cell_and_reference
    other = FinnisSinclair(ref.r_A, 1.05 * ref.pair_eV, 0.97 * ref.density_eV2, "perturbed")
    H = sparse_hessian(ref, ubar, cell, sym, ref.cutoff_A, components=2)
    fast = relax_preconditioned(other, ubar, cell, sym, HessianPreconditioner(H), 2, 1e-7)
    plain = relax(other, ubar, cell, sym, 1e-7, 5000, "lbfgs")
    assert fast.max_force_eV_per_A < 1e-7
    assert np.abs(fast.positions_A - ubar).max() > 1e-3  # the models' minima differ
    # both at the same minimum: positions differ by ≲ fmax / (smallest stiffness)
    d = fast.positions_A - plain.positions_A
    d -= d.mean(axis=0)  # a rigid translation is not fixed by either optimiser
    assert np.abs(d).max() < 1e-5
    assert fast.energy_eV == pytest.approx(plain.energy_eV, abs=1e-9 * abs(plain.energy_eV))
    assert fast.n_force_calls < plain.n_force_calls


def test_predict_with_hessian_lbfgs_equals_lbfgs():
    """The point-defect stages with optimizer "hessian-lbfgs": the simulation reference carries
    the preconditioner, and a fitted ACE model's errors equal those of the plain L-BFGS."""
    from kernels.ace import ACEBasis, ace_potential_config

    ref = wang2014_tungsten()
    lat = pd.lattice_reference(ref)
    plain_opts = pd.RelaxOptions(1e-6, 5000, "lbfgs")
    hess_opts = pd.RelaxOptions(1e-6, 5000, "hessian-lbfgs")
    data = pd.training_data(ref, lat.r0_A, 4, "vacancy", 6, 2, 0.03, 11, 12, hess_opts)
    basis = ACEBasis(ace_potential_config(["W"], 30, 4.5, [10, 4, 3], [0, 3, 2]))
    fit = pd.fit(basis, pd.design_rows(basis, data), data, lat, 100.0, 1.0)
    sim_h = pd.simulation_reference(ref, lat.r0_A, 12, ["vacancy"] * 2, 6, hess_opts)
    sim_p = pd.simulation_reference(ref, lat.r0_A, 12, ["vacancy"] * 2, 6, plain_opts)
    assert sim_h.precon is not None and sim_p.precon is None
    np.testing.assert_array_equal(sim_h.positions_A, sim_p.positions_A)
    a = pd.predict(basis, fit.coeffs, sim_h, lat, hess_opts)
    b = pd.predict(basis, fit.coeffs, sim_p, lat, plain_opts)
    assert a.geometry_error_A > 1e-3
    assert a.geometry_error_A == pytest.approx(b.geometry_error_A, rel=1e-4)
    assert a.energy_error_eV == pytest.approx(b.energy_error_eV, rel=1e-6, abs=1e-9)
    assert a.relax_steps < b.relax_steps
