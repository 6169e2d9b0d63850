"""P2's training domain: one dislocation dipole in a periodic cell of side 2L, tilted by its
plastic strain (P2 §3.1).

Definition (P2 §3.1, Fig. 2, Fig. 3(b)): "given L ≤ L_D ≪ N, we call Ω_L := P(−L, L]² the
training domain [...] The defected lattice Λ_L := Λ ∩ Ω_L incorporates a dipole configuration
to facilitate the application of periodic boundary conditions [...] with distance of order O(L)
to prevent interaction." Here Ω_L is the near-square cell of side ≈ 2L lattice constants made of
whole oriented unit cells (the system's ``cell_repeats(2L)``), holding a +b core at c₀ and a −b
core at c₀ + (Lx/2, 0): the two cores ≈ L apart along the cell's x axis (the glide direction of
every system here), their images along y like signs 2L apart.

Plastic strain and tilt. The dipole's slip cut — the segment from the +b to the −b core, across
which the displacement jumps by [u] = u(above) − u(below) — slips a fraction d/Lx of every
vertical line of the cell, d = Lx/2 the core separation. A periodic displacement with zero mean
elastic distortion must therefore change by t = [u]·d/Lx = ±b/2 along the cell vector a₂ (and by
0 along a₁, which crosses no cut), so the cell vector is tilted, a₂ = (0, Ly, 0) + t: along the
line (z) for screws, along the glide direction (x) for edges. This is the standard
construction (Bulatov & Cai, *Computer Simulations of Dislocations*, OUP 2006, §5.3; Clouet
et al., Phil. Mag. 89 (2009) 3115). Without the tilt the cell would carry a homogeneous elastic
shear −t/Ly and its stress.

Predictor (P2 eq. 2.1: y = x₀ + u_CLE(x₀)). The sum of the periodic images of the single-core
CLE field is conditionally convergent; summed in closed form or row by row it equals the
correct field plus a spurious linear term. The kernels below take such a sum and remove the
linear term so that the mean elastic distortion vanishes: ⟨∇u_el⟩·a₁ = 0 and
⟨∇u_el⟩·a₂ = (u(x + a₂) − u(x)) − [u]·d/Lx = 0.

- Screws (bcc ½⟨111⟩ in W; B2 a[001] in NiAl): u_z = (b/2π) Σ_k s_k Im log θ₁(π(z − p_k)/Lx | τ),
  the image sum of (b/2π)θ in closed form (:mod:`kernels.screw_quadrupole`). θ₁'s
  quasi-periodicity gives u(z + iLy) − u(z) = (b/Lx) Σ_k s_k x_k = −b d/Lx, and the jump across
  the cut is [u] = −b: its linear term is already the right one (checked numerically by
  :func:`mean_elastic_distortion`), the tilt is t = −b/2 ẑ (≡ +b/2: b ẑ is the third cell vector).
- Edges (Si ½[1-10](111) shuffle-set edge): matscipy's anisotropic Stroh field of the pair,
  summed along x in closed form and over image rows along y
  (:func:`kernels.edge_quadrupole.periodic_edge_displacement`'s construction for one pair); the
  row sum's linear term is measured and removed, and the tilt is t = [u]/2 (x).

Units: Å; sizes in lattice constants a0.
"""

from __future__ import annotations

import numpy as np

from .edge_quadrupole import (CORE as EDGE_CORE, EdgeCell, StrohField, _image_rows,
                              diamond_edge_unit_cell, stroh_field)
from .screw_quadrupole import ScrewCell, _im_log_theta1, bcc_screw_unit_cell

__all__ = ["DIPOLE_SIGNS", "screw_dipole_displacement", "screw_dipole_cell",
           "edge_dipole_displacement", "edge_dipole_cell", "mean_elastic_distortion",
           "training_side_a", "locate_cores", "enclosed_burgers"]

#: Signs of the two cores of the dipole: +b at c₀, −b at c₀ + (Lx/2, 0).
DIPOLE_SIGNS = np.array([1.0, -1.0])


def training_side_a(L_a: float) -> float:
    """Side (a0) of the training domain Ω_L = P(−L, L]²: 2L."""
    return 2.0 * float(L_a)


