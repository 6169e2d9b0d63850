"""Error measures, defect cells and the rank-revealing solver."""

import itertools
from collections import Counter

import numpy as np
import pytest
from scipy.optimize import linprog

from kernels import dislocations as dk
from kernels.b2_screw import b2_cubic_cell
from kernels.defects import point_defect_cell
from kernels.diamond import DIAMOND
from kernels.errors import STENCILS, Stencil, geometry_error, neighbour_pairs, stencil_pairs
from kernels.lattice import TRIANGULAR, triangular_cell, triangular_sites
from kernels.least_squares import solve_rrqr
from kernels.point_defects import nearest_neighbour_cutoff
from kernels.screw_quadrupole import screw_quadrupole_cell

R0 = 2.7329
A_W = 3.1652
A_SI = 5.43


def test_geometry_error_of_rigid_translation_is_zero():
    x0 = triangular_sites(6, R0)
    cell = triangular_cell(6, R0)
    y = x0 + 0.01 * np.random.default_rng(0).standard_normal(x0.shape)
    for reading in STENCILS:
        assert geometry_error(x0, y, y + np.array([0.3, -0.2, 0.0]), cell,
                              TRIANGULAR.stencil(reading, R0)) == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("reading", STENCILS)
def test_geometry_error_of_one_displaced_atom(reading):
    """Atom 0 moved by δ: its 6 bonds each appear twice (ℓ → ℓ+ρ and back), |Dw| = δ → √12 δ
    (the perfect triangular lattice has the same 6 neighbours in every reading)."""
    x0 = triangular_sites(6, R0)
    cell = triangular_cell(6, R0)
    stencil = TRIANGULAR.stencil(reading, R0)
    delta = 0.037
    y_ml = x0.copy()
    y_ml[7] += delta * np.array([0.6, 0.8, 0.0])
    expected = np.sqrt(6 * delta**2 + 6 * delta**2)
    assert geometry_error(x0, x0, y_ml, cell, stencil) == pytest.approx(expected, rel=1e-12)
    # an atom on the cell boundary: the stencil includes periodic images
    y_ml = x0.copy()
    y_ml[0] += delta * np.array([1.0, 0.0, 0.0])
    assert geometry_error(x0, x0, y_ml, cell, stencil) == pytest.approx(expected, rel=1e-12)


def test_geometry_error_needs_a_stencil_object():
    x0 = triangular_sites(4, R0)
    with pytest.raises(TypeError, match="Stencil"):
        geometry_error(x0, x0, x0, triangular_cell(4, R0), nearest_neighbour_cutoff(R0))
    with pytest.raises(ValueError, match="allowed"):
        Stencil("delaunay")
    with pytest.raises(ValueError, match="cutoff_A"):
        Stencil("cutoff", 2)


def eq_6_3_pairs(x, cell, dimension, reach_A, faces=False, tol=1e-9):
    """P1 eq. 6.3 evaluated site pair by site pair (independent of qhull): m ∈ N(ℓ) iff some a
    on the bisector of ℓ and m has |a − ℓ| ≤ |a − k| for every site k. |a − ℓ|² ≤ |a − k|² is
    linear in a, so this is a linear programme: the least value s* over a on the bisector of
    max_k (|a − ℓ|² − |a − k|²) is ≤ 0 (closures share a point) or < 0 (they share a
    (d−1)-face of positive measure: ``faces``). Candidates m within ``reach_A`` of ℓ, images
    k within twice that; returns the Counter of (ℓ, atom of m)."""
    n = len(x)
    x, cell = np.asarray(x, float)[:, :dimension], np.asarray(cell, float)[:dimension, :dimension]
    reps = int(np.ceil(2 * reach_A * np.linalg.norm(np.linalg.inv(cell), axis=0).max()))
    shifts = np.array(list(itertools.product(range(-reps, reps + 1), repeat=dimension)))
    images = (x[None, :, :] + (shifts @ cell)[:, None, :]).reshape(-1, dimension)
    atom = np.tile(np.arange(n), len(shifts))
    scale = reach_A ** 2
    out = Counter()
    for l in range(n):
        r = np.linalg.norm(images - x[l], axis=1)
        near = np.flatnonzero((r > 1e-9) & (r < 2 * reach_A))
        for m in near[r[near] < reach_A]:
            k = near[near != m]
            # variables (a, s): minimise s with 2a·(k − ℓ) − s ≤ |k|² − |ℓ|², a on the bisector
            a_ub = np.hstack([2 * (images[k] - x[l]), -np.ones((len(k), 1))])
            b_ub = np.sum(images[k] ** 2, axis=1) - x[l] @ x[l]
            a_eq = np.append(2 * (images[m] - x[l]), 0.0)[None]
            b_eq = [images[m] @ images[m] - x[l] @ x[l]]
            res = linprog(np.append(np.zeros(dimension), 1.0), A_ub=a_ub, b_ub=b_ub, A_eq=a_eq,
                          b_eq=b_eq, bounds=[(None, None)] * dimension + [(-scale, None)],
                          method="highs")
            assert res.status == 0
            if (res.fun < -tol * scale) if faces else (res.fun <= tol * scale):
                out[(l, int(atom[m]))] += 1
    return out


