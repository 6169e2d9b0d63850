"""Periodic cells of edge dislocations in diamond Si, with the periodic anisotropic CLE predictor.

Which dislocation. P2 §4.2.2 says only "edge dislocations in Si" in a quadrupole (its Fig. 6
shows the cells, its text gives no indices). Taken here: the perfect (undissociated) 60°-family
edge of the diamond lattice, Burgers vector b = ½[1-10] (|b| = a/√2 = 3.84 Å), line
ξ = [-1-12], glide plane (111), core in the *shuffle set* (between the widely spaced {111} layers,
which are joined by one bond per atom). matscipy's diamond dislocations are the glide-set
partials and their dissociated screw and 60° dislocations, none of them a pure edge, so
:class:`DiamondShuffleEdge` is a :class:`matscipy.dislocation.CubicCrystalDislocation` with
these axes and Burgers vector; its anisotropic Stroh solution (``AnisotropicDislocation``,
"adsl") is what the predictor uses.

Cell. Axes x = [1-10] (glide direction, ∥ b), y = [111] (glide-plane normal), z = [-1-12] (the
line; right-handed). The smallest orthogonal periodic cell of the crystal with these axes is a/√2 × a√3 ×
a√6/2 (3.84 × 9.40 × 6.65 Å at a = 5.429 Å) with 12 atoms (``ase.build.cut`` of the cubic cell);
matscipy's own unit cell for these axes is four times larger (a√2 × a√3 × a√6). A cell of
``nx × ny`` unit cells (both even) holds four edges: +b at c₀, −b at c₀ + (Lx/2, 0),
−b at c₀ + (Lx/2, Ly/2), +b at c₀ + (0, Ly/2), c₀ a shuffle-set core site (midway between the
two {111} layers 2.35 Å apart and between atom columns). Like signs stand above each other
(walls), each core's opposite-sign neighbours are on its own glide plane (Lx/2 away) and on the
diagonals. This is not the checkerboard of :mod:`kernels.screw_quadrupole`, whose like-sign
neighbours sit on the diagonals and opposite-sign ones straight above: for edges that is a
maximum of the elastic energy against glide (the glide force between edges at relative (X, Y)
is ∝ s₁s₂ X(X² − Y²)/(X² + Y²)²: opposite signs are unstable straight above each other, like signs
at 45°), and measured with the Kumagai reference an 8 × 4 checkerboard cell glided to annihilation
(perfect crystal after relaxation). Slip cuts: +b over [c₀, c₀ + Lx/2] on the lower glide plane,
−b over [c₀ + Lx/2, c₀ + Lx] on the upper one — equal and opposite slipped areas, so no net
Burgers vector and no plastic strain, and the cell is not tilted.

Predictor. The single-dislocation Stroh field (Hirth & Lothe p. 467; matscipy's
``AnisotropicDislocation.displacement``) is

    u(r) = Re Σ_α k_α log η_α(r),   η_α = m·r + p_α n·r,   k_α = s_α A_α (L_α·b) / 2πi,

over the six Stroh eigenvalues p_α (s_α = sign Im p_α), with m = glide direction (here ±x̂) and
n = ŷ. For the periodic array each dipole pair (+b at P, −b at P + (Lx/2) x̂) is summed over
its images along x in closed form, log Π_j (η − η_P − j m_x Lx)/(η − η_P − (j + ½) m_x Lx) =
log(−m_x tan(π(η − η_P)/Lx)) + const, and the rows of pairs are summed over n = −M…M images
along y (the terms of a +/− pair of rows tend to the same constant, so the sum converges
exponentially, like q^{2|n|} with q = exp(−π Im p_α Ly/Lx)). Because the two cores of a pair are
exactly Lx/2 apart, the principal logarithm of −m_x tan w jumps only on the segment between them
(tan w is real only where Im w = 0, i.e. on the pair's own glide line, for every p_α): the
cut is one segment for all six α, across which u jumps by exactly b — a lattice vector, invisible
to the crystal. The field is harmonic (in the anisotropic sense) away from the cores, periodic
with the cell (tested to 1e-10 Å), and near each core equals the single-core Stroh field plus a
smooth image field. It is evaluated at the perfect sites x₀ (P2 eq. 2.1: y = x₀ + u_CLE(x₀)).

The elastic constants are those of the reference model with internal relaxation
(:func:`kernels.relaxed_elasticity.relaxed_elastic_constants_eV_per_A3`): the far field of a
dislocation in diamond sees the relaxed, not the clamped-ion, C44.

Units: Å; elastic constants as given (only their ratios enter the field).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["DiamondShuffleEdge", "EdgeCell", "AXES", "BURGERS", "diamond_edge_unit_cell",
           "edge_cell_repeats", "StrohField", "stroh_field", "stroh_field_of",
           "periodic_edge_displacement", "periodic_pair_displacement",
           "single_edge_displacement", "edge_quadrupole_cell"]

#: Cell axes in cubic-crystal coordinates: x = glide direction ∥ b, y = glide-plane normal,
#: z = dislocation line.
AXES = np.array([[1, -1, 0], [1, 1, 1], [-1, -1, 2]])
#: Burgers vector in units of the cubic lattice constant (cubic-crystal coordinates).
BURGERS = np.array([1.0, -1.0, 0.0]) / 2.0
#: Shuffle-set core in the 12-atom unit cell, units of a: x midway between atom columns
#: (√2/8 a), y midway between the {111} layers at a/√3 and 7a√3/12 (11√3/24 a).
CORE = np.array([np.sqrt(2.0) / 8.0, 11.0 * np.sqrt(3.0) / 24.0])

try:
    from matscipy.dislocation import CubicCrystalDislocation as _Base
except ImportError:  # pragma: no cover - matscipy is a dependency
    _Base = object


class DiamondShuffleEdge(_Base):
    """matscipy dislocation: ½[1-10](111) pure edge, line [-1-12], in diamond (shuffle set).

    Parameters as :class:`matscipy.dislocation.CubicCrystalDislocation` (lattice constant in Å,
    elastic constants in GPa or any consistent unit).
    """

    crystalstructure = "diamond"
    axes = AXES.copy()
    burgers_dimensionless = BURGERS.copy()
    # matscipy's unit cell for these axes is a√2 × a√3 × a√6; the core in its units of a
    unit_cell_core_position_dimensionless = np.array([CORE[0], CORE[1], 0.0])
    glide_distance_dimensionless = np.sqrt(2.0) / 2.0
    n_planes = 6
    name = "1/2<110>{111} shuffle-set edge"


@dataclass(frozen=True)
class EdgeCell:
    """A periodic cell with four edge dislocations.

    Attributes
    ----------
    positions0_A : (n, 3) ndarray
        Perfect-crystal sites x₀, Å.
    positions_A : (n, 3) ndarray
        x₀ plus the periodic CLE predictor, Å.
    cell_A : (3, 3) ndarray
        Orthogonal cell rows, Å (Lx, Ly, line period a√6/2).
    cores_A : (4, 2) ndarray
        Core positions (x, y), Å.
    signs : (4,) ndarray
        Sign s_k of each Burgers vector b_k = s_k b.
    burgers_A : (3,) ndarray
        b in the cell frame, Å (along x).
    repeats : tuple of int
        (nx, ny) unit cells.
    """

    positions0_A: np.ndarray
    positions_A: np.ndarray
    cell_A: np.ndarray
    cores_A: np.ndarray
    signs: np.ndarray
    burgers_A: np.ndarray
    repeats: tuple


def diamond_edge_unit_cell(a_A: float):
    """The 12-atom orthogonal unit cell (positions (12, 3), cell (3, 3), Å) in the edge frame."""
    from ase.build import bulk, cut  # noqa: PLC0415

    c = cut(bulk("Si", "diamond", a_A, cubic=True), a=(0.5, -0.5, 0.0), b=(1.0, 1.0, 1.0),
            c=(-0.5, -0.5, 1.0))
    R = AXES / np.linalg.norm(AXES, axis=1)[:, None]
    cell = np.diag(np.diag(np.asarray(c.cell, float) @ R.T))
    x = np.mod(c.positions @ R.T + 1e-9, np.diag(cell)) - 1e-9
    x[np.abs(x) < 1e-8] = 0.0
    return x[np.lexsort((x[:, 2], x[:, 0], x[:, 1]))], cell


def edge_cell_repeats(size_a: float) -> tuple[int, int]:
    """Even unit-cell repeats (nx, ny) making a near-square cell of side ≈ ``size_a`` lattice
    constants (unit cell a/√2 × a√3); nx ≥ 4, ny ≥ 2 keep the cores ≥ 1.4 a and 1.7 a apart."""
    nx = max(4, 2 * int(round(size_a * np.sqrt(2.0) / 2)))
    ny = max(2, 2 * int(round(size_a / (2 * np.sqrt(3.0)))))
    return nx, ny


@dataclass(frozen=True)
class StrohField:
    """The Stroh data of one straight dislocation in the cell frame.

    Attributes
    ----------
    p : (6,) complex ndarray
        Stroh eigenvalues.
    k : (3, 6) complex ndarray
        Coefficient vectors k_α (Å): u = Re Σ_α k_α log η_α.
    m, n : (3,) ndarray
        Glide direction and glide-plane normal (unit vectors, cell frame).
    burgers_A : (3,) ndarray
        b in the cell frame, Å.
    """

    p: np.ndarray
    k: np.ndarray
    m: np.ndarray
    n: np.ndarray
    burgers_A: np.ndarray


def stroh_field(a_A: float, C: np.ndarray) -> StrohField:
    """matscipy's anisotropic Stroh solution ("adsl") of the edge, for elastic constants C.

    Parameters
    ----------
    a_A : float
        Cubic lattice constant, Å.
    C : (6, 6) ndarray
        Voigt elastic constants of the cubic crystal (cube axes; any unit).
    """
    return stroh_field_of(DiamondShuffleEdge(a_A, C=np.asarray(C, float), symbol="Si"))


def stroh_field_of(dislocation) -> StrohField:
    """The Stroh data of any :class:`matscipy.dislocation.CubicCrystalDislocation` (built with
    its elastic constants), in its cell frame: matscipy's ``AnisotropicDislocation``."""
    d = dislocation
    d.init_adsl()
    s = d.ADstroh
    signs = np.sign(np.imag(s.Np))
    signs[signs == 0] = 1.0
    A = s.Nv[0:3, :]
    L = s.Nv[3:6, :]
    k = signs * A * (s.b @ L) / (2j * np.pi)
    return StrohField(np.asarray(s.Np), k, np.asarray(s.m, float), np.asarray(s.n, float),
                      np.asarray(s.b, float))


