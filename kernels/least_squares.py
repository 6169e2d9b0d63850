"""Weighted linear least squares with a rank-revealing (column-pivoted) QR factorisation.

P1 §4.1.2 solves the fit by a rank-revealing QR truncated at relative tolerance 10⁻⁶, which acts
like a Tikhonov regularisation. Here the tall system A c ≈ y is first reduced by an unpivoted
economic QR (A = Q R, z = Qᵀ y, no Q formed; columns optionally scaled to unit norm first), then R is factorised with column pivoting,
R Π = Q₂ R₂, and only the leading k columns with |R₂[k, k]| > rtol·|R₂[0, 0]| are kept; the other
coefficients are zero. The pivoted QR stops at the truncation (LAPACK's blocked dgeqp3 steps,
``dlaqps``, until a block ends below the threshold: the same pivots, ~15 % less time at P1's
ranks) and applies Q₂ to z without forming it. Same solution as pivoting the tall matrix directly, at a fraction of the
cost (pyace-notes.md: 17 s instead of 56 s for 40,000 × 2,000).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.linalg

__all__ = ["LstsqSolution", "solve_rrqr", "solve_rrqr_reduced", "truncated_pivoted_qr",
           "weighted_system", "TIE_BREAK", "ENERGY_WEIGHTINGS", "DEFAULT_ENERGY_WEIGHTING",
           "WEIGHT_FORMS", "DEFAULT_WEIGHT_FORM", "energy_row_scale", "row_weight"]

#: Relative spread of the scaled column norms that breaks pivoting ties by column order; large
#: against the error of LAPACK's downdated partial norms (≲ √ε ≈ 1.5e-8), small against any
#: truncation decision that is not a tie.
TIE_BREAK = 1e-6


#: How an energy observation of a configuration of N atoms enters the residual vector, given its
#: weight W_E (the fits of :mod:`kernels.point_defects`, :mod:`kernels.point_defect_slices` and
#: :mod:`kernels.dislocations` all use these):
#:
#: ``"total"``
#:     the total energy, residual √W_E (E − Ẽ): P1 eq. (4.2) and P2 eq. (4.16) as written;
#: ``"per-atom"``
#:     the energy per atom, residual √W_E (E − Ẽ)/N;
#: ``"sqrt-n"``
#:     residual √W_E (E − Ẽ)/√N: the papers' own fitting codes. IPFitting.jl (P1's era, commit
#:     21617f5, ``src/datatypes.jl`` line 29: ``weighthook(::ValE, d::Dat) = 1.0 /
#:     sqrt(length(d.at))``, multiplied into the energy weight in ``src/lsq.jl`` line 145) and
#:     ACEpotentials.jl (commit 12b4422, ``src/atoms_data.jl`` line 206: ``w[i] =
#:     d.weights["E"] / sqrt(length(d.system))``) both divide the energy weight by √N.
#:
#: (With W on the squared residual; see :data:`WEIGHT_FORMS` for the other reading of W.)
ENERGY_WEIGHTINGS = ("total", "per-atom", "sqrt-n")
#: The default of every fit and spec (chosen by measurement: see docs/specs.md, "Fit conventions").
DEFAULT_ENERGY_WEIGHTING = "total"

#: What a weight W multiplies:
#:
#: ``"squared-residual"``
#:     the loss Σ W |r|², rows scaled by √W: P1 eq. (4.2), P2 eqs. (2.7), (4.16) as written;
#: ``"residual"``
#:     the residual itself, loss Σ W² |r|², rows scaled by W: the papers' codes. IPFitting.jl
#:     ``src/lsq.jl`` lines 306–307 (``Y = Diagonal(W) * Y; lmul!(Diagonal(W), Ψ)``) and ACEfit.jl
#:     (commit daa09c6, ``src/fit.jl`` lines 12–13, ``lmul!(Diagonal(W), A); Y = W .* Y``), which
#:     ACEpotentials.jl's ``weight_vector`` feeds.
WEIGHT_FORMS = ("squared-residual", "residual")
#: The default of every fit and spec (see docs/specs.md, "Fit conventions").
DEFAULT_WEIGHT_FORM = "squared-residual"


def energy_row_scale(n_atoms, energy_weighting: str = DEFAULT_ENERGY_WEIGHTING):
    """Factor by which an energy row (and its observed energy, eV) of a configuration of
    ``n_atoms`` atoms is multiplied before its weight is applied: 1, 1/N or 1/√N for
    ``"total"``, ``"per-atom"``, ``"sqrt-n"`` (:data:`ENERGY_WEIGHTINGS`). ``n_atoms`` may be an
    array (one entry per configuration)."""
    if energy_weighting not in ENERGY_WEIGHTINGS:
        raise ValueError(f"unknown energy_weighting {energy_weighting!r}; allowed: "
                         f"{', '.join(ENERGY_WEIGHTINGS)}")
    n = np.asarray(n_atoms, float)
    if energy_weighting == "total":
        return np.ones_like(n)[()]
    if energy_weighting == "per-atom":
        return (1.0 / n)[()]
    return (1.0 / np.sqrt(n))[()]


def row_weight(weight: float, weight_form: str = DEFAULT_WEIGHT_FORM) -> float:
    """The factor W of the loss Σ W |r|² that a spec weight ``weight`` stands for: itself for
    ``"squared-residual"``, its square for ``"residual"`` (:data:`WEIGHT_FORMS`)."""
    if weight_form not in WEIGHT_FORMS:
        raise ValueError(f"unknown weight_form {weight_form!r}; allowed: "
                         f"{', '.join(WEIGHT_FORMS)}")
    if weight < 0:
        raise ValueError(f"weights must be >= 0, got {weight}")
    return float(weight) if weight_form == "squared-residual" else float(weight) ** 2


@dataclass(frozen=True)
class LstsqSolution:
    """Coefficients of a truncated rank-revealing QR solve and the numerical rank used."""

    coeffs: np.ndarray
    rank: int


def weighted_system(blocks: list[tuple[np.ndarray, np.ndarray, float]]
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Stack row blocks ``(A_k, y_k, W_k)`` into ``√W_k A_k``, ``√W_k y_k``."""
    A = np.vstack([np.sqrt(w) * a for a, _, w in blocks])
    y = np.concatenate([np.sqrt(w) * b for _, b, w in blocks])
    return A, y


