"""The stages of one dislocation sweep point: ½⟨111⟩ screw dislocations in bcc W (P2 §4.2.1).

Same pattern as :mod:`kernels.point_defects`; the sweep layer maps each stage onto a Dask task:

1. :func:`lattice_reference` — a0, bulk energy, and the Cauchy–Born derivatives ∂²W_cb
   (elastic constants) and ∂³W_cb of the reference (eV/Å³), on a 3×3×3 cubic cell.
2. :func:`simulation_reference` — the quadrupole cell of size N (four screws, separation
   L_D = N/2) from the periodic CLE predictor, relaxed with the reference (ȳ).
3. :func:`training_data` — the training cell of size L relaxed to ȳ_L and rattled into
   training/test sets with reference energies, forces and virials, plus the perfect crystal's
   energy. The cell is the ``domain``: ``"dipole"`` (default, P2 §3.1) is Ω_L = P(−L, L]², side
   2L, one dipole with its cores L apart, tilted by its plastic strain
   (:mod:`kernels.dipole_cells`); ``"checkerboard"`` the quadrupole of side L with four cores
   L/2 apart (the simulation cell's arrangement at size L).
4. :func:`design_rows` — ACE rows of the sets and the elastic rows (ε_V1: ∂², ε_V2: ∂³ of the
   perfect crystal's energy-density row; :mod:`kernels.elasticity`; multilattices also the
   internal-strain rows, :mod:`kernels.relaxed_elasticity`).
5. :func:`fit` — weighted least squares (RRQR or ARD) over E (per atom), F, V1 and V2 rows;
   test RMSEs (energy, forces, virial) and the elastic-constant error.
6. :func:`predict` — relax the quadrupole with the fitted model from ȳ; geometry error on the
   stencil N(ℓ) of the perfect sites x₀ (:mod:`kernels.errors`; in bcc 14 Voronoi neighbours,
   8 for the ``"cutoff"`` reading), energy errors.

Observation sets (P2 Fig. 5): ``"E+F"`` (W_V1 = W_V2 = 0), ``"E+F+CLE"`` (W_V2 = 0),
``"E+F+CLE+NL"`` (all). The energy of the perfect crystal can be one extra energy row (weight
W_E, ``fit(..., bulk_energy_row=True)``), as in :mod:`kernels.point_defects`, so that formation
energies are identifiable; P2 eq. (4.16) has no such row, so it is off by default. The energy
rows follow ``energy_weighting`` and the weights ``weight_form``, as in P1
(:mod:`kernels.least_squares`).

Rattle (P2 §4.1.2, "randomly perturb atom positions from ȳ_L by α"): P2's code is JuLIP, whose
``rattle!(at, α)`` adds α·(2/√3)·(U − ½) to every Cartesian component, U uniform on [0, 1). Each
atom thus moves by a vector uniform in the cube of half-width α/√3, whose half-diagonal is α: no
atom moves by more than α (Å), the per-component standard deviation is α/3 and the RMS
displacement α/√3. (An earlier version of this module drew normal deviates of RMS α, √3 times
larger and unbounded: at α = 0.5 Å that broke the fits.)

Other systems. Every stage takes a :class:`DislocationSystem` (keyword ``system``, default
:data:`W_SCREW`, whose values are those of the W-only version bit for bit): the crystal's
symbol (or, for several species, its elements; the cells then carry each atom's ``symbols``),
its perfect cell, the builder of the periodic dislocation cells, the geometry-error stencil and
whether the lattice stage also computes internally relaxed elastic constants (multilattices such
as diamond Si, whose far-field predictor needs them). The relaxed C is not linear in the
coefficients, so the elastic rows of a multilattice are the clamped-ion ∂²W_cb, ∂³W_cb of the
perfect cell plus its internal-strain and Γ-point force-constant rows (M_s, Φ_s; see
:func:`fit`), which together pin the relaxed C = C⁰ − M_sΦ_s⁺M_sᵀ/Ω.
:data:`kernels.si_edge.SI_EDGE` is the Si edge, :data:`kernels.b2_screw.NIAL_SCREW` the B2 NiAl
a[001] screw (two species).

Units: Å, eV, eV/Å; virials eV; W_cb derivatives and elastic constants eV/Å³;
L and N are in units of the lattice constant a0 (the papers' r0).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
from scipy.optimize import minimize_scalar
import scipy.sparse
import scipy.sparse.linalg

from .ace import ACEBasis, ACEModel, DesignRows, truncation_rank
from .ard import solve_ard, solve_ard_reduced
from .elasticity import cauchy_born_derivatives, cubic_constants_GPa, elastic_rows
from .errors import (STENCILS, Stencil, core_atoms, core_bonds, energy_error,
                     formation_energy_error, rmse, stencil_norm_split)
from .least_squares import (DEFAULT_ENERGY_WEIGHTING, DEFAULT_WEIGHT_FORM, energy_row_scale,
                            row_weight, solve_rrqr, solve_rrqr_reduced, weighted_system)
from .nested_basis import NestedColumns, nested_columns
from .tsqr import StreamingR, fold_rows, residual_norm2
from .hessian_precon_relax import HessianPreconditioner
from .point_defects import (Observations, Prediction, RelaxOptions, relax_reference,
                            reference_preconditioner, relax_fitted)
from .screw_quadrupole import (ScrewCell, anisotropic_screw_displacement, cell_repeats,
                               screw_quadrupole_cell, screw_stroh_field)

__all__ = ["TRAINING_DOMAINS", "OBSERVATION_SETS", "SOLVERS", "SYMBOL", "Weights", "LatticeReference",
           "SimulationReference", "TrainingData", "TrainingRows", "TrainingFactors", "FitResult",
           "Prediction", "lattice_reference", "simulation_reference", "training_data",
           "design_rows", "design_factors", "fit", "DESIGN_CHUNK_BYTES",
           "predict", "nearest_neighbour_cutoff", "bcc_cubic_cell", "rattle_displacements_A",
           "RelaxOptions", "DislocationSystem", "W_SCREW", "DislocationPrediction",
           "CORE_RADIUS_BURGERS", "reference_elastic_constants", "cubic_constants_and_anisotropy",
           "residual_response", "training_force_residual"]

SYMBOL = "W"
#: Training domains: P2's dipole cell Ω_L = P(−L, L]² (default), the checkerboard quadrupole of
#: side L.
TRAINING_DOMAINS = ("dipole", "checkerboard")
OBSERVATION_SETS = ("E+F", "E+F+CLE", "E+F+CLE+NL")
SOLVERS = ("rrqr", "ard")
#: Cubic cells per edge of the perfect crystal used for W_cb and the bulk energy.
ELASTIC_CELL = 3
#: Strain step of the Cauchy–Born finite differences (accuracy tested in the tests).
STRAIN_STEP = 1e-3
#: Sublattice displacement step (Å) of the Γ-point force constants of multilattices: with
#: STRAIN_STEP, Kumagai's relaxed C from them agrees with the full-Φ route to 1.4e-7 eV/Å³
#: (5e-4 and 2e-3 give 1.6e-6 and 7e-6: rounding and truncation; measured).
DISPLACEMENT_STEP_A = 1e-3
#: Radius of a dislocation core in the core/far-field split of the geometry error, in units of
#: the Burgers vector length |b|: a bond of the stencil is a core bond when one of its sites (in
#: x₀) lies closer than 2|b| to a core in the cross-section (5.5 Å for the ½⟨111⟩ screw in W).
CORE_RADIUS_BURGERS = 2.0
#: Default bound (bytes) on the design rows :func:`design_factors` holds at once (one chunk of
#: configurations; at least one configuration whatever the bound).
DESIGN_CHUNK_BYTES = 256e6


def nearest_neighbour_cutoff(a0_A: float) -> float:
    """Stencil radius (Å) between the bcc first (a√3/2, 8 sites) and second (a) shells."""
    return 0.5 * (0.5 * np.sqrt(3.0) + 1.0) * a0_A


def bcc_cubic_cell(a0_A: float, n: int = ELASTIC_CELL):
    """Perfect bcc crystal of n³ cubic cells: positions (Å), cell (Å), symbols."""
    g = np.array([[i, j, k] for i in range(n) for j in range(n) for k in range(n)], float)
    x = (g[:, None, :] + np.array([[0, 0, 0], [0.5, 0.5, 0.5]])[None]).reshape(-1, 3) * a0_A
    return x, np.eye(3) * a0_A * n, [SYMBOL] * len(x)


def _w_screw_cell(a0_A: float, size: int, lattice=None) -> ScrewCell:
    """The ½⟨111⟩ screw quadrupole in W of side ≈ ``size`` a0."""
    return screw_quadrupole_cell(a0_A, cell_repeats(size), SYMBOL)


def _w_screw_dipole_cell(a0_A: float, L: int, lattice=None) -> ScrewCell:
    """P2's training domain for the W screw: one dipole in a cell of side ≈ 2L a0."""
    from .dipole_cells import screw_dipole_cell, training_side_a  # noqa: PLC0415

    return screw_dipole_cell(a0_A, cell_repeats(training_side_a(L)), SYMBOL)


