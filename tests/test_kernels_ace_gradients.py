"""Chain-rule design rows (kernels.ace_gradients) against pyace's own rows (compute_b_grad).

pyace's ``projections`` / ``forces_bfuncs`` are the independent route (their forces were checked
against finite differences, pyace-notes.md and tests/test_kernels_ace.py); here the rows built
from pyace's radial functions and basis specifications must equal them to 1e-10 relative, on
planar (2D) and bulk (3D) cells and several basis sizes, including the planar shortcut, and for
the two-species Ni–Al basis of P2-NiAl (columns in pyace's species blocks).
"""

import numpy as np
import pytest
from ase.build import bulk

from kernels.ace import ACEBasis, ace_potential_config
from kernels.ace_gradients import basis_tables, design_rows_chain_rule
from kernels.b2_screw import b2_cubic_cell
from kernels.lattice import triangular_cell, triangular_sites

R0 = 2.7328662547
PAPER_SUPERSET = ([15, 8, 6, 4], [0, 6, 4, 3])


def _rows_both(basis: ACEBasis, positions, cell, k):
    objs = basis._objects()
    tables = basis_tables(objs.basis)
    assert tables.n_functions == basis.n_functions
    E, F = design_rows_chain_rule(tables, objs.basis.radial_functions, positions, cell, k)
    ref = basis.design_rows(positions, cell, ["W"] * positions.shape[1], k, method="pyace")
    return E, F, ref


def _assert_rel(a, b, rtol=1e-10):
    scale = np.abs(b).max()
    assert scale > 0
    assert np.abs(a - b).max() <= rtol * scale, np.abs(a - b).max() / scale


def _planar(L, n_configs, amplitude_A, seed):
    pos = triangular_sites(L, R0)
    rng = np.random.default_rng(seed)
    P = np.repeat(pos[None], n_configs, axis=0)
    P[:, :, :2] += amplitude_A * rng.standard_normal(P[:, :, :2].shape)
    return P, triangular_cell(L, R0)


@pytest.mark.parametrize("n_functions", [7, 60, 400])
def test_planar_rows_equal_pyace(n_functions):
    basis = ACEBasis(ace_potential_config(["W"], n_functions, 4.5, *PAPER_SUPERSET))
    P, cell = _planar(4, 2, 0.1, n_functions)
    E, F, ref = _rows_both(basis, P, cell, 2)
    _assert_rel(E, ref.energy)
    _assert_rel(F, ref.forces)
    assert np.abs(ref.forces).max(axis=(0, 1, 2)).min() > 0  # every column is tested


def test_planar_cell_with_vacancy_and_all_components():
    """A vacancy cell (P1's training cell) with z rows kept: the planar shortcut is not taken for
    k = 3 and the z rows are exactly zero on both routes."""
    basis = ACEBasis(ace_potential_config(["W"], 150, 4.5, *PAPER_SUPERSET))
    P, cell = _planar(5, 2, 0.05, 3)
    P = P[:, 1:]
    E, F, ref = _rows_both(basis, P, cell, 3)
    _assert_rel(E, ref.energy)
    _assert_rel(F, ref.forces)
    assert np.abs(F[:, :, 2]).max() < 1e-12 * np.abs(F).max()


@pytest.mark.parametrize("n_functions,shape", [(40, ([12, 5, 4], [0, 3, 2])),
                                               (300, ([10, 6, 4, 3], [0, 4, 3, 2]))])
def test_bulk_rows_equal_pyace(n_functions, shape):
    """3D: rattled bcc W (cubic 2×2×2, 16 atoms), every Cartesian component."""
    atoms = bulk("W", "bcc", a=3.165, cubic=True).repeat((2, 2, 2))
    rng = np.random.default_rng(7)
    P = atoms.positions[None] + 0.08 * rng.standard_normal((2, len(atoms), 3))
    basis = ACEBasis(ace_potential_config(["W"], n_functions, 4.5, *shape))
    E, F, ref = _rows_both(basis, P, np.array(atoms.cell), 3)
    _assert_rel(E, ref.energy)
    _assert_rel(F, ref.forces)


def test_force_rows_are_minus_gradient_of_energy_rows():
    """Finite differences of the chain-rule energy rows give its force rows (independent of
    pyace's force code)."""
    basis = ACEBasis(ace_potential_config(["W"], 80, 4.5, *PAPER_SUPERSET))
    objs = basis._objects()
    tables = basis_tables(objs.basis)
    P, cell = _planar(4, 1, 0.1, 5)
    _, F = design_rows_chain_rule(tables, objs.basis.radial_functions, P, cell, 2)
    h = 1e-5
    for i, a in [(0, 0), (3, 1), (9, 0)]:
        Pp, Pm = P.copy(), P.copy()
        Pp[0, i, a] += h
        Pm[0, i, a] -= h
        Ep, _ = design_rows_chain_rule(tables, objs.basis.radial_functions, Pp, cell, 2)
        Em, _ = design_rows_chain_rule(tables, objs.basis.radial_functions, Pm, cell, 2)
        np.testing.assert_allclose(F[0, i, a], -(Ep[0] - Em[0]) / (2 * h),
                                   atol=1e-6 * np.abs(F).max())


