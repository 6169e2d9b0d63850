"""The Si edge quadrupole: unit cell, Burgers vectors, periodic anisotropic CLE predictor, core."""

import numpy as np
import pytest
from matscipy.neighbours import neighbour_list

from kernels.edge_quadrupole import (AXES, DiamondShuffleEdge, diamond_edge_unit_cell,
                                     edge_cell_repeats, edge_quadrupole_cell,
                                     periodic_edge_displacement, single_edge_displacement,
                                     stroh_field)
from kernels.elasticity import EV_PER_A3_IN_GPA
from kernels.kumagai import kumagai2007_silicon
from kernels.relax import relax

A0 = 5.429  # Kumagai Si, Å (tests/test_kumagai.py)
# Kumagai's relaxed C11, C12, C44 (GPa; tests/test_kumagai.py), cube axes, Voigt 6 × 6
C = np.zeros((6, 6))
C[:3, :3] = 65.3
C[[0, 1, 2], [0, 1, 2]] = 166.4
C[[3, 4, 5], [3, 4, 5]] = 77.1


def _circuit(x0, u, core, b, r_in, r_out):
    """Σ of the in-plane displacement differences around a ring of atoms about ``core``, each
    wrapped by multiples of the lattice vector b (along x), Å: the Burgers vector enclosed."""
    d = x0[:, :2] - core
    r = np.linalg.norm(d, axis=1)
    ring = np.nonzero((r > r_in) & (r < r_out))[0]
    order = ring[np.argsort(np.arctan2(d[ring, 1], d[ring, 0]))]
    du = np.diff(np.vstack([u[order], u[order[:1]]]), axis=0)
    du[:, 0] -= b * np.round(du[:, 0] / b)
    return du.sum(axis=0)


def test_unit_cell_is_diamond_with_right_handed_axes():
    x, cell = diamond_edge_unit_cell(A0)
    assert len(x) == 12
    np.testing.assert_allclose(np.diag(cell), [A0 / np.sqrt(2), A0 * np.sqrt(3),
                                               A0 * np.sqrt(6) / 2], rtol=1e-12)
    assert np.linalg.det(AXES) > 0
    i, d = neighbour_list("id", positions=x, cell=cell, pbc=[1, 1, 1], cutoff=0.57 * A0)
    assert np.all(np.bincount(i, minlength=12) == 4)
    np.testing.assert_allclose(d, np.sqrt(3) / 4 * A0, rtol=1e-9)


def test_quadrupole_has_zero_net_burgers_and_each_core_winds_by_b():
    c = edge_quadrupole_cell(A0, (12, 6), C)
    b = c.burgers_A[0]
    assert b == pytest.approx(A0 / np.sqrt(2), rel=1e-12)
    np.testing.assert_allclose(c.burgers_A[1:], 0, atol=1e-12)
    assert c.signs.sum() == 0
    assert c.signs @ c.cores_A[:, 1] == 0  # same-glide-plane pairs: no climb, no plastic strain
    u = c.positions_A - c.positions0_A
    for core, s in zip(c.cores_A, c.signs):
        np.testing.assert_allclose(_circuit(c.positions0_A, u, core, b, 3.0, 7.0),
                                   [s * b, 0, 0], atol=1e-9)


def test_cle_predictor_is_periodic():
    c = edge_quadrupole_cell(A0, (8, 4), C)
    f = stroh_field(A0, C)
    Lx, Ly, b = c.cell_A[0, 0], c.cell_A[1, 1], c.burgers_A[0]
    xy = np.random.default_rng(0).uniform(0, 1, (60, 2)) * [Lx, Ly]
    u = periodic_edge_displacement(xy, c.cores_A, c.signs, f, Lx, Ly)
    assert np.abs(u).max() > 0.3
    for shift in ([Lx, 0], [0, Ly], [Lx, -Ly], [-2 * Lx, Ly]):
        v = periodic_edge_displacement(xy + shift, c.cores_A, c.signs, f, Lx, Ly)
        d = v - u
        d[:, 0] -= b * np.round(d[:, 0] / b)  # jumps by whole lattice vectors b only
        np.testing.assert_allclose(d, 0, atol=1e-10)


def test_stroh_coefficients_reproduce_matscipy_single_dislocation():
    d = DiamondShuffleEdge(A0, C=C, symbol="Si")
    d.init_adsl()
    pts = np.random.default_rng(1).uniform(-8, 8, (40, 3))
    core = np.array([0.3, 0.2, 0.0])
    np.testing.assert_allclose(single_edge_displacement(pts[:, :2], core[:2], stroh_field(A0, C)),
                               d.ADstroh.displacement(pts, core), atol=1e-12)


