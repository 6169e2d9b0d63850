"""The stages of one point-defect sweep point in the 2D triangular lattice (P1 §4.2.1).

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

Formation energies. The P1 training set holds one cell type (L × L sites, one defect, fixed atom
count), so its energies fix only the *sum* of the site energies of that cell: how the fitted model
splits it between bulk-like sites and defect-adjacent sites — i.e. the model's energy per atom of
the perfect crystal e_bulk and hence its defect formation energy — is not identifiable from those
observations (measured: with P1's sets alone the fitted e_bulk came out at −0.34 eV/atom instead of
−6.62, formation-energy errors 3–960 eV, while relaxation energies were right to 1e-3 eV). The
*energy error* of the papers (E measured from the unrelaxed x₀, V(0) = 0) does not need e_bulk,
but the formation-energy error (science.md: each model's energy relative to its own perfect crystal
with the same atom count) does. So :func:`training_data` also records the perfect L × L cell
(lattice spacing r0, its reference energy) and :func:`fit` adds its energy per atom as one extra
observation row with weight W_E (``weight_bulk_energy``; 0 reproduces P1's sets exactly, and then
the formation-energy error is meaningless). The perfect lattice's forces vanish by symmetry for
every model, so no force rows are added.

Units: Å, eV, eV/Å; L, N and L_D are integers in units of r0.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from .ace import ACEBasis, ACEModel, DesignRows
from .defects import point_defect_cell
from .equilibrium import triangular_equilibrium
from .errors import energy_error, formation_energy_error, geometry_error, rmse
from .force_constants import force_constant_error, force_constants
from .lattice import triangular_cell, triangular_sites
from .least_squares import solve_rrqr, weighted_system
from .hessian_precon_relax import HessianPreconditioner, relax_preconditioned, sparse_hessian
from .relax import relax

__all__ = ["RelaxOptions", "LatticeReference", "SimulationReference", "Observations",
           "TrainingData", "TrainingRows", "FitResult", "Prediction", "lattice_reference",
           "simulation_reference", "training_data", "design_rows", "fit", "predict",
           "SYMBOL", "FORCE_CONSTANT_CELL", "nearest_neighbour_cutoff", "model_lattice_errors"]

#: The planar lattice is made of one species; the reference is the W potential.
SYMBOL = "W"
#: Size (in r0) of the perfect cell on which force constants are compared.
FORCE_CONSTANT_CELL = 10
#: Cartesian components that carry information in the planar lattice (z rows are exactly zero).
PLANAR = 2
#: Optimiser name of the Hessian-preconditioned relaxation of fitted models.
HESSIAN_LBFGS = "hessian-lbfgs"


def nearest_neighbour_cutoff(r0_A: float) -> float:
    """Stencil radius (Å) between the first (r0) and second (√3 r0) shells of the lattice."""
    return 0.5 * (1.0 + np.sqrt(3.0)) * r0_A


@dataclass(frozen=True)
class RelaxOptions:
    """Relaxation settings: force tolerance (eV/Å), step limit, optimiser name.

    ``"hessian-lbfgs"`` relaxes the fitted models with :func:`kernels.hessian_precon_relax.
    relax_preconditioned` (the reference relaxations themselves use ``"lbfgs"``).
    """

    fmax_eV_per_A: float = 1e-6
    max_steps: int = 10_000
    optimizer: str = "lbfgs"


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
    bulk_energy_error_meV_per_atom is |ẽ_bulk − e_bulk| of the perfect lattice at r0.
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


@dataclass(frozen=True)
class Prediction:
    """Errors of the fitted model on the simulation cell: geometry (Å), energies (eV)."""

    geometry_error_A: float
    energy_error_eV: float
    formation_energy_error_eV: float
    relax_steps: int
    time_s: float


def lattice_reference(model) -> LatticeReference:
    """r0 minimising the triangular-lattice energy, the energy per atom there, and K_ref."""
    r0, e0 = triangular_equilibrium(model, symbol=SYMBOL)
    n = FORCE_CONSTANT_CELL
    pos = triangular_sites(n, r0)
    K = force_constants(model, pos, triangular_cell(n, r0), [SYMBOL] * len(pos), PLANAR)
    return LatticeReference(r0, e0, K)


def simulation_reference(model, r0_A: float, size: int, kinds: list[str], separation: int,
                         options: RelaxOptions) -> SimulationReference:
    """Build the N × N simulation cell with the given defects and relax it with the reference."""
    x0, cell, _ = point_defect_cell(size, r0_A, kinds, separation)
    symbols = [SYMBOL] * len(x0)
    e0 = model.evaluate(x0, cell, symbols).energy_eV
    r = relax(model, x0, cell, symbols, options.fmax_eV_per_A, options.max_steps,
              _reference_optimizer(options))
    precon = None
    if options.optimizer == HESSIAN_LBFGS:
        H = sparse_hessian(model, r.positions_A, cell, symbols, model.cutoff_A, PLANAR)
        precon = HessianPreconditioner(H)
    return SimulationReference(x0, r.positions_A, cell, e0, r.energy_eV, r.n_steps, precon)


def _reference_optimizer(options: RelaxOptions) -> str:
    return "lbfgs" if options.optimizer == HESSIAN_LBFGS else options.optimizer


def _rattled(model, relaxed_A, cell_A, n_configs: int, amplitude_A: float,
             seed: int) -> Observations:
    rng = np.random.default_rng(seed)
    n = len(relaxed_A)
    symbols = [SYMBOL] * n
    pos = np.repeat(relaxed_A[None], n_configs, axis=0)
    pos[:, :, :PLANAR] += amplitude_A * rng.standard_normal((n_configs, n, PLANAR))
    energy = np.empty(n_configs)
    forces = np.empty((n_configs, n, 3))
    for s in range(n_configs):
        r = model.evaluate(pos[s], cell_A, symbols)
        energy[s], forces[s] = r.energy_eV, r.forces_eV_per_A
    return Observations(pos, energy, forces)


def training_data(model, r0_A: float, size: int, kind: str, n_train: int, n_test: int,
                  amplitude_A: float, seed_train: int, seed_test: int,
                  options: RelaxOptions) -> TrainingData:
    """Relax an L × L cell with one defect, then rattle it into training and test sets.

    Every in-plane coordinate of every atom is displaced by an independent normal deviate of
    standard deviation ``amplitude_A`` (Å); the generators are seeded with the explicit seeds.
    The perfect L × L cell at spacing ``r0_A`` and its reference energy are recorded as
    :attr:`TrainingData.perfect` (see the module docstring: formation energies).
    """
    x0, cell, _ = point_defect_cell(size, r0_A, [kind], size)
    r = relax(model, x0, cell, [SYMBOL] * len(x0), options.fmax_eV_per_A, options.max_steps,
              _reference_optimizer(options))
    perfect = triangular_sites(size, r0_A)
    p = model.evaluate(perfect, cell, [SYMBOL] * len(perfect))
    return TrainingData(cell, r.positions_A,
                        _rattled(model, r.positions_A, cell, n_train, amplitude_A, seed_train),
                        _rattled(model, r.positions_A, cell, n_test, amplitude_A, seed_test),
                        Observations(perfect[None], np.array([p.energy_eV]),
                                     p.forces_eV_per_A[None]))


def design_rows(basis: ACEBasis, data: TrainingData) -> TrainingRows:
    """Energy and in-plane force rows of the training and test configurations (and the perfect
    cell's rows when ``data.perfect`` is present)."""
    t0 = time.perf_counter()
    symbols = [SYMBOL] * data.train.positions_A.shape[1]
    train = basis.design_rows(data.train.positions_A, data.cell_A, symbols, PLANAR)
    test = basis.design_rows(data.test.positions_A, data.cell_A, symbols, PLANAR)
    perfect = None
    if data.perfect is not None:
        n = data.perfect.positions_A.shape[1]
        perfect = basis.design_rows(data.perfect.positions_A, data.cell_A, [SYMBOL] * n, PLANAR)
    return TrainingRows(train, test, train.energy.shape[1], time.perf_counter() - t0, perfect)


def _energy_force_system(rows: DesignRows, obs: Observations, weight_energy: float,
                         weight_forces: float):
    n = rows.forces.shape[1]
    B = rows.energy.shape[1]
    return weighted_system([
        (rows.energy / n, obs.energy_eV / n, weight_energy),
        (rows.forces.reshape(-1, B), obs.forces_eV_per_A[:, :, :PLANAR].reshape(-1), weight_forces),
    ])


def fit(basis: ACEBasis, rows: TrainingRows, data: TrainingData, lattice: LatticeReference,
        weight_energy: float, weight_forces: float, rtol: float = 1e-6,
        weight_bulk_energy: float | None = None, scale_columns: bool = True) -> FitResult:
    """Weighted least-squares fit of energies (per atom) and in-plane forces.

    Minimises Σ_R W_E |E/n − Ẽ/n|² + W_F |F − F̃|² (P1 eq. 4.2, energies per atom) with the
    truncated rank-revealing QR of :func:`kernels.least_squares.solve_rrqr`, plus
    W_bulk |Ẽ_perfect/L² − E_perfect/L²|² for the perfect L × L cell when the rows carry it
    (``weight_bulk_energy``: None → W_E; 0 → no bulk row, P1's sets exactly). Without that row the
    model's bulk energy per atom, hence its formation energies, are not determined by the data.
    ``scale_columns`` normalises the design-matrix columns before the truncated QR (see
    :func:`kernels.least_squares.solve_rrqr`).
    """
    A, y = _energy_force_system(rows.train, data.train, weight_energy, weight_forces)
    w_bulk = weight_energy if weight_bulk_energy is None else weight_bulk_energy
    if w_bulk < 0:
        raise ValueError(f"weight_bulk_energy must be >= 0, got {weight_bulk_energy}")
    if w_bulk > 0 and rows.perfect is not None and data.perfect is not None:
        n_p = data.perfect.positions_A.shape[1]
        A_b, y_b = weighted_system([(rows.perfect.energy / n_p, data.perfect.energy_eV / n_p,
                                     w_bulk)])
        A, y = np.vstack([A, A_b]), np.concatenate([y, y_b])
    t0 = time.perf_counter()
    sol = solve_rrqr(A, y, rtol, scale_columns)
    fit_time = time.perf_counter() - t0
    c = sol.coeffs
    n = data.test.positions_A.shape[1]
    e_pred = rows.test.energy @ c
    f_pred = rows.test.forces @ c
    fc_error, bulk_error = model_lattice_errors(basis, c, lattice)
    return FitResult(
        coeffs=c, rank=sol.rank, n_basis=rows.n_basis, n_observations=int(A.shape[0]),
        rmse_energy_meV_per_atom=1e3 * rmse(e_pred / n, data.test.energy_eV / n),
        rmse_forces_eV_per_A=rmse(f_pred, data.test.forces_eV_per_A[:, :, :PLANAR]),
        force_constant_error_percent=fc_error, fit_time_s=fit_time,
        bulk_energy_error_meV_per_atom=bulk_error)


def model_lattice_errors(basis: ACEBasis, coeffs: np.ndarray,
                         lattice: LatticeReference) -> tuple[float, float]:
    """ε_FC_hom (%) and |ẽ_bulk − e_bulk| (meV/atom) of a fitted model on the perfect lattice."""
    model = ACEModel(basis, coeffs)
    nfc = FORCE_CONSTANT_CELL
    pos = triangular_sites(nfc, lattice.r0_A)
    cell = triangular_cell(nfc, lattice.r0_A)
    K = force_constants(model, pos, cell, [SYMBOL] * len(pos), PLANAR)
    bulk_ml = model.evaluate(pos, cell, [SYMBOL] * len(pos)).energy_eV / len(pos)
    return (force_constant_error(lattice.force_constants_eV_per_A2, K),
            1e3 * abs(bulk_ml - lattice.bulk_energy_eV_per_atom))


def predict(basis: ACEBasis, coeffs: np.ndarray, sim: SimulationReference,
            lattice: LatticeReference, options: RelaxOptions) -> Prediction:
    """Relax the simulation cell with the fitted model, starting from ū, and measure the errors.

    energy_error_eV is |E(ū) − Ẽ(ũ)| with each model's energy measured from its own value at the
    unrelaxed x₀ (the papers' V(0) = 0). formation_energy_error_eV is the error of
    E_tot − n·e_bulk, each model against its own perfect crystal with the same atom count n
    (e_bulk: the model's energy per atom of the perfect lattice at r0, on a
    FORCE_CONSTANT_CELL² cell); it is meaningful only for a fit that saw the bulk energy
    (``fit(..., weight_bulk_energy > 0)``, the default) — see the module docstring.
    """
    t0 = time.perf_counter()
    model = ACEModel(basis, coeffs)
    symbols = [SYMBOL] * len(sim.positions0_A)
    e0_ml = model.evaluate(sim.positions0_A, sim.cell_A, symbols).energy_eV
    if options.optimizer == HESSIAN_LBFGS:
        if sim.precon is None:
            raise ValueError("hessian-lbfgs needs the simulation reference's Hessian")
        r = relax_preconditioned(model, sim.positions_A, sim.cell_A, symbols, sim.precon,
                                 PLANAR, options.fmax_eV_per_A, options.max_steps)
    else:
        r = relax(model, sim.positions_A, sim.cell_A, symbols, options.fmax_eV_per_A,
                  options.max_steps, options.optimizer)
    n0 = FORCE_CONSTANT_CELL
    perfect = triangular_sites(n0, lattice.r0_A)
    bulk_ml = model.evaluate(perfect, triangular_cell(n0, lattice.r0_A),
                             [SYMBOL] * len(perfect)).energy_eV / len(perfect)
    return Prediction(
        geometry_error_A=geometry_error(sim.positions0_A, sim.positions_A, r.positions_A,
                                        sim.cell_A, nearest_neighbour_cutoff(lattice.r0_A)),
        energy_error_eV=energy_error(sim.energy_eV, sim.energy_x0_eV, r.energy_eV, e0_ml),
        formation_energy_error_eV=formation_energy_error(
            sim.energy_eV, lattice.bulk_energy_eV_per_atom, r.energy_eV, bulk_ml,
            len(sim.positions0_A)),
        relax_steps=r.n_steps, time_s=time.perf_counter() - t0)