def solve_rrqr(A: np.ndarray, y: np.ndarray, rtol: float = 1e-6,
               scale_columns: bool = True) -> LstsqSolution:
    """Minimise ‖A c − y‖₂ with a column-pivoted QR truncated at relative tolerance ``rtol``.

    With ``scale_columns`` the columns are first divided by their Euclidean norms (and the
    solution scaled back), so that the truncation measures near-collinearity of the basis
    functions rather than their arbitrary normalisation (pyace's functions span many orders of
    magnitude on a near-lattice data set; unscaled, the 1e-6 truncation dropped roughly half of
    them for reasons of units alone). Columns that are exactly zero are left unscaled (and dropped).

    Parameters
    ----------
    A : (m, n) ndarray
        Design matrix (rows already weighted).
    y : (m,) ndarray
        Observations (already weighted).
    rtol : float
        Columns whose pivot |R₂[k, k]| ≤ rtol·|R₂[0, 0]| are dropped.
    """
    if not rtol > 0:
        raise ValueError(f"rtol must be positive, got {rtol}")
    A = np.asarray(A, float)
    y = np.asarray(y, float)
    n = A.shape[1]
    if scale_columns:
        norms = np.linalg.norm(A, axis=0)
        norms[norms == 0] = 1.0
        # Scaled to 1 + TIE_BREAK·(n − j)/n rather than exactly 1: otherwise every column has
        # norm 1 up to rounding, the pivoted QR's choices among them are decided by rounding
        # noise, and in a rank-deficient problem which columns are dropped then differs between
        # two computations of the same system (e.g. the rows, or the R factor of stacked
        # blocks: kernels.point_defect_slices). The ramp breaks such ties by column order.
        norms = norms / (1.0 + TIE_BREAK * (n - np.arange(n)) / n)
        sol = solve_rrqr(A / norms, y, rtol, scale_columns=False)
        return LstsqSolution(sol.coeffs / norms, sol.rank)
    if A.shape[0] >= n:
        z, R = scipy.linalg.qr_multiply(A, y, mode="right")  # z = Qᵀ y, R is (n, n)
    else:
        R, z = A, y
    return _pivoted_solve(R, z, rtol)


#: Columns per block of the truncated pivoted QR (LAPACK's dgeqp3 block size).
_QP_BLOCK = 32

_lapack_fns: dict = {}


def _lapack(name: str, n_args: int):
    """scipy's own LAPACK routine ``name`` as a ctypes function (no GIL held during the call)."""
    if name not in _lapack_fns:
        import ctypes  # noqa: PLC0415

        from numba.extending import get_cython_function_address  # noqa: PLC0415

        addr = get_cython_function_address("scipy.linalg.cython_lapack", name)
        _lapack_fns[name] = ctypes.CFUNCTYPE(None, *([ctypes.c_void_p] * n_args))(addr)
    return _lapack_fns[name]