def test_periodic_field_is_single_core_field_plus_a_smooth_image_field():
    """Near a core of a large cell, periodic − single-core field is a smooth (image) field: on a
    ring of radius 3 Å it is a quadratic polynomial up to the cubic term of the nearest images
    (≈ b/2π (r/d)³ ≈ 1e-5 Å at d = Lx/2 = 115 Å), while the single-core field varies by ~b/2."""
    c = edge_quadrupole_cell(A0, (60, 24), C)  # 230 × 226 Å
    f = stroh_field(A0, C)
    Lx, Ly, b = c.cell_A[0, 0], c.cell_A[1, 1], c.burgers_A[0]
    core = c.cores_A[0]
    ang = np.linspace(0, 2 * np.pi, 36, endpoint=False) + 0.1
    pts = core + 3.0 * np.column_stack([np.cos(ang), np.sin(ang)])
    single = single_edge_displacement(pts, core, f)
    assert np.ptp(single[:, 0]) > 0.4 * b
    diff = periodic_edge_displacement(pts, c.cores_A, c.signs, f, Lx, Ly) - single
    diff[:, 0] -= b * np.round((diff[:, 0] - diff[0, 0]) / b)
    x, y = (pts - core).T
    G = np.column_stack([np.ones_like(x), x, y, x * x, x * y, y * y])
    resid = diff - G @ np.linalg.lstsq(G, diff, rcond=None)[0]
    assert np.abs(resid).max() < 1e-5


def test_cle_predictor_solves_anisotropic_elasticity():
    """div σ = 0 away from the cores: c_ijkl ∂_j ∂_l u_k by central differences (cell frame)."""
    c = edge_quadrupole_cell(A0, (8, 4), C)
    f = stroh_field(A0, C)
    Lx, Ly = c.cell_A[0, 0], c.cell_A[1, 1]
    R = AXES / np.linalg.norm(AXES, axis=1)[:, None]
    from matscipy.elasticity import full_3x3x3x3_to_Voigt_6x6, Voigt_6x6_to_full_3x3x3x3

    Cc = np.einsum("ia,jb,kc,ld,abcd->ijkl", R, R, R, R, Voigt_6x6_to_full_3x3x3x3(C))
    assert full_3x3x3x3_to_Voigt_6x6(Cc).shape == (6, 6)
    h = 1e-3
    pts = np.array([[0.3 * Lx, 0.41 * Ly], [0.7 * Lx, 0.15 * Ly], [0.1 * Lx, 0.8 * Ly]])

    def u(p):
        return periodic_edge_displacement(np.atleast_2d(p), c.cores_A, c.signs, f, Lx, Ly)[0]

    for p in pts:
        H = np.zeros((3, 2, 2))  # ∂_j ∂_l u_k, j, l in-plane (no z dependence)
        for j in range(2):
            for l in range(2):
                ej, el = np.eye(2)[j] * h, np.eye(2)[l] * h
                H[:, j, l] = (u(p + ej + el) - u(p + ej - el) - u(p - ej + el)
                              + u(p - ej - el)) / (4 * h * h)
        div = np.einsum("ijkl,kjl->i", Cc[:, :2, :, :2], H)
        scale = np.abs(np.einsum("ijkl,kjl->ijkl", Cc[:, :2, :, :2], H)).max()
        assert np.abs(div).max() < 1e-4 * scale


def test_predictor_has_no_overlapping_atoms_and_relaxes_to_a_compact_core():
    model = kumagai2007_silicon()
    c = edge_quadrupole_cell(A0, edge_cell_repeats(6), C)
    d = neighbour_list("d", positions=c.positions_A, cell=c.cell_A, pbc=[1, 1, 1], cutoff=3.0)
    assert d.min() > 2.0  # bond length √3/4 a = 2.35 Å; no two atoms on top of each other
    sym = ["Si"] * len(c.positions_A)
    r = relax(model, c.positions_A, c.cell_A, sym, 1e-4, 3000)
    e_bulk = model.evaluate(c.positions0_A, c.cell_A, sym).energy_eV
    # four cores in a 6.65 Å thick cell: positive line energies, well below the predictor's
    assert 10.0 < r.energy_eV - e_bulk < model.evaluate(c.positions_A, c.cell_A, sym).energy_eV \
        - e_bulk
    d = neighbour_list("d", positions=r.positions_A, cell=c.cell_A, pbc=[1, 1, 1], cutoff=3.0)
    assert d.min() > 2.2
    assert np.abs(r.positions_A - c.positions_A).max() < 1.0  # the CLE field was a good start
    u = r.positions_A - c.positions0_A
    for core, s in zip(c.cores_A, c.signs):  # the dislocations stay where they were put
        np.testing.assert_allclose(_circuit(c.positions0_A, u, core, c.burgers_A[0], 3.0, 7.0),
                                   [s * c.burgers_A[0], 0, 0], atol=1e-6)
