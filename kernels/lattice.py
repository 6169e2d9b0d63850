"""The 2D triangular lattice Λ = A Z², A = r0 [[1, ½], [0, √3/2]] (P1 eq. 4.3), as periodic cells.

A cell of size n holds the n × n sites  x(i, j) = i a1 + j a2  (i, j = 0 … n−1) with
a1 = r0 (1, 0, 0), a2 = r0 (½, √3/2, 0). The lattice lives in the z = 0 plane of a 3D cell whose
third vector is vacuum along z, periodic in all three directions (pyace's neighbour list rejects
mixed periodicity); the vacuum is longer than any cutoff used here, so there is no interaction
through it. Site index of (i, j) is ``i + n j``.

The experiments run on any :class:`Crystal`: a named periodic lattice that says how to build an
n-cell supercell, index its sites, place an interstitial, and which Cartesian components carry
information (2 for this planar lattice, whose z forces vanish identically; 3 for bulk crystals).
:data:`TRIANGULAR` is this lattice; :data:`kernels.diamond.DIAMOND` is diamond-cubic Si.

Units: Å.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from .errors import Stencil

__all__ = ["VACUUM_A", "triangular_cell", "triangular_sites", "primitive_vectors", "site_index",
           "Crystal", "TRIANGULAR", "triangular_interstitial"]

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


def triangular_interstitial(site: np.ndarray, r0_A: float) -> np.ndarray:
    """Position (Å) of the interstitial at the centre of the up triangle with corner ``site``:
    (i + ⅓) a1 + (j + ⅓) a2."""
    return (np.asarray(site, float) + 1.0 / 3.0) @ primitive_vectors(r0_A)


def _triangular_index(site, n: int) -> int:
    return site_index(int(site[0]), int(site[1]), n)


@dataclass(frozen=True)
class Crystal:
    """A periodic lattice on which the point-defect experiments run (picklable: module-level
    functions only).

    Attributes
    ----------
    name : str
    symbol : str
        The species (single-species crystals).
    dimension : int
        Lattice dimension d and number of Cartesian components that carry information: rattling,
        force rows, force constants and the rates' d (2: the planar lattice, 3: bulk).
    sites : callable
        ``sites(n, a_A)`` → (m, 3) positions, Å, of the perfect n-cell supercell.
    cell : callable
        ``cell(n, a_A)`` → (3, 3) cell rows, Å.
    index : callable
        ``index(site, n)`` → row in ``sites(n, a)`` of the site with integer lattice
        coordinates ``site`` (length ``dimension``, taken modulo n).
    interstitial : callable
        ``interstitial(site, a_A)`` → position, Å, of an interstitial attached to ``site``.
    neighbour_cutoff : float
        Radius of the geometry error's ``"cutoff"`` stencil in units of the lattice parameter:
        between the first and second neighbour shells (:meth:`stencil`).
    lattice_parameter_bracket_A : tuple
        Search interval (Å) of the equilibrium lattice parameter.
    perfect_cell : int
        Supercell size used for energies per atom of the perfect crystal.
    force_constant_cell : int
        Supercell size on which force constants are compared (ε_FC_hom).
    """

    name: str
    symbol: str
    dimension: int
    sites: Callable
    cell: Callable
    index: Callable
    interstitial: Callable
    neighbour_cutoff: float
    lattice_parameter_bracket_A: tuple
    perfect_cell: int
    force_constant_cell: int

    def neighbour_cutoff_A(self, a_A: float) -> float:
        """Stencil radius (Å) for lattice parameter ``a_A``."""
        return self.neighbour_cutoff * a_A

    def stencil(self, reading: str, a_A: float) -> Stencil:
        """The geometry error's stencil N(ℓ) in ``reading`` (:data:`kernels.errors.STENCILS`)
        on this lattice: Voronoi readings in the lattice's ``dimension``, the ``"cutoff"``
        reading with :meth:`neighbour_cutoff_A` at lattice parameter ``a_A`` (Å)."""
        return Stencil(reading, self.dimension, self.neighbour_cutoff_A(a_A))


#: The 2D triangular lattice of this module, lattice parameter r0; W (P1 §4.2.1).
TRIANGULAR = Crystal(
    name="triangular", symbol="W", dimension=2, sites=triangular_sites, cell=triangular_cell,
    index=_triangular_index, interstitial=triangular_interstitial,
    neighbour_cutoff=0.5 * (1.0 + np.sqrt(3.0)), lattice_parameter_bracket_A=(2.0, 3.5),
    perfect_cell=6, force_constant_cell=10)
