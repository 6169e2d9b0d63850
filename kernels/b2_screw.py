"""The a⟨100⟩ screw dislocation in B2 NiAl (P2 §4.2.3): unit cell, quadrupole cell, the system.

Which dislocation. P2 §4.2.3 says only "screw dislocations in NiAl" (a quadrupole, Fig. 9) with
"the EAM model for NiAl provided by OpenKIM"; it names neither the Burgers vector nor the
potential. Here:

* The **a[001] screw** (b = a⟨100⟩, |b| = a): a⟨100⟩ is the shortest lattice translation of B2
  and the Burgers vector of the ordinary dislocations of NiAl (⟨100⟩{011} slip). ½⟨111⟩ is not
  a B2 translation — it shifts Ni onto Al and leaves an antiphase boundary — so a ⟨111⟩ screw
  is a superdislocation a⟨111⟩ that splits into two APB-coupled ½⟨111⟩ superpartials: two cores
  and a planar fault per dislocation, a different problem from P2's single compact cores. With
  b = a[001] every column of the [001] projection is one species (Ni at z = 0, Al at z = a/2)
  and the screw's displacement moves each column along itself, so the chemical order is kept
  everywhere outside the cores.
* The **Mishin–Mehl–Papaconstantopoulos (2002) EAM** (:func:`kernels.eam.mishin2002_nial`,
  OpenKIM MO_109933561507_005): the NiAl EAM archived in OpenKIM, fitted to B2 NiAl.

Geometry. Axes x = [110], y = [-110] (normal of the (-110) glide plane of ⟨100⟩{011} slip),
z = [001] = the line; the oriented unit cell is a√2 × a√2 × a with 2 Ni and 2 Al atoms. In the
[001] projection the columns form a square net of spacing a/√2, Ni and Al alternating like a
checkerboard; the core sits at the centre of a square of columns (two Ni, two Al),
(a√2/4, a√2/4). matscipy has ⟨100⟩ *edge* classes for bcc but no ⟨100⟩ screw and no B2
class; its :class:`~matscipy.dislocation.CubicCrystalDislocation` accepts a multi-species cubic
``Atoms`` as the crystal (checked: the B2 cell validates as "bcc" and keeps its species), so
:class:`B2Screw100Dislocation` below only declares the axes, Burgers vector and core, and
matscipy orients the B2 cell and provides the anisotropic CLE solution.

Predictor. z = [001] is a fourfold axis of the cubic crystal, so the antiplane problem has the
isotropic modulus C44 in every in-plane direction and decouples from the in-plane one: the CLE
field of the screw is exactly u_z = (b/2π) θ with no in-plane part, whatever the anisotropy
(NiAl's Zener ratio 2C44/(C11 − C12) ≈ 4; tested against matscipy's anisotropic solution). The
periodic field of the quadrupole is therefore the θ₁ sum of
:func:`kernels.screw_quadrupole.periodic_screw_displacement`, and the quadrupole itself is
:func:`kernels.screw_quadrupole.screw_quadrupole_cell` on this unit cell (four screws in the
checkerboard arrangement, zero net Burgers vector and zero dipole moment: an untilted cell).

Elastic observations. B2 is a multilattice with two atoms per cell, but every atom is a centre
of inversion, also of the homogeneously strained crystal: the sublattices feel no force under
any homogeneous strain, so there is no internal relaxation and the clamped-ion Cauchy–Born
derivatives of :mod:`kernels.elasticity` are the relaxed-ion ones.

Units: Å; sizes in lattice constants a0.
"""

from __future__ import annotations

import numpy as np
from matscipy.dislocation import CubicCrystalDislocation

from .dislocations import ELASTIC_CELL, DislocationSystem, nearest_neighbour_cutoff
from .screw_quadrupole import ScrewCell, screw_quadrupole_cell

__all__ = ["ELEMENTS", "B2Screw100Dislocation", "b2_cubic_cell", "b2_unit_cell",
           "b2_screw_unit_cell", "b2_cell_repeats", "b2_screw_quadrupole_cell", "b2_screw_dipole_cell", "b2_screw_cle_displacement",
           "NIAL_SCREW"]

#: Species of the B2 crystal: Ni on the cube corners, Al at the body centre.
ELEMENTS = ("Ni", "Al")


class B2Screw100Dislocation(CubicCrystalDislocation):
    """The a[001] screw on (-110) in a B2 crystal, for matscipy (which lacks it).

    Construct with a cubic B2 ``ase.Atoms`` (:func:`b2_unit_cell`) as ``a`` and the elastic
    constants (GPa), e.g. ``B2Screw100Dislocation(b2_unit_cell(2.8587), 199.8, 139.6, 120.0)``.
    """

    crystalstructure = "bcc"
    axes = np.array([[1, 1, 0], [-1, 1, 0], [0, 0, 1]])
    burgers_dimensionless = np.array([0.0, 0.0, 1.0])
    unit_cell_core_position_dimensionless = np.array([np.sqrt(2.0) / 4, np.sqrt(2.0) / 4, 0.0])
    # The next fully equivalent core along x (the one a/√2 away has Ni and Al swapped).
    glide_distance_dimensionless = np.sqrt(2.0)
    n_planes = 2
    name = "a<100>{110} screw (B2)"


