"""Error measures, defect cells and the rank-revealing solver."""

import itertools

import numpy as np
import pytest

from kernels.defects import point_defect_cell
from kernels.errors import geometry_error
from kernels.lattice import triangular_cell, triangular_sites
from kernels.least_squares import solve_rrqr
from kernels.point_defects import nearest_neighbour_cutoff

R0 = 2.7329


def test_geometry_error_of_rigid_translation_is_zero():
    x0 = triangular_sites(6, R0)
    cell = triangular_cell(6, R0)
    y = x0 + 0.01 * np.random.default_rng(0).standard_normal(x0.shape)
    assert geometry_error(x0, y, y + np.array([0.3, -0.2, 0.0]), cell,
                          nearest_neighbour_cutoff(R0)) == pytest.approx(0.0, abs=1e-12)


def test_geometry_error_of_one_displaced_atom():
    """Atom 0 moved by δ: its 6 bonds each appear twice (ℓ → ℓ+ρ and back), |Dw| = δ → √12 δ."""
    x0 = triangular_sites(6, R0)
    cell = triangular_cell(6, R0)
    delta = 0.037
    y_ml = x0.copy()
    y_ml[7] += delta * np.array([0.6, 0.8, 0.0])
    expected = np.sqrt(6 * delta**2 + 6 * delta**2)
    assert geometry_error(x0, x0, y_ml, cell, nearest_neighbour_cutoff(R0)) == pytest.approx(
        expected, rel=1e-12)
    # an atom on the cell boundary: the stencil includes periodic images
    y_ml = x0.copy()
    y_ml[0] += delta * np.array([1.0, 0.0, 0.0])
    assert geometry_error(x0, x0, y_ml, cell, nearest_neighbour_cutoff(R0)) == pytest.approx(
        expected, rel=1e-12)


def _min_image_distance(p, q, cell):
    best = np.inf
    for i, j in itertools.product(range(-1, 2), repeat=2):
        best = min(best, np.linalg.norm(q - p + i * cell[0] + j * cell[1]))
    return best


@pytest.mark.parametrize("n_d", [1, 2, 3, 4])
@pytest.mark.parametrize("sep", [4, 7])
def test_vacancy_cell_count_and_separation(n_d, sep):
    n = 20
    x, cell, removed = point_defect_cell(n, R0, ["vacancy"] * n_d, sep)
    assert len(x) == n * n - n_d
    assert len(removed) == n_d
    sites = triangular_sites(n, R0)[removed]
    # the removed sites are not among the remaining atoms
    for s in sites:
        assert min(_min_image_distance(s, a, cell) for a in x) == pytest.approx(R0, rel=1e-9)
    d = sorted(_min_image_distance(p, q, cell) for p, q in itertools.combinations(sites, 2))
    # |i a1 + j a2| = r0 √(i² + ij + j²); the rhombus's long diagonal (L, L) is √3 L unless a
    # periodic image of it, (L − n, L) etc., is shorter
    diag = min(np.sqrt(i * i + i * j + j * j) for i in (sep, sep - n) for j in (sep, sep - n))
    expected = {1: [], 2: [sep], 3: [sep] * 3, 4: sorted([sep] * 5 + [diag])}[n_d]
    np.testing.assert_allclose(d, np.array(expected) * R0, rtol=1e-12)
    assert all(v >= sep * R0 * (1 - 1e-12) for v in d)


def test_training_cell_vacancy_is_separated_by_L_from_its_images():
    L = 5
    x, cell, removed = point_defect_cell(L, R0, ["vacancy"], L)
    assert len(x) == L * L - 1
    assert np.linalg.norm(cell[0]) == pytest.approx(L * R0)
    assert np.linalg.norm(cell[1]) == pytest.approx(L * R0)


def test_separation_too_large_for_cell_is_rejected():
    with pytest.raises(ValueError, match="separation"):
        point_defect_cell(10, R0, ["vacancy"] * 2, 6)


@pytest.mark.parametrize("scale", [True, False])
def test_rrqr_recovers_known_solution(scale):
    rng = np.random.default_rng(3)
    A = rng.standard_normal((200, 12)) * np.logspace(-3, 3, 12)
    c = rng.standard_normal(12)
    sol = solve_rrqr(A, A @ c, 1e-10, scale_columns=scale)
    assert sol.rank == 12
    np.testing.assert_allclose(sol.coeffs, c, rtol=1e-8)


def test_rrqr_truncates_rank_deficient_column():
    rng = np.random.default_rng(4)
    A = rng.standard_normal((100, 6))
    A = np.hstack([A, A[:, [2]] * 2.0 + 1e-12 * rng.standard_normal((100, 1))])
    c = rng.standard_normal(6)
    y = A[:, :6] @ c
    sol = solve_rrqr(A, y, 1e-6)
    assert sol.rank == 6
    assert np.count_nonzero(sol.coeffs) == 6
    np.testing.assert_allclose(A @ sol.coeffs, y, atol=1e-9)
    # the two collinear columns together carry the original coefficient
    assert sol.coeffs[2] + 2.0 * sol.coeffs[6] == pytest.approx(c[2], rel=1e-8)
