"""Bayesian automatic-relevance-determination (ARD) solver of the weighted least-squares fit.

P2 §4.1.2 fits its loss (4.16) by ARD regression (MacKay; Tipping): a Gaussian prior of its own
precision on every coefficient and a Gaussian noise precision, all estimated by evidence
maximisation; irrelevant basis functions get infinite precision and drop out. This is
scikit-learn's :class:`sklearn.linear_model.ARDRegression` applied to the *weighted* system
(rows already multiplied by √W), with the columns scaled to unit norm first (as in
:func:`kernels.least_squares.solve_rrqr`, so that relevance does not depend on the arbitrary
normalisation of the basis functions) and no intercept (a constant energy is a basis function).
"""

from __future__ import annotations

import numpy as np

from .least_squares import LstsqSolution

__all__ = ["solve_ard"]


def solve_ard(A: np.ndarray, y: np.ndarray, threshold_lambda: float = 1e4,
              max_iter: int = 300, tol: float = 1e-3) -> LstsqSolution:
    """Minimise the ARD posterior of ``A c ≈ y``; ``rank`` is the number of kept coefficients.

    Parameters
    ----------
    A : (m, n) ndarray
        Weighted design matrix.
    y : (m,) ndarray
        Weighted observations.
    threshold_lambda : float
        Coefficients whose prior precision exceeds this (for unit-norm columns) are pruned.
    max_iter, tol : int, float
        scikit-learn's iteration limit and convergence tolerance on the coefficients.
    """
    from sklearn.linear_model import ARDRegression  # noqa: PLC0415

    A = np.asarray(A, float)
    y = np.asarray(y, float)
    norms = np.linalg.norm(A, axis=0)
    norms[norms == 0] = 1.0
    # Scale the observations to unit RMS as well: the default gamma hyper-priors of
    # scikit-learn are then uninformative whatever the units of y.
    ys = float(np.sqrt(np.mean(y * y))) or 1.0
    reg = ARDRegression(fit_intercept=False, threshold_lambda=threshold_lambda,
                        max_iter=max_iter, tol=tol, compute_score=False)
    reg.fit(A / norms, y / ys)
    coeffs = reg.coef_ * ys / norms
    return LstsqSolution(coeffs, int(np.count_nonzero(reg.coef_)))
