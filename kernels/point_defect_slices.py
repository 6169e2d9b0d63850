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
``energy``     E/n per training configuration (eV/atom per coefficient)   W_E
``forces``     in-plane force components (eV/Å per coefficient)           W_F
``bulk``       E/n of the perfect L × L cell                              W_bulk
=============  =========================================================  ==============

and the test set's ``energy``/``forces`` blocks likewise. :func:`fit_from_factors` then solves
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
from .least_squares import solve_rrqr
from .nested_basis import NestedColumns, nested_columns
from .tsqr import StreamingR, residual_norm2

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

    @property
    def n_columns(self) -> int:
        """Columns of the largest basis."""
        return len(self.nested.order)


def _blocks(basis: ACEBasis, order: np.ndarray, obs: pdk.Observations, cell_A,
            chunk_configs: int, energy: StreamingR, forces: StreamingR) -> float:
    """Fold the rows of a set of configurations into the energy and force factors; returns the
    time spent on rows (s)."""
    S, n = obs.positions_A.shape[:2]
    k = pdk.PLANAR
    t_rows = 0.0
    for s0 in range(0, S, chunk_configs):
        sl = slice(s0, min(S, s0 + chunk_configs))
        t0 = time.perf_counter()
        r = basis.design_rows(obs.positions_A[sl], cell_A, [pdk.SYMBOL] * n, k)
        t_rows += time.perf_counter() - t0
        E = np.column_stack([r.energy[:, order] / n, obs.energy_eV[sl] / n])
        m = r.forces.shape[0] * n * k
        F = np.empty((m, len(order) + 1))
        np.take(r.forces.reshape(m, -1), order, axis=1, out=F[:, :-1])
        F[:, -1] = obs.forces_eV_per_A[sl, :, :k].reshape(m)
        del r
        energy.add(E)
        forces.add(F)
    return t_rows


def slice_factors(bases: list[ACEBasis], data: pdk.TrainingData,
                  max_chunk_bytes: float = 256e6) -> SliceFactors:
    """One pass over a training cell's data in the largest of nested bases.

    Parameters
    ----------
    bases : list of ACEBasis
        Truncations of one superset, smallest first; rows are computed in the last (largest).
    data : TrainingData
        Training and test sets (and the perfect cell) of one (defect, L).
    max_chunk_bytes : float
        Upper bound on the memory of one chunk of design rows, bytes (the factors themselves
        take ≈ 4 (n_basis + 1)² × 8 bytes).
    """
    t0 = time.perf_counter()
    nested = nested_columns([b.function_keys() for b in bases], truncation_rank)
    big = bases[-1]
    order = nested.order
    ncol = len(order) + 1
    n = data.train.positions_A.shape[1]
    per_config = n * pdk.PLANAR * ncol * 8.0
    chunk = max(1, int(max_chunk_bytes // per_config))
    train = {"energy": StreamingR(ncol), "forces": StreamingR(ncol)}
    # test blocks serve residuals only: kept as rows while they fit in one chunk (no QR)
    keep = int(max_chunk_bytes // (ncol * 8.0))
    test = {"energy": StreamingR(ncol, keep), "forces": StreamingR(ncol, keep)}
    t_rows = _blocks(big, order, data.train, data.cell_A, chunk, train["energy"], train["forces"])
    t_rows += _blocks(big, order, data.test, data.cell_A, chunk, test["energy"], test["forces"])
    factors = {name: f.R for name, f in train.items()}
    factored = frozenset(name for name, f in train.items() if f.is_factored)
    rows = {name: f.n_rows for name, f in train.items()}
    if data.perfect is not None:
        n_p = data.perfect.positions_A.shape[1]
        t1 = time.perf_counter()
        r = big.design_rows(data.perfect.positions_A, data.cell_A, [pdk.SYMBOL] * n_p,
                            pdk.PLANAR)
        t_rows += time.perf_counter() - t1
        factors["bulk"] = np.column_stack([r.energy[:, order] / n_p,
                                           data.perfect.energy_eV / n_p])
        rows["bulk"] = 1
    return SliceFactors(nested, factors, {name: f.R for name, f in test.items()}, rows,
                        test["energy"].n_rows, test["forces"].n_rows,
                        time.perf_counter() - t0, t_rows, factored)


def fit_from_factors(factors: SliceFactors, basis_index: int, basis: ACEBasis,
                     lattice: pdk.LatticeReference, weight_energy: float, weight_forces: float,
                     rtol: float = 1e-6, weight_bulk_energy: float | None = None,
                     observations: str = "E+F", scale_columns: bool = True) -> pdk.FitResult:
    """The fit of one basis (``bases[basis_index]`` of :func:`slice_factors`), weight set and
    observation set — :func:`kernels.point_defects.fit` without revisiting the data.

    Parameters as in :func:`kernels.point_defects.fit`; ``observations`` is a key of
    :data:`OBSERVATION_SETS`. ``basis`` must be that basis (for ε_FC_hom and ẽ_bulk).
    """
    blocks = OBSERVATION_SETS[observations]
    w_bulk = weight_energy if weight_bulk_energy is None else weight_bulk_energy
    if w_bulk < 0:
        raise ValueError(f"weight_bulk_energy must be >= 0, got {weight_bulk_energy}")
    weights = {"energy": weight_energy, "forces": weight_forces, "bulk": w_bulk}
    use = list(blocks) + (["bulk"] if w_bulk > 0 and "bulk" in factors.train else [])
    B = factors.nested.sizes[basis_index]
    # the basis's own column order: the pivoted QR then meets the columns in the same order as
    # on the straightforward path (with unit-scaled columns its ties are broken by order)
    cols = factors.nested.positions[basis_index]
    t0 = time.perf_counter()
    A, y = [], []
    for name in use:
        f = factors.train[name]
        # rows beyond B of a triangular factor are zero in the leading B columns
        if name in factors.factored:
            f = f[:B]
        sw = np.sqrt(weights[name])
        A.append(sw * f[:, cols])
        y.append(sw * f[:, -1])
    sol = solve_rrqr(np.vstack(A), np.concatenate(y), rtol, scale_columns)
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
        bulk_energy_error_meV_per_atom=bulk_error)