def _pairs(x, cell, stencil):
    i, j = stencil_pairs(x, cell, stencil)
    return Counter(zip(i.tolist(), j.tolist()))


def _shell_counts(x, cell, i, j, a_A):
    """Neighbour distances in units of a_A (minimum image), with how many of each per site."""
    frac = (x[j] - x[i]) @ np.linalg.inv(cell)
    r = np.linalg.norm((frac - np.round(frac)) @ cell, axis=1) / a_A
    values, counts = np.unique(np.round(r, 6), return_counts=True)
    return dict(zip(values.tolist(), (counts / len(x)).tolist()))


@pytest.mark.parametrize("name, reading, shells", [
    ("triangular", "voronoi", {1.0: 6}),
    ("triangular", "voronoi-faces", {1.0: 6}),
    # truncated octahedron: 8 hexagons to the first shell (√3/2 a), 6 squares to the second (a)
    ("bcc", "voronoi", {np.sqrt(3) / 2: 8, 1.0: 6}),
    ("bcc", "voronoi-faces", {np.sqrt(3) / 2: 8, 1.0: 6}),
    ("b2", "voronoi", {np.sqrt(3) / 2: 8, 1.0: 6}),
    # diamond: 4 hexagons (√3/4 a) and 12 triangles (a/√2); eq. 6.3's "≤" adds the 12 third
    # neighbours (√11/4 a) whose cells touch the site's at a Voronoi vertex only
    ("diamond", "voronoi-faces", {np.sqrt(3) / 4: 4, 1 / np.sqrt(2): 12}),
    ("diamond", "voronoi", {np.sqrt(3) / 4: 4, 1 / np.sqrt(2): 12, np.sqrt(11) / 4: 12}),
])
def test_voronoi_neighbours_of_perfect_lattices(name, reading, shells):
    if name == "triangular":
        x, cell, a, d = triangular_sites(7, R0), triangular_cell(7, R0), R0, 2
    elif name == "bcc":
        (x, cell, _), a, d = dk.bcc_cubic_cell(A_W, 3), A_W, 3
    elif name == "b2":
        (x, cell, _), a, d = b2_cubic_cell(2.8712, 3), 2.8712, 3
    else:
        x, cell, a, d = DIAMOND.sites(2, A_SI), DIAMOND.cell(2, A_SI), A_SI, 3
    i, j = stencil_pairs(x, cell, Stencil(reading, d))
    assert np.all(np.bincount(i, minlength=len(x)) == sum(shells.values()))
    expected = {round(float(k), 6): v for k, v in shells.items()}
    assert _shell_counts(x, cell, i, j, a) == pytest.approx(expected)
    assert Counter(zip(i.tolist(), j.tolist())) == Counter(zip(j.tolist(), i.tolist()))


