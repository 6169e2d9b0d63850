"""The error measures recorded per sweep point (P1 eq. 2.1 and §4, P2 eq. A.1).

All functions are pure numpy. Units: Å for geometry, eV for energies, eV/Å for forces.

The stencil N(ℓ) of the geometry error
--------------------------------------
P1 eq. 6.3 and P2 eq. A.2 define the neighbours of a site ℓ of the reference configuration Λ as

    N(ℓ) = { m ∈ Λ∖ℓ | ∃ a ∈ ℝᵈ: |a − ℓ| = |a − m| ≤ |a − k| ∀ k ∈ Λ },

the sites whose closed Voronoi cells touch that of ℓ. :class:`Stencil` offers three readings
(:data:`STENCILS`):

``"voronoi"`` (the default)
    Eq. 6.3 as written: the closed cells share any point, a Voronoi vertex included. ℓ and m
    are neighbours exactly when both lie on one empty sphere (no site strictly inside), so all
    sites on the empty circumsphere of a Delaunay cell are mutual neighbours. For lattices whose
    Voronoi vertices are generic this equals the face reading (triangular 6, bcc and B2 14 =
    8 + 6, diamond 16 = 4 + 12); it differs where more than d + 1 sites are co-spherical, e.g.
    the six former neighbours of a vacancy in the triangular lattice all become mutual
    neighbours (the empty circle centred on the vacancy passes through them).
``"voronoi-faces"``
    The generic reading: the cells share a (d−1)-face of positive measure (an edge in 2D, a
    polygon in 3D) — the edges of the Delaunay subdivision. Vertex-only contacts do not count.
``"cutoff"``
    Every pair closer than a radius ``cutoff_A`` in x₀ (a radius between the first and second
    neighbour shells gives the nearest-neighbour bonds only: 6 triangular, 8 bcc, 4 diamond).
    Across a vacancy it keeps no bond.

The Voronoi readings run qhull (``scipy.spatial.Delaunay``) once on x₀ padded with periodic
images and map images back to their atoms. The outcome does not depend on qhull's arbitrary
triangulation of co-spherical sites: for every non-degenerate Delaunay simplex, all sites within
its circumsphere (relative tolerance ``rtol``) are gathered, so a co-spherical cluster gives the
same pairs whichever way it was triangulated.

Core and far field
------------------
For dislocations :func:`geometry_error_split` splits ‖Dw‖² over the stencil's bonds: a bond is
a *core* bond when one of its sites lies closer than a radius (P2's experiments: 2|b|) to a
dislocation core in the cross-section of x₀ (:func:`distance_to_cores_A`, periodic), the others
make the *far field*. Every bond is in exactly one part, so core² + far² = total²; the same
split of any displacement field (e.g. the difference of two CLE fields) is
:func:`stencil_norm_split`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from matscipy.neighbours import neighbour_list
from scipy.spatial import Delaunay, cKDTree

__all__ = ["STENCILS", "Stencil", "stencil_pairs", "neighbour_pairs", "geometry_error",
           "GeometryErrorSplit", "distance_to_cores_A", "core_bonds", "stencil_norm_split",
           "geometry_error_split", "energy_error", "formation_energy_error", "rmse"]

#: The readings of the stencil N(ℓ) (module docstring); the first is the default.
STENCILS = ("voronoi", "voronoi-faces", "cutoff")


@dataclass(frozen=True)
class Stencil:
    """The stencil N(ℓ) of the geometry error: which pairs of sites of x₀ it compares.

    Attributes
    ----------
    reading : str
        One of :data:`STENCILS` (module docstring). Default ``"voronoi"`` (P1 eq. 6.3,
        P2 eq. A.2 as written).
    dimension : int
        Lattice dimension d: the Voronoi tessellation is taken in the first d Cartesian
        coordinates (2 for the planar triangular lattice, whose z coordinate is constant).
    cutoff_A : float or None
        Radius (Å) of the ``"cutoff"`` reading; unused by the Voronoi readings.
    rtol : float
        Relative tolerance of "on the sphere" (distances) and of "positive measure" (face
        extent) in the Voronoi readings.
    """

    reading: str = "voronoi"
    dimension: int = 3
    cutoff_A: float | None = None
    rtol: float = 1e-6

    def __post_init__(self):
        if self.reading not in STENCILS:
            raise ValueError(f"unknown stencil reading {self.reading!r}; allowed: "
                             f"{', '.join(map(repr, STENCILS))}")
        if self.dimension not in (2, 3):
            raise ValueError(f"stencil dimension must be 2 or 3, got {self.dimension}")
        if self.reading == "cutoff" and not (self.cutoff_A and self.cutoff_A > 0):
            raise ValueError("the 'cutoff' stencil needs a positive cutoff_A (Å)")

    def pairs(self, positions0_A: np.ndarray, cell_A: np.ndarray
              ) -> tuple[np.ndarray, np.ndarray]:
        """Ordered pairs (ℓ, m), m ∈ N(ℓ), of the periodic configuration x₀: see
        :func:`stencil_pairs`."""
        return stencil_pairs(positions0_A, cell_A, self)


def neighbour_pairs(positions0_A: np.ndarray, cell_A: np.ndarray, cutoff_A: float
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Ordered pairs (ℓ, m) closer than ``cutoff_A`` (Å) in x₀: the ``"cutoff"`` stencil.

    Every pair within ``cutoff_A`` of the *unrelaxed* configuration ``positions0_A`` is listed
    once per direction, periodic images included (an atom's image is the atom itself: the
    displacement field w is periodic).
    """
    i, j = neighbour_list("ij", positions=np.asarray(positions0_A, float),
                          cell=np.asarray(cell_A, float), pbc=[True, True, True], cutoff=cutoff_A)
    return i, j


