"""The stages of one point-defect sweep point (P1 §4.2): the 2D triangular lattice by default,
and any :class:`kernels.lattice.Crystal` (diamond Si: :data:`kernels.diamond.DIAMOND`) through the
``crystal`` argument of every stage — the same code in 2D and 3D.

Each function is a pure stage of the pipeline; the sweep layer maps them onto Dask tasks so
that one result serves many dependants:

1. :func:`lattice_reference` — r0, perfect-crystal energy and force constants of the reference.
2. :func:`simulation_reference` — the large cell (N × N sites, n_D defects at separation L_D),
   unrelaxed x₀ and relaxed ū with the reference model.
3. :func:`training_data` — the L × L training cell with one defect, relaxed with the reference
   (ȳ_L), and rattled training/test sets with reference energies and forces.
4. :func:`design_rows` — ACE energy/force rows of the training and test sets.
5. :func:`fit` — weighted least squares, test RMSEs, ε_FC_hom.
6. :func:`predict` — relax the simulation cell with the fitted model from ū, and the errors.

Loss conventions (named options of :func:`fit`, :func:`fit_union` and the ``[fit]`` table of a
spec; defaults as in the papers, see :mod:`kernels.least_squares`): ``energy_weighting`` — total
energies (P1 eq. 4.2 as written), energies per atom, or the papers' codes' E/√N
(:data:`kernels.least_squares.ENERGY_WEIGHTINGS`); ``weight_form`` — whether W multiplies the
squared residual (eq. 4.2) or the residual (the codes; :data:`kernels.least_squares.WEIGHT_FORMS`).
The test RMSEs are always those of the energy per atom (meV/atom) and of the force components.

Formation energies and the bulk-energy row. The P1 training set holds one cell type (L × L sites,
one defect, fixed atom count), so its energies fix only the *sum* of the site energies of that
cell: how the fitted model splits it between bulk-like sites and defect-adjacent sites — i.e. the
model's energy per atom of the perfect crystal e_bulk and hence its defect formation energy — is
not identifiable from those observations (measured: with P1's sets alone the fitted e_bulk came
out at −0.34 eV/atom instead of −6.62, formation-energy errors 3–960 eV, while relaxation
energies were right to 1e-3 eV). The *energy error* of the papers (E measured from the unrelaxed
x₀, V(0) = 0) does not need e_bulk, but the formation-energy error (science.md: each model's
energy relative to its own perfect crystal with the same atom count) does. So
:func:`training_data` also records the perfect L × L cell (lattice spacing r0, its reference
energy), and ``fit(..., weight_bulk_energy=...)`` can add its energy as one extra observation
row (weighted like the other energies, ``energy_weighting``). Neither P1 eq. (4.2) nor P2 eq.
(4.16) has that row, so it is off by default (``weight_bulk_energy = 0``; the spec option
``[fit] bulk_energy_row = true`` turns it on with weight W_E); without it the
formation-energy error is meaningless and the sweep stores NaN there. The row changes the fit
(measured, P1 geometry errors moved by −31 % to +12 % when it was removed). The perfect
lattice's forces vanish by symmetry for every model, so no force rows are added.

Units: Å, eV, eV/Å; L, N and L_D are integers in units of r0.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from .ace import ACEBasis, ACEModel, DesignRows
from .defects import point_defect_cell
from .equilibrium import lattice_equilibrium
from .errors import STENCILS, energy_error, formation_energy_error, geometry_error, rmse
from .force_constants import force_constant_error, force_constants
from .lattice import TRIANGULAR, Crystal
from .least_squares import (DEFAULT_ENERGY_WEIGHTING, DEFAULT_WEIGHT_FORM, energy_row_scale,
                            row_weight, solve_rrqr, weighted_system)
from .hessian_precon_relax import HessianPreconditioner, reference_hessian, relax_preconditioned
from .relax import relax
from .stable_relax import relax_to_minimum

__all__ = ["RelaxOptions", "LatticeReference", "SimulationReference", "Observations",
           "TrainingData", "TrainingRows", "FitResult", "Prediction", "TrainingComponent",
           "WeightedSystem", "lattice_reference", "simulation_reference", "training_data",
           "design_rows", "union_system", "fit", "fit_union", "predict",
           "SYMBOL", "FORCE_CONSTANT_CELL", "nearest_neighbour_cutoff", "model_lattice_errors"]

#: The planar lattice is made of one species; the reference is the W potential.
SYMBOL = TRIANGULAR.symbol
#: Size (in r0) of the perfect cell on which force constants are compared.
FORCE_CONSTANT_CELL = TRIANGULAR.force_constant_cell
#: Cartesian components that carry information in the planar lattice (z rows are exactly zero).
PLANAR = TRIANGULAR.dimension
#: Optimiser name of the Hessian-preconditioned relaxation of fitted models.
HESSIAN_LBFGS = "hessian-lbfgs"


def nearest_neighbour_cutoff(r0_A: float) -> float:
    """Stencil radius (Å) between the first (r0) and second (√3 r0) shells of the lattice."""
    return TRIANGULAR.neighbour_cutoff_A(r0_A)


@dataclass(frozen=True)
class RelaxOptions:
    """Relaxation settings: force tolerance (eV/Å), step limit, optimiser name.

    ``"hessian-lbfgs"`` relaxes the fitted models with :func:`kernels.hessian_precon_relax.
    relax_preconditioned` (the reference relaxations themselves use ``"lbfgs"``).
    """

    fmax_eV_per_A: float = 1e-6
    max_steps: int = 10_000
    optimizer: str = "lbfgs"
    #: :data:`REFERENCE_OPTIMIZERS`; see :func:`reference_optimizer`
    reference_optimizer: str = "auto"
    #: :data:`REFERENCE_MINIMA`: ``"stable"`` leaves saddles of the reference relaxations
    #: (:func:`relax_reference`)
    reference_minimum: str = "any"


@dataclass(frozen=True)
class LatticeReference:
    """Reference-model facts of the perfect lattice: r0 (Å), energy per atom (eV), K (eV/Å²)."""

    r0_A: float
    bulk_energy_eV_per_atom: float
    force_constants_eV_per_A2: np.ndarray


@dataclass(frozen=True)
class SimulationReference:
    """The simulation cell: x₀ and ū (Å), cell (Å), reference energies (eV).

    ``precon`` holds the reference Hessian at ū (in-plane coordinates, eV/Å²) as a
    :class:`kernels.hessian_precon_relax.HessianPreconditioner` when the relaxation options ask
    for ``"hessian-lbfgs"``: every fit's relaxation of this cell then starts from ū with it.
    """

    positions0_A: np.ndarray
    positions_A: np.ndarray
    cell_A: np.ndarray
    energy_x0_eV: float
    energy_eV: float
    relax_steps: int
    precon: object = None


@dataclass(frozen=True)
class Observations:
    """Configurations (S, n, 3) in Å with total energies (S,) in eV and forces (S, n, 3) in eV/Å."""

    positions_A: np.ndarray
    energy_eV: np.ndarray
    forces_eV_per_A: np.ndarray


@dataclass(frozen=True)
class TrainingData:
    """The relaxed training cell ȳ_L and its rattled training and test sets.

    ``perfect`` is the perfect L × L cell at spacing r0 (one configuration, same cell as the
    training cell): the bulk-energy observation that makes formation energies identifiable.
    """

    cell_A: np.ndarray
    relaxed_A: np.ndarray
    train: Observations
    test: Observations
    perfect: Observations | None = None


@dataclass(frozen=True)
class TrainingRows:
    """ACE rows of the training and test sets, the realised basis size and the build time (s).

    ``perfect`` holds the rows of :attr:`TrainingData.perfect` when the data carry it.
    """

    train: DesignRows
    test: DesignRows
    n_basis: int
    time_s: float
    perfect: DesignRows | None = None


@dataclass(frozen=True)
class FitResult:
    """Fitted coefficients and fit-quality figures.

    rmse_energy_meV_per_atom and rmse_forces_eV_per_A are test-set RMSEs;
    force_constant_error_percent is ε_FC_hom; fit_time_s the solve time;
    bulk_energy_error_meV_per_atom is |ẽ_bulk − e_bulk| of the perfect lattice at r0;
    bulk_energy_observed says whether the fit had the perfect cell's energy row (without it the
    model's e_bulk, hence its formation energies, are not determined by the data);
    the ``*_by_component`` tuples are the test RMSEs of each component of a union training set
    (:func:`fit_union`), in the components' order.
    """

    coeffs: np.ndarray
    rank: int
    n_basis: int
    n_observations: int
    rmse_energy_meV_per_atom: float
    rmse_forces_eV_per_A: float
    force_constant_error_percent: float
    fit_time_s: float
    bulk_energy_error_meV_per_atom: float = float("nan")
    rmse_energy_by_component_meV_per_atom: tuple = ()
    rmse_forces_by_component_eV_per_A: tuple = ()
    bulk_energy_observed: bool = False


@dataclass(frozen=True)
class Prediction:
    """Errors of the fitted model on the simulation cell: geometry (Å), energies (eV)."""

    geometry_error_A: float
    energy_error_eV: float
    formation_energy_error_eV: float
    relax_steps: int
    time_s: float


def lattice_reference(model, crystal: Crystal = TRIANGULAR) -> LatticeReference:
    """Lattice parameter minimising the crystal's energy (r0 of the triangular lattice, a of
    diamond; stored as ``r0_A``), the energy per atom there, and K_ref."""
    r0, e0 = lattice_equilibrium(model, crystal)
    n = crystal.force_constant_cell
    pos = crystal.sites(n, r0)
    K = force_constants(model, pos, crystal.cell(n, r0), [crystal.symbol] * len(pos),
                        crystal.dimension)
    return LatticeReference(r0, e0, K)


def simulation_reference(model, r0_A: float, size: int, kinds: list[str], separation: int,
                         options: RelaxOptions, crystal: Crystal = TRIANGULAR
                         ) -> SimulationReference:
    """Build the simulation cell (N × N sites; N³ cubic cells in 3D) with the given defects and
    relax it with the reference."""
    x0, cell, _ = point_defect_cell(size, r0_A, kinds, separation, crystal)
    symbols = [crystal.symbol] * len(x0)
    e0 = model.evaluate(x0, cell, symbols).energy_eV
    r = relax_reference(model, x0, cell, symbols, options, crystal.dimension)
    precon = reference_preconditioner(model, r.positions_A, cell, symbols, crystal.dimension,
                                      options, r.hessian_eV_per_A2)
    return SimulationReference(x0, r.positions_A, cell, e0, r.energy_eV, r.n_steps, precon)


#: Optimisers of the reference relaxations (:attr:`RelaxOptions.reference_optimizer`).
REFERENCE_OPTIMIZERS = ("auto", "lbfgs", "precon-lbfgs", "fire")
#: What a reference relaxation must end at (:attr:`RelaxOptions.reference_minimum`): ``"any"``
#: wherever the forces vanish; ``"stable"`` a state whose Hessian has no negative eigenvalue
#: (:func:`kernels.stable_relax.relax_to_minimum`).
REFERENCE_MINIMA = ("any", "stable")


def relax_reference(model, positions_A: np.ndarray, cell_A: np.ndarray, symbols: list[str],
                    options: RelaxOptions, components: int = 3):
    """Relax a reference cell (ū_L, ū, ȳ_L, ȳ) with :func:`reference_optimizer` (Å, eV), to a
    stable minimum when ``options.reference_minimum`` is ``"stable"``."""
    if options.reference_minimum == "stable":
        return relax_to_minimum(model, positions_A, cell_A, symbols, options.fmax_eV_per_A,
                                options.max_steps, reference_optimizer(options), components)
    return relax(model, positions_A, cell_A, symbols, options.fmax_eV_per_A, options.max_steps,
                 reference_optimizer(options))


def reference_optimizer(options: RelaxOptions) -> str:
    """The optimiser of the reference relaxations: ``options.reference_optimizer`` unless it is
    ``"auto"``; then ``options.optimizer``, except that ``"hessian-lbfgs"`` (which needs the
    reference Hessian at the minimum it is looking for) relaxes the reference cells with ase's
    ``"lbfgs"``.

    So ū (and P2's ȳ_L, ȳ) are those of an ``"lbfgs"`` spec bit for bit. (ase's
    ``"precon-lbfgs"`` was 4× faster on the 1584-atom W screw quadrupole, but it relaxed the
    L = 14 a0 W training cell to another minimum at the same tolerance: the fits' geometry
    errors changed from 0.049 to 0.18 Å.)"""
    if options.reference_optimizer != "auto":
        return options.reference_optimizer
    return "lbfgs" if options.optimizer == HESSIAN_LBFGS else options.optimizer


def reference_preconditioner(model, relaxed_A: np.ndarray, cell_A: np.ndarray,
                             symbols: list[str], components: int, options: RelaxOptions,
                             hessian=None) -> HessianPreconditioner | None:
    """The reference Hessian at the relaxed simulation cell (eV/Å², first ``components``
    coordinates of each atom) when ``options`` ask for ``"hessian-lbfgs"``, else None.
    ``hessian``: that Hessian when the relaxation already took it (a stable minimum's test)."""
    if options.optimizer != HESSIAN_LBFGS:
        return None
    if hessian is None:
        hessian = reference_hessian(model, relaxed_A, cell_A, symbols, components)
    return HessianPreconditioner(hessian,
                                 positions_A=np.array(relaxed_A, float),
                                 cell_A=np.array(cell_A, float))


def relax_fitted(model, start_A: np.ndarray, cell_A: np.ndarray, symbols: list[str],
                 precon: HessianPreconditioner | None, components: int,
                 options: RelaxOptions):
    """Relax a fitted model's simulation cell from the reference equilibrium ``start_A`` (Å):
    preconditioned with ``precon`` for ``"hessian-lbfgs"``, else with ``options.optimizer``."""
    if options.optimizer == HESSIAN_LBFGS:
        if precon is None:
            raise ValueError("hessian-lbfgs needs the simulation reference's Hessian")
        return relax_preconditioned(model, start_A, cell_A, symbols, precon, components,
                                    options.fmax_eV_per_A, options.max_steps)
    return relax(model, start_A, cell_A, symbols, options.fmax_eV_per_A, options.max_steps,
                 options.optimizer)


def _rattled(model, relaxed_A, cell_A, n_configs: int, amplitude_A: float,
             seed: int, crystal: Crystal = TRIANGULAR) -> Observations:
    rng = np.random.default_rng(seed)
    n = len(relaxed_A)
    symbols = [crystal.symbol] * n
    d = crystal.dimension
    pos = np.repeat(relaxed_A[None], n_configs, axis=0)
    pos[:, :, :d] += amplitude_A * rng.standard_normal((n_configs, n, d))
    energy = np.empty(n_configs)
    forces = np.empty((n_configs, n, 3))
    for s in range(n_configs):
        r = model.evaluate(pos[s], cell_A, symbols)
        energy[s], forces[s] = r.energy_eV, r.forces_eV_per_A
    return Observations(pos, energy, forces)


def training_data(model, r0_A: float, size: int, kind: str, n_train: int, n_test: int,
                  amplitude_A: float, seed_train: int, seed_test: int,
                  options: RelaxOptions, crystal: Crystal = TRIANGULAR) -> TrainingData:
    """Relax an L-cell supercell (L × L sites; L³ cubic cells in 3D) with one defect, then rattle
    it into training and test sets.

    Every coordinate that carries information (in-plane in 2D, all three in 3D) of every atom is
    displaced by an independent normal deviate of standard deviation ``amplitude_A`` (Å); the
    generators are seeded with the explicit seeds. The perfect cell at lattice parameter
    ``r0_A`` and its reference energy are recorded as :attr:`TrainingData.perfect` (see the
    module docstring: formation energies).
    """
    x0, cell, _ = point_defect_cell(size, r0_A, [kind], size, crystal)
    sym = crystal.symbol
    r = relax_reference(model, x0, cell, [sym] * len(x0), options, crystal.dimension)
    perfect = crystal.sites(size, r0_A)
    p = model.evaluate(perfect, cell, [sym] * len(perfect))
    return TrainingData(cell, r.positions_A,
                        _rattled(model, r.positions_A, cell, n_train, amplitude_A, seed_train,
                                 crystal),
                        _rattled(model, r.positions_A, cell, n_test, amplitude_A, seed_test,
                                 crystal),
                        Observations(perfect[None], np.array([p.energy_eV]),
                                     p.forces_eV_per_A[None]))


def design_rows(basis: ACEBasis, data: TrainingData,
                crystal: Crystal = TRIANGULAR) -> TrainingRows:
    """Energy and force rows (the crystal's ``dimension`` components: in-plane in 2D) of the
    training and test configurations (and the perfect cell's rows when ``data.perfect`` is
    present)."""
    t0 = time.perf_counter()
    sym, d = crystal.symbol, crystal.dimension
    symbols = [sym] * data.train.positions_A.shape[1]
    train = basis.design_rows(data.train.positions_A, data.cell_A, symbols, d)
    test = basis.design_rows(data.test.positions_A, data.cell_A, symbols, d)
    perfect = None
    if data.perfect is not None:
        n = data.perfect.positions_A.shape[1]
        perfect = basis.design_rows(data.perfect.positions_A, data.cell_A, [sym] * n, d)
    return TrainingRows(train, test, train.energy.shape[1], time.perf_counter() - t0, perfect)


@dataclass(frozen=True)
class TrainingComponent:
    """One defect training cell of a (union) training set, with its own loss weights.

    A training set may be the union of several defect cells (P1 §4.2.1, interstitial + vacancy:
    W_E^int 100, W_F^int 10, W_E^vac 10, W_F^vac 1); each contributes its own rows, weighted by its
    own W_E (energies, as ``energy_weighting`` says) and W_F (force components, eV/Å), to one
    least-squares system.

    Attributes
    ----------
    name : str
        Label of the component (e.g. the defect kind), used for the per-component RMSEs.
    rows : TrainingRows
        ACE rows of the component's training/test sets (:func:`design_rows`).
    data : TrainingData
        The component's reference observations (:func:`training_data`).
    weight_energy, weight_forces : float
        W_E and W_F of this component's rows.
    """

    name: str
    rows: TrainingRows
    data: TrainingData
    weight_energy: float
    weight_forces: float


@dataclass(frozen=True)
class WeightedSystem:
    """The stacked weighted least-squares system of a union training set.

    ``owner[k]`` is the index of the component that row k belongs to (its energy, force and
    perfect-cell rows); ``A`` and ``y`` are the rows already multiplied by √W.
    """

    A: np.ndarray
    y: np.ndarray
    owner: np.ndarray


def _energy_force_system(rows: DesignRows, obs: Observations, weight_energy: float,
                         weight_forces: float, components: int = PLANAR,
                         energy_weighting: str = DEFAULT_ENERGY_WEIGHTING,
                         weight_form: str = DEFAULT_WEIGHT_FORM):
    """The weighted energy rows (scaled by :func:`kernels.least_squares.energy_row_scale`) and
    force rows of one set of configurations."""
    n = rows.forces.shape[1]
    B = rows.energy.shape[1]
    s = energy_row_scale(n, energy_weighting)
    return weighted_system([
        (rows.energy * s, obs.energy_eV * s, row_weight(weight_energy, weight_form)),
        (rows.forces.reshape(-1, B), obs.forces_eV_per_A[:, :, :components].reshape(-1),
         row_weight(weight_forces, weight_form)),
    ])


def union_system(components: list[TrainingComponent], weight_bulk_energy: float | None = 0.0,
                 energy_weighting: str = DEFAULT_ENERGY_WEIGHTING,
                 weight_form: str = DEFAULT_WEIGHT_FORM) -> WeightedSystem:
    """Stack the weighted rows of every component into one system (P1 eq. 4.2 summed over cells).

    Row order: for each component in turn its energy rows (weight W_E, scaled as
    ``energy_weighting`` says: total energies, per atom or E/√N,
    :func:`kernels.least_squares.energy_row_scale`) and its force rows (weight W_F); then, for
    each component whose data carry the perfect cell, one perfect-cell energy row, scaled the
    same way, with weight ``weight_bulk_energy`` (0, the default → no bulk rows, the papers'
    loss; None → that component's W_E). A component's weights therefore scale its own rows and
    nothing else. ``weight_form``: whether each weight multiplies the squared residual (rows
    × √W, the papers' equations) or the residual (rows × W, the papers' codes;
    :func:`kernels.least_squares.row_weight`).
    """
    if not components:
        raise ValueError("a training set needs at least one component")
    if weight_bulk_energy is not None and weight_bulk_energy < 0:
        raise ValueError(f"weight_bulk_energy must be >= 0, got {weight_bulk_energy}")
    blocks, owner = [], []
    for k, c in enumerate(components):
        if c.weight_energy < 0 or c.weight_forces < 0:
            raise ValueError(f"weights of component {c.name!r} must be >= 0")
        A, y = _energy_force_system(c.rows.train, c.data.train, c.weight_energy, c.weight_forces,
                                    c.rows.train.forces.shape[2], energy_weighting, weight_form)
        blocks.append((A, y))
        owner.append(np.full(len(y), k))
    for k, c in enumerate(components):
        w_bulk = c.weight_energy if weight_bulk_energy is None else weight_bulk_energy
        if w_bulk > 0 and c.rows.perfect is not None and c.data.perfect is not None:
            s = energy_row_scale(c.data.perfect.positions_A.shape[1], energy_weighting)
            blocks.append(weighted_system([(c.rows.perfect.energy * s,
                                            c.data.perfect.energy_eV * s,
                                            row_weight(w_bulk, weight_form))]))
            owner.append(np.full(1, k))
    return WeightedSystem(np.vstack([a for a, _ in blocks]),
                          np.concatenate([b for _, b in blocks]), np.concatenate(owner))


def fit(basis: ACEBasis, rows: TrainingRows, data: TrainingData, lattice: LatticeReference,
        weight_energy: float, weight_forces: float, rtol: float = 1e-6,
        weight_bulk_energy: float | None = 0.0, scale_columns: bool = True,
        crystal: Crystal = TRIANGULAR, energy_weighting: str = DEFAULT_ENERGY_WEIGHTING,
        weight_form: str = DEFAULT_WEIGHT_FORM) -> FitResult:
    """Weighted least-squares fit of energies and in-plane forces of one training cell.

    Minimises Σ_R W_E |s_N (E − Ẽ)|² + W_F |F − F̃|² (P1 eq. 4.2) with the truncated
    rank-revealing QR of :func:`kernels.least_squares.solve_rrqr`; s_N is 1, 1/N or 1/√N for
    ``energy_weighting`` ``"total"`` (eq. 4.2 as written), ``"per-atom"``, ``"sqrt-n"`` (the
    papers' codes; :data:`kernels.least_squares.ENERGY_WEIGHTINGS`), and with ``weight_form =
    "residual"`` the weights multiply the residuals instead (W_E², W_F² in the sum above).
    ``weight_bulk_energy`` > 0 adds W_bulk |s_N (E_perfect − Ẽ_perfect)|² for the perfect L × L
    cell when the rows carry it (None → W_E; 0, the default → no bulk row, P1's loss). Without
    that row the model's bulk energy per atom, hence its formation energies, are not determined
    by the data (module docstring). ``scale_columns`` normalises the design-matrix columns
    before the truncated QR (see :func:`kernels.least_squares.solve_rrqr`). The one-component
    case of :func:`fit_union`.
    """
    return fit_union(basis, [TrainingComponent("training", rows, data, weight_energy,
                                               weight_forces)],
                     lattice, rtol, weight_bulk_energy, scale_columns, crystal,
                     energy_weighting, weight_form)


def fit_union(basis: ACEBasis, components: list[TrainingComponent], lattice: LatticeReference,
              rtol: float = 1e-6, weight_bulk_energy: float | None = 0.0,
              scale_columns: bool = True, crystal: Crystal = TRIANGULAR,
              energy_weighting: str = DEFAULT_ENERGY_WEIGHTING,
              weight_form: str = DEFAULT_WEIGHT_FORM) -> FitResult:
    """One weighted least-squares fit on the union of several defect training cells.

    The system is :func:`union_system`; see :func:`fit` for the loss, its conventions and the
    bulk-energy rows. Test RMSEs are reported pooled over every component's test set (energies
    per atom, meV/atom, whatever ``energy_weighting``; force components, eV/Å) and per component
    (:attr:`FitResult.rmse_energy_by_component_meV_per_atom`,
    :attr:`FitResult.rmse_forces_by_component_eV_per_A`, in the order of ``components``).
    """
    system = union_system(components, weight_bulk_energy, energy_weighting, weight_form)
    t0 = time.perf_counter()
    sol = solve_rrqr(system.A, system.y, rtol, scale_columns)
    fit_time = time.perf_counter() - t0
    c = sol.coeffs
    e_err, f_err, e_rmse, f_rmse = [], [], [], []
    for comp in components:
        n = comp.data.test.positions_A.shape[1]
        k = comp.rows.test.forces.shape[2]
        de = (comp.rows.test.energy @ c) / n - comp.data.test.energy_eV / n
        df = (comp.rows.test.forces @ c - comp.data.test.forces_eV_per_A[:, :, :k]).ravel()
        e_err.append(de)
        f_err.append(df)
        e_rmse.append(1e3 * rmse(de, 0.0))
        f_rmse.append(rmse(df, 0.0))
    fc_error, bulk_error = model_lattice_errors(basis, c, lattice, crystal)
    n_bulk_rows = len(system.y) - sum(
        comp.data.train.energy_eV.size + comp.rows.train.forces[..., 0].size
        for comp in components)
    return FitResult(
        coeffs=c, rank=sol.rank, n_basis=components[0].rows.n_basis,
        n_observations=int(system.A.shape[0]),
        rmse_energy_meV_per_atom=1e3 * rmse(np.concatenate(e_err), 0.0),
        rmse_forces_eV_per_A=rmse(np.concatenate(f_err), 0.0),
        force_constant_error_percent=fc_error, fit_time_s=fit_time,
        bulk_energy_error_meV_per_atom=bulk_error,
        rmse_energy_by_component_meV_per_atom=tuple(e_rmse),
        rmse_forces_by_component_eV_per_A=tuple(f_rmse),
        bulk_energy_observed=n_bulk_rows > 0)


def model_lattice_errors(basis: ACEBasis, coeffs: np.ndarray, lattice: LatticeReference,
                         crystal: Crystal = TRIANGULAR) -> tuple[float, float]:
    """ε_FC_hom (%) and |ẽ_bulk − e_bulk| (meV/atom) of a fitted model on the perfect lattice."""
    model = ACEModel(basis, coeffs)
    nfc = crystal.force_constant_cell
    pos = crystal.sites(nfc, lattice.r0_A)
    cell = crystal.cell(nfc, lattice.r0_A)
    symbols = [crystal.symbol] * len(pos)
    K = force_constants(model, pos, cell, symbols, crystal.dimension)
    bulk_ml = model.evaluate(pos, cell, symbols).energy_eV / len(pos)
    return (force_constant_error(lattice.force_constants_eV_per_A2, K),
            1e3 * abs(bulk_ml - lattice.bulk_energy_eV_per_atom))


def predict(basis: ACEBasis, coeffs: np.ndarray, sim: SimulationReference,
            lattice: LatticeReference, options: RelaxOptions,
            crystal: Crystal = TRIANGULAR, stencil: str = STENCILS[0]) -> Prediction:
    """Relax the simulation cell with the fitted model, starting from ū, and measure the errors.

    geometry_error_A uses the stencil N(ℓ) of x₀ in the reading ``stencil``
    (:data:`kernels.errors.STENCILS`; default ``"voronoi"``, P1 eq. 6.3 as written).

    energy_error_eV is |E(ū) − Ẽ(ũ)| with each model's energy measured from its own value at the
    unrelaxed x₀ (the papers' V(0) = 0). formation_energy_error_eV is the error of
    E_tot − n·e_bulk, each model against its own perfect crystal with the same atom count n
    (e_bulk: the model's energy per atom of the perfect lattice at r0, on a
    FORCE_CONSTANT_CELL² cell); it is meaningful only for a fit that saw the bulk energy
    (``fit(..., weight_bulk_energy > 0)``, :attr:`FitResult.bulk_energy_observed`; not the
    papers' loss, hence not the default) — see the module docstring.
    """
    t0 = time.perf_counter()
    model = ACEModel(basis, coeffs)
    symbols = [crystal.symbol] * len(sim.positions0_A)
    e0_ml = model.evaluate(sim.positions0_A, sim.cell_A, symbols).energy_eV
    r = relax_fitted(model, sim.positions_A, sim.cell_A, symbols, sim.precon, crystal.dimension,
                     options)
    n0 = crystal.force_constant_cell
    perfect = crystal.sites(n0, lattice.r0_A)
    bulk_ml = model.evaluate(perfect, crystal.cell(n0, lattice.r0_A),
                             [crystal.symbol] * len(perfect)).energy_eV / len(perfect)
    return Prediction(
        geometry_error_A=geometry_error(sim.positions0_A, sim.positions_A, r.positions_A,
                                        sim.cell_A, crystal.stencil(stencil, lattice.r0_A)),
        energy_error_eV=energy_error(sim.energy_eV, sim.energy_x0_eV, r.energy_eV, e0_ml),
        formation_energy_error_eV=formation_energy_error(
            sim.energy_eV, lattice.bulk_energy_eV_per_atom, r.energy_eV, bulk_ml,
            len(sim.positions0_A)),
        relax_steps=r.n_steps, time_s=time.perf_counter() - t0)
