"""Pipeline stages: seeded rattled sets, relaxation tolerance, an end-to-end point."""

import numpy as np
import pytest

from kernels import point_defects as pd
from kernels.ace import ACEBasis, ace_potential_config
from kernels.finnis_sinclair import wang2014_tungsten
from kernels.relax import relax


@pytest.fixture(scope="module")
def setup():
    model = wang2014_tungsten()
    return model, pd.lattice_reference(model), pd.RelaxOptions(1e-6, 3000, "lbfgs")


def test_seeds_give_bit_identical_sets(setup):
    model, lat, opts = setup
    a = pd.training_data(model, lat.r0_A, 4, "vacancy", 3, 2, 0.03, 5, 6, opts)
    b = pd.training_data(model, lat.r0_A, 4, "vacancy", 3, 2, 0.03, 5, 6, opts)
    c = pd.training_data(model, lat.r0_A, 4, "vacancy", 3, 2, 0.03, 7, 6, opts)
    for f in ("positions_A", "energy_eV", "forces_eV_per_A"):
        assert np.array_equal(getattr(a.train, f), getattr(b.train, f))
        assert np.array_equal(getattr(a.test, f), getattr(b.test, f))
    assert not np.array_equal(a.train.positions_A, c.train.positions_A)
    assert np.array_equal(a.test.positions_A, c.test.positions_A)
    # rattle statistics: in-plane only, standard deviation ≈ amplitude
    d = a.train.positions_A - a.relaxed_A[None]
    assert np.all(d[..., 2] == 0)
    assert np.std(d[..., :2]) == pytest.approx(0.03, rel=0.25)


@pytest.mark.parametrize("optimizer,fmax", [("lbfgs", 1e-7), ("precon-lbfgs", 1e-6)])
def test_relaxation_reaches_fmax(setup, optimizer, fmax):
    model, lat, _ = setup
    from kernels.defects import point_defect_cell

    x0, cell, _ = point_defect_cell(8, lat.r0_A, ["vacancy"] * 2, 4)
    r = relax(model, x0, cell, ["W"] * len(x0), fmax, 2000, optimizer)
    f = model.evaluate(r.positions_A, cell).forces_eV_per_A
    assert np.linalg.norm(f, axis=1).max() <= fmax
    assert r.energy_eV < model.evaluate(x0, cell).energy_eV


def test_end_to_end_point_has_meaningful_errors(setup):
    """A tiny P1-vac point: all recorded errors small and the formation energy consistent."""
    model, lat, opts = setup
    sim = pd.simulation_reference(model, lat.r0_A, 12, ["vacancy"] * 2, 4, opts)
    assert len(sim.positions0_A) == 144 - 2
    data = pd.training_data(model, lat.r0_A, 4, "vacancy", 10, 3, 0.03, 1, 2, opts)
    basis = ACEBasis(ace_potential_config(["W"], 40, 4.5, [15, 6, 4, 3], [0, 4, 3, 2]))
    rows = pd.design_rows(basis, data)
    # with the perfect cell's energy row (weight W_E): the formation energy is identifiable
    fit = pd.fit(basis, rows, data, lat, 100.0, 1.0, weight_bulk_energy=None)
    assert fit.bulk_energy_observed
    assert fit.n_basis == 40 and 0 < fit.rank <= 40
    assert fit.rmse_forces_eV_per_A < 0.2
    p = pd.predict(basis, fit.coeffs, sim, lat, opts)
    assert 0 < p.geometry_error_A < 0.2
    assert p.energy_error_eV < 0.05
    # formation energy: was 3–960 eV before the bulk row (unidentifiable bulk energy)
    assert p.formation_energy_error_eV < 0.1