def _w_screw_cle(a0_A: float, size: int, C: np.ndarray) -> np.ndarray:
    """The full anisotropic CLE displacement (Å) of the W quadrupole of side ≈ ``size`` a0 at
    its perfect sites, for elastic constants C (6, 6, cube axes)."""
    return anisotropic_screw_displacement(_w_screw_cell(a0_A, size),
                                          screw_stroh_field(a0_A, C, SYMBOL))


@dataclass(frozen=True)
class DislocationSystem:
    """What differs between dislocation experiments (all fields module-level, so picklable).

    Attributes
    ----------
    name : str
        Label, e.g. ``"w-screw"``.
    symbol : str
        Chemical symbol of a single-species crystal; for several species a label of the
        compound (e.g. ``"NiAl"``), used only where neither the cell nor a stage result carries
        per-atom ``symbols``.
    perfect_cell : callable
        a0 (Å) → (positions (Å), cell (Å), symbols) of the perfect crystal used for the lattice
        constant, bulk energy, W_cb derivatives, elastic rows and force constants.
    cell : callable
        (a0 (Å), size (a0), lattice: LatticeReference or None) → a cell with ``positions0_A``
        (perfect sites), ``positions_A`` (CLE predictor) and ``cell_A`` (Å), and optionally
        ``symbols`` (each atom's species; required for several species, else all ``symbol``),
        holding the periodic dislocation arrangement of side ≈ size.
    neighbour_cutoff : callable
        a0 (Å) → radius (Å) of the geometry error's ``"cutoff"`` stencil (between first and
        second shells; :meth:`stencil`).
    a0_bracket_A : tuple of float
        Search interval (Å) of the lattice constant.
    relaxed_elastic : bool
        Also compute the internally relaxed elastic constants (multilattices).
    dipole_cell : callable or None
        (a0 (Å), L (a0), lattice) → P2's training domain Ω_L: one dipole in a cell of side
        ≈ 2L tilted by its plastic strain (:mod:`kernels.dipole_cells`), same attributes as
        ``cell``'s; None: the system has only the checkerboard (:meth:`training_cell`).
    dipole_min_L : float
        Smallest L (a0) whose dipole cell keeps both cores when the reference relaxes it
        (measured: smaller dipoles annihilate); 0: no bound known.
    elements : tuple of str
        Chemical symbols of the ACE basis; empty (the default) means ``(symbol,)``. See
        :attr:`species`.
    cle_displacement : callable or None
        (a0 (Å), size (a0), C (6, 6) in cube axes, eV/Å³) → (n, 3) displacement (Å) of the
        simulation cell of side ≈ size at its perfect sites (the atoms of :attr:`cell`): the
        full anisotropic CLE field of its dislocations for elastic constants C. It gives the
        far-field error that linear elasticity with the fitted C predicts (:func:`predict`);
        None: not computed.
    """

    name: str
    symbol: str
    perfect_cell: Callable
    cell: Callable
    neighbour_cutoff: Callable
    a0_bracket_A: tuple
    relaxed_elastic: bool = False
    elements: tuple = ()
    dipole_cell: Callable | None = None
    dipole_min_L: float = 0.0
    cle_displacement: Callable | None = None

    def training_cell(self, a0_A: float, L: int, lattice=None, domain: str = "dipole"):
        """The training cell of size L (a0) in ``domain`` (:data:`TRAINING_DOMAINS`):
        ``"dipole"`` → :attr:`dipole_cell`, side ≈ 2L, cores ≈ L apart; ``"checkerboard"`` →
        :attr:`cell` at size L, four cores ≈ L/2 apart."""
        if domain not in TRAINING_DOMAINS:
            raise ValueError(f"unknown training domain {domain!r}; allowed: "
                             f"{', '.join(TRAINING_DOMAINS)}")
        if domain == "checkerboard":
            return self.cell(a0_A, L, lattice)
        if self.dipole_cell is None:
            raise ValueError(f"system {self.name!r} has no dipole training domain")
        return self.dipole_cell(a0_A, L, lattice)

    def stencil(self, reading: str, a0_A: float) -> Stencil:
        """The geometry error's stencil N(ℓ) in ``reading`` (:data:`kernels.errors.STENCILS`):
        the 3D Voronoi readings of the perfect sites, or the ``"cutoff"`` reading with
        :attr:`neighbour_cutoff` at lattice constant ``a0_A`` (Å)."""
        return Stencil(reading, 3, self.neighbour_cutoff(a0_A))

    @property
    def species(self) -> tuple:
        """The ACE basis's elements: ``elements``, or ``(symbol,)`` for one species."""
        return tuple(self.elements) or (self.symbol,)


def _symbols(obj, n: int, system: DislocationSystem) -> list[str]:
    """Each atom's symbol: those a cell or stage result carries, else ``system.symbol``."""
    sym = getattr(obj, "symbols", ())
    return list(sym) if len(sym) else [system.symbol] * n


@dataclass(frozen=True)
class Weights:
    """W_E (energy per atom), W_F (force components), W_V1 (∂²W_cb), W_V2 (∂³W_cb)."""

    energy: float
    forces: float
    elastic: float = 0.0
    nonlinear_elastic: float = 0.0

    def for_observations(self, observations: str) -> "Weights":
        """The weights with the elastic ones zeroed as the observation set says."""
        if observations not in OBSERVATION_SETS:
            raise ValueError(f"unknown observations {observations!r}; allowed: "
                             f"{', '.join(OBSERVATION_SETS)}")
        w1 = self.elastic if "CLE" in observations else 0.0
        w2 = self.nonlinear_elastic if observations.endswith("+NL") else 0.0
        return Weights(self.energy, self.forces, w1, w2)


@dataclass(frozen=True)
class LatticeReference:
    """a0 (Å), energy per atom (eV), C = ∂²W_cb (6, 6) and ∂³W_cb (6, 6, 6) in eV/Å³."""

    a0_A: float
    bulk_energy_eV_per_atom: float
    elastic_eV_per_A3: np.ndarray
    nonlinear_elastic_eV_per_A3: np.ndarray
    #: internally relaxed C (6, 6), eV/Å³, of a multilattice (None when not computed)
    relaxed_elastic_eV_per_A3: np.ndarray | None = None
    #: with it, the sublattice internal strain M_s (6, 3s), eV/Å per unit strain, Γ-point force
    #: constants Φ_s (3s, 3s), eV/Å², and volume per primitive cell Ω (Å³) of the perfect cell
    #: (:func:`kernels.relaxed_elasticity.sublattice_constants`; s sublattices)
    internal_strain_eV_per_A: np.ndarray | None = None
    force_constants_eV_per_A2: np.ndarray | None = None
    primitive_volume_A3: float | None = None


