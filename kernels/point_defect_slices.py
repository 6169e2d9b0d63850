"""Every fit of one (defect, L) slice — basis sizes × weight sets × observation sets — from one
pass over the training data.

:func:`slice_factors` builds the design rows of the *largest* basis once (chain-rule rows,
:mod:`kernels.ace_gradients`), with its columns in the nested order of
:mod:`kernels.nested_basis` (every smaller basis is a prefix), and reduces each observation block
to an R factor of its augmented rows [A | y] (:mod:`kernels.tsqr`, streamed over chunks of
configurations so the full design matrix never sits in memory):

=============  =========================================================  ==============
block          rows                                                       weight
=============  =========================================================  ==============
``energy``     s_n E per training configuration (eV per coefficient)      W_E
``forces``     in-plane force components (eV/Å per coefficient)           W_F
``bulk``       s_n E of the perfect L × L cell                            W_bulk
=============  =========================================================  ==============

where s_n = 1, 1/n or 1/√n is the ``energy_weighting`` of the fits
(:func:`kernels.least_squares.energy_row_scale`): it scales each configuration's rows by its own
atom count, so it is applied when the rows are built, before they are folded into a factor (the
factors then serve the fits of that convention only). The test set's ``energy`` (always E/n: the
RMSE is per atom) and ``forces`` blocks likewise. :func:`fit_from_factors` then solves
one (basis size, weights, observation set) with the same truncated rank-revealing QR as
:func:`kernels.point_defects.fit` on the stacked √W-scaled leading blocks (size ≈ n_basis), and
takes the test RMSEs from the test factors (‖A c − y‖² = ‖R [c; −1]‖²). Same least-squares
problems as the straightforward path, hence the same coefficients and RMSEs to rounding
(tests/test_kernels_point_defect_slices.py).

Units: Å, eV, eV/Å; RMSEs in meV/atom and eV/Å as in :class:`kernels.point_defects.FitResult`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from . import point_defects as pdk
from .ace import ACEBasis, truncation_rank
from .least_squares import (DEFAULT_ENERGY_WEIGHTING, DEFAULT_WEIGHT_FORM, energy_row_scale,
                            row_weight, solve_rrqr, solve_rrqr_reduced)
from .nested_basis import NestedColumns, nested_columns
from .tsqr import StreamingR, fold_rows, residual_norm2

__all__ = ["SliceFactors", "slice_factors", "fit_from_factors", "OBSERVATION_SETS"]

#: Observation-set labels → training blocks they use (the bulk row follows its weight).
OBSERVATION_SETS = {"E+F": ("energy", "forces"), "E": ("energy",), "F": ("forces",)}


@dataclass(frozen=True)
class SliceFactors:
    """R factors of one training cell's observation blocks in the largest basis (picklable).

    Attributes
    ----------
    factored : frozenset of str
        Training blocks held as upper-trapezoidal R factors (the others are their own rows).
    nested : NestedColumns
        Column order of the factors (last column: y) and each basis's place in it.
    train, test : dict of str → ndarray
        Factor of each block (``energy``, ``forces``, and ``bulk`` in ``train``), columns in
        nested order plus y.
    rows : dict of str → int
        Number of observation rows of each training block.
    n_test_energy, n_test_forces : int
        Number of test energies and of test force components (RMSE denominators).
    time_s : float
        Wall time of the pass (rows and factors), s.
    time_rows_s : float
        Part of it spent on design rows, s.
    energy_weighting : str
        How the training energy rows were scaled (:data:`kernels.least_squares.ENERGY_WEIGHTINGS`).
    """

    nested: NestedColumns
    train: dict
    test: dict
    rows: dict
    n_test_energy: int
    n_test_forces: int
    time_s: float
    time_rows_s: float = 0.0
    factored: frozenset = field(default_factory=frozenset)
    energy_weighting: str = DEFAULT_ENERGY_WEIGHTING

    @property
    def n_columns(self) -> int:
        """Columns of the largest basis."""
        return len(self.nested.order)


def _blocks(basis: ACEBasis, order: np.ndarray, obs: pdk.Observations, configs: range,
            cell_A, chunk_configs: int, energy: StreamingR, forces: StreamingR,
            energy_weighting: str) -> float:
    """Fold the rows of the configurations ``configs`` into the energy factor (rows scaled as
    ``energy_weighting`` says) and the force factor; returns the time spent on rows (s)."""
    n = obs.positions_A.shape[1]
    k = pdk.PLANAR
    scale = energy_row_scale(n, energy_weighting)
    t_rows = 0.0
    for s0 in range(configs.start, configs.stop, chunk_configs):
        sl = slice(s0, min(configs.stop, s0 + chunk_configs))
        t0 = time.perf_counter()
        r = basis.design_rows(obs.positions_A[sl], cell_A, [pdk.SYMBOL] * n, k)
        t_rows += time.perf_counter() - t0
        E = np.column_stack([r.energy[:, order] * scale, obs.energy_eV[sl] * scale])
        m = r.forces.shape[0] * n * k
        F = np.empty((m, len(order) + 1), order="F")  # dtpqrt's order: folded without a copy
        np.take(r.forces.reshape(m, -1), order, axis=1, out=F[:, :-1])
        F[:, -1] = obs.forces_eV_per_A[sl, :, :k].reshape(m)
        del r
        energy.add(E)
        forces.add(F)
    return t_rows


def _split(n_items: int, n_parts: int) -> list[range]:
    """Contiguous, near-equal ranges of ``range(n_items)`` (empty ones dropped)."""
    edges = np.linspace(0, n_items, n_parts + 1).round().astype(int)
    return [range(a, b) for a, b in zip(edges[:-1], edges[1:]) if b > a]


def slice_factors(bases: list[ACEBasis], data: pdk.TrainingData,
                  max_chunk_bytes: float = 256e6, n_workers: int = 1,
                  energy_weighting: str = DEFAULT_ENERGY_WEIGHTING) -> SliceFactors:
    """One pass over a training cell's data in the largest of nested bases.

    Parameters
    ----------
    bases : list of ACEBasis
        Truncations of one superset, smallest first; rows are computed in the last (largest).
    data : TrainingData
        Training and test sets (and the perfect cell) of one (defect, L).
    max_chunk_bytes : float
        Upper bound on the memory of the chunks of design rows held at once (all workers
        together), bytes (the factors themselves take ≈ 4 (n_basis + 1)² × 8 bytes per worker).
    n_workers : int
        Threads, each building the rows and factors of a contiguous share of the
        configurations (the rows kernel and LAPACK run without the GIL); their factors are then
        merged. 1 (the default, as in the sweep's one-thread workers) is the plain pass. The
        factors of different ``n_workers`` differ by rounding only (the order of the
        Householder reflections); for a given ``n_workers`` they are reproducible.
    energy_weighting : str
        Scaling of the training and bulk energy rows (:data:`kernels.least_squares.
        ENERGY_WEIGHTINGS`); the test energies are per atom whatever it is.
    """
    t0 = time.perf_counter()
    energy_row_scale(1, energy_weighting)  # refuse an unknown convention before the pass
    n_workers = int(n_workers)
    if n_workers < 1:
        raise ValueError(f"n_workers must be >= 1, got {n_workers}")
    nested = nested_columns([b.function_keys() for b in bases], truncation_rank)
    big = bases[-1]
    big.n_functions  # build the pyace objects once, before any thread uses them
    if n_workers > 1:
        # threads need the chain-rule rows (pyace's calculator is shared and holds state):
        # build their tables now
        big._tables()
    order = nested.order
    ncol = len(order) + 1
    n = data.train.positions_A.shape[1]
    per_config = n * pdk.PLANAR * ncol * 8.0
    chunk = max(1, int(max_chunk_bytes / n_workers // per_config))
    # test blocks serve residuals only: kept as rows while they fit in one chunk (no QR)
    keep = int(max_chunk_bytes // (ncol * 8.0))
    S_train = data.train.positions_A.shape[0]
    S_test = data.test.positions_A.shape[0]
    shares = list(zip(_split(S_train, n_workers), _split(S_test, n_workers)))

    def work(share):
        tr, te = share
        train = {"energy": StreamingR(ncol), "forces": StreamingR(ncol)}
        test = {"energy": StreamingR(ncol, keep // n_workers),
                "forces": StreamingR(ncol, keep // n_workers)}
        t = _blocks(big, order, data.train, tr, data.cell_A, chunk, train["energy"],
                    train["forces"], energy_weighting)
        t += _blocks(big, order, data.test, te, data.cell_A, chunk, test["energy"],
                     test["forces"], "per-atom")
        return train, test, t

    if n_workers == 1 or len(shares) == 1:
        parts = [work(share) for share in shares]
    else:
        from concurrent.futures import ThreadPoolExecutor  # noqa: PLC0415

        with ThreadPoolExecutor(len(shares)) as pool:
            parts = list(pool.map(work, shares))
    train, test, t_rows = parts[0]
    for other_train, other_test, t in parts[1:]:
        for name in train:
            train[name].merge(other_train[name])
        for name in test:
            test[name].keep_rows = keep
            test[name].merge(other_test[name])
        t_rows += t
    factors = {name: f.R for name, f in train.items()}
    factored = frozenset(name for name, f in train.items() if f.is_factored)
    rows = {name: f.n_rows for name, f in train.items()}
    if data.perfect is not None:
        n_p = data.perfect.positions_A.shape[1]
        t1 = time.perf_counter()
        r = big.design_rows(data.perfect.positions_A, data.cell_A, [pdk.SYMBOL] * n_p,
                            pdk.PLANAR)
        t_rows += time.perf_counter() - t1
        s_p = energy_row_scale(n_p, energy_weighting)
        factors["bulk"] = np.column_stack([r.energy[:, order] * s_p,
                                           data.perfect.energy_eV * s_p])
        rows["bulk"] = 1
    return SliceFactors(nested, factors, {name: f.R for name, f in test.items()}, rows,
                        test["energy"].n_rows, test["forces"].n_rows,
                        time.perf_counter() - t0, t_rows, factored, energy_weighting)


def _prefix_triangle(R: np.ndarray, B: int) -> np.ndarray:
    """The augmented triangular factor (B + 1)² of a block's prefix problem [A_B | y] from the
    block's factor R of [A | y] (nested order): R[:B, :B], R[:B, −1], and the norm of the rest
    of y's column, so that Tᵀ T = [A_B | y]ᵀ [A_B | y]."""
    T = np.zeros((B + 1, B + 1), order="F")
    T[:B, :B] = R[:B, :B]
    T[:B, B] = R[:B, -1]
    T[B, B] = np.linalg.norm(R[B:, -1])
    return T


def fit_from_factors(factors: SliceFactors, basis_index: int, basis: ACEBasis,
                     lattice: pdk.LatticeReference, weight_energy: float, weight_forces: float,
                     rtol: float = 1e-6, weight_bulk_energy: float | None = 0.0,
                     observations: str = "E+F", scale_columns: bool = True,
                     energy_weighting: str | None = None,
                     weight_form: str = DEFAULT_WEIGHT_FORM) -> pdk.FitResult:
    """The fit of one basis (``bases[basis_index]`` of :func:`slice_factors`), weight set and
    observation set — :func:`kernels.point_defects.fit` without revisiting the data.

    Parameters as in :func:`kernels.point_defects.fit`; ``observations`` is a key of
    :data:`OBSERVATION_SETS`. ``basis`` must be that basis (for ε_FC_hom and ẽ_bulk). The
    energy weighting is the one the factors were built with; ``energy_weighting``, when given,
    must be that one (a fit of another convention needs factors of its own).
    """
    if energy_weighting is not None and energy_weighting != factors.energy_weighting:
        raise ValueError(f"the factors were built with energy_weighting "
                         f"{factors.energy_weighting!r}, not {energy_weighting!r}")
    blocks = OBSERVATION_SETS[observations]
    w_bulk = weight_energy if weight_bulk_energy is None else weight_bulk_energy
    if w_bulk < 0:
        raise ValueError(f"weight_bulk_energy must be >= 0, got {weight_bulk_energy}")
    weights = {"energy": row_weight(weight_energy, weight_form),
               "forces": row_weight(weight_forces, weight_form),
               "bulk": row_weight(w_bulk, weight_form)}
    use = list(blocks) + (["bulk"] if w_bulk > 0 and "bulk" in factors.train else [])
    B = factors.nested.sizes[basis_index]
    # the basis's own column order: the pivoted QR then meets the columns in the same order as
    # on the straightforward path (with unit-scaled columns its ties are broken by order)
    cols = factors.nested.positions[basis_index]
    t0 = time.perf_counter()
    prefix = np.r_[np.arange(B), factors.n_columns]  # nested prefix of basis b, then y
    base = next((name for name in use if name in factors.factored), None)
    if base is None:
        # no factored block (few observations): the stacked rows themselves
        A = np.vstack([np.sqrt(weights[name]) * factors.train[name][:, prefix] for name in use])
        sol = solve_rrqr(A[:, cols], A[:, -1], rtol, scale_columns)
    else:
        # fold every block into one augmented triangular factor of the weighted system, in
        # nested order (triangular: dtpqrt skips its zeros), then solve in the basis's own
        # column order from it (solve_rrqr_reduced: same truncation and solution as the rows)
        T = np.sqrt(weights[base]) * _prefix_triangle(factors.train[base], B)
        for name in use:
            if name == base:
                continue
            f = factors.train[name]
            if name in factors.factored:
                fold_rows(T, np.sqrt(weights[name]) * _prefix_triangle(f, B), triangular=True)
            else:
                fold_rows(T, np.sqrt(weights[name]) * f[:, prefix])
        sol = solve_rrqr_reduced(T[:B, :B][:, cols], T[:B, B], rtol, scale_columns)
    fit_time = time.perf_counter() - t0
    coeffs = sol.coeffs
    rmse_e = np.sqrt(residual_norm2(factors.test["energy"], cols, coeffs)
                     / factors.n_test_energy)
    rmse_f = np.sqrt(residual_norm2(factors.test["forces"], cols, coeffs)
                     / factors.n_test_forces)
    fc_error, bulk_error = pdk.model_lattice_errors(basis, coeffs, lattice)
    return pdk.FitResult(
        coeffs=coeffs, rank=sol.rank, n_basis=B,
        n_observations=int(sum(factors.rows[name] for name in use)),
        rmse_energy_meV_per_atom=1e3 * float(rmse_e), rmse_forces_eV_per_A=float(rmse_f),
        force_constant_error_percent=fc_error, fit_time_s=fit_time,
        bulk_energy_error_meV_per_atom=bulk_error, bulk_energy_observed="bulk" in use)
