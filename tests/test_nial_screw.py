"""P2-NiAl: the a[001] screw quadrupole in B2 NiAl, the two-species ACE rows and the stages (the
chain-rule rows against pyace's compute_b_grad: tests/test_kernels_ace_gradients.py)."""

import numpy as np
import pytest
from matscipy.neighbours import neighbour_list

from kernels import dislocations as dk
from kernels.ace import ACEBasis, ACEModel, ace_potential_config
from kernels.b2_screw import (NIAL_SCREW, B2Screw100Dislocation, b2_cubic_cell,
                              b2_screw_quadrupole_cell, b2_screw_unit_cell, b2_unit_cell)
from kernels.eam import mishin2002_nial
from kernels.elasticity import EV_PER_A3_IN_GPA, cubic_constants_GPa
from kernels.relax import relax
from tests.test_dislocations import _burgers_circuit, assert_cle_predictor_periodic

A0 = 2.85867  # Mishin NiAl, measured in test_kernels_eam (LAMMPS: 2.8587 Å)


def _unlike_neighbours(positions_A, cell_A, symbols, k=8):
    """Per atom: how many of its k nearest neighbours (periodic) are of the other species."""
    i, j, d = neighbour_list("ijd", positions=np.asarray(positions_A, float),
                             cell=np.asarray(cell_A, float), pbc=[True, True, True],
                             cutoff=1.2 * A0)
    s = np.asarray(symbols)
    out = np.empty(len(s), int)
    for a in range(len(s)):
        m = np.nonzero(i == a)[0]
        nearest = j[m[np.argsort(d[m])[:k]]]
        out[a] = np.sum(s[nearest] != s[a])
    return out


def _distance_to_cores_A(xy, cores, cell_A):
    L = np.diag(cell_A)[:2]
    d = xy[:, None, :] - cores[None]
    d -= L * np.round(d / L)
    return np.linalg.norm(d, axis=-1).min(axis=1)


def test_matscipy_orients_the_b2_cell_with_its_species():
    uc, core = b2_screw_unit_cell(A0)
    np.testing.assert_allclose(np.diag(uc.cell), [A0 * np.sqrt(2), A0 * np.sqrt(2), A0])
    assert sorted(uc.get_chemical_symbols()) == ["Al", "Al", "Ni", "Ni"]
    big = uc * (2, 2, 2)
    unlike = _unlike_neighbours(big.positions, big.cell.array, big.get_chemical_symbols())
    assert np.all(unlike == 8)  # B2 order: the 8 nearest neighbours are of the other species
    # The core sits at the centre of a square of columns, two Ni and two Al, a/2 from each.
    d = np.linalg.norm(uc.positions[:, :2] - core, axis=1)
    near = np.isclose(d, A0 / 2)
    assert near.sum() == 4
    assert sorted(np.asarray(uc.get_chemical_symbols())[near]) == ["Al", "Al", "Ni", "Ni"]


def test_quadrupole_has_zero_net_burgers_and_each_core_winds_by_a():
    c = b2_screw_quadrupole_cell(A0, 10)
    assert c.repeats == (8, 8) and len(c.positions_A) == 256
    assert c.burgers_A == pytest.approx(A0)
    assert c.signs.sum() == 0 and np.allclose(c.signs @ c.cores_A, 0)
    for core, s in zip(c.cores_A, c.signs):
        assert _burgers_circuit(c.positions0_A, c.positions_A, core, c.burgers_A, 2.5, 5.0) \
            == pytest.approx(s * c.burgers_A, abs=1e-9)


def test_cle_predictor_is_periodic():
    assert_cle_predictor_periodic(b2_screw_quadrupole_cell(A0, 8))


def test_screw_along_fourfold_axis_is_exactly_antiplane_in_anisotropic_cle():
    """matscipy's anisotropic (Stroh) field of the a[001] screw with NiAl's constants (Zener
    ratio ≈ 4) is u_z = bθ/2π with no in-plane part: the predictor is exact CLE."""
    d = B2Screw100Dislocation(b2_unit_cell(A0), 199.83, 139.63, 120.00)
    ang = np.linspace(0, 2 * np.pi, 17)[:-1] + 0.1
    for r in (2.0, 7.0):
        pts = np.stack([r * np.cos(ang), r * np.sin(ang), np.zeros_like(ang)], axis=1)
        u = d.displacements(pts, np.zeros(3), method="adsl", self_consistent=False)
        diff = (u[:, 2] - A0 * np.arctan2(pts[:, 1], pts[:, 0]) / (2 * np.pi)) / A0
        diff -= np.round(diff - diff[0])
        np.testing.assert_allclose(diff, diff[0], atol=1e-9)
        assert np.abs(u[:, :2]).max() < 1e-9


@pytest.fixture(scope="module")
def relaxed_quadrupole():
    model = mishin2002_nial()
    c = b2_screw_quadrupole_cell(A0, 10)
    sym = list(c.symbols)
    return model, c, relax(model, c.positions_A, c.cell_A, sym, 1e-4, 3000)