def single_edge_displacement(xy_A: np.ndarray, core_A: np.ndarray, field: StrohField
                             ) -> np.ndarray:
    """The single-core Stroh displacement (m, 3), Å, at in-plane points ``xy_A`` (m, 2)."""
    d = np.asarray(xy_A, float) - np.asarray(core_A, float)
    eta = (d @ field.m[:2])[:, None] + np.outer(d @ field.n[:2], field.p)
    return np.real(np.log(eta) @ field.k.T)


def _image_rows(field: StrohField, Lx: float, Ly: float, tol: float = 1e-17) -> int:
    q = np.exp(-np.pi * np.abs(np.imag(field.p)).min() * Ly / Lx)
    return int(np.ceil(np.log(tol) / (2 * np.log(q)))) + 1


def periodic_edge_displacement(xy_A: np.ndarray, cores_A: np.ndarray, signs: np.ndarray,
                               field: StrohField, Lx_A: float, Ly_A: float) -> np.ndarray:
    """Periodic CLE displacement (m, 3), Å, of the checkerboard quadrupole at points ``xy_A``.

    Parameters
    ----------
    xy_A : (m, 2) ndarray
        In-plane positions, Å, with 0 ≤ y < Ly (the pair cuts of other rows lie outside).
    cores_A : (4, 2) ndarray
        The cores c₀, c₀ + (Lx/2, 0), c₀ + (Lx/2, Ly/2), c₀ + (0, Ly/2), 0 < c₀,y < Ly/2.
    signs : (4,) ndarray
        (+1, −1, −1, +1): two dipole pairs, slipped by +b and −b (no plastic strain).
    field : StrohField
        The single-dislocation solution (:func:`stroh_field`).
    Lx_A, Ly_A : float
        Orthogonal periods, Å.

    The field jumps by exactly ±b on the glide segments between the cores of each pair.
    """
    cores_A = np.asarray(cores_A, float)
    signs = np.asarray(signs, float)
    c0 = cores_A[0]
    expected = np.array([c0, c0 + [Lx_A / 2, 0], c0 + [Lx_A / 2, Ly_A / 2], c0 + [0, Ly_A / 2]])
    if not np.allclose(cores_A, expected, atol=1e-9) or not np.array_equal(signs, [1, -1, -1, 1]):
        raise ValueError("expected the quadrupole (+b, -b, -b, +b) at c0, c0 + (Lx/2, 0), "
                         "c0 + (Lx/2, Ly/2), c0 + (0, Ly/2): zero net Burgers vector and zero "
                         "dipole moment")
    if not 0 < c0[1] < Ly_A / 2:
        raise ValueError("the first core must lie in 0 < y < Ly/2")
    # pair A: +b at c0, −b at c0 + (Lx/2, 0); pair B: −b at c0 + (Lx/2, Ly/2), +b at
    # c0 + (Lx, Ly/2) ≡ c0 + (0, Ly/2), i.e. minus the pair "+b at P_B, −b at P_B + Lx/2" with
    # P_B = c0 + (Lx/2, Ly/2).
    return periodic_pair_displacement(xy_A, ((c0, 1.0), (c0 + [Lx_A / 2, Ly_A / 2], -1.0)),
                                      field, Lx_A, Ly_A)


