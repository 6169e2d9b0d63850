"""Where a P2 geometry error comes from: the fitted model's forces at the reference equilibrium
(core and far-field atoms), their first-order response through the reference Hessian, and the
force matching condition at the relaxed training cell (P2 eq. 3.10 at y_L = ȳ_L)."""

import numpy as np
import pytest

from kernels import dislocations as dk
from kernels.ace import ACEBasis, ACEModel, ace_potential_config
from kernels.eam import zhou2001_tungsten
from kernels.errors import stencil_norm_split
from kernels.finnis_sinclair import EnergyForcesVirial
from kernels.point_defects import relax_fitted


class Blend:
    """E_t = E_a + t (E_b − E_a) of two models: a path from the reference (t = 0) to a fitted
    model (t = 1) along which the geometry error is first order in t."""

    def __init__(self, a, b, t):
        self.a, self.b, self.t = a, b, t

    def evaluate(self, positions_A, cell_A, symbols=None):
        ra = self.a.evaluate(positions_A, cell_A, symbols)
        rb = self.b.evaluate(positions_A, cell_A, symbols)
        t = self.t
        return EnergyForcesVirial(ra.energy_eV + t * (rb.energy_eV - ra.energy_eV),
                                  ra.forces_eV_per_A + t * (rb.forces_eV_per_A
                                                            - ra.forces_eV_per_A),
                                  ra.virial_eV + t * (rb.virial_eV - ra.virial_eV))


@pytest.fixture(scope="module")
def w_setup():
    """The 8 a0 W screw quadrupole relaxed to a minimum (its symmetric ȳ is a saddle), its
    reference Hessian, and a real ACE fit on a dipole training cell."""
    ref = zhou2001_tungsten()
    lat = dk.lattice_reference(ref)
    opts = dk.RelaxOptions(1e-7, 5000, "hessian-lbfgs", "precon-lbfgs", "stable")
    sim = dk.simulation_reference(ref, lat.a0_A, 8, opts)
    data = dk.training_data(ref, lat.a0_A, 4, 6, 2, 0.1, 1, 2, opts)
    basis = ACEBasis(ace_potential_config(["W"], 30, 5.0, [10, 4, 3], [0, 3, 2]))
    fitted = dk.fit(basis, dk.design_rows(basis, data, lat.a0_A), data, lat,
                    dk.Weights(50, 10, 10, 1).for_observations("E+F+CLE"))
    ml = ACEModel(basis, fitted.coeffs)
    i, j = dk.W_SCREW.stencil("voronoi", lat.a0_A).pairs(sim.positions0_A, sim.cell_A)
    return ref, lat, opts, sim, data, ml, i, j


def test_training_residual_vanishes_for_the_reference_and_splits_for_a_fit(w_setup):
    ref, _, opts, _, data, ml, *_ = w_setup
    assert data.cores_A.shape == (2, 2) and data.burgers_A == pytest.approx(
        np.sqrt(3) / 2 * 3.1648, rel=1e-3)
    total, core = dk.training_force_residual(ref, ref, data)
    assert total == 0.0 and core == 0.0
    total, core = dk.training_force_residual(ml, ref, data)
    assert 0 < core < total
    # by hand: the difference of the two models' forces on ȳ_L, all atoms and the core atoms
    d = (ml.evaluate(data.relaxed_A, data.cell_A).forces_eV_per_A
         - ref.evaluate(data.relaxed_A, data.cell_A).forces_eV_per_A)
    assert total == pytest.approx(np.linalg.norm(d), rel=1e-12)
    near = dk._core_atoms(data.relaxed_A, data.cell_A, data.cores_A, data.burgers_A)
    assert 0 < near.sum() < len(near)
    assert core == pytest.approx(np.linalg.norm(d[near]), rel=1e-12)


def test_linear_response_is_the_geometry_error_to_first_order(w_setup):
    """Along E_ref + t (E_ML − E_ref) the residual forces are t F_ML(ȳ) and the geometry error
    t ‖D H⁻¹ F_ML(ȳ)‖ + O(t²): the relative gap between the measured geometry error and the
    linear response falls like t."""
    ref, lat, opts, sim, _, ml, i, j = w_setup
    none = np.zeros(len(i), bool)
    sym = list(sim.symbols) or ["W"] * len(sim.positions_A)
    gaps = []
    for t in (0.02, 0.005):
        model = Blend(ref, ml, t)
        res = dk.residual_response(model, sim, sym, i, j)
        r = relax_fitted(model, sim.positions_A, sim.cell_A, sym, sim.precon, 3,
                         dk.RelaxOptions(1e-9, 5000, "hessian-lbfgs"))
        g = stencil_norm_split(sim.positions_A - r.positions_A, i, j, none).total_A
        assert g > 0 and np.isfinite(res[2])
        gaps.append(abs(res[2] / g - 1))
        # residual forces split by atoms, norms in quadrature; responses add as vectors
        f = model.evaluate(sim.positions_A, sim.cell_A, sym).forces_eV_per_A
        assert np.hypot(res[0], res[1]) == pytest.approx(np.linalg.norm(f), rel=1e-10)
        assert res[2] <= res[3] + res[4] + 1e-12
    assert gaps[1] < 0.1
    assert gaps[1] < 0.5 * gaps[0]


def test_prediction_carries_the_residual_evidence(w_setup):
    """predict() stores the same numbers residual_response gives for the fitted model."""
    _, lat, opts, sim, _, ml, i, j = w_setup
    p = dk.predict(ml.basis, ml.coeffs, sim, lat, opts)
    res = dk.residual_response(ml, sim, ["W"] * len(sim.positions_A), i, j)
    got = (p.force_residual_core_eV_per_A, p.force_residual_far_eV_per_A,
           p.linear_response_error_A, p.linear_response_error_core_forces_A,
           p.linear_response_error_far_forces_A)
    np.testing.assert_allclose(got, res, rtol=1e-9)
    assert p.force_residual_core_eV_per_A > 0 and p.force_residual_far_eV_per_A > 0
