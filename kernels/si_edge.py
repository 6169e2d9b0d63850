"""P2-Si: the edge dislocation in diamond Si as a :class:`kernels.dislocations.DislocationSystem`.

The stages of :mod:`kernels.dislocations` run unchanged with ``system=SI_EDGE``:

- perfect crystal: 2 × 2 × 2 conventional cubic cells of diamond (64 atoms,
  :mod:`kernels.diamond`) for a0, the bulk energy, the Cauchy–Born derivatives, the elastic
  and internal-strain rows and the force constants;
- cells: four ½[1-10](111) shuffle-set edges with the periodic anisotropic CLE predictor
  (:mod:`kernels.edge_quadrupole`), whose elastic constants are the reference's internally
  relaxed ones (``LatticeReference.relaxed_elastic_eV_per_A3``); the simulation cell of size N
  has four edges N/2 apart; the training cell of size L is P2's dipole domain (one edge dipole,
  cores L apart, side 2L, tilted by b/2: :func:`si_edge_dipole_cell`) or, with the
  ``"checkerboard"`` domain, the simulation cell's arrangement at size L (core separation L/2);
- geometry-error stencil: the spec's reading (:mod:`kernels.errors`; ``"cutoff"``: the 4 nearest
  neighbours of diamond, radius 0.57 a0).

The far field sees the internally relaxed constants C = C⁰ − M_sΦ_s⁺M_sᵀ/Ω (reference: C11/C12/
C44 = 166.4/65.3/77.1 GPa relaxed, 120.9 GPa clamped-ion C44), which are not linear in the ACE
coefficients; their ingredients are. So the CLE rows of the fit are the clamped-ion ∂²W_cb (and
∂³W_cb for NL; all atoms strained homogeneously) plus the internal strain M_s (6 × 6: Voigt strain
× two sublattices × xyz, eV/Å) and the Γ-point force constants Φ_s (6 × 6, eV/Å²) of the 64-atom
perfect cell, scaled to eV/Å³ (:func:`kernels.dislocations.fit`), and ``elastic_constant_error``
of P2-Si is the error of the fitted model's relaxed 6 × 6 C, computed from its rows; the stored
``clamped_elastic_constant_error`` is that of C⁰.

Units: Å, eV; ``size`` in cubic lattice constants a0.
"""

from __future__ import annotations

import numpy as np

from .diamond import diamond_cell, diamond_sites
from .dislocations import DislocationSystem
from .edge_quadrupole import edge_cell_repeats, edge_quadrupole_cell

__all__ = ["SI_EDGE", "SYMBOL", "PERFECT_CELLS", "diamond_perfect_cell", "si_edge_cell",
           "si_edge_dipole_cell", "si_edge_cle_displacement",
           "diamond_neighbour_cutoff"]

SYMBOL = "Si"
#: Cubic cells per edge of the perfect crystal (64 atoms, 10.9 Å: more than twice the Kumagai
#: range and the ACE cutoffs used).
PERFECT_CELLS = 2


def diamond_perfect_cell(a0_A: float, n: int = PERFECT_CELLS):
    """Perfect diamond Si of n³ cubic cells: positions (Å), cell (Å), symbols."""
    x = diamond_sites(n, a0_A)
    return x, diamond_cell(n, a0_A), [SYMBOL] * len(x)


def si_edge_cell(a0_A: float, size: int, lattice=None):
    """Four edges in a cell of side ≈ ``size`` a0 with the CLE predictor of the lattice's
    relaxed elastic constants (``lattice`` must carry them)."""
    if lattice is None or lattice.relaxed_elastic_eV_per_A3 is None:
        raise ValueError("the Si edge predictor needs the reference's relaxed elastic constants "
                         "(LatticeReference from lattice_reference(model, SI_EDGE))")
    return edge_quadrupole_cell(a0_A, edge_cell_repeats(size),
                                np.asarray(lattice.relaxed_elastic_eV_per_A3))


def si_edge_cle_displacement(a0_A: float, size: int, C: np.ndarray) -> np.ndarray:
    """The anisotropic CLE displacement (Å) of the simulation cell of side ≈ ``size`` a0 at its
    perfect sites for elastic constants C (6, 6, cube axes): the predictor of
    :func:`si_edge_cell` built with C instead of the reference's relaxed constants."""
    c = edge_quadrupole_cell(a0_A, edge_cell_repeats(size), np.asarray(C, float))
    return c.positions_A - c.positions0_A


def si_edge_dipole_cell(a0_A: float, L: float, lattice=None):
    """P2's training domain for the Si edge: one edge dipole (cores ≈ L a0 apart on one glide
    plane) in a cell of side ≈ 2L a0 tilted by b/2 (:func:`kernels.dipole_cells.edge_dipole_cell`),
    with the predictor of the lattice's relaxed elastic constants."""
    from .dipole_cells import edge_dipole_cell, training_side_a  # noqa: PLC0415

    if lattice is None or lattice.relaxed_elastic_eV_per_A3 is None:
        raise ValueError("the Si edge predictor needs the reference's relaxed elastic constants "
                         "(LatticeReference from lattice_reference(model, SI_EDGE))")
    return edge_dipole_cell(a0_A, edge_cell_repeats(training_side_a(L)),
                            np.asarray(lattice.relaxed_elastic_eV_per_A3))


def diamond_neighbour_cutoff(a0_A: float) -> float:
    """Stencil radius (Å) between diamond's first (√3/4 a, 4 sites) and second (a/√2) shells."""
    return 0.57 * a0_A


#: The ½[1-10](111) edge in diamond Si (P2 §4.2.2).
SI_EDGE = DislocationSystem(name="si-edge", symbol=SYMBOL, perfect_cell=diamond_perfect_cell,
                            cell=si_edge_cell, neighbour_cutoff=diamond_neighbour_cutoff,
                            a0_bracket_A=(5.0, 6.0), relaxed_elastic=True,
                            dipole_cell=si_edge_dipole_cell,
                            # Kumagai: the L = 3 dipole (cores 3 a0 apart) glides together and
                            # annihilates; from L = 4 both cores stay (tests/test_dipole_cells.py)
                            dipole_min_L=4.0,
                            cle_displacement=si_edge_cle_displacement)