def test_rank5_functions_and_threads():
    """Rank-5 functions (the kernel's general product path; ranks 2–4 are written out) equal
    pyace's rows, and rows computed over structures on two threads equal the serial ones."""
    basis = ACEBasis(ace_potential_config(["W"], 60, 4.5, [6, 3, 2, 2, 1], [0, 2, 2, 1, 1]))
    objs = basis._objects()
    tables = basis_tables(objs.basis)
    assert tables.comb_rank.max() == 5
    P, cell = _planar(4, 3, 0.1, 11)
    E, F, ref = _rows_both(basis, P, cell, 2)
    _assert_rel(E, ref.energy)
    _assert_rel(F, ref.forces)
    E2, F2 = design_rows_chain_rule(tables, objs.basis.radial_functions, P, cell, 2, n_threads=2)
    np.testing.assert_array_equal(E2, E)
    np.testing.assert_array_equal(F2, F)


A0_NIAL = 2.85867  # Mishin NiAl B2 lattice constant, Å (tests/test_nial_screw.py)


@pytest.mark.parametrize("n_functions,shape", [(20, ([12, 5, 4], [0, 3, 2])),
                                               (150, ([10, 6, 4, 3], [0, 4, 3, 2]))])
def test_two_species_rows_equal_pyace(n_functions, shape):
    """Ni–Al (2 × n functions per element): the default rows of ``design_rows`` (chain rule:
    tables per central species, A blocks per neighbour species, radial functions per species
    pair) equal pyace's compute_b_grad rows to 1e-10 relative, in pyace's column layout, on
    rattled B2 cells with an antisite, every column and component; on two threads identical."""
    basis = ACEBasis(ace_potential_config(["Ni", "Al"], n_functions, 5.0, *shape))
    x, c, s = b2_cubic_cell(A0_NIAL, 2)
    s[5] = "Al"
    P = x[None] + 0.08 * np.random.default_rng(7).standard_normal((2,) + x.shape)
    chain = basis.design_rows(P, c, s)
    ref = basis.design_rows(P, c, s, method="pyace")
    assert chain.forces.shape == ref.forces.shape == (2, 16, 3, basis.n_functions)
    _assert_rel(chain.energy, ref.energy)
    _assert_rel(chain.forces, ref.forces)
    assert np.abs(ref.forces).max(axis=(0, 1, 2)).min() > 0  # every column is tested
    assert np.abs(ref.energy).min() > 0
    threaded = basis.design_rows(P, c, s, n_threads=2)
    np.testing.assert_array_equal(threaded.energy, chain.energy)
    np.testing.assert_array_equal(threaded.forces, chain.forces)


def test_two_species_rows_of_a_one_species_cell():
    """A Ni–Al basis on pure fcc Ni (no Al centre, no Al neighbour): the Al block of the energy
    rows is exactly zero on both routes and the rows equal pyace's."""
    basis = ACEBasis(ace_potential_config(["Ni", "Al"], 30, 5.0, [12, 5, 4], [0, 3, 2]))
    atoms = bulk("Ni", "fcc", a=3.52, cubic=True).repeat((2, 2, 2))
    P = atoms.positions[None] + 0.08 * np.random.default_rng(3).standard_normal((1, 32, 3))
    s = ["Ni"] * 32
    chain = basis.design_rows(P, np.array(atoms.cell), s)
    ref = basis.design_rows(P, np.array(atoms.cell), s, method="pyace")
    lo, hi = basis._species_columns(["Al"])[0]
    assert hi - lo == 30
    assert not np.any(chain.energy[:, lo:hi]) and not np.any(ref.energy[:, lo:hi])
    _assert_rel(chain.energy, ref.energy)
    _assert_rel(chain.forces, ref.forces)


def test_species_tables_need_the_central_species():
    basis = ACEBasis(ace_potential_config(["Ni", "Al"], 20, 5.0, [8, 4, 3], [0, 3, 2]))
    with pytest.raises(ValueError, match="central species"):
        basis_tables(basis._objects().basis)
    tables = basis_tables(basis._objects().basis, 1)
    assert tables.nelements == 2 and tables.n_functions == 20
    with pytest.raises(ValueError, match="several species"):
        design_rows_chain_rule(tables, basis._objects().basis.radial_functions,
                               np.zeros((1, 1, 3)), np.eye(3) * 5)