@pytest.mark.parametrize("reading", ["voronoi", "voronoi-faces"])
def test_stencil_is_eq_6_3_on_a_vacancy_cell(reading):
    """The qhull stencil equals the pair-by-pair evaluation of eq. 6.3 on a 6 × 6 triangular
    cell with two vacancies (co-circular former neighbours) and on the diamond cubic cell
    (Voronoi vertices shared by more than four cells)."""
    x, cell, _ = point_defect_cell(6, R0, ["vacancy"] * 2, 3)
    assert _pairs(x, cell, Stencil(reading, 2)) == eq_6_3_pairs(
        x, cell, 2, 2.5 * R0, faces=reading == "voronoi-faces")
    x, cell = DIAMOND.sites(1, A_SI), DIAMOND.cell(1, A_SI)
    assert _pairs(x, cell, Stencil(reading, 3)) == eq_6_3_pairs(
        x, cell, 3, 1.2 * A_SI, faces=reading == "voronoi-faces")


def test_vacancy_former_neighbours_become_mutual_neighbours():
    """Around each vacancy of the triangular lattice the six former neighbours lie on the empty
    circle centred on it: "voronoi" adds every pair of them (symmetric, whichever way qhull
    triangulated the hexagon) to the bonds of the cutoff stencil; "voronoi-faces" adds none
    (they touch at the vacancy's site only)."""
    n, sep = 12, 4
    x, cell, removed = point_defect_cell(n, R0, ["vacancy"] * 2, sep)
    cut = _pairs(x, cell, TRIANGULAR.stencil("cutoff", R0))
    perfect = triangular_sites(n, R0)
    expected = Counter(cut)
    for v in removed:
        d = x - perfect[v]
        frac = d @ np.linalg.inv(cell)
        r = np.linalg.norm((frac - np.round(frac)) @ cell, axis=1)
        ring = np.flatnonzero(np.abs(r - R0) < 1e-9 * R0)
        assert len(ring) == 6
        for p, q in itertools.permutations(ring.tolist(), 2):
            if (p, q) not in cut:
                expected[(p, q)] += 1
    got = _pairs(x, cell, TRIANGULAR.stencil("voronoi", R0))
    assert got == expected
    assert sum(got.values()) - sum(cut.values()) == 2 * 2 * 9  # 9 new pairs per hexagon
    assert _pairs(x, cell, TRIANGULAR.stencil("voronoi-faces", R0)) == cut
    # another atom order gives qhull another triangulation, not other pairs
    perm = np.random.default_rng(1).permutation(len(x))
    shuffled = _pairs(x[perm], cell, TRIANGULAR.stencil("voronoi", R0))
    assert Counter({(int(perm[p]), int(perm[q])): c for (p, q), c in shuffled.items()}) == got


def test_cutoff_stencil_is_the_neighbour_list():
    x, cell, _ = point_defect_cell(10, R0, ["vacancy"] * 3, 4)
    i, j = stencil_pairs(x, cell, TRIANGULAR.stencil("cutoff", R0))
    i0, j0 = neighbour_pairs(x, cell, nearest_neighbour_cutoff(R0))
    np.testing.assert_array_equal(i, i0)
    np.testing.assert_array_equal(j, j0)
    c = screw_quadrupole_cell(A_W, (2, 4))
    i, j = stencil_pairs(c.positions0_A, c.cell_A, dk.W_SCREW.stencil("cutoff", A_W))
    i0, j0 = neighbour_pairs(c.positions0_A, c.cell_A, dk.nearest_neighbour_cutoff(A_W))
    np.testing.assert_array_equal(i, i0)
    np.testing.assert_array_equal(j, j0)


def test_screw_quadrupole_sites_have_fourteen_voronoi_neighbours():
    """x₀ of the W quadrupole (one Burgers vector thick, periodic along the line) is bcc: 14
    neighbours per site, 8 of them those of the cutoff stencil."""
    c = screw_quadrupole_cell(A_W, (2, 4))
    vor = _pairs(c.positions0_A, c.cell_A, dk.W_SCREW.stencil("voronoi", A_W))
    cut = _pairs(c.positions0_A, c.cell_A, dk.W_SCREW.stencil("cutoff", A_W))
    i = np.array([p for p, _ in vor.elements()])
    assert np.all(np.bincount(i, minlength=len(c.positions0_A)) == 14)
    assert not cut - vor


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