def truncated_pivoted_qr(R: np.ndarray, rtol: float) -> tuple[np.ndarray, np.ndarray,
                                                                 np.ndarray, int]:
    """Column-pivoted Householder QR of R, stopped once the pivots fall below rtol·|first|.

    LAPACK's dgeqp3 is a loop of blocked steps (``dlaqps``) over all columns; the truncated
    solve needs only the columns whose pivot |R₂[k, k]| exceeds rtol·|R₂[0, 0]| (typically a
    third to a half of them in P1's fits), so the same blocked steps run only until a block ends
    below the threshold. The pivots and the factor's leading columns are those of the full
    factorisation (same algorithm, same order of operations).

    Returns
    -------
    QR : (m, n) ndarray, Fortran order
        dgeqp3's output for the first k columns: R₂ on and above the diagonal, the Householder
        vectors below it (later columns: partly updated, not to be used).
    tau : (k,) ndarray
        The reflectors' scalars.
    piv : (n,) int ndarray
        Column permutation (0-based): column j of R Π is column piv[j] of R.
    k : int
        Number of columns factored (the rank lies in 0…k).
    """
    A = np.array(R, dtype=np.float64, order="F", copy=True)
    m, n = A.shape
    minmn = min(m, n)
    jpvt = np.arange(1, n + 1, dtype=np.intc)
    tau = np.zeros(max(minmn, 1))
    vn1 = np.linalg.norm(A, axis=0)
    vn2 = vn1.copy()
    nb = _QP_BLOCK
    auxv = np.zeros(nb)
    F = np.zeros((n, nb), order="F")
    ints = np.zeros(5, dtype=np.intc)  # m, n − j, j, jb, kb (out)
    lda = np.array([m], dtype=np.intc)
    dlaqps = _lapack("dlaqps", 14)
    p = ints.ctypes.data
    isz = ints.itemsize
    j = 0
    d0 = None
    while j < minmn:
        jb = min(nb, minmn - j)
        ints[:] = (m, n - j, j, jb, 0)
        ldf = np.array([n - j], dtype=np.intc)
        dlaqps(p, p + isz, p + 2 * isz, p + 3 * isz, p + 4 * isz,
               A.ctypes.data + 8 * m * j, lda.ctypes.data,
               jpvt.ctypes.data + jpvt.itemsize * j, tau.ctypes.data + 8 * j,
               vn1.ctypes.data + 8 * j, vn2.ctypes.data + 8 * j, auxv.ctypes.data,
               F.ctypes.data, ldf.ctypes.data)
        kb = int(ints[4])
        if kb < 1:
            raise RuntimeError("dlaqps factored no column")
        j += kb
        if d0 is None:
            d0 = abs(A[0, 0])
        if not abs(A[j - 1, j - 1]) > rtol * d0:
            break
    return A, tau[:j], jpvt.astype(np.int64) - 1, j


def _pivoted_solve(R: np.ndarray, z: np.ndarray, rtol: float) -> LstsqSolution:
    """Truncated solve of R c ≈ z by R Π = Q₂ R₂, stopped at the truncation
    (:func:`truncated_pivoted_qr`; Q₂ applied to z, never formed)."""
    n = R.shape[1]
    coeffs = np.zeros(n)
    if min(R.shape) == 0:
        return LstsqSolution(coeffs, 0)
    QR, tau, piv, k = truncated_pivoted_qr(R, rtol)
    d = np.abs(np.diag(QR[:k, :k]))
    rank = int(np.count_nonzero(d > rtol * d[0])) if d.size and d[0] > 0 else 0
    if rank:
        # w = Q₂ᵀ z with the first `rank` reflectors (the later ones do not touch w[:rank])
        w, _, info = scipy.linalg.lapack.dormqr("L", "T", QR[:, :rank], tau[:rank],
                                                np.asarray(z, float).reshape(-1, 1), 64)
        if info != 0:
            raise RuntimeError(f"dormqr failed (info {info})")
        coeffs[piv[:rank]] = scipy.linalg.solve_triangular(QR[:rank, :rank], w[:rank, 0],
                                                           check_finite=False)
    return LstsqSolution(coeffs, rank)


def solve_rrqr_reduced(R: np.ndarray, z: np.ndarray, rtol: float = 1e-6,
                       scale_columns: bool = True) -> LstsqSolution:
    """:func:`solve_rrqr` of a system A c ≈ y given only a reduced form of it.

    Parameters
    ----------
    R : (k, n) ndarray
        Any matrix with Rᵀ R = Aᵀ A — e.g. the (column-permuted) R factor of A, or of the
        augmented [A | y] without its last column.
    z : (k,) ndarray
        The matching right-hand side: Rᵀ z = Aᵀ y (for the factor of [A | y]: its last column).
    rtol, scale_columns
        As in :func:`solve_rrqr`. The column norms of R are those of A (an orthogonal
        transformation keeps them), so the scaling and the tie-break ramp are the same, and the
        pivoted QR meets the same matrix up to an orthogonal factor on the left: the same
        truncation and solution as :func:`solve_rrqr` on A, y, to rounding.
    """
    if not rtol > 0:
        raise ValueError(f"rtol must be positive, got {rtol}")
    R = np.asarray(R, float)
    z = np.asarray(z, float)
    n = R.shape[1]
    if not scale_columns:
        return _pivoted_solve(R, z, rtol)
    norms = np.linalg.norm(R, axis=0)
    norms[norms == 0] = 1.0
    norms = norms / (1.0 + TIE_BREAK * (n - np.arange(n)) / n)
    sol = _pivoted_solve(R / norms, z, rtol)
    return LstsqSolution(sol.coeffs / norms, sol.rank)