def stencil_pairs(positions0_A: np.ndarray, cell_A: np.ndarray, stencil: Stencil = Stencil()
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Ordered pairs (ℓ, m) with m ∈ N(ℓ) of the periodic reference configuration x₀.

    Each neighbour is listed once per periodic image through which it is a neighbour (as
    :func:`neighbour_pairs`; in cells larger than twice the stencil's reach that is once), with
    the atom's index (the displacement field is periodic).

    Parameters
    ----------
    positions0_A : (n, 3) ndarray
        Reference configuration x₀, Å.
    cell_A : (3, 3) ndarray
        Cell rows, Å. For ``stencil.dimension == 2`` the first two rows must span the plane of
        the first two coordinates (the third row is ignored).
    stencil : Stencil
        Reading, dimension, cutoff and tolerance.

    Returns
    -------
    i, j : (p,) ndarrays of int
        Atom indices of each ordered pair.
    """
    if stencil.reading == "cutoff":
        return neighbour_pairs(positions0_A, cell_A, stencil.cutoff_A)
    d = stencil.dimension
    x = np.asarray(positions0_A, float)[:, :d]
    cell = np.asarray(cell_A, float)
    if d == 2 and np.any(np.abs(cell[:2, 2]) > 0):
        raise ValueError("a 2D stencil needs in-plane cell vectors (cell_A[:2, 2] == 0)")
    return _voronoi_pairs(x, cell[:d, :d], stencil.reading == "voronoi-faces", stencil.rtol)


def _padded(x: np.ndarray, cell: np.ndarray, pad_A: float) -> tuple[np.ndarray, np.ndarray]:
    """x wrapped into the cell plus every periodic image within ``pad_A`` (Å) of the cell;
    returns the points and each point's atom index (the first n are the atoms themselves)."""
    n, d = x.shape
    inv = np.linalg.inv(cell)
    frac = x @ inv
    frac -= np.floor(frac)
    # fractional margin: pad_A over the cell's height along each axis (1 / |row of inv.T|)
    margin = pad_A * np.linalg.norm(inv, axis=0)
    reps = np.ceil(margin).astype(int)
    grids = np.meshgrid(*[np.arange(-r, r + 1) for r in reps], indexing="ij")
    shifts = np.stack([g.ravel() for g in grids], axis=1)
    shifts = shifts[np.argsort(np.abs(shifts).sum(axis=1), kind="stable")]  # (0, …, 0) first
    f = (frac[None, :, :] + shifts[:, None, :]).reshape(-1, d)
    keep = np.all((f >= -margin) & (f <= 1.0 + margin), axis=1)
    keep[:n] = True
    idx = np.tile(np.arange(n), len(shifts))[keep]
    return f[keep] @ cell, idx


def _voronoi_pairs(x: np.ndarray, cell: np.ndarray, faces_only: bool, rtol: float
                   ) -> tuple[np.ndarray, np.ndarray]:
    n, d = x.shape
    spacing = (abs(np.linalg.det(cell)) / n) ** (1.0 / d)
    pad = 2.0 * spacing
    for _ in range(8):
        xp, atom = _padded(x, cell, pad)
        found = _empty_sphere_pairs(xp, n, faces_only, rtol, spacing)
        if found is not None and found[2] <= 0.5 * pad:
            l, m = found[0], found[1]
            return l, atom[m]
        # a sphere through an atom of the cell reaches beyond the padding: pad more
        pad *= 2.0
    raise ValueError("no empty-sphere stencil found within 256 site spacings of the cell")


def _empty_sphere_pairs(xp: np.ndarray, n: int, faces_only: bool, rtol: float, spacing: float):
    """Pairs (ℓ < n, m) of padded points on a common empty sphere (or, with ``faces_only``, on
    a Voronoi face of positive measure), and the largest radius (Å) of the spheres used."""
    d = xp.shape[1]
    # joggled input ("QJ"): a simplicial triangulation without qhull merging the many
    # co-spherical and coplanar facets of a lattice (several times faster); the spheres below
    # are computed from the exact positions, so the joggle never decides a pair
    tri = Delaunay(xp, qhull_options="QJ")
    s = tri.simplices
    s = s[np.any(s < n, axis=1)]
    p = xp[s]                                    # (ns, d+1, d)
    e = p[:, 1:, :] - p[:, :1, :]                # edges from the first vertex
    A = 2.0 * e
    b = np.sum(e * e, axis=2)
    det = np.linalg.det(A)
    # flat simplices (zero volume up to round-off) have no circumsphere; the other simplices of
    # their Delaunay cell cover it
    ok = np.abs(det) > 1e-8 * (2.0 * spacing) ** d
    s, p, A, b = s[ok], p[ok], A[ok], b[ok]
    centre = p[:, 0, :] + np.linalg.solve(A, b[..., None])[..., 0]
    radius = np.linalg.norm(centre - p[:, 0, :], axis=1)
    tree = cKDTree(xp)
    count = tree.query_ball_point(centre, radius * (1.0 + rtol), return_length=True)
    inside = tree.query_ball_point(centre, radius * (1.0 - rtol), return_length=True)
    if np.any(inside > 0):
        raise ValueError(f"qhull's triangulation has {int(np.sum(inside > 0))} simplices whose "
                         f"circumsphere holds a site at relative tolerance {rtol}")
    generic = count == d + 1
    # ordered pairs of every sphere: generic ones from the simplex, co-spherical ones from
    # the sites found on the sphere
    k = np.arange(d + 1)
    a, c = np.meshgrid(k, k, indexing="ij")
    off = a != c
    gl = s[generic][:, a[off]].ravel()
    gm = s[generic][:, c[off]].ravel()
    gs = np.repeat(np.flatnonzero(generic), off.sum())
    L, M, S = [gl], [gm], [gs]
    for t in np.flatnonzero(~generic):
        on = np.asarray(tree.query_ball_point(centre[t], radius[t] * (1.0 + rtol)))
        aa, cc = np.meshgrid(on, on, indexing="ij")
        o = aa != cc
        L.append(aa[o])
        M.append(cc[o])
        S.append(np.full(o.sum(), t))
    l, m, sph = (np.concatenate(v) for v in (L, M, S))
    central = l < n
    l, m, sph = l[central], m[central], sph[central]
    key = l.astype(np.int64) * len(xp) + m
    uniq, inv = np.unique(key, return_inverse=True)
    r_max = float(radius.max()) if len(radius) else np.inf
    if faces_only:
        # the Voronoi face of (ℓ, m) is the hull of the centres of the spheres through both:
        # positive measure iff those centres span d−1 dimensions
        cnt = np.bincount(inv).astype(float)
        mean = np.zeros((len(uniq), d))
        np.add.at(mean, inv, centre[sph])
        mean /= cnt[:, None]
        dc = centre[sph] - mean[inv]
        cov = np.zeros((len(uniq), d, d))
        np.add.at(cov, inv, dc[:, :, None] * dc[:, None, :])
        ev = np.linalg.eigvalsh(cov / cnt[:, None, None])   # ascending
        extent = np.sqrt(np.clip(ev[:, 1], 0.0, None))      # d−1 largest: index 1 of d
        uniq = uniq[extent > rtol * spacing]
    return (uniq // len(xp)).astype(np.intp), (uniq % len(xp)).astype(np.intp), r_max


def geometry_error(positions0_A: np.ndarray, relaxed_A: np.ndarray, relaxed_ml_A: np.ndarray,
                   cell_A: np.ndarray, stencil: Stencil) -> float:
    """Geometry error ‖Dū − Dũ‖ (Å) of two relaxed configurations of the same atoms.

    ‖Dw‖ = ( Σ_ℓ Σ_{m ∈ N(ℓ)} |w(m) − w(ℓ)|² )^½ with w = ū − ũ (P1 eq. 2.1, P2 eq. A.1), N(ℓ)
    the stencil of site ℓ in the unrelaxed reference configuration ``positions0_A`` in the
    given reading (P1 eq. 6.3, P2 eq. A.2; module docstring). Rigid translations have zero
    error.

    Parameters
    ----------
    positions0_A : (n, 3) ndarray
        Unrelaxed reference configuration x₀, Å (defines the stencil).
    relaxed_A, relaxed_ml_A : (n, 3) ndarray
        Equilibria of the reference and of the fitted model, Å (same atom order, not wrapped).
    cell_A : (3, 3) ndarray
        Periodic cell, Å.
    stencil : Stencil
        The stencil N(ℓ): reading, lattice dimension, cutoff radius (Å) of the ``"cutoff"``
        reading.
    """
    if not isinstance(stencil, Stencil):
        raise TypeError(f"stencil must be a kernels.errors.Stencil, got {type(stencil).__name__}")
    i, j = stencil.pairs(positions0_A, cell_A)
    w = np.asarray(relaxed_A, float) - np.asarray(relaxed_ml_A, float)
    Dw = w[j] - w[i]
    return float(np.sqrt(np.sum(Dw * Dw)))


def energy_error(energy_ref_eV: float, energy_ref_x0_eV: float, energy_ml_eV: float,
                 energy_ml_x0_eV: float) -> float:
    """|E(ū) − Ẽ(ũ)| (eV), each model's energy measured from its own value at x₀ (V(0) = 0)."""
    return abs((energy_ref_eV - energy_ref_x0_eV) - (energy_ml_eV - energy_ml_x0_eV))


def formation_energy_error(energy_ref_eV: float, bulk_ref_eV_per_atom: float, energy_ml_eV: float,
                           bulk_ml_eV_per_atom: float, n_atoms: int) -> float:
    """Error (eV) of the formation energy E_tot − n·e_bulk, each model against its own crystal."""
    return abs((energy_ref_eV - n_atoms * bulk_ref_eV_per_atom)
               - (energy_ml_eV - n_atoms * bulk_ml_eV_per_atom))


def rmse(predicted: np.ndarray, reference: np.ndarray) -> float:
    """Root-mean-square of ``predicted − reference`` over all entries."""
    d = np.asarray(predicted, float) - np.asarray(reference, float)
    return float(np.sqrt(np.mean(d * d)))


@dataclass(frozen=True)
class GeometryErrorSplit:
    """‖Dw‖ (Å) split over the bonds of the stencil: near a dislocation core and the rest.

    ``core_A² + far_A² = total_A²`` exactly: every bond (ordered pair of the stencil) is in one
    part. ``core_bonds`` and ``bonds`` count the ordered pairs of the core part and of the whole
    stencil.
    """

    total_A: float
    core_A: float
    far_A: float
    core_bonds: int
    bonds: int


def distance_to_cores_A(positions_A: np.ndarray, cell_A: np.ndarray, cores_A: np.ndarray
                        ) -> np.ndarray:
    """In-plane distance (Å) of every site to the nearest dislocation core, periodically.

    The dislocation lines run along z; a core is a point (x, y) of the cross-section. The
    distance is taken in the plane spanned by the in-plane parts of the first two cell rows
    (the third row may be tilted along the line, as in a dipole cell), over the nearest periodic
    images of every core.

    Parameters
    ----------
    positions_A : (n, 3) ndarray
        Sites, Å (only x, y are used).
    cell_A : (3, 3) ndarray
        Cell rows, Å; the first two span the cross-section.
    cores_A : (k, 2) ndarray
        Core positions (x, y), Å.
    """
    xy = np.asarray(positions_A, float)[:, :2]
    cores = np.asarray(cores_A, float).reshape(-1, 2)
    if len(cores) == 0:
        return np.full(len(xy), np.inf)
    plane = np.asarray(cell_A, float)[:2, :2]
    inv = np.linalg.inv(plane)
    out = np.full(len(xy), np.inf)
    shifts = np.array([[i, j] for i in (-1, 0, 1) for j in (-1, 0, 1)], float)
    for c in cores:
        f = (xy - c) @ inv
        f -= np.round(f)                       # nearest image in fractional coordinates
        d = (f[:, None, :] + shifts[None]) @ plane   # and its neighbours (skewed cells)
        out = np.minimum(out, np.linalg.norm(d, axis=2).min(axis=1))
    return out


def core_atoms(positions_A: np.ndarray, cell_A: np.ndarray, cores_A: np.ndarray,
               radius_A: float) -> np.ndarray:
    """Mask of the sites closer than ``radius_A`` (Å, in the cross-section) to a dislocation
    core (:func:`distance_to_cores_A`)."""
    return distance_to_cores_A(positions_A, cell_A, cores_A) < radius_A


def core_bonds(positions0_A: np.ndarray, cell_A: np.ndarray, i: np.ndarray, j: np.ndarray,
               cores_A: np.ndarray, radius_A: float) -> np.ndarray:
    """Mask of the stencil's bonds (ℓ, m) = (i, j) with an end closer than ``radius_A`` (Å, in
    the cross-section) to a dislocation core (:func:`core_atoms` of x₀)."""
    near = core_atoms(positions0_A, cell_A, cores_A, radius_A)
    return near[np.asarray(i)] | near[np.asarray(j)]


def stencil_norm_split(w_A: np.ndarray, i: np.ndarray, j: np.ndarray, core: np.ndarray
                       ) -> GeometryErrorSplit:
    """‖Dw‖ (Å) of a displacement field ``w_A`` (n, 3) on the bonds (i, j), split by the mask
    ``core`` (one entry per bond): the core part over the masked bonds, the far part over the
    others."""
    w = np.asarray(w_A, float)
    Dw = w[np.asarray(j)] - w[np.asarray(i)]
    sq = np.sum(Dw * Dw, axis=1)
    core = np.asarray(core, bool)
    c2, f2 = float(np.sum(sq[core])), float(np.sum(sq[~core]))
    return GeometryErrorSplit(float(np.sqrt(c2 + f2)), float(np.sqrt(c2)), float(np.sqrt(f2)),
                              int(core.sum()), int(len(core)))


def geometry_error_split(positions0_A: np.ndarray, relaxed_A: np.ndarray,
                         relaxed_ml_A: np.ndarray, cell_A: np.ndarray, stencil: Stencil,
                         cores_A: np.ndarray, radius_A: float) -> GeometryErrorSplit:
    """The geometry error ‖Dū − Dũ‖ (Å) of :func:`geometry_error`, split into a core part
    (bonds with an end within ``radius_A`` of a dislocation core, in the cross-section of x₀)
    and a far-field part (the other bonds); ``total_A`` is :func:`geometry_error`'s value.

    Parameters
    ----------
    positions0_A, relaxed_A, relaxed_ml_A, cell_A, stencil
        As :func:`geometry_error`.
    cores_A : (k, 2) ndarray
        Dislocation cores (x, y) of the cell, Å.
    radius_A : float
        Core radius, Å (e.g. 2|b|).
    """
    if not isinstance(stencil, Stencil):
        raise TypeError(f"stencil must be a kernels.errors.Stencil, got {type(stencil).__name__}")
    i, j = stencil.pairs(positions0_A, cell_A)
    core = core_bonds(positions0_A, cell_A, i, j, cores_A, radius_A)
    w = np.asarray(relaxed_A, float) - np.asarray(relaxed_ml_A, float)
    return stencil_norm_split(w, i, j, core)
