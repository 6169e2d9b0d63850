"""R factors of tall least-squares blocks, accumulated over chunks of rows (streaming TSQR).

For an augmented block M = [A | y] (rows: observations, columns: basis functions and, last, the
observations y) with M = Q R, every least-squares quantity of the block follows from R alone:
‖A c − y‖² = ‖R [c; −1]‖² for any c, and stacking the R factors of several blocks (each scaled by
√W) gives a matrix with the same R factor as the stacked, weighted blocks. So the design matrix
never needs to be held whole: rows are folded into R chunk by chunk,
R ← R-factor of [R; next chunk], and a weight set or an observation set is a QR of the small
stacked factors. A block with no more rows than columns is kept as it is (its own "factor").

Each fold is LAPACK's ``dtpqrt`` (QR of a triangular matrix stacked on a rectangular or
triangular one): it skips the zeros of R, so folding m rows into an n × n factor costs 2 m n²
flops whatever the chunk size — refactoring the stacked [R; chunk] with ``dgeqrf`` costs
2 (m + n) n² − 2n³/3, 1.6× more at m = 1.5 n (measured). It is called through ctypes, which
releases the GIL: factors of disjoint row sets can be built on several threads and merged
(:meth:`StreamingR.merge`).

Units: whatever the rows carry (eV or eV/Å per unit coefficient; y in eV or eV/Å).
"""

from __future__ import annotations

import ctypes

import numpy as np
import scipy.linalg

__all__ = ["r_factor", "StreamingR", "residual_norm2", "fold_rows"]

#: Block size of dtpqrt's compact-WY panels (LAPACK's usual choice for dgeqrf is 32–64).
_NB = 64

_dtpqrt_fn = None


def _dtpqrt():
    """scipy's own LAPACK ``dtpqrt`` as a ctypes function (no GIL held during the call)."""
    global _dtpqrt_fn
    if _dtpqrt_fn is None:
        from numba.extending import get_cython_function_address  # noqa: PLC0415

        addr = get_cython_function_address("scipy.linalg.cython_lapack", "dtpqrt")
        _dtpqrt_fn = ctypes.CFUNCTYPE(None, *([ctypes.c_void_p] * 12))(addr)
    return _dtpqrt_fn


def fold_rows(R: np.ndarray, rows: np.ndarray, triangular: bool = False) -> None:
    """Fold ``rows`` into the square upper-triangular factor ``R`` in place: afterwards
    Rᵀ R = R₀ᵀ R₀ + rowsᵀ rows (R is the R factor of [R₀; rows]).

    Parameters
    ----------
    R : (n, n) ndarray, Fortran order
        Upper triangular (only the upper triangle is read and written; the strict lower
        triangle keeps its zeros).
    rows : (m, n) ndarray
        Rows to fold in (overwritten if Fortran-ordered float64 — pass a copy to keep them).
    triangular : bool
        ``rows`` is itself upper triangular (m = n): the fold then costs ≈ n³ instead of 2n³.
    """
    n = R.shape[0]
    if R.shape != (n, n) or not R.flags.f_contiguous or R.dtype != np.float64:
        raise ValueError("R must be a square Fortran-ordered float64 array")
    B = np.asfortranarray(rows, dtype=np.float64)
    m = B.shape[0]
    if B.ndim != 2 or B.shape[1] != n:
        raise ValueError(f"rows must be (m, {n}), got {B.shape}")
    if m == 0 or n == 0:
        return
    l = min(m, n) if triangular else 0
    nb = max(1, min(_NB, n))
    T = np.empty((nb, n), order="F")
    work = np.empty(nb * n)
    ints = np.array([m, n, l, nb, n, m, nb, 0], dtype=np.intc)
    p = ints.ctypes.data
    isz = ints.itemsize
    _dtpqrt()(p, p + isz, p + 2 * isz, p + 3 * isz, R.ctypes.data, p + 4 * isz, B.ctypes.data,
              p + 5 * isz, T.ctypes.data, p + 6 * isz, work.ctypes.data, p + 7 * isz)
    if ints[7] != 0:
        raise RuntimeError(f"dtpqrt failed (info {ints[7]})")


def r_factor(M: np.ndarray) -> np.ndarray:
    """Upper-trapezoidal R (min(m, n) × n) of M = Q R; M itself when it has m ≤ n rows."""
    M = np.asarray(M, float)
    if M.shape[0] <= M.shape[1]:
        return M
    (R,) = scipy.linalg.qr(np.asfortranarray(M), mode="r", overwrite_a=True, check_finite=False)
    return np.ascontiguousarray(R[:M.shape[1]])


class StreamingR:
    """Fold chunks of rows of one block into its R factor.

    Parameters
    ----------
    n_columns : int
        Number of columns of the block (basis functions + 1 for y).
    keep_rows : int
        Keep up to this many rows as they are (no QR) — cheaper when the block is used only
        for residuals and fits in memory.
    """

    def __init__(self, n_columns: int, keep_rows: int = 0):
        self.keep_rows = int(keep_rows)
        self.n_columns = int(n_columns)
        self.n_rows = 0
        self._factored = False
        self._R = np.zeros((0, self.n_columns))

    def add(self, rows: np.ndarray) -> None:
        """Append rows (m × n_columns) to the block."""
        rows = np.asarray(rows, float)
        if rows.ndim != 2 or rows.shape[1] != self.n_columns:
            raise ValueError(f"rows must be (m, {self.n_columns}), got {rows.shape}")
        self.n_rows += rows.shape[0]
        if self._factored:
            fold_rows(self._R, rows)
            return
        k = self._R.shape[0]
        if k + rows.shape[0] <= max(self.n_columns, self.keep_rows):
            self._R = np.vstack([self._R, rows])
            return
        kept = self._R
        self._R = np.zeros((self.n_columns, self.n_columns), order="F")
        self._factored = True
        if k:
            fold_rows(self._R, kept)
        fold_rows(self._R, rows)

    def merge(self, other: "StreamingR") -> None:
        """Add the rows another StreamingR of the same block has seen (its factor or rows)."""
        if other.n_columns != self.n_columns:
            raise ValueError("blocks of different widths")
        if not other.is_factored:
            self.add(other.R)
            return
        if not self._factored:
            rows, n_rows = self._R, self.n_rows
            self._R = other.R.copy(order="F")
            self._factored = True
            self.n_rows = other.n_rows
            if len(rows):
                self.add(rows)
            self.n_rows = n_rows + other.n_rows
            return
        fold_rows(self._R, other.R, triangular=True)
        self.n_rows += other.n_rows

    @property
    def is_factored(self) -> bool:
        """True once R is an upper-triangular factor, False while it holds the rows."""
        return self._factored

    @property
    def R(self) -> np.ndarray:
        """The R factor (or the rows themselves while there are no more rows than columns)."""
        return self._R


def residual_norm2(factor: np.ndarray, columns: np.ndarray, coeffs: np.ndarray) -> float:
    """‖A[:, columns] c − y‖² of a block from its factor (y = the factor's last column)."""
    return float(np.sum((factor[:, columns] @ coeffs - factor[:, -1]) ** 2))
