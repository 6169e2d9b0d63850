"""R factors of tall least-squares blocks, accumulated over chunks of rows (streaming TSQR).

For an augmented block M = [A | y] (rows: observations, columns: basis functions and, last, the
observations y) with M = Q R, every least-squares quantity of the block follows from R alone:
‖A c − y‖² = ‖R [c; −1]‖² for any c, and stacking the R factors of several blocks (each scaled by
√W) gives a matrix with the same R factor as the stacked, weighted blocks. So the design matrix
never needs to be held whole: rows are folded into R chunk by chunk,
R ← R-factor of [R; next chunk], and a weight set or an observation set is a QR of the small
stacked factors. A block with no more rows than columns is kept as it is (its own "factor").

Units: whatever the rows carry (eV or eV/Å per unit coefficient; y in eV or eV/Å).
"""

from __future__ import annotations

import numpy as np
import scipy.linalg

__all__ = ["r_factor", "StreamingR", "residual_norm2"]


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
        k = self._R.shape[0]
        if k + rows.shape[0] <= max(self.n_columns, self.keep_rows):
            self._R = np.vstack([self._R, rows])
            return
        M = np.empty((k + rows.shape[0], self.n_columns), order="F")  # LAPACK's order: no copy
        M[:k] = self._R
        M[k:] = rows
        self._R = r_factor(M)
        self._factored = True

    @property
    def is_factored(self) -> bool:
        """True once R is an upper-trapezoidal factor, False while it holds the rows."""
        return self._factored

    @property
    def R(self) -> np.ndarray:
        """The R factor (or the rows themselves while there are no more rows than columns)."""
        return self._R


def residual_norm2(factor: np.ndarray, columns: np.ndarray, coeffs: np.ndarray) -> float:
    """‖A[:, columns] c − y‖² of a block from its factor (y = the factor's last column)."""
    return float(np.sum((factor[:, columns] @ coeffs - factor[:, -1]) ** 2))
