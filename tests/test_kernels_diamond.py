"""Diamond Si through the same kernels as the 2D lattice: geometry, defect cells, stencil."""

import numpy as np
import pytest
from ase.build import bulk

from kernels.defects import point_defect_cell, site_occupancy
from kernels.diamond import DIAMOND, diamond_cell, diamond_index, diamond_sites
from kernels.errors import geometry_error, neighbour_pairs
from kernels.lattice import TRIANGULAR

A = 5.43


def test_sites_are_ases_diamond_lattice():
    """The supercell equals ase's cubic diamond repeated (independent construction)."""
    x = diamond_sites(2, A)
    ref = bulk("Si", "diamond", a=A, cubic=True) * (2, 2, 2)
    assert x.shape == (64, 3)
    d = np.linalg.norm(x[:, None] - ref.positions[None], axis=2)
    assert np.allclose(np.sort(d.min(axis=1)), 0.0, atol=1e-12)
    assert np.allclose(diamond_cell(2, A), np.array(ref.cell))
    assert np.allclose(x[diamond_index((1, 0, 1), 2)], [A, 0, A])


def test_stencil_has_the_four_nearest_neighbours():
    x, cell = diamond_sites(2, A), diamond_cell(2, A)
    i, j = neighbour_pairs(x, cell, DIAMOND.neighbour_cutoff_A(A))
    assert np.all(np.bincount(i) == 4)
    assert np.allclose(np.linalg.norm(x[j] - x[i] - np.round((x[j] - x[i]) / (2 * A)) * 2 * A,
                                      axis=1), np.sqrt(3) / 4 * A)
    # the same formula as in 2D: rigid translations cost nothing, one moved atom costs 8 |u|²
    u = np.zeros_like(x)
    u[5] = [0.01, -0.02, 0.005]
    cutoff = DIAMOND.stencil("cutoff", A)
    assert geometry_error(x, x + 0.3, x + 0.3, cell, cutoff) == 0.0
    assert geometry_error(x, x, x + u, cell, cutoff) == pytest.approx(
        np.sqrt(8) * np.linalg.norm(u[5]), rel=1e-12)
    # eq. 6.3's stencil: 28 neighbours (4 + 12 across faces, 12 at vertices), so 2 · 28 |u|²
    assert geometry_error(x, x, x + u, cell, DIAMOND.stencil("voronoi", A)) == pytest.approx(
        np.sqrt(56) * np.linalg.norm(u[5]), rel=1e-12)


@pytest.mark.parametrize("n, kinds, L", [(4, ["vacancy"] * 2, 2), (2, ["vacancy"], 2),
                                         (3, ["interstitial"], 3)])
def test_defect_cells(n, kinds, L):
    x, cell, removed = point_defect_cell(n, A, kinds, L, DIAMOND)
    n_vac = kinds.count("vacancy")
    n_int = kinds.count("interstitial")
    assert len(x) == 8 * n ** 3 - n_vac + n_int
    occ = site_occupancy(x, diamond_sites(n, A), cell)
    assert sorted(np.flatnonzero(occ == 0)) == sorted(removed)
    if n_vac == 2:  # L_D = L cubic cells along [100]
        p = diamond_sites(n, A)[removed]
        assert np.allclose(np.abs(p[1] - p[0]), [L * A, 0, 0])
    if n_int:  # the tetrahedral site: 4 neighbours at √3/4 a
        d = np.linalg.norm(x[:-1] - x[-1], axis=1)
        assert np.sum(np.isclose(d, np.sqrt(3) / 4 * A)) == 4 and d.min() == pytest.approx(
            np.sqrt(3) / 4 * A)


def test_crystals_declare_their_dimension():
    assert (TRIANGULAR.dimension, DIAMOND.dimension) == (2, 3)
    assert (TRIANGULAR.symbol, DIAMOND.symbol) == ("W", "Si")
