"""Point defects in the periodic triangular lattice, placed as in P1 Figs. 2, 5, 10 and 11.

A configuration of n_D defects at mutual separation L_D (in units of r0) is anchored at lattice
site (c, c), c = n // 2 − L_D // 2, so that it sits in the middle of an n × n cell:

=====  ================================================================
n_D    defect sites (i, j), offsets from (c, c) in lattice coordinates
=====  ================================================================
1      (0, 0)
2      (0, 0), (L_D, 0)                          — a pair along a1
3      (0, 0), (L_D, 0), (0, L_D)                — an equilateral triangle
4      (0, 0), (L_D, 0), (0, L_D), (L_D, L_D)    — a rhombus
=====  ================================================================

A training cell of size L holding one defect is the n_D = 1 case with n = L: its periodic images
are at separation L, the same L_D = L that separates the defects of the simulation cell.

An interstitial sits at the centre of the up-pointing triangle with corner (i, j), i.e. at
(i + ⅓) a1 + (j + ⅓) a2.

Whether a relaxed configuration still holds the defects it was built with is read off its
Wigner–Seitz occupancy (:func:`site_occupancy`): every atom is assigned to its nearest perfect-
lattice site; a vacancy is a site with no atom, an interstitial a site with two.
"""

from __future__ import annotations

import numpy as np

from .lattice import TRIANGULAR, Crystal

__all__ = ["defect_offsets", "defect_sites", "point_defect_cell", "site_occupancy", "MAX_DEFECTS",
           "KINDS"]

_OFFSETS = {1: [(0, 0)], 2: [(0, 0), (1, 0)], 3: [(0, 0), (1, 0), (0, 1)],
            4: [(0, 0), (1, 0), (0, 1), (1, 1)]}
MAX_DEFECTS = max(_OFFSETS)
#: The point-defect kinds :func:`point_defect_cell` builds.
KINDS = ("vacancy", "interstitial")


def defect_offsets(n_defects: int, separation: int, dimension: int = 2) -> np.ndarray:
    """Integer lattice offsets (n_defects, dimension) of the defect pattern with side
    ``separation`` (in 3D the pattern lies in the plane of the first two lattice vectors)."""
    if n_defects not in _OFFSETS:
        raise ValueError(f"n_defects must be one of {sorted(_OFFSETS)}, got {n_defects}")
    off = np.zeros((n_defects, dimension), dtype=int)
    off[:, :2] = _OFFSETS[n_defects]
    return separation * off


def defect_sites(n: int, n_defects: int, separation: int, dimension: int = 2) -> np.ndarray:
    """Lattice coordinates (n_defects, dimension) of the defect sites in an n-cell supercell."""
    if n_defects > 1 and 2 * separation > n:
        raise ValueError(f"separation {separation} needs a cell of at least {2 * separation} "
                         f"lattice units, got {n}: defects would be closer to images than to "
                         "each other")
    c = n // 2 - separation // 2 if n_defects > 1 else n // 2
    return (defect_offsets(n_defects, separation, dimension) + c) % n


def point_defect_cell(n: int, r0_A: float, kinds: list[str], separation: int,
                      crystal: Crystal = TRIANGULAR) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """An n-cell supercell of ``crystal`` with point defects of the given kinds on the pattern
    above (the triangular lattice by default: n × n sites).

    Parameters
    ----------
    n : int
        Cell size in lattice units (triangular: n² sites; diamond: n³ cubic cells).
    r0_A : float
        Lattice parameter, Å (triangular: the spacing r0; diamond: the cubic constant a).
    kinds : list of {"vacancy", "interstitial"}
        One entry per defect; ``len(kinds)`` selects the pattern.
    separation : int
        Side L_D of the pattern, in lattice units.
    crystal : Crystal
        The lattice (:data:`kernels.lattice.TRIANGULAR`, :data:`kernels.diamond.DIAMOND`).

    Returns
    -------
    positions_A : (m, 3) ndarray
        Unrelaxed positions x₀ of the defective lattice, Å.
    cell_A : (3, 3) ndarray
        Cell rows, Å.
    removed : (k,) ndarray of int
        Rows of the perfect cell (``crystal.sites``) that were removed (vacancies).
    """
    for k in kinds:
        if k not in KINDS:
            raise ValueError(f"unknown point defect kind {k!r}; allowed: 'vacancy', 'interstitial'")
    sites = defect_sites(n, len(kinds), separation, crystal.dimension)
    perfect = crystal.sites(n, r0_A)
    removed = np.array(sorted(crystal.index(site, n) for site, k in zip(sites, kinds)
                              if k == "vacancy"), dtype=int)
    keep = np.ones(len(perfect), bool)
    keep[removed] = False
    added = [crystal.interstitial(site, r0_A) for site, k in zip(sites, kinds)
             if k == "interstitial"]
    positions = perfect[keep]
    if added:
        positions = np.vstack([positions, np.array(added)])
    return positions, crystal.cell(n, r0_A), removed


def site_occupancy(positions_A: np.ndarray, sites_A: np.ndarray, cell_A: np.ndarray
                   ) -> np.ndarray:
    """Wigner–Seitz occupancy: how many atoms have each perfect-lattice site as nearest site.

    Parameters
    ----------
    positions_A : (m, 3) ndarray
        Atom positions, Å (any periodic image).
    sites_A : (n, 3) ndarray
        Perfect-lattice sites of the same periodic cell, Å.
    cell_A : (3, 3) ndarray
        Cell rows, Å; periodic in all three directions.

    Returns
    -------
    (n,) ndarray of int
        Occupancy of each site (0: vacancy, 2: interstitial; 1 elsewhere in a defect-free region).
    """
    from scipy.spatial import cKDTree  # noqa: PLC0415

    cell_A = np.asarray(cell_A, float)
    frac = np.asarray(positions_A, float) @ np.linalg.inv(cell_A)
    wrapped = (frac - np.floor(frac)) @ cell_A
    shifts = np.array([(a, b, c) for a in (-1, 0, 1) for b in (-1, 0, 1) for c in (-1, 0, 1)],
                      float) @ cell_A
    images = (np.asarray(sites_A, float)[None] + shifts[:, None]).reshape(-1, 3)
    _, k = cKDTree(images).query(wrapped)
    return np.bincount(k % len(sites_A), minlength=len(sites_A))