def periodic_pair_displacement(xy_A: np.ndarray, pairs, field: StrohField, Lx_A: float,
                               Ly_A: float) -> np.ndarray:
    """Periodic CLE displacement (m, 3), Å, of rows of dislocation pairs (module docstring).

    Parameters
    ----------
    xy_A : (m, 2) ndarray
        In-plane positions, Å, with 0 ≤ y < Ly.
    pairs : sequence of ((2,) array, float)
        (P, s): +s·b at P and −s·b at P + (Lx/2, 0), 0 < P_y < Ly. The signs s must sum to zero
        (zero net Burgers vector per period along y).
    field : StrohField
        The single-dislocation solution, with m = ±x̂ and n = ŷ.
    Lx_A, Ly_A : float
        Orthogonal periods, Å.

    The field jumps by exactly ±b on the segment between the cores of each pair.
    """
    if abs(sum(s for _, s in pairs)) > 1e-12:
        raise ValueError("the pairs' signs must sum to zero")
    if abs(abs(field.m[0]) - 1) > 1e-12 or abs(field.n[1] - 1) > 1e-12:
        raise ValueError("expected m = ±x and n = y")
    sx = float(np.sign(field.m[0]))
    xy = np.asarray(xy_A, float)
    M = _image_rows(field, Lx_A, Ly_A)
    out = np.zeros((len(xy), 3))
    for P, s in pairs:
        P = np.asarray(P, float)
        d = xy - P
        eta_x = d[:, 0] * field.m[0]
        for a in range(6):
            p = field.p[a]
            acc = np.zeros(len(xy), complex)
            for j in range(-M, M + 1):
                w = np.pi * (eta_x + p * (d[:, 1] - j * Ly_A)) / Lx_A
                acc += np.log(-sx * np.tan(w))
            out += s * np.real(np.outer(acc, field.k[:, a]))
    return out