def screw_dipole_displacement(xy_A: np.ndarray, cores_A: np.ndarray, burgers_A: float,
                              Lx_A: float, Ly_A: float) -> np.ndarray:
    """Periodic CLE screw displacement u_z (Å) of one dipole, modulo |b|, at ``xy_A`` (m, 2).

    ``cores_A`` (2, 2): +b core, then −b core, Å, on one horizontal line. The field is
    periodic along a₁ = (Lx, 0) and changes by −b·d/Lx along a₂ = (0, Ly), d = x₋ − x₊ (the
    tilt of the cell, :func:`screw_dipole_cell`).
    """
    cores_A = np.asarray(cores_A, float)
    z = xy_A[:, 0] + 1j * xy_A[:, 1]
    q = np.exp(-np.pi * Ly_A / Lx_A)
    theta = np.zeros(len(z))
    for (px, py), sk in zip(cores_A, DIPOLE_SIGNS):
        theta += sk * _im_log_theta1(np.pi * (z - (px + 1j * py)) / Lx_A, q)
    return np.mod(burgers_A * theta / (2.0 * np.pi), burgers_A)


def screw_dipole_cell(a_A: float, repeats: tuple[int, int], symbol: str = "W",
                      unit_cell=None) -> ScrewCell:
    """One screw dipole (+b at c₀, −b at c₀ + (Lx/2, 0)) in an ``nx × ny`` cell tilted by −b/2
    along the line, with the periodic CLE predictor.

    Parameters
    ----------
    a_A : float
        Cubic lattice constant, Å.
    repeats : (int, int)
        Unit cells along x and y; nx even (the cores Lx/2 apart sit at equivalent sites).
    symbol : str
        Chemical symbol of the single-species bcc crystal (default unit cell).
    unit_cell : (ase.Atoms, (2,) ndarray), optional
        Another oriented orthogonal unit cell (z along the line, height |b|) and its core
        position, Å (e.g. :func:`kernels.b2_screw.b2_screw_unit_cell`); default
        :func:`kernels.screw_quadrupole.bcc_screw_unit_cell`.

    Returns a :class:`kernels.screw_quadrupole.ScrewCell` with two cores; its ``cell_A`` rows
    are (Lx, 0, 0), (0, Ly, −b/2), (0, 0, b).
    """
    nx, ny = (int(r) for r in repeats)
    if nx < 2 or ny < 1 or nx % 2:
        raise ValueError(f"repeats must have nx even >= 2 and ny >= 1, got {repeats}")
    uc, core0 = bcc_screw_unit_cell(a_A, symbol) if unit_cell is None else unit_cell
    bulk = uc * (nx, ny, 1)
    x0 = bulk.positions.copy()
    cell = np.asarray(bulk.cell, float).copy()
    Lx, Ly, b = cell[0, 0], cell[1, 1], cell[2, 2]
    c = core0 + np.array([(nx // 4) * (Lx / nx), (ny // 2) * (Ly / ny)])
    cores = np.array([c, c + [Lx / 2, 0.0]])
    x = x0.copy()
    x[:, 2] = np.mod(x0[:, 2] + screw_dipole_displacement(x0[:, :2], cores, b, Lx, Ly), b)
    d = cores[1, 0] - cores[0, 0]
    cell[1, 2] = -b * d / Lx  # the dipole's plastic strain (module docstring)
    return ScrewCell(x0, x, cell, cores, DIPOLE_SIGNS.copy(), float(b), (nx, ny),
                     tuple(bulk.get_chemical_symbols()))


def _edge_pair_sum(xy: np.ndarray, P: np.ndarray, field: StrohField, Lx: float, Ly: float
                   ) -> np.ndarray:
    """Stroh field (m, 3), Å, of the pair +b at P, −b at P + (Lx/2, 0) and its images: closed
    form along x, rows j = −M…M along y (the raw sum, with its linear term)."""
    sx = float(np.sign(field.m[0]))
    M = _image_rows(field, Lx, Ly)
    d = xy - P
    eta_x = d[:, 0] * field.m[0]
    out = np.zeros((len(xy), 3))
    for a in range(6):
        p = field.p[a]
        acc = np.zeros(len(xy), complex)
        for j in range(-M, M + 1):
            acc += np.log(-sx * np.tan(np.pi * (eta_x + p * (d[:, 1] - j * Ly)) / Lx))
        out += np.real(np.outer(acc, field.k[:, a]))
    return out


def edge_dipole_displacement(xy_A: np.ndarray, core_A: np.ndarray, field: StrohField,
                             Lx_A: float, Ly_A: float) -> tuple[np.ndarray, np.ndarray]:
    """Periodic CLE displacement (m, 3), Å, of one edge dipole at ``xy_A`` (0 ≤ y ≤ Ly), and
    the change t (3,), Å, of the field along a₂ = (0, Ly): the cell's tilt.

    ``core_A``: the +b core c₀ (0 < y < Ly); the −b core is at c₀ + (Lx/2, 0). The raw image sum's
    linear term is replaced by the one of zero mean elastic distortion (module docstring).
    """
    P = np.asarray(core_A, float)
    xy = np.asarray(xy_A, float)
    probe_x = P[0] + Lx_A / 4  # on the cut, between the cores
    eps = 1e-6 * Ly_A
    probes = np.array([[probe_x, P[1] + eps], [probe_x, P[1] - eps],
                       [P[0] - Lx_A / 4, 0.0], [P[0] - Lx_A / 4, Ly_A]])
    u = _edge_pair_sum(np.vstack([xy, probes]), P, field, Lx_A, Ly_A)
    up, un, ub, ut = u[-4:]
    jump = up - un
    tilt = 0.5 * jump              # [u]·d/Lx with d = Lx/2
    offset = ut - ub               # the raw sum's change along a₂
    slope = (offset - tilt) / Ly_A
    return u[:-4] - np.outer(xy[:, 1] - P[1], slope), tilt


def edge_dipole_cell(a_A: float, repeats: tuple[int, int], C: np.ndarray) -> EdgeCell:
    """One ½[1-10](111) edge dipole (+b at c₀, −b at c₀ + (Lx/2, 0) on one glide plane) in an
    ``nx × ny`` cell of :func:`kernels.edge_quadrupole.diamond_edge_unit_cell` tilted by ±b/2
    along x, with the periodic anisotropic CLE predictor of elastic constants ``C`` (Voigt, cube
    axes: the relaxed-ion ones). Its images along y are like-sign walls (stable against glide,
    :mod:`kernels.edge_quadrupole`). ``cell_A`` rows: (Lx, 0, 0), (t, Ly, 0), (0, 0, a√6/2).
    """
    nx, ny = (int(r) for r in repeats)
    if nx < 4 or ny < 1 or nx % 2:
        raise ValueError(f"repeats must have nx even >= 4 and ny >= 1, got {repeats}")
    x1, c1 = diamond_edge_unit_cell(a_A)
    ux, uy, uz = np.diag(c1)
    g = np.array([[i, j] for j in range(ny) for i in range(nx)], float)
    shifts = np.column_stack([g[:, 0] * ux, g[:, 1] * uy, np.zeros(len(g))])
    x0 = (shifts[:, None, :] + x1[None]).reshape(-1, 3)
    Lx, Ly = nx * ux, ny * uy
    c = EDGE_CORE * a_A + np.array([(nx // 4) * ux, (ny // 2) * uy])
    cores = np.array([c, c + [Lx / 2, 0.0]])
    field = stroh_field(a_A, C)
    u, tilt = edge_dipole_displacement(x0[:, :2], c, field, Lx, Ly)
    cell = np.diag([Lx, Ly, uz])
    cell[1] += tilt
    return EdgeCell(x0, x0 + u, cell, cores, DIPOLE_SIGNS.copy(), field.burgers_A, (nx, ny))


def mean_elastic_distortion(displacement, cell_A: np.ndarray, burgers_A: np.ndarray,
                            n_grid: int = 400) -> np.ndarray:
    """⟨∂u/∂y⟩ (3,), dimensionless, of a periodic dislocation field over its cell, slip jumps
    excluded: central differences of ``displacement`` ((m, 2) points, Å → (m, 3) Å) on an
    ``n_grid``² grid of the rectangle Lx × Ly, each difference reduced modulo the Burgers vector
    ``burgers_A`` (3,) Å (so the jumps of ±b across cuts drop out). Zero for a field with the
    correct linear term (module docstring)."""
    Lx, Ly = cell_A[0, 0], cell_A[1, 1]
    b = np.asarray(burgers_A, float)
    bn = np.linalg.norm(b)
    e = b / bn
    h = Ly / n_grid
    gx, gy = np.meshgrid((np.arange(n_grid) + 0.5) * Lx / n_grid,
                         (np.arange(n_grid) + 0.5) * h)
    xy = np.column_stack([gx.ravel(), gy.ravel()])
    du = displacement(xy + [0, h / 2]) - displacement(xy - [0, h / 2])
    s = du @ e
    du = du - np.outer(s - (np.mod(s + bn / 2, bn) - bn / 2), e)
    return du.mean(axis=0) / h


def _column_slips(positions0_A, positions_A, burgers_A):
    """The atom columns along z of the perfect sites (their projected positions (k, 2), Å),
    each column's displacement along b (k,), Å, taken from its first atom, and |b| (Å)."""
    b = np.asarray(burgers_A, float)
    bn = float(np.linalg.norm(b))
    x0 = np.asarray(positions0_A, float)
    cols, first = np.unique(np.round(x0[:, :2], 6), axis=0, return_index=True)
    s = ((np.asarray(positions_A, float) - x0) @ (b / bn))[first]
    return cols, s, bn


def locate_cores(positions0_A: np.ndarray, positions_A: np.ndarray, burgers_A: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Dislocation cores of a relaxed straight-dislocation cell by Burgers circuits (Å).

    The atom columns along the line (z) of the perfect sites ``positions0_A`` are triangulated
    in projection (scipy's Delaunay, inside the cell); around every triangle the displacement
    differences u = positions − positions0 between its corners, each reduced modulo the
    Burgers vector ``burgers_A`` (3,) Å, are summed: the circuit closes (0) around perfect or
    elastically strained crystal and gives ±b around a core (circuits counter-clockwise seen
    from +z; the sign is that of the enclosed b along ``burgers_A``, +1 for the +b core of the
    cells here). Returns the centroids (k, 2), Å,
    and the signs (k,) of the triangles with a nonzero Burgers vector; an annihilated dipole
    gives none.
    """
    from scipy.spatial import Delaunay  # noqa: PLC0415

    cols, s, bn = _column_slips(positions0_A, positions_A, burgers_A)
    tri = Delaunay(cols).simplices
    v1, v2 = cols[tri[:, 1]] - cols[tri[:, 0]], cols[tri[:, 2]] - cols[tri[:, 0]]
    tri[(v1[:, 0] * v2[:, 1] - v1[:, 1] * v2[:, 0]) < 0] = tri[:, ::-1][
        (v1[:, 0] * v2[:, 1] - v1[:, 1] * v2[:, 0]) < 0]  # counter-clockwise circuits
    circ = np.zeros(len(tri))
    for k in range(3):
        d = s[tri[:, (k + 1) % 3]] - s[tri[:, k]]
        circ += d - (np.mod(d + bn / 2, bn) - bn / 2)
    sign = -np.rint(circ / bn)  # the reduced differences sum to minus the enclosed b
    hit = sign != 0
    return cols[tri[hit]].mean(axis=1), sign[hit]


def enclosed_burgers(positions0_A: np.ndarray, positions_A: np.ndarray, cell_A: np.ndarray,
                     centre_A: np.ndarray, burgers_A: np.ndarray, radius_A: float,
                     width_A: float | None = None) -> float:
    """The Burgers vector (in units of ``burgers_A``) enclosed by a ring of atom columns around
    ``centre_A`` (2,), Å: +1 around a +b core, −1 around a −b core, 0 where there is none.

    The columns whose projected perfect sites lie at distance [``radius_A``, ``radius_A`` +
    ``width_A``) from the centre (periodic images in the plane included) are taken in order of
    angle, counter-clockwise seen from +z, and the differences of the displacement along b
    between consecutive columns, each reduced modulo b, are summed (the sign convention of
    :func:`locate_cores`). Unlike the smallest circuits of :func:`locate_cores`, whose
    differences near a spread core come close to ±b/2 (a square column lattice, the B2 [001]
    screw, has them at b/4 per bond) and round either way, a ring a few columns out has steps
    far below b/2, so its count is robust: it tells whether a core is still inside the ring
    after a relaxation, which is what a dipole cell that neither annihilates nor glides away
    must show.

    ``cell_A`` rows: a₁ = (Lx, 0, 0) and a₂ = (t_x, Ly, t_z) in the plane (the tilted dipole
    cells), a₃ along the line. An image across a₂ carries the tilt's component along b in its
    displacement (its perfect site is the untilted a₂ away). ``width_A`` defaults to the
    in-plane column spacing estimated from the sites (the median nearest-column distance).
    """
    b = np.asarray(burgers_A, float)
    e = b / float(np.linalg.norm(b))
    cell = np.asarray(cell_A, float)
    cols, s, bn = _column_slips(positions0_A, positions_A, burgers_A)
    a1, a2 = cell[0, :2], cell[1, :2]
    tilt_b = float(cell[1] @ e) - float(np.array([a2[0], a2[1], 0.0]) @ e)  # tilt along b
    if width_A is None:
        from scipy.spatial import cKDTree  # noqa: PLC0415

        d, _ = cKDTree(cols).query(cols, k=2)
        width_A = float(np.median(d[:, 1]))
    centre = np.asarray(centre_A, float)
    pts, vals = [], []
    for i in (-1, 0, 1):
        for j in (-1, 0, 1):
            pts.append(cols + i * a1 + j * a2)
            vals.append(s + j * tilt_b)
    pts, vals = np.vstack(pts), np.concatenate(vals)
    r = np.linalg.norm(pts - centre, axis=1)
    ring = (r >= radius_A) & (r < radius_A + width_A)
    if ring.sum() < 4:
        raise ValueError(f"only {int(ring.sum())} columns in the ring of radius {radius_A} Å")
    ang = np.arctan2(*(pts[ring] - centre)[:, ::-1].T)
    v = vals[ring][np.argsort(ang)]
    d = np.diff(np.append(v, v[0]))
    reduced = d - bn * np.rint(d / bn)
    return float(reduced.sum() / bn)