def b2_unit_cell(a_A: float, elements: tuple = ELEMENTS):
    """The cubic B2 (CsCl) cell, ``elements[0]`` at the corner, ``elements[1]`` at the centre."""
    from ase import Atoms  # noqa: PLC0415

    return Atoms(list(elements), scaled_positions=[[0, 0, 0], [0.5, 0.5, 0.5]],
                 cell=np.eye(3) * a_A, pbc=True)


def b2_cubic_cell(a0_A: float, n: int = ELASTIC_CELL):
    """Perfect B2 NiAl of n³ cubic cells: positions (Å), cell (Å), symbols (Ni, Al, Ni, …).

    The same sites as :func:`kernels.dislocations.bcc_cubic_cell`, the body centres Al.
    """
    g = np.array([[i, j, k] for i in range(n) for j in range(n) for k in range(n)], float)
    x = (g[:, None, :] + np.array([[0, 0, 0], [0.5, 0.5, 0.5]])[None]).reshape(-1, 3) * a0_A
    return x, np.eye(3) * a0_A * n, list(ELEMENTS) * len(g)


def b2_screw_unit_cell(a_A: float):
    """matscipy's oriented B2 unit cell (a√2 × a√2 × a, Å) and the core position (x, y) in it.

    The elastic constants enter only matscipy's own displacement solvers, not the cell or the
    core: isotropic placeholders C11 = 2, C12 = 1, C44 = 0.5 are given.
    """
    d = B2Screw100Dislocation(b2_unit_cell(a_A), 2.0, 1.0, 0.5)
    core = np.asarray(d.unit_cell_core_position_dimensionless, float)[:2] * a_A
    return d.unit_cell, core


def b2_cell_repeats(size_a: float) -> tuple[int, int]:
    """Even unit-cell repeats (n, n) making a square cell of side ≈ ``size_a`` lattice constants
    (unit cell a√2 × a√2); n ≥ 4 keeps the cores at least 2√2 a apart."""
    n = max(4, 2 * int(round(size_a / (2 * np.sqrt(2.0)))))
    return n, n


def b2_screw_quadrupole_cell(a0_A: float, size_a: float, lattice=None) -> ScrewCell:
    """Four a[001] screws (checkerboard, zero net Burgers vector) in a square cell of side
    ≈ ``size_a`` a0 with the periodic CLE predictor; ``symbols`` gives each atom's species.
    ``lattice`` (the stages' LatticeReference) is not needed: the [001] screw's CLE field is
    u_z = (b/2π) θ whatever the elastic constants (module docstring)."""
    return screw_quadrupole_cell(a0_A, b2_cell_repeats(size_a),
                                 unit_cell=b2_screw_unit_cell(a0_A))


def b2_screw_cle_displacement(a0_A: float, size_a: float, C: np.ndarray) -> np.ndarray:
    """The anisotropic CLE displacement (Å) of the quadrupole of side ≈ ``size_a`` a0 at its
    perfect sites for elastic constants C (6, 6, cube axes), from matscipy's Stroh solution of
    :class:`B2Screw100Dislocation`: along the fourfold [001] axis it is (b/2π)θ with no in-plane
    part for any cubic C (module docstring), so fitted and reference C give the same field
    unless C itself breaks the cubic symmetry."""
    from .screw_quadrupole import anisotropic_screw_displacement, screw_stroh_field  # noqa: PLC0415

    field = screw_stroh_field(a0_A, C, dislocation=lambda a, C: B2Screw100Dislocation(
        b2_unit_cell(a), C=C))
    return anisotropic_screw_displacement(b2_screw_quadrupole_cell(a0_A, size_a), field)


def b2_screw_dipole_cell(a0_A: float, L: float, lattice=None) -> ScrewCell:
    """P2's training domain for the NiAl screw: one a[001] dipole (cores ≈ L a0 apart) in a
    square cell of side ≈ 2L a0 tilted by −b/2 along the line
    (:func:`kernels.dipole_cells.screw_dipole_cell`)."""
    from .dipole_cells import screw_dipole_cell, training_side_a  # noqa: PLC0415

    return screw_dipole_cell(a0_A, b2_cell_repeats(training_side_a(L)),
                             unit_cell=b2_screw_unit_cell(a0_A))


#: The a[001] screw in B2 NiAl (P2 §4.2.3) for the stages of :mod:`kernels.dislocations`.
NIAL_SCREW = DislocationSystem(name="nial-screw", symbol="NiAl", perfect_cell=b2_cubic_cell,
                               cell=b2_screw_quadrupole_cell,
                               neighbour_cutoff=nearest_neighbour_cutoff,
                               a0_bracket_A=(2.5, 3.6), elements=ELEMENTS,
                               dipole_cell=b2_screw_dipole_cell,
                               cle_displacement=b2_screw_cle_displacement)