def edge_quadrupole_cell(a_A: float, repeats: tuple[int, int], C: np.ndarray) -> EdgeCell:
    """Four edges (two dipoles, like signs in walls) in an ``nx × ny`` cell with the periodic
    CLE field.

    Parameters
    ----------
    a_A : float
        Cubic lattice constant, Å.
    repeats : (int, int)
        Unit cells (a/√2 × a√3 each) along x and y; both even, nx ≥ 4, ny ≥ 2.
    C : (6, 6) ndarray
        Voigt elastic constants (cube axes) of the predictor: the relaxed-ion constants.
    """
    nx, ny = (int(r) for r in repeats)
    if nx < 4 or ny < 2 or nx % 2 or ny % 2:
        raise ValueError(f"repeats must be even with nx >= 4 and ny >= 2, got {repeats}")
    x1, c1 = diamond_edge_unit_cell(a_A)
    ux, uy, uz = np.diag(c1)
    g = np.array([[i, j] for j in range(ny) for i in range(nx)], float)
    shifts = np.column_stack([g[:, 0] * ux, g[:, 1] * uy, np.zeros(len(g))])
    x0 = (shifts[:, None, :] + x1[None]).reshape(-1, 3)
    cell = np.diag([nx * ux, ny * uy, uz])
    Lx, Ly = nx * ux, ny * uy
    c = CORE * a_A + np.array([(nx // 4) * ux, 0.0])
    cores = np.array([c, c + [Lx / 2, 0], c + [Lx / 2, Ly / 2], c + [0, Ly / 2]])
    signs = np.array([1.0, -1.0, -1.0, 1.0])
    field = stroh_field(a_A, C)
    u = periodic_edge_displacement(x0[:, :2], cores, signs, field, Lx, Ly)
    return EdgeCell(x0, x0 + u, cell, cores, signs, field.burgers_A, (nx, ny))