@dataclass(frozen=True)
class SimulationReference:
    """The quadrupole cell: perfect sites x₀, CLE predictor, relaxed ȳ (Å); energies (eV)."""

    positions0_A: np.ndarray
    predictor_A: np.ndarray
    positions_A: np.ndarray
    cell_A: np.ndarray
    energy_predictor_eV: float
    energy_eV: float
    relax_steps: int
    symbols: tuple = ()
    #: the reference Hessian at ȳ (eV/Å², all three components) when the relaxation options
    #: ask for ``"hessian-lbfgs"``: every fitted model's relaxation of this cell starts from ȳ
    #: with it as initial inverse-Hessian guess (:mod:`kernels.hessian_precon_relax`)
    precon: HessianPreconditioner | None = None
    #: the cell's dislocation cores (k, 2), Å in the cross-section, |b| (Å) and the nominal
    #: side (a0) it was built with (for the core/far-field split and the CLE prediction)
    cores_A: np.ndarray | None = None
    burgers_A: float = float("nan")
    size_a: float = float("nan")


@dataclass(frozen=True)
class TrainingData:
    """Relaxed training cell ȳ_L, rattled sets (with virials, eV) and the perfect crystal."""

    cell_A: np.ndarray
    relaxed_A: np.ndarray
    train: Observations
    test: Observations
    train_virial_eV: np.ndarray
    test_virial_eV: np.ndarray
    perfect: Observations
    symbols: tuple = ()
    #: the training cell's dislocation cores (k, 2), Å in the cross-section, and |b| (Å): the
    #: core atoms of :func:`training_force_residual` (None, NaN: not recorded)
    cores_A: np.ndarray | None = None
    burgers_A: float = float("nan")


@dataclass(frozen=True)
class TrainingRows:
    """ACE rows: sets, perfect crystal (energy), elastic rows (eV/Å³ per coefficient)."""

    train: DesignRows
    test: DesignRows
    perfect: DesignRows
    stress: np.ndarray             # (6, B): ∂W_cb
    elastic: np.ndarray            # (6, 6, B)
    nonlinear_elastic: np.ndarray  # (6, 6, 6, B)
    n_basis: int
    time_s: float
    #: multilattices: rows of M_s (6, 3s, B; eV/Å) and Φ_s (3s, 3s, B; eV/Å²), else None
    internal_strain: np.ndarray | None = None
    force_constants: np.ndarray | None = None


@dataclass(frozen=True)
class TrainingFactors:
    """The rows of one training set in nested bases, reduced while they are built
    (:func:`design_factors`): what :func:`fit` needs of them, never the whole design matrix.

    Every array has the columns of the largest basis in the nested order of ``nested``
    (:mod:`kernels.nested_basis`: basis b is the leading ``nested.sizes[b]`` columns) and, where
    it is an augmented block [A | y], the observations last. Energy rows are unscaled (total
    energies, eV per coefficient; :func:`fit` applies the energy weighting), so one set of
    factors serves every fit convention.

    Attributes
    ----------
    nested : NestedColumns
        Column order and each basis's place in it.
    train_energy, test_energy : (S, n + 1) ndarray
        [E rows | E] of the training and test configurations (eV).
    train_forces, test_forces : ndarray
        Upper-triangular R factor ((n + 1)², :mod:`kernels.tsqr`) of [F rows | F] over every
        force component of the set (eV/Å), or those rows themselves while there are no more
        of them than the bound of :func:`design_factors` allows (``*_forces_factored``).
    train_forces_factored, test_forces_factored : bool
    train_force_rows, test_force_rows : int
        Number of force components of each set.
    train_force_sum_eV_per_A : float
        Σ F over the training set's force components (ARD's initial noise precision needs Σy).
    perfect : (1, n + 1) ndarray
        [E row | E] of the perfect crystal (eV).
    stress, elastic, nonlinear_elastic, internal_strain, force_constants
        As in :class:`TrainingRows`, columns in nested order.
    time_s, time_rows_s : float
        Wall time of the pass (s) and the part spent on design rows.
    """

    nested: NestedColumns
    train_energy: np.ndarray
    train_forces: np.ndarray
    train_forces_factored: bool
    train_force_rows: int
    train_force_sum_eV_per_A: float
    test_energy: np.ndarray
    test_forces: np.ndarray
    test_forces_factored: bool
    test_force_rows: int
    perfect: np.ndarray
    stress: np.ndarray
    elastic: np.ndarray
    nonlinear_elastic: np.ndarray
    time_s: float
    time_rows_s: float = 0.0
    internal_strain: np.ndarray | None = None
    force_constants: np.ndarray | None = None

    @property
    def n_columns(self) -> int:
        """Functions of the largest basis."""
        return len(self.nested.order)

    def basis_index(self, basis: ACEBasis) -> int:
        """Index in ``nested.sizes`` of the basis with ``basis``'s number of functions."""
        n = basis.n_functions
        if n not in self.nested.sizes:
            raise ValueError(f"a basis of {n} functions is not among the factors' nested bases "
                             f"{list(self.nested.sizes)}")
        return self.nested.sizes.index(n)


@dataclass(frozen=True)
class FitResult:
    """Coefficients and fit quality: test RMSEs (meV/atom, eV/Å, virial eV), elastic errors (%).

    ``elastic_constant_error_percent`` is the error of the relaxed C where the rows hold the
    internal strain (multilattices), else of the clamped-ion C⁰ = ∂²W_cb (the same thing for
    Bravais lattices and B2); ``clamped_elastic_constant_error_percent`` always that of C⁰.
    """

    coeffs: np.ndarray
    rank: int
    n_basis: int
    n_observations: int
    rmse_energy_meV_per_atom: float
    rmse_forces_eV_per_A: float
    rmse_virial_eV: float
    elastic_constant_error_percent: float
    fit_time_s: float
    clamped_elastic_constant_error_percent: float = float("nan")
    #: whether the fit had the perfect crystal's energy row (formation energies identifiable)
    bulk_energy_observed: bool = False
    #: the fitted model's elastic constants (6, 6), eV/Å³, cube axes: those whose error is
    #: ``elastic_constant_error_percent`` (relaxed for multilattices, else ∂²W_cb)
    elastic_eV_per_A3: np.ndarray | None = None


def lattice_reference(model, system: DislocationSystem | None = None) -> LatticeReference:
    """a0 minimising the perfect crystal's energy, the energy per atom, and ∂²W_cb, ∂³W_cb
    (eV/Å³; plus the relaxed C when ``system.relaxed_elastic``). Default system: W screw."""
    system = system or W_SCREW

    def e(a):
        return model.evaluate(*system.perfect_cell(a)).energy_eV

    res = minimize_scalar(e, bounds=system.a0_bracket_A, method="bounded",
                          options={"xatol": 1e-9})
    a0 = float(res.x)
    x, c, s = system.perfect_cell(a0)
    d = cauchy_born_derivatives(model, x, c, s, STRAIN_STEP, third=True)
    if not system.relaxed_elastic:
        return LatticeReference(a0, float(res.fun) / len(x), d.second, d.third)
    from .relaxed_elasticity import (relaxed_elastic_constants_eV_per_A3,  # noqa: PLC0415
                                     sublattice_constants)

    C, _ = relaxed_elastic_constants_eV_per_A3(model, x, c, s, STRAIN_STEP)
    sub = sublattice_constants(lambda y, cell: model.evaluate(y, cell, s).forces_eV_per_A,
                               x, c, s, STRAIN_STEP, DISPLACEMENT_STEP_A)
    return LatticeReference(a0, float(res.fun) / len(x), d.second, d.third, C,
                            sub.internal_strain, sub.force_constants, sub.volume_A3)


