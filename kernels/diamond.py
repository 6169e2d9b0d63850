"""The diamond-cubic lattice (Si) as periodic supercells of n × n × n conventional cubic cells.

A cubic cell of side a holds 8 sites: the fcc sites (0,0,0), (0,½,½), (½,0,½), (½,½,0) and the
same shifted by (¼,¼,¼) a. Site (i, j, k; b) — cubic cell (i, j, k), basis atom b = 0…7 — is row
``8 (i + n j + n² k) + b`` of :func:`diamond_sites`. Lattice coordinates of a defect site are the
cell indices (i, j, k) with basis atom 0. The tetrahedral interstitial of cell (i, j, k) is at
(i + ½, j + ½, k + ½) a, the centre of the cell (a T site: 4 nearest neighbours at √3/4 a).

Nearest neighbours are at √3/4 a ≈ 0.433 a (4 of them), second neighbours at a/√2 ≈ 0.707 a
(12): the radius of the geometry error's ``"cutoff"`` stencil is 0.57 a (the Voronoi readings
of :mod:`kernels.errors` give 28 and 16 neighbours).

Units: Å.
"""

from __future__ import annotations

import numpy as np

from .lattice import Crystal

__all__ = ["DIAMOND", "diamond_sites", "diamond_cell", "diamond_index", "diamond_interstitial",
           "BASIS"]

#: The 8 sites of the conventional cubic cell, in units of a.
BASIS = np.array([[0, 0, 0], [0, 0.5, 0.5], [0.5, 0, 0.5], [0.5, 0.5, 0]], float)
BASIS = np.vstack([BASIS, BASIS + 0.25])


def diamond_cell(n: int, a_A: float) -> np.ndarray:
    """The (3, 3) cell (rows, Å) of n × n × n cubic cells of side ``a_A``."""
    if n < 1:
        raise ValueError(f"cell size n must be >= 1, got {n}")
    return n * a_A * np.eye(3)


def diamond_sites(n: int, a_A: float) -> np.ndarray:
    """Positions (8 n³, 3) in Å of the perfect supercell, site (i, j, k; b) at row
    8 (i + n j + n² k) + b."""
    k, j, i = np.meshgrid(np.arange(n), np.arange(n), np.arange(n), indexing="ij")
    cells = np.stack([i.ravel(), j.ravel(), k.ravel()], axis=1).astype(float)
    return (a_A * (cells[:, None, :] + BASIS[None])).reshape(-1, 3)


def diamond_index(site, n: int) -> int:
    """Row of site (i, j, k; basis 0) (indices modulo n) in :func:`diamond_sites`."""
    i, j, k = (int(v) % n for v in site)
    return 8 * (i + n * j + n * n * k)


def diamond_interstitial(site, a_A: float) -> np.ndarray:
    """The tetrahedral interstitial position (Å) at the centre of cubic cell ``site``."""
    return (np.asarray(site, float) + 0.5) * a_A


#: Diamond-cubic Si, lattice parameter = the cubic lattice constant a (P1 §4.2.2).
DIAMOND = Crystal(
    name="diamond", symbol="Si", dimension=3, sites=diamond_sites, cell=diamond_cell,
    index=diamond_index, interstitial=diamond_interstitial,
    neighbour_cutoff=0.57, lattice_parameter_bracket_A=(5.0, 6.0), perfect_cell=1,
    force_constant_cell=2)
