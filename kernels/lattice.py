"""The 2D triangular lattice Λ = A Z², A = r0 [[1, ½], [0, √3/2]] (P1 eq. 4.3), as periodic cells.

A cell of size n holds the n × n sites  x(i, j) = i a1 + j a2  (i, j = 0 … n−1) with
a1 = r0 (1, 0, 0), a2 = r0 (½, √3/2, 0). The lattice lives in the z = 0 plane of a 3D cell whose
third vector is vacuum along z, periodic in all three directions (pyace's neighbour list rejects
mixed periodicity); the vacuum is longer than any cutoff used here, so there is no interaction
through it. Site index of (i, j) is ``i + n j``.

Units: Å.
"""

from __future__ import annotations

import numpy as np

__all__ = ["VACUUM_A", "triangular_cell", "triangular_sites", "primitive_vectors", "site_index"]

#: Length (Å) of the non-periodic direction of every 2D cell; far beyond any cutoff used here.
VACUUM_A = 20.0


def primitive_vectors(r0_A: float) -> np.ndarray:
    """Rows a1, a2 of the triangular lattice with spacing r0 (Å), as (2, 3) array in Å."""
    return r0_A * np.array([[1.0, 0.0, 0.0], [0.5, np.sqrt(3.0) / 2.0, 0.0]])


def triangular_cell(n: int, r0_A: float) -> np.ndarray:
    """The (3, 3) cell (rows, Å) of an n × n periodic triangular-lattice supercell."""
    if n < 1:
        raise ValueError(f"cell size n must be >= 1, got {n}")
    a = primitive_vectors(r0_A)
    return np.array([n * a[0], n * a[1], [0.0, 0.0, VACUUM_A]])


def triangular_sites(n: int, r0_A: float) -> np.ndarray:
    """Positions (n², 3) in Å of the perfect n × n triangular cell, site (i, j) at row i + n j."""
    ii, jj = np.meshgrid(np.arange(n), np.arange(n), indexing="xy")
    ij = np.stack([ii.ravel(), jj.ravel()], axis=1).astype(float)
    return ij @ primitive_vectors(r0_A)


def site_index(i: int, j: int, n: int) -> int:
    """Row of site (i, j) (taken modulo n) in :func:`triangular_sites`."""
    return int(i % n + n * (j % n))