def simulation_reference(model, a0_A: float, size: int, options: RelaxOptions,
                         system: DislocationSystem | None = None,
                         lattice: LatticeReference | None = None) -> SimulationReference:
    """The quadrupole cell of side ≈ ``size`` a0, relaxed with the reference from the CLE field.
    ``lattice`` is passed to ``system.cell`` (the Si edge's predictor needs its relaxed C)."""
    system = system or W_SCREW
    c = system.cell(a0_A, size, lattice)
    sym = _symbols(c, len(c.positions_A), system)
    e_pred = model.evaluate(c.positions_A, c.cell_A, sym).energy_eV
    r = relax_reference(model, c.positions_A, c.cell_A, sym, options)
    precon = reference_preconditioner(model, r.positions_A, c.cell_A, sym, 3, options,
                                      r.hessian_eV_per_A2)
    return SimulationReference(c.positions0_A, c.positions_A, r.positions_A, c.cell_A, e_pred,
                               r.energy_eV, r.n_steps, tuple(sym), precon,
                               np.asarray(c.cores_A, float),
                               float(np.linalg.norm(c.burgers_A)), float(size))


def rattle_displacements_A(rng: np.random.Generator, shape: tuple, amplitude_A: float
                           ) -> np.ndarray:
    """JuLIP's rattle: displacements (Å) uniform in the cube [−α/√3, α/√3]³, so |u| ≤ α.

    Parameters
    ----------
    rng : numpy.random.Generator
        The explicit random stream.
    shape : tuple of int
        Leading shape, e.g. (n_configs, n_atoms); a trailing axis of 3 is appended.
    amplitude_A : float
        α, the largest displacement of any atom (Å).
    """
    half_width = amplitude_A / np.sqrt(3.0)
    return rng.uniform(-half_width, half_width, tuple(shape) + (3,))


def _rattled(model, relaxed_A, cell_A, n_configs, amplitude_A, seed, symbols=None):
    rng = np.random.default_rng(seed)
    n = len(relaxed_A)
    sym = [SYMBOL] * n if symbols is None else list(symbols)
    pos = relaxed_A[None] + rattle_displacements_A(rng, (n_configs, n), amplitude_A)
    energy = np.empty(n_configs)
    forces = np.empty((n_configs, n, 3))
    virial = np.empty((n_configs, 3, 3))
    for k in range(n_configs):
        r = model.evaluate(pos[k], cell_A, sym)
        energy[k], forces[k], virial[k] = r.energy_eV, r.forces_eV_per_A, r.virial_eV
    return Observations(pos, energy, forces), virial


def training_data(model, a0_A: float, size: int, n_train: int, n_test: int, amplitude_A: float,
                  seed_train: int, seed_test: int, options: RelaxOptions,
                  system: DislocationSystem | None = None,
                  lattice: LatticeReference | None = None,
                  domain: str = TRAINING_DOMAINS[0]) -> TrainingData:
    """Relax the training cell of size L = ``size`` a0 and rattle it (|u| ≤ α, Å).

    ``domain`` (:data:`TRAINING_DOMAINS`): ``"dipole"`` (P2 §3.1) one dipole in a tilted cell of
    side ≈ 2L, cores ≈ L apart; ``"checkerboard"`` four cores in a cell of side ≈ L
    (:meth:`DislocationSystem.training_cell`)."""
    system = system or W_SCREW
    c = system.training_cell(a0_A, size, lattice, domain)
    sym = _symbols(c, len(c.positions_A), system)
    r = relax_reference(model, c.positions_A, c.cell_A, sym, options)
    train, vtrain = _rattled(model, r.positions_A, c.cell_A, n_train, amplitude_A, seed_train,
                             sym)
    test, vtest = _rattled(model, r.positions_A, c.cell_A, n_test, amplitude_A, seed_test,
                           sym)
    x, cc, s = system.perfect_cell(a0_A)
    p = model.evaluate(x, cc, s)
    return TrainingData(c.cell_A, r.positions_A, train, test, vtrain, vtest,
                        Observations(x[None], np.array([p.energy_eV]), p.forces_eV_per_A[None]),
                        tuple(sym), _cores_of(c), float(np.linalg.norm(getattr(c, "burgers_A",
                                                                                 np.nan))))


def design_rows(basis: ACEBasis, data: TrainingData, a0_A: float,
                system: DislocationSystem | None = None) -> TrainingRows:
    """Energy/force rows of the sets, the perfect crystal's energy row and the elastic rows.

    For ``system.relaxed_elastic`` also the rows of the sublattice internal strain M_s
    (6, 3s, B; eV/Å per unit strain) and Γ-point force constants Φ_s (3s, 3s, B; eV/Å²) of the
    perfect cell: central differences (strain STRAIN_STEP, displacement DISPLACEMENT_STEP_A Å)
    of the basis's per-atom force rows, 24 row evaluations of the perfect cell
    (:func:`kernels.relaxed_elasticity.sublattice_constants`).
    """
    system = system or W_SCREW
    t0 = time.perf_counter()
    sym = _symbols(data, data.train.positions_A.shape[1], system)
    train = basis.design_rows(data.train.positions_A, data.cell_A, sym)
    test = basis.design_rows(data.test.positions_A, data.cell_A, sym)
    perfect, el, M, Phi = _perfect_crystal_rows(basis, a0_A, system)
    return TrainingRows(train, test, perfect, el.first, el.second, el.third, train.energy.shape[1],
                        time.perf_counter() - t0, M, Phi)


def _perfect_crystal_rows(basis: ACEBasis, a0_A: float, system: DislocationSystem):
    """The perfect crystal's rows: its energy row, the elastic rows (first, second, third
    Cauchy–Born derivatives) and, for ``system.relaxed_elastic``, the sublattice internal-strain
    and Γ-point force-constant rows (M_s, Φ_s; None otherwise), in ``basis``'s column order."""
    x, c, s = system.perfect_cell(a0_A)
    perfect = basis.design_rows(x[None], c, s)
    el = elastic_rows(basis, x, c, s, STRAIN_STEP, third=True)
    M = Phi = None
    if system.relaxed_elastic:  # internal-strain rows of the multilattice (M_s, Φ_s)
        from .relaxed_elasticity import sublattice_constants  # noqa: PLC0415

        sub = sublattice_constants(lambda y, cell: basis.design_rows(y[None], cell, s).forces[0],
                                   x, c, s, STRAIN_STEP, DISPLACEMENT_STEP_A)
        M, Phi = sub.internal_strain, sub.force_constants
    return perfect, el, M, Phi


def _stream_forces(basis: ACEBasis, order: np.ndarray, positions_A: np.ndarray,
                   forces_eV_per_A: np.ndarray, cell_A, symbols: list[str], chunk: int,
                   block: StreamingR) -> tuple[np.ndarray, float]:
    """Fold the force rows [F rows | F] of every configuration into ``block``, ``chunk``
    configurations at a time; returns the energy rows (S, n) in ``order`` and the time spent
    on rows (s)."""
    S, n = positions_A.shape[:2]
    energy = np.empty((S, len(order)))
    t_rows = 0.0
    for s0 in range(0, S, chunk):
        sl = slice(s0, min(S, s0 + chunk))
        t0 = time.perf_counter()
        r = basis.design_rows(positions_A[sl], cell_A, symbols)
        t_rows += time.perf_counter() - t0
        energy[sl] = r.energy[:, order]
        m = r.forces.shape[0] * n * 3
        F = np.empty((m, len(order) + 1), order="F")  # dtpqrt's order: folded without a copy
        np.take(r.forces.reshape(m, -1), order, axis=1, out=F[:, :-1])
        F[:, -1] = forces_eV_per_A[sl].reshape(m)
        del r
        block.add(F)
    return energy, t_rows