def test_species_order_is_kept_away_from_the_cores(relaxed_quadrupole):
    """Perfect sites: every atom's 8 nearest neighbours are of the other species. Predictor and
    EAM-relaxed cell: so are those of every atom farther than 2a from the cores (the columns
    slide along themselves by whole Burgers vectors: no antiphase boundary anywhere)."""
    _, c, r = relaxed_quadrupole
    assert np.all(_unlike_neighbours(c.positions0_A, c.cell_A, c.symbols) == 8)
    far = _distance_to_cores_A(c.positions0_A[:, :2], c.cores_A, c.cell_A) > 2 * A0
    assert far.sum() > 0.3 * len(far)
    for x in (c.positions_A, r.positions_A):
        assert np.all(_unlike_neighbours(x, c.cell_A, c.symbols)[far] == 8)


def test_relaxed_cell_keeps_its_dislocations(relaxed_quadrupole):
    model, c, r = relaxed_quadrupole
    e_bulk = model.evaluate(c.positions0_A, c.cell_A, list(c.symbols)).energy_eV
    assert r.energy_eV - e_bulk > 5.0  # four cores and their elastic fields (measured 10.6 eV)
    for core, s in zip(c.cores_A, c.signs):
        assert _burgers_circuit(c.positions0_A, r.positions_A, core, c.burgers_A, 2.5, 5.0) \
            == pytest.approx(s * c.burgers_A, abs=1e-6)


@pytest.fixture(scope="module")
def nial_basis():
    return ACEBasis(ace_potential_config(["Ni", "Al"], 20, 5.0, [8, 4, 3], [0, 3, 2]))


def test_two_species_rows_times_coefficients_are_pyaces_energy_and_forces(nial_basis):
    """Per-species column blocks: for a random coefficient vector the energy and force rows give
    the energy (eV) and forces (eV/Å) of pyace's own calculator of that model."""
    x, c, s = b2_cubic_cell(A0, 2)
    x = x + 0.1 * np.random.default_rng(1).standard_normal(x.shape)
    s[3] = "Ni"  # an antisite too: the blocks follow the atoms' species, not their order
    assert nial_basis.n_functions == 40
    rows = nial_basis.design_rows(x[None], c, s)
    for seed in (2, 3):
        coef = np.random.default_rng(seed).standard_normal(nial_basis.n_functions)
        r = ACEModel(nial_basis, coef).evaluate(x, c, s)
        assert rows.energy[0] @ coef == pytest.approx(r.energy_eV, abs=1e-10)
        np.testing.assert_allclose(rows.forces[0] @ coef, r.forces_eV_per_A, atol=1e-10)
    np.testing.assert_allclose(nial_basis.energy_rows(x[None], c, s), rows.energy, atol=1e-12)
    assert np.abs(rows.forces).max() > 0.1


def test_lattice_reference_of_the_b2_crystal():
    lat = dk.lattice_reference(mishin2002_nial(), NIAL_SCREW)
    assert lat.a0_A == pytest.approx(2.8587, abs=1e-4)
    np.testing.assert_allclose(cubic_constants_GPa(lat.elastic_eV_per_A3),
                               (199.9, 139.6, 120.0), atol=0.1)  # LAMMPS (data/README.md)
    T = lat.nonlinear_elastic_eV_per_A3 * EV_PER_A3_IN_GPA
    np.testing.assert_allclose(T, T.transpose(1, 0, 2), atol=1e-3 * np.abs(T).max())
    # cubic symmetry: C111 = C222 = C333, and zero where an odd number of shear indices enter
    assert T[0, 0, 0] == pytest.approx(T[2, 2, 2], rel=1e-3) and T[0, 0, 0] < -500
    assert abs(T[0, 0, 3]) < 1e-3 * abs(T[0, 0, 0])


def test_stages_on_a_small_b2_cell(nial_basis):
    """Training data carry both species, the rows fit, and the elastic rows cut the error of
    the fitted elastic constants."""
    model = mishin2002_nial()
    opts = dk.RelaxOptions(1e-4, 3000, "lbfgs")
    lat = dk.lattice_reference(model, NIAL_SCREW)
    # The NiAl presets train on the checkerboard cell: the one-dipole cell of this size does not
    # relax to a minimum that keeps its cores (docs/p2-dislocations.md, "Training domain").
    data = dk.training_data(model, lat.a0_A, 5, 6, 2, 0.1, 1, 2, opts, NIAL_SCREW,
                            domain="checkerboard")
    assert sorted(set(data.symbols)) == ["Al", "Ni"] and len(data.symbols) == 64
    rows = dk.design_rows(nial_basis, data, lat.a0_A, NIAL_SCREW)
    assert rows.elastic.shape == (6, 6, 40)
    w = dk.Weights(50, 10, 10, 1)
    ef = dk.fit(nial_basis, rows, data, lat, w.for_observations("E+F"), "rrqr")
    cle = dk.fit(nial_basis, rows, data, lat, w.for_observations("E+F+CLE"), "rrqr")
    assert cle.elastic_constant_error_percent < ef.elastic_constant_error_percent
    assert cle.rmse_forces_eV_per_A < 0.1


def test_two_species_function_keys_are_unique(nial_basis):
    """Keys carry the neighbour species for several species (Ni–Ni and Ni–Al functions with
    the same ns, ls would share a key otherwise); one-species keys keep their five fields."""
    keys = nial_basis.function_keys()
    assert len(keys) == nial_basis.n_functions == len(set(keys))
    assert all(len(k) == 6 for k in keys)
    w = ACEBasis(ace_potential_config(["W"], 20, 5.0, [8, 4, 3], [0, 3, 2])).function_keys()
    assert all(len(k) == 5 for k in w)
