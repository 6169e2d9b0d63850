"""Periodic cells of ½⟨111⟩ screw dislocations in bcc crystals, with the periodic CLE predictor.

Geometry (P2 §2.2, Fig. 3, App. B). The oriented unit cell is matscipy's
:class:`matscipy.dislocation.BCCScrew111Dislocation` one: x = [11-2], y = [-110] (normal of the
{110} glide plane), z = [111] = the dislocation line, of height |b| = a√3/2 (6 atoms). A cell of
``nx × ny`` unit cells (both even) holds four screw dislocations in the *checkerboard* (quadrupolar)
arrangement: +b at c₀, −b at c₀ + (Lx/2, 0), −b at c₀ + (0, Ly/2), +b at c₀ + (Lx/2, Ly/2), c₀
the centre of a triangle of ⟨111⟩ atom columns (matscipy's core position). The periodic array it
makes is the array of dislocation dipoles of the papers; because its net dipole moment vanishes
(Σ s_k x_k = 0) the cell needs no tilt: the plastic strains of the two dipoles cancel. (The minimal
periodic dipole cell is half of this one with tilted vectors; matscipy's own quadrupole, left
untilted, relaxes to perfect bulk — see data/README.md; P2's training domain, one dipole in a
tilted cell of side 2L, is :mod:`kernels.dipole_cells`.) Simulation cells (size N, core
separation L_D = N/2) and the ``"checkerboard"`` training cells (size L) are built by
:func:`screw_quadrupole_cell`.

Predictor. The antiplane component of the continuum-linear-elasticity (CLE) field of a screw
along [111] of a cubic crystal is u_z = (b/2π) θ, independent of the elastic constants (tested
against matscipy's anisotropic Stroh solution); its small in-plane components (< 2e-3 Å at 3 Å
from the core for W, whose Zener ratio is 1.01) are left out of the predictor and to the
relaxation. The periodic field of the array is the imaginary part of a sum of logarithms of
Jacobi θ₁ functions,

    u_z(z) = (b/2π) Σ_k s_k Im log θ₁(π (z − p_k)/Lx | τ),   τ = i Ly/Lx,  z = x + i y,

which is harmonic away from the cores, winds by s_k b around core k and — since Σ s_k = 0 and
Σ s_k x_k = 0 — is periodic with the cell up to jumps of whole Burgers vectors (which leave the
crystal invariant). θ₁ is evaluated by its product formula. Units: Å.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["ScrewCell", "cell_repeats", "periodic_screw_displacement", "screw_quadrupole_cell",
           "anisotropic_screw_displacement", "screw_stroh_field",
           "bcc_screw_unit_cell"]

#: Terms of the θ₁ product kept; the n-th factor differs from 1 by ≤ exp(−2π (n−1) Ly/Lx).
_THETA_TERMS = 12


@dataclass(frozen=True)
class ScrewCell:
    """A periodic cell with four ½⟨111⟩ screw dislocations.

    Attributes
    ----------
    positions0_A : (n, 3) ndarray
        Perfect-crystal sites x₀, Å (the reference configuration of the stencil).
    positions_A : (n, 3) ndarray
        x₀ plus the periodic CLE predictor, Å.
    cell_A : (3, 3) ndarray
        Orthogonal cell rows, Å (Lx, Ly, |b|).
    cores_A : (4, 2) ndarray
        Core positions (x, y), Å.
    signs : (4,) ndarray
        Sign s_k of each Burgers vector b_k = s_k b ẑ.
    burgers_A : float
        |b|, Å.
    repeats : tuple of int
        (nx, ny) unit cells.
    symbols : tuple of str
        Chemical symbol of each atom (the unit cell's, repeated).
    """

    positions0_A: np.ndarray
    positions_A: np.ndarray
    cell_A: np.ndarray
    cores_A: np.ndarray
    signs: np.ndarray
    burgers_A: float
    repeats: tuple
    symbols: tuple = ()


def bcc_screw_unit_cell(a_A: float, symbol: str = "W"):
    """matscipy's oriented bcc unit cell and core position for the ½[111] screw (Å)."""
    from matscipy.dislocation import BCCScrew111Dislocation  # noqa: PLC0415

    # The elastic constants do not enter the unit cell or the core position (only matscipy's
    # own displacement solver); isotropic placeholders C11 = 2, C12 = 1, C44 = 0.5 are given.
    d = BCCScrew111Dislocation(a_A, 2.0, 1.0, 0.5, symbol=symbol)
    return d.unit_cell, np.asarray(d.unit_cell_core_position, float)[:2]


def cell_repeats(size_a: float) -> tuple[int, int]:
    """Even unit-cell repeats (nx, ny) making a near-square cell of side ≈ ``size_a`` lattice
    constants (unit cell a√6 × a√2); ny ≥ 4 keeps the cores at least 2.8 a apart."""
    nx = max(2, 2 * int(round(size_a / (2 * np.sqrt(6.0)))))
    ny = max(4, 2 * int(round(size_a / (2 * np.sqrt(2.0)))))
    return nx, ny


def _im_log_theta1(w: np.ndarray, q: float) -> np.ndarray:
    """Im log θ₁(w | q) up to multiples of π and an additive constant (product formula)."""
    out = np.angle(np.sin(w))
    e2p, e2m = np.exp(2j * w), np.exp(-2j * w)
    for n in range(1, _THETA_TERMS + 1):
        q2n = q ** (2 * n)
        out = out + np.angle(1.0 - q2n * e2p) + np.angle(1.0 - q2n * e2m)
    return out


def periodic_screw_displacement(xy_A: np.ndarray, cores_A: np.ndarray, signs: np.ndarray,
                                burgers_A: float, Lx_A: float, Ly_A: float) -> np.ndarray:
    """Periodic CLE screw displacement u_z (Å) at points ``xy_A`` (m, 2), modulo |b|.

    Parameters
    ----------
    xy_A : (m, 2) ndarray
        In-plane positions, Å.
    cores_A : (k, 2) ndarray
        Core positions, Å.
    signs : (k,) ndarray
        ±1 per core; must sum to zero with Σ s_k x_k = 0 (no plastic strain, no cell tilt).
    burgers_A : float
        |b|, Å.
    Lx_A, Ly_A : float
        Orthogonal periods, Å.
    """
    signs = np.asarray(signs, float)
    cores_A = np.asarray(cores_A, float)
    if abs(signs.sum()) > 1e-12:
        raise ValueError("the net Burgers vector of a periodic cell must vanish")
    if abs(signs @ cores_A[:, 0]) > 1e-8 * Lx_A or abs(signs @ cores_A[:, 1]) > 1e-8 * Ly_A:
        raise ValueError("the cores' dipole moment must vanish (an untilted cell)")
    z = xy_A[:, 0] + 1j * xy_A[:, 1]
    p = cores_A[:, 0] + 1j * cores_A[:, 1]
    q = np.exp(-np.pi * Ly_A / Lx_A)
    theta = np.zeros(len(z))
    for pk, sk in zip(p, signs):
        theta += sk * _im_log_theta1(np.pi * (z - pk) / Lx_A, q)
    return np.mod(burgers_A * theta / (2.0 * np.pi), burgers_A)


def screw_quadrupole_cell(a_A: float, repeats: tuple[int, int], symbol: str = "W",
                          unit_cell=None) -> ScrewCell:
    """Four ½[111] screw dislocations (checkerboard) in an ``nx × ny`` cell with the CLE field.

    Parameters
    ----------
    a_A : float
        Cubic lattice constant, Å.
    repeats : (int, int)
        Unit cells (a√6 × a√2 each) along x and y; both even.
    symbol : str
        Chemical symbol of the (single-species) bcc crystal.
    unit_cell : (ase.Atoms, (2,) ndarray), optional
        Another oriented orthogonal unit cell (z along the screw's line, height |b|) and the
        core position (x, y) in it, Å, e.g. :func:`kernels.b2_screw.b2_screw_unit_cell`'s
        a[001] screw in B2 NiAl; the default is :func:`bcc_screw_unit_cell`'s.
    """
    nx, ny = (int(r) for r in repeats)
    if nx < 2 or ny < 2 or nx % 2 or ny % 2:
        raise ValueError(f"repeats must be even and >= 2, got {repeats}")
    uc, core0 = bcc_screw_unit_cell(a_A, symbol) if unit_cell is None else unit_cell
    bulk = uc * (nx, ny, 1)
    x0 = bulk.positions.copy()
    cell = np.asarray(bulk.cell, float)
    Lx, Ly, b = cell[0, 0], cell[1, 1], cell[2, 2]
    ux, uy = Lx / nx, Ly / ny
    c = core0 + np.array([(nx // 4) * ux, (ny // 4) * uy])
    cores = np.array([c, c + [Lx / 2, 0], c + [0, Ly / 2], c + [Lx / 2, Ly / 2]])
    signs = np.array([1.0, -1.0, -1.0, 1.0])
    x = x0.copy()
    x[:, 2] = x0[:, 2] + periodic_screw_displacement(x0[:, :2], cores, signs, b, Lx, Ly)
    x[:, 2] = np.mod(x[:, 2], b)
    return ScrewCell(x0, x, cell, cores, signs, float(b), (nx, ny),
                     tuple(bulk.get_chemical_symbols()))


def anisotropic_screw_displacement(cell: ScrewCell, field) -> np.ndarray:
    """The full periodic anisotropic CLE displacement (n, 3), Å, of a screw cell's four cores
    at its perfect sites x₀, for the Stroh solution ``field`` of one of its screws.

    Unlike the predictor of :func:`screw_quadrupole_cell` (the antiplane u_z = (b/2π)θ only),
    this field carries the in-plane components that the anisotropy couples to the screw (zero
    for an isotropic crystal, and for the a[001] screw of a cubic one) and depends on the
    elastic constants through ``field``. The checkerboard is two rows of pairs along x, +b at
    c₀ with −b at c₀ + (Lx/2, 0), and −b at c₀ + (0, Ly/2) with +b at c₀ + (Lx/2, Ly/2),
    summed over their periodic images by
    :func:`kernels.edge_quadrupole.periodic_pair_displacement` (the field is periodic and jumps
    by exactly b, a lattice vector, on the segment between the cores of each pair).

    Parameters
    ----------
    cell : ScrewCell
        The cell (its cores, signs and orthogonal periods).
    field : kernels.edge_quadrupole.StrohField or None
        Stroh data of a +b screw in the cell frame (m = x̂, n = ŷ, b along ẑ), e.g.
        :func:`screw_stroh_field`; None for an isotropic crystal, whose field is the
        predictor's u_z = (b/2π)θ alone.
    """
    from .edge_quadrupole import periodic_pair_displacement  # noqa: PLC0415

    if field is None:
        u = np.zeros_like(np.asarray(cell.positions0_A, float))
        x0 = np.asarray(cell.positions0_A, float)
        Lx, Ly = float(cell.cell_A[0, 0]), float(cell.cell_A[1, 1])
        u[:, 2] = periodic_screw_displacement(x0[:, :2], cell.cores_A, cell.signs,
                                              cell.burgers_A, Lx, Ly)
        return u

    Lx, Ly = float(cell.cell_A[0, 0]), float(cell.cell_A[1, 1])
    c = np.asarray(cell.cores_A, float)
    expected = np.array([c[0], c[0] + [Lx / 2, 0], c[0] + [0, Ly / 2], c[0] + [Lx / 2, Ly / 2]])
    if not np.allclose(c, expected, atol=1e-9) or not np.array_equal(cell.signs, [1, -1, -1, 1]):
        raise ValueError("expected the checkerboard of screw_quadrupole_cell")
    xy = np.asarray(cell.positions0_A, float)[:, :2].copy()
    xy[:, 1] = np.mod(xy[:, 1], Ly)
    return periodic_pair_displacement(xy, ((c[0], 1.0), (c[2], -1.0)), field, Lx, Ly)


#: Smallest distance between Stroh eigenvalues below which the crystal counts as isotropic for
#: the screw (the sextic eigenproblem is then degenerate and its eigenvectors meaningless).
#: Measured on W's quadrupole: down to |A − 1| = 1e-6 the Stroh field is sound (u_z equal to
#: the θ₁ field within 1e-8 Å, in-plane part ∝ A − 1); at A = 1 exactly it is not.
STROH_DEGENERATE = 1e-6


def screw_stroh_field(a_A: float, C: np.ndarray, symbol: str = "W", dislocation=None):
    """matscipy's anisotropic Stroh solution of a screw (by default the ½[111] screw of a bcc
    crystal) for lattice constant ``a_A`` (Å) and Voigt elastic constants ``C`` (6, 6; cube
    axes, any unit: only their ratios enter), in the frame of :func:`bcc_screw_unit_cell`.

    ``dislocation``: another matscipy dislocation class, called as ``dislocation(a_A, C=C)``
    (e.g. a class whose first argument is a unit cell, wrapped in a lambda). Returns None when
    the Stroh eigenvalues are degenerate (:data:`STROH_DEGENERATE`): an isotropic crystal, whose
    screw field is (b/2π)θ alone (:func:`anisotropic_screw_displacement`)."""
    from .edge_quadrupole import stroh_field_of  # noqa: PLC0415

    if dislocation is None:
        from matscipy.dislocation import BCCScrew111Dislocation  # noqa: PLC0415

        d = BCCScrew111Dislocation(a_A, C=np.asarray(C, float), symbol=symbol)
    else:
        d = dislocation(a_A, C=np.asarray(C, float))
    field = stroh_field_of(d)
    p = np.asarray(field.p)
    gap = np.abs(p[:, None] - p[None, :]) + np.diag(np.full(len(p), np.inf))
    return None if gap.min() < STROH_DEGENERATE else field