def design_factors(bases: ACEBasis | list[ACEBasis], data: TrainingData, a0_A: float,
                   system: DislocationSystem | None = None,
                   max_chunk_bytes: float = DESIGN_CHUNK_BYTES) -> TrainingFactors:
    """:func:`design_rows` streamed: the rows of nested bases in one pass, reduced as they come.

    The rows are built in the largest basis (``bases`` smallest first, truncations of one
    superset; one basis alone is the trivial case), a chunk of configurations at a time, holding
    at most ``max_chunk_bytes`` bytes of rows (at least one configuration), and each chunk's
    force rows are folded into the R factor of the set's augmented [F rows | F]
    (:class:`kernels.tsqr.StreamingR`; 2 m (n + 1)² flops for m force components). The energy,
    perfect-crystal and elastic rows are few and kept. Peak memory: one chunk, the TrainingData,
    and two (n + 1)² factors (8 MB each at 1000 functions).

    The least-squares problem of every basis and weight set follows from these
    (:func:`fit`): for the training set's factor R of [A | y] in nested order the problem of
    basis b is R[:n_b, :n_b] c ≈ R[:n_b, −1] (plus the residual of y beyond it), the same as on
    that basis's own rows up to rounding (an orthogonal transformation of the rows).
    """
    system = system or W_SCREW
    t0 = time.perf_counter()
    bases = [bases] if isinstance(bases, ACEBasis) else list(bases)
    nested = nested_columns([b.function_keys() for b in bases], truncation_rank)
    big = bases[-1]
    order = nested.order
    ncol = len(order) + 1
    n = data.train.positions_A.shape[1]
    sym = _symbols(data, n, system)
    per_config = n * 3 * ncol * 8.0
    chunk = max(1, int(max_chunk_bytes // per_config))
    # the test factor serves residuals only: its rows are kept (no QR) while within the bound
    keep = int(max_chunk_bytes // (ncol * 8.0))
    train, test = StreamingR(ncol), StreamingR(ncol, keep)
    e_train, t_rows = _stream_forces(big, order, data.train.positions_A,
                                     data.train.forces_eV_per_A, data.cell_A, sym, chunk, train)
    e_test, t = _stream_forces(big, order, data.test.positions_A, data.test.forces_eV_per_A,
                               data.cell_A, sym, chunk, test)
    t_rows += t
    t1 = time.perf_counter()
    perfect, el, M, Phi = _perfect_crystal_rows(big, a0_A, system)
    if M is not None:
        M, Phi = M[..., order], Phi[..., order]
    t_rows += time.perf_counter() - t1
    return TrainingFactors(
        nested=nested,
        train_energy=np.column_stack([e_train, data.train.energy_eV]),
        train_forces=train.R, train_forces_factored=train.is_factored,
        train_force_rows=train.n_rows,
        train_force_sum_eV_per_A=float(np.sum(data.train.forces_eV_per_A)),
        test_energy=np.column_stack([e_test, data.test.energy_eV]),
        test_forces=test.R, test_forces_factored=test.is_factored, test_force_rows=test.n_rows,
        perfect=np.column_stack([perfect.energy[:, order], data.perfect.energy_eV]),
        stress=el.first[..., order], elastic=el.second[..., order],
        nonlinear_elastic=el.third[..., order], time_s=time.perf_counter() - t0,
        time_rows_s=t_rows, internal_strain=M, force_constants=Phi)


def volume_per_atom_A3(a0_A: float, system: DislocationSystem) -> float:
    """Ω_a, the volume per atom (Å³) of the system's perfect crystal at lattice constant a0."""
    x, cell, _ = system.perfect_cell(a0_A)
    return float(abs(np.linalg.det(cell)) / len(x))


def fit(basis: ACEBasis, rows: TrainingRows | TrainingFactors, data: TrainingData,
        lattice: LatticeReference,
        weights: Weights, solver: str = "rrqr", rtol: float = 1e-6,
        system: DislocationSystem | None = None, bulk_energy_row: bool = False,
        energy_weighting: str = DEFAULT_ENERGY_WEIGHTING,
        weight_form: str = DEFAULT_WEIGHT_FORM) -> FitResult:
    """Minimise Σ_R W_E|s_n (E − Ẽ)|² + W_F|F − F̃|² + W_V1‖∂²W − ∂²W̃‖² + W_V2‖∂³W − ∂³W̃‖²
    (P2 eq. 4.16; all 36 and 216 tensor entries).

    s_n is 1 (total energies, eq. 4.16 as written), 1/n or 1/√n (the papers' codes) for
    ``energy_weighting`` ``"total"``, ``"per-atom"``, ``"sqrt-n"``
    (:data:`kernels.least_squares.ENERGY_WEIGHTINGS`); with ``weight_form = "residual"`` every
    weight multiplies its residual instead of the squared residual (W² in the sum).
    ``bulk_energy_row`` adds W_E|s_n (E_perfect − Ẽ_perfect)|² of the perfect crystal (not in
    P2; it makes the model's bulk energy, hence formation energies, identifiable).

    The elastic residuals are per atom, as in P2: its W_cb(F) = V(F·Λ*) (eq. A.6) is the site
    energy, so ∂²W and ∂³W enter in eV per atom — the per-volume derivatives of
    :class:`LatticeReference` (eV/Å³) times the volume per atom Ω_a (15.85 Å³ W, 11.68 Å³ NiAl,
    20.0 Å³ Si). P2's weights (W_V1 = 10, 20) then mean what they meant there: at W_V1 = 10 the
    elastic rows weigh Ω_a² ≈ 250 (W), 136 (NiAl), 400 (Si) times more than on eV/Å³ rows. The
    force-free condition ∂W_cb = 0 of the reference lattice (6 rows) and the multilattice
    blocks below are scaled the same way.

    Multilattices (``rows.internal_strain`` set, e.g. diamond Si): the far field sees the
    relaxed C = C⁰ − M_s Φ_s⁺ M_sᵀ/Ω (:mod:`kernels.relaxed_elasticity`), not linear in the
    coefficients, but M_s and Φ_s are; so the CLE block (W_V1 > 0) also holds W_V1‖M̃ − M̃_ref‖²
    + W_V1‖Φ̃ − Φ̃_ref‖² over all 6 × 3s and 3s × 3s entries, which with the C⁰ rows pin the
    relaxed C. Scaling: internal displacements measured in units of ℓ = Ω^⅓, the energy per
    primitive cell volume is ½eᵀC⁰e + eᵀM̃ξ + ½ξᵀΦ̃ξ with M̃ = M_s ℓ/Ω and Φ̃ = Φ_s ℓ²/Ω, all in
    eV/Å³ like C⁰, and C = C⁰ − M̃Φ̃⁺M̃ᵀ exactly. For Kumagai Si (Ω = 40.0 Å³, ℓ = 3.42 Å) the
    largest entries are C⁰ 1.04, M̃ 1.25 and Φ̃ 5.69 eV/Å³: the three blocks weigh alike at one
    W_V1, and none scales with the size of the perfect cell (per-atom, per-primitive-cell
    quantities). Not the full M (6 × 3n) and Φ (3n × 3n) of the 64-atom cell: by translation
    symmetry M's 1152 entries are 32 copies of M_s's 36, and Φ's 36,864 are mostly phonons at
    q ≠ 0 that do not enter C; row by row they would outweigh C⁰ 32× and ~1000× (and cost 384
    row evaluations and ~60 MB of rows at 200 functions). The relaxed C's error is then
    ``elastic_constant_error_percent``.

    ``solver``: "rrqr" (truncated rank-revealing QR, relative tolerance ``rtol``) or "ard"
    (scikit-learn's ARD regression on the same weighted system).

    ``rows``: the whole rows of ``basis`` (:class:`TrainingRows`, :func:`design_rows`: the
    weighted matrix is stacked and solved by :func:`kernels.least_squares.solve_rrqr` or
    :func:`kernels.ard.solve_ard`), or the streamed factors of nested bases among which
    ``basis`` is (:class:`TrainingFactors`, :func:`design_factors`: the training forces' factor
    scaled by √W_F and every other block folded into one (B + 1)² triangular factor T of the
    weighted [A | y], solved by :func:`kernels.least_squares.solve_rrqr_reduced` or
    :func:`kernels.ard.solve_ard_reduced` on T's statistics, O(B³) whatever the number of rows;
    the test force RMSE from the test factor, ‖A c − y‖² = ‖R [c; −1]‖²). The two give the same
    coefficients and RMSEs to rounding (the RRQR's truncation and the ARD iteration see the
    same matrix up to an orthogonal factor; tests/test_p2_streamed_fit.py).
    """
    if solver not in SOLVERS:
        raise ValueError(f"unknown solver {solver!r}; allowed: {', '.join(SOLVERS)}")
    system = system or W_SCREW
    n = data.train.positions_A.shape[1]
    n_p = data.perfect.positions_A.shape[1]
    s_n, s_p = energy_row_scale(n, energy_weighting), energy_row_scale(n_p, energy_weighting)
    weights = Weights(*(row_weight(w, weight_form) for w in
                        (weights.energy, weights.forces, weights.elastic,
                         weights.nonlinear_elastic)))
    streamed = isinstance(rows, TrainingFactors)
    if streamed:
        b = rows.basis_index(basis)
        B = rows.nested.sizes[b]
        cols = rows.nested.positions[b]  # the basis's own columns in the nested prefix

        def own(a):  # nested prefix → the basis's own column order
            return a[..., :B][..., cols]
    else:
        B = rows.n_basis

        def own(a):
            return a
    # Blocks (rows (r, B), observations (r,), weight) besides the training energies and forces,
    # rows in the nested prefix order when streamed (the order of the factors they join)
    pre = (lambda a: a[..., :B]) if streamed else own
    extra = []
    if bulk_energy_row:
        e = (pre(rows.perfect[:, :-1]) if streamed else rows.perfect.energy) * s_p
        extra.append((e, data.perfect.energy_eV * s_p, weights.energy))
    omega = volume_per_atom_A3(lattice.a0_A, system)
    if weights.elastic > 0:
        # The CLE block: ∂²W_cb (elastic constants) and the zero stress ∂W_cb = 0 of the
        # reference at a0 (linear elasticity about the reference's own equilibrium lattice),
        # per atom (× Ω_a, see above).
        extra.append((omega * pre(rows.elastic).reshape(-1, B),
                      omega * lattice.elastic_eV_per_A3.reshape(-1), weights.elastic))
        extra.append((omega * pre(rows.stress), np.zeros(6), weights.elastic))
        if rows.internal_strain is not None:
            # the internal strain and Γ-point force constants, in eV/Å³ (see above), per atom
            ell = lattice.primitive_volume_A3 ** (1 / 3)
            m = omega * ell / lattice.primitive_volume_A3
            phi = omega * ell**2 / lattice.primitive_volume_A3
            extra.append((m * pre(rows.internal_strain).reshape(-1, B),
                          m * lattice.internal_strain_eV_per_A.reshape(-1), weights.elastic))
            extra.append((phi * pre(rows.force_constants).reshape(-1, B),
                          phi * lattice.force_constants_eV_per_A2.reshape(-1), weights.elastic))
    if weights.nonlinear_elastic > 0:
        extra.append((omega * pre(rows.nonlinear_elastic).reshape(-1, B),
                      omega * lattice.nonlinear_elastic_eV_per_A3.reshape(-1),
                      weights.nonlinear_elastic))
    if streamed:
        energy = (pre(rows.train_energy[:, :-1]) * s_n, rows.train_energy[:, -1] * s_n,
                  weights.energy)
        T, n_obs, y_sum = _weighted_factor(rows, B, [energy] + extra, weights.forces)
        t0 = time.perf_counter()
        R, z = T[:B, :B][:, cols], T[:B, B]
        sol = (solve_rrqr_reduced(R, z, rtol) if solver == "rrqr"
               else solve_ard_reduced(R, z, float(T[B, B]) ** 2, n_obs, y_sum))
    else:
        blocks = [(rows.train.energy * s_n, data.train.energy_eV * s_n, weights.energy),
                  (rows.train.forces.reshape(-1, B), data.train.forces_eV_per_A.reshape(-1),
                   weights.forces)] + extra
        A, y = weighted_system(blocks)
        n_obs = int(A.shape[0])
        t0 = time.perf_counter()
        sol = solve_rrqr(A, y, rtol) if solver == "rrqr" else solve_ard(A, y)
    fit_time = time.perf_counter() - t0
    c = sol.coeffs
    nt = data.test.positions_A.shape[1]
    if streamed:
        rmse_e = rmse(own(rows.test_energy[:, :-1]) @ c / nt, rows.test_energy[:, -1] / nt)
        rmse_f = float(np.sqrt(residual_norm2(rows.test_forces, cols, c)
                               / rows.test_force_rows))
    else:
        rmse_e = rmse(rows.test.energy @ c / nt, data.test.energy_eV / nt)
        rmse_f = rmse(rows.test.forces @ c, data.test.forces_eV_per_A)
    model = ACEModel(basis, c)
    sym = _symbols(data, nt, system)
    vir = np.array([model.evaluate(x, data.cell_A, sym).virial_eV for x in data.test.positions_A])
    C0_ml = own(rows.elastic) @ c
    C0_ref = lattice.elastic_eV_per_A3
    C_ml, C_ref = C0_ml, C0_ref
    if rows.internal_strain is not None:
        from .relaxed_elasticity import relaxed_from_sublattices  # noqa: PLC0415

        C_ml = relaxed_from_sublattices(C0_ml, own(rows.internal_strain) @ c,
                                        own(rows.force_constants) @ c,
                                        lattice.primitive_volume_A3)
        C_ref = lattice.relaxed_elastic_eV_per_A3
    return FitResult(
        coeffs=c, rank=sol.rank, n_basis=B, n_observations=n_obs,
        rmse_energy_meV_per_atom=1e3 * rmse_e, rmse_forces_eV_per_A=rmse_f,
        rmse_virial_eV=rmse(vir, data.test_virial_eV),
        elastic_constant_error_percent=float(100 * np.linalg.norm(C_ml - C_ref)
                                             / np.linalg.norm(C_ref)),
        fit_time_s=fit_time,
        clamped_elastic_constant_error_percent=float(100 * np.linalg.norm(C0_ml - C0_ref)
                                                     / np.linalg.norm(C0_ref)),
        bulk_energy_observed=bool(bulk_energy_row and weights.energy > 0),
        elastic_eV_per_A3=np.asarray(C_ml, float))


@dataclass(frozen=True)
class DislocationPrediction(Prediction):
    """:class:`kernels.point_defects.Prediction` plus the evidence on where the geometry error
    sits (all Å, stencil norms ‖Dw‖ over a subset of the stencil's bonds).

    ``geometry_error_core_A`` and ``geometry_error_far_A`` split ``geometry_error_A`` over the
    bonds with a site closer than :data:`CORE_RADIUS_BURGERS` |b| to a core and the others
    (core² + far² = total²). ``cle_far_field_error_A`` is the far-field norm of
    u_CLE(C̃) − u_CLE(C), the difference of the simulation cell's anisotropic CLE fields with
    the fitted and the reference elastic constants: what linear elasticity predicts the
    fitted model's far-field error to be. NaN where not computed (no cores, no C, or a system
    without ``cle_displacement``). The ``_line_A`` values are the same far-field norms of the
    displacements' components along the dislocation line (z) alone: the antiplane part for a
    screw. ``core_bonds`` and ``bonds`` count the ordered pairs of the core part and of the whole
    stencil.

    Where the error comes from (the fitted model's forces at the reference equilibrium ȳ, whose
    reference forces vanish to the relaxation's fmax): ``force_residual_core_eV_per_A`` and
    ``force_residual_far_eV_per_A`` are ‖F_ML(ȳ)‖ (ℓ² over the atoms, eV/Å) over the atoms
    within :data:`CORE_RADIUS_BURGERS` |b| of a core and over the others.
    ``linear_response_error_A`` is ‖D w_lin‖ (Å, the same stencil) of
    w_lin = H_ref⁻¹ F_ML(ȳ), the geometry error to first order in those forces (the reference
    Hessian of :attr:`SimulationReference.precon`, solved by CG preconditioned with its factor); the ``_core_forces_A``
    and ``_far_forces_A`` values are the same response to the core and to the far-field residual
    forces alone (they add as vectors to w_lin). NaN without cores or without a preconditioner.

    The energy error's two parts (eV, signed): ``energy_predictor_difference_eV`` is
    Ẽ(x̂) − E(x̂), the two models' energies at the CLE predictor x̂ from which P2 measures
    both, and ``energy_relaxed_difference_eV`` is Ẽ(ũ) − E(ū), at each model's own
    equilibrium; ``energy_error_eV`` is the absolute value of their difference. A predictor
    term that dominates says the error is the fitted model's extrapolation to x̂ (atoms pushed
    together near a core), not its description of the relaxed defect.
    """

    geometry_error_core_A: float = float("nan")
    geometry_error_far_A: float = float("nan")
    cle_far_field_error_A: float = float("nan")
    geometry_error_far_line_A: float = float("nan")
    cle_far_field_error_line_A: float = float("nan")
    core_bonds: int = 0
    bonds: int = 0
    force_residual_core_eV_per_A: float = float("nan")
    force_residual_far_eV_per_A: float = float("nan")
    linear_response_error_A: float = float("nan")
    linear_response_error_core_forces_A: float = float("nan")
    linear_response_error_far_forces_A: float = float("nan")
    energy_predictor_difference_eV: float = float("nan")
    energy_relaxed_difference_eV: float = float("nan")


def reference_elastic_constants(lattice: LatticeReference) -> np.ndarray:
    """The reference's elastic constants that the far field sees (6, 6; eV/Å³): the internally
    relaxed C of a multilattice where computed, else ∂²W_cb."""
    C = lattice.relaxed_elastic_eV_per_A3
    return np.asarray(lattice.elastic_eV_per_A3 if C is None else C, float)


def cubic_constants_and_anisotropy(C_eV_per_A3: np.ndarray
                                   ) -> tuple[float, float, float, float]:
    """C11, C12, C44 (GPa; :func:`kernels.elasticity.cubic_constants_GPa`, each the mean of its
    three cubic copies in cube axes) of a 6 × 6 Voigt C (eV/Å³) and the Zener anisotropy
    A = 2 C44 / (C11 − C12) (dimensionless; 1 for an isotropic crystal)."""
    c11, c12, c44 = cubic_constants_GPa(C_eV_per_A3)
    return c11, c12, c44, 2.0 * c44 / (c11 - c12)


def _weighted_factor(rows: TrainingFactors, B: int, blocks: list, weight_forces: float
                     ) -> tuple[np.ndarray, int, float]:
    """The augmented triangular factor T ((B + 1)², Fortran order) of the whole weighted system
    of the nested prefix B: √W_F [F rows | F] of the training set and every block
    ``(rows, observations, W)`` of ``blocks``; also its number of rows m and Σ of its weighted
    observations (the statistics :func:`kernels.ard.solve_ard_reduced` needs besides T)."""
    f = rows.train_forces
    w = np.sqrt(weight_forces)
    n_obs, y_sum = rows.train_force_rows, w * rows.train_force_sum_eV_per_A
    if rows.train_forces_factored:
        # the prefix problem of the factor: R[:B, :B], R[:B, −1] and the norm of the rest of
        # the observations' column, so that TᵀT = [A_B | y]ᵀ[A_B | y]
        T = np.zeros((B + 1, B + 1), order="F")
        T[:B, :B] = f[:B, :B]
        T[:B, B] = f[:B, -1]
        T[B, B] = np.linalg.norm(f[B:, -1])
        T *= w
    else:
        T = np.zeros((B + 1, B + 1), order="F")
        fold_rows(T, w * np.column_stack([f[:, :B], f[:, -1]]))
    for a, y, weight in blocks:
        a = np.asarray(a, float).reshape(len(y), B)
        n_obs += len(y)
        y_sum += np.sqrt(weight) * float(np.sum(y))
        if weight > 0:
            fold_rows(T, np.sqrt(weight) * np.column_stack([a, y]))
    return T, int(n_obs), float(y_sum)


def predict(basis: ACEBasis, coeffs: np.ndarray, sim: SimulationReference,
            lattice: LatticeReference, options: RelaxOptions,
            system: DislocationSystem | None = None, stencil: str = STENCILS[0],
            elastic_eV_per_A3: np.ndarray | None = None) -> DislocationPrediction:
    """Relax the quadrupole with the fitted model from ȳ and measure the errors.

    Geometry error: stencil N(ℓ) of the perfect sites x₀ in the reading ``stencil``
    (:data:`kernels.errors.STENCILS`), periodic: ``"voronoi"`` (default, P2 eq. A.2 as written)
    has 14 neighbours in bcc and B2 and 28 in diamond (4 + 12 across faces, 12 third neighbours
    at Voronoi vertices), ``"voronoi-faces"`` 14 and 16, ``"cutoff"``
    (``system.neighbour_cutoff``) the 8 and 4 nearest neighbours. It is also split into its
    core and far-field parts (bonds with a site within :data:`CORE_RADIUS_BURGERS` |b| of a
    core of the cell, and the others; :func:`kernels.errors.geometry_error_split`).
    Energy error: each model's energy measured from its own value at the CLE predictor.
    Formation-energy error: each model against its own perfect crystal (n·e_bulk); meaningful
    only for a fit with the bulk-energy row (:attr:`FitResult.bulk_energy_observed`).

    ``elastic_eV_per_A3``: the fitted model's C (6, 6, eV/Å³, cube axes;
    :attr:`FitResult.elastic_eV_per_A3`). With it and ``system.cle_displacement`` the far-field
    norm of u_CLE(C̃) − u_CLE(C_ref) is computed on the same bonds
    (:class:`DislocationPrediction`).
    """
    system = system or W_SCREW
    t0 = time.perf_counter()
    model = ACEModel(basis, coeffs)
    sym = _symbols(sim, len(sim.positions0_A), system)
    e_pred_ml = model.evaluate(sim.predictor_A, sim.cell_A, sym).energy_eV
    r = relax_fitted(model, sim.positions_A, sim.cell_A, sym, sim.precon, 3, options)
    x, c, s = system.perfect_cell(lattice.a0_A)
    bulk_ml = model.evaluate(x, c, s).energy_eV / len(x)
    i, j = system.stencil(stencil, lattice.a0_A).pairs(sim.positions0_A, sim.cell_A)
    have_cores = sim.cores_A is not None and np.isfinite(sim.burgers_A)
    core = (core_bonds(sim.positions0_A, sim.cell_A, i, j, sim.cores_A,
                       CORE_RADIUS_BURGERS * sim.burgers_A) if have_cores
            else np.zeros(len(i), bool))
    w = np.asarray(sim.positions_A) - r.positions_A
    line = np.array([0.0, 0.0, 1.0])  # every cell's dislocation lines run along z
    split = stencil_norm_split(w, i, j, core)
    far_line = stencil_norm_split(w * line, i, j, core).far_A
    cle_far = cle_far_line = float("nan")
    if (have_cores and elastic_eV_per_A3 is not None and system.cle_displacement is not None
            and np.isfinite(sim.size_a)):
        u_ml = system.cle_displacement(lattice.a0_A, sim.size_a, np.asarray(elastic_eV_per_A3))
        u_ref = system.cle_displacement(lattice.a0_A, sim.size_a,
                                        reference_elastic_constants(lattice))
        if np.shape(u_ml) != np.shape(sim.positions0_A):
            raise ValueError("system.cle_displacement does not give the simulation cell's atoms")
        cle_far = stencil_norm_split(u_ml - u_ref, i, j, core).far_A
        cle_far_line = stencil_norm_split((u_ml - u_ref) * line, i, j, core).far_A
    nan = float("nan")
    res = (residual_response(model, sim, sym, i, j, r.initial_forces_eV_per_A) if have_cores
           else (nan,) * 5)
    return DislocationPrediction(
        geometry_error_A=split.total_A,
        energy_error_eV=energy_error(sim.energy_eV, sim.energy_predictor_eV, r.energy_eV,
                                     e_pred_ml),
        formation_energy_error_eV=formation_energy_error(
            sim.energy_eV, lattice.bulk_energy_eV_per_atom, r.energy_eV, bulk_ml, len(sym)),
        relax_steps=r.n_steps, time_s=time.perf_counter() - t0,
        geometry_error_core_A=split.core_A if have_cores else nan,
        geometry_error_far_A=split.far_A if have_cores else nan,
        cle_far_field_error_A=cle_far, geometry_error_far_line_A=far_line if have_cores else nan,
        cle_far_field_error_line_A=cle_far_line, core_bonds=split.core_bonds, bonds=split.bonds,
        force_residual_core_eV_per_A=res[0], force_residual_far_eV_per_A=res[1],
        linear_response_error_A=res[2], linear_response_error_core_forces_A=res[3],
        linear_response_error_far_forces_A=res[4],
        energy_predictor_difference_eV=e_pred_ml - sim.energy_predictor_eV,
        energy_relaxed_difference_eV=r.energy_eV - sim.energy_eV)


#: Relative residual and iteration limit of the CG solves of :func:`residual_response`.
RESPONSE_RTOL = 1e-8
RESPONSE_MAXITER = 500


def _cores_of(cell) -> np.ndarray | None:
    """A training cell's straight-dislocation cores (k, 2), Å; None for cells without them."""
    cores = getattr(cell, "cores_A", None)
    return None if cores is None else np.asarray(cores, float)


def _core_atoms(positions_A: np.ndarray, cell_A: np.ndarray, cores_A: np.ndarray,
                burgers_A: float) -> np.ndarray:
    """Mask of the atoms within :data:`CORE_RADIUS_BURGERS` |b| of a core (cross-section)."""
    return core_atoms(positions_A, cell_A, cores_A, CORE_RADIUS_BURGERS * burgers_A)


def residual_response(model, sim: SimulationReference, symbols: list[str], i: np.ndarray,
                      j: np.ndarray, forces_eV_per_A: np.ndarray | None = None
                      ) -> tuple[float, float, float, float, float]:
    """The fitted ``model``'s forces at the reference equilibrium ȳ of ``sim`` and the
    displacement they cause to first order: (‖F_core‖, ‖F_far‖) in eV/Å (ℓ² over the core
    atoms, :func:`_core_atoms` of x₀, and over the others), then ‖D w‖ (Å) on the bonds
    (``i``, ``j``) of w = H_ref⁻¹ F for F, F_core and F_far, each less its net force (NaN
    without ``sim.precon``, or where CG on H_ref does not converge). ``forces_eV_per_A``: the
    model's forces at ȳ when already evaluated (a relaxation's first step), else they are
    evaluated here. See :class:`DislocationPrediction`."""
    if forces_eV_per_A is None:
        forces_eV_per_A = model.evaluate(sim.positions_A, sim.cell_A, symbols).forces_eV_per_A
    f = np.asarray(forces_eV_per_A, float)
    core = _core_atoms(sim.positions0_A, sim.cell_A, sim.cores_A, sim.burgers_A)
    f_core = np.where(core[:, None], f, 0.0)
    f_far = f - f_core
    norms = (float(np.linalg.norm(f_core)), float(np.linalg.norm(f_far)))
    if sim.precon is None:
        return norms + (float("nan"),) * 3
    none = np.zeros(len(i), bool)
    H = scipy.sparse.csr_matrix(sim.precon.hessian)
    M = scipy.sparse.linalg.LinearOperator(H.shape, matvec=sim.precon.solve, dtype=float)

    def response(force):
        # H itself, not the preconditioner's H + μI: the shift damps exactly the long-wavelength
        # modes a far-field force excites (μ is comparable to the lowest elastic eigenvalue of a
        # large cell). CG with (H + μI)⁻¹ as preconditioner converges in a few steps.
        # Less its net force: a uniform force only translates the cell (H's null space), and
        # the core and far parts of a force field of zero sum carry opposite net forces.
        b = (force - force.mean(axis=0)).ravel()
        if not np.any(b):
            return 0.0
        w, info = scipy.sparse.linalg.cg(H, b, rtol=RESPONSE_RTOL, maxiter=RESPONSE_MAXITER, M=M)
        if info != 0:  # an indefinite H (ȳ a saddle) or no convergence: no first-order answer
            return float("nan")
        return stencil_norm_split(w.reshape(force.shape), i, j, none).total_A

    return norms + (response(f), response(f_core), response(f_far))


def training_force_residual(model, reference, data: TrainingData
                            ) -> tuple[float, float]:
    """‖F_ML(ȳ_L) − F_ref(ȳ_L)‖ (eV/Å, ℓ² over the atoms of the relaxed training cell) and its
    part over the atoms within :data:`CORE_RADIUS_BURGERS` |b| of the training cell's cores
    (NaN when ``data`` records no cores).

    P2's force matching condition ε_F (eq. 3.10) is the largest such difference over the ball
    B_δ(ȳ_L), in the dual norm of U_L^per: this is its value at the ball's centre, in the ℓ²
    norm of the forces — a lower bound of ε_F up to the constant between the two norms, and
    extensive (it grows with the cell where a per-atom RMSE does not)."""
    sym = list(data.symbols) or None
    d = (np.asarray(model.evaluate(data.relaxed_A, data.cell_A, sym).forces_eV_per_A, float)
         - np.asarray(reference.evaluate(data.relaxed_A, data.cell_A, sym).forces_eV_per_A,
                      float))
    total = float(np.linalg.norm(d))
    if data.cores_A is None or not np.isfinite(data.burgers_A):
        return total, float("nan")
    core = _core_atoms(data.relaxed_A, data.cell_A, data.cores_A, data.burgers_A)
    return total, float(np.linalg.norm(d[core]))


#: The ½⟨111⟩ screw quadrupole in bcc W (P2 §4.2.1): the default system of every stage.
W_SCREW = DislocationSystem(name="w-screw", symbol=SYMBOL, perfect_cell=bcc_cubic_cell,
                            cell=_w_screw_cell, neighbour_cutoff=nearest_neighbour_cutoff,
                            a0_bracket_A=(2.5, 3.6), dipole_cell=_w_screw_dipole_cell,
                            cle_displacement=_w_screw_cle)
