"""Relaxation to a stable minimum: relax, test the Hessian, leave a saddle along its softest mode.

The papers' ū and ȳ are local *minimisers* (P1 §2, P2 §2: "argmin" as the set of local
minimisers), and their theorems ask for strongly stable ones. A force-only optimiser stops
wherever the forces vanish: started from a predictor with a symmetry that the forces keep (the
CLE field of a small W screw quadrupole), L-BFGS keeps the symmetry to the end and stops at the
symmetric saddle. :func:`relax_to_minimum` therefore relaxes, takes the Hessian at the end state
and, while its lowest eigenvalue is negative, displaces the atoms along that mode and relaxes
again.

Whether a negative mode exists is one Cholesky factorisation: H + ε I (ε =
:data:`NEGATIVE_EV_PER_A2`) has one exactly when no eigenvalue lies below −ε, at about the
preconditioner's cost (27 s for the 24,192-atom W cell), in the nested-dissection order of
:mod:`kernels.nested_dissection`. Only at a saddle is the mode itself computed, by shift-invert
Lanczos (scipy's ``eigsh``) about −:data:`SHIFT_EV_PER_A2`; small cells are done densely.
Everything is deterministic: Lanczos starts from a fixed vector and the escape step has a fixed
sign.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse
import scipy.sparse.linalg

from .hessian_precon_relax import reference_hessian
from .relax import RelaxationError, RelaxResult, relax

__all__ = ["SHIFT_EV_PER_A2", "NEGATIVE_EV_PER_A2", "DENSE_MAX", "StableRelaxResult",
           "lowest_eigenpairs", "softest_mode", "relax_to_minimum"]

#: σ of the shift-invert Lanczos (eV/Å²): below every negative eigenvalue met on these cells
#: (the 8 a0 W screw saddle's lowest is −1.55 eV/Å²).
SHIFT_EV_PER_A2 = 20.0
#: An eigenvalue below −this (eV/Å²) is a negative mode; the translations' zeros come out of
#: Lanczos at ≈ 1e-12.
NEGATIVE_EV_PER_A2 = 1e-4
#: Coordinates up to which the eigenvalues are taken densely.
DENSE_MAX = 600


@dataclass(frozen=True)
class StableRelaxResult(RelaxResult):
    """A :class:`kernels.relax.RelaxResult` at a stable minimum, with the lowest eigenvalue of
    the Hessian there other than the translations' (eV/Å²) and the number of saddles left."""

    lowest_eigenvalue_eV_per_A2: float = float("nan")
    escapes: int = 0


def _cholesky(A, positions_A, cell_A, components: int):
    """The nested-dissection Cholesky of the SPD ``A``; raises ``NotPositiveDefinite``."""
    from .nested_dissection import (MultifrontalCholesky, atom_graph,  # noqa: PLC0415
                                    separator_tree)

    tree = separator_tree(atom_graph(A, components), positions_A, cell_A)
    return MultifrontalCholesky(A, tree, components)


def _shifted(H, mu: float) -> scipy.sparse.csr_matrix:
    return (H + mu * scipy.sparse.identity(H.shape[0], format="csr")).tocsr()


def lowest_eigenpairs(H, positions_A: np.ndarray, cell_A: np.ndarray, components: int,
                      k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` smallest eigenvalues (eV/Å², ascending) and unit eigenvectors (columns) of the
    symmetric sparse ``H`` over ``components`` coordinates per atom: dense up to
    :data:`DENSE_MAX` coordinates, else shift-invert Lanczos about −:data:`SHIFT_EV_PER_A2`.
    On a large cell at a minimum the soft elastic modes crowd the spectrum and Lanczos takes
    thousands of solves (1396 at the 6,048-atom W cell); :func:`softest_mode` first asks the
    cheaper question, whether there is a negative mode at all."""
    from .nested_dissection import NotPositiveDefinite  # noqa: PLC0415

    H = scipy.sparse.csr_matrix(H)
    n = H.shape[0]
    if n <= DENSE_MAX:      # small cells: dense is exact and cheaper than Lanczos
        w, v = np.linalg.eigh(0.5 * (H + H.T).toarray())
        return w[:k], v[:, :k]
    A = _shifted(H, SHIFT_EV_PER_A2)
    try:
        solve = _cholesky(A, np.asarray(positions_A, float)[:, :3], cell_A, components).solve
    except NotPositiveDefinite:
        solve = scipy.sparse.linalg.factorized(A.tocsc())
    op = scipy.sparse.linalg.LinearOperator((n, n), matvec=solve, dtype=float)
    v0 = np.cos(np.arange(n) * 0.7071067811865476) + 1.0
    w, v = scipy.sparse.linalg.eigsh(H, k=k, sigma=-SHIFT_EV_PER_A2, which="LM", OPinv=op,
                                     v0=v0, tol=1e-8)
    order = np.argsort(w)
    return w[order], v[:, order]


def softest_mode(H, positions_A: np.ndarray, cell_A: np.ndarray, components: int
                 ) -> tuple[float, np.ndarray | None]:
    """The lowest eigenvalue of ``H`` past the translations (eV/Å²) and, when it is below
    −:data:`NEGATIVE_EV_PER_A2`, its eigenvector (else None).

    Small cells: dense. Large ones: H + :data:`NEGATIVE_EV_PER_A2` I has a Cholesky factor
    exactly when no eigenvalue lies below −:data:`NEGATIVE_EV_PER_A2` (one factorisation,
    about the preconditioner's cost); the eigenvalue is then not computed (NaN). Only at a
    saddle is the negative mode found by Lanczos, where it stands clear of the rest."""
    from .nested_dissection import NotPositiveDefinite  # noqa: PLC0415

    H = scipy.sparse.csr_matrix(H)
    k = int(components)
    if H.shape[0] > DENSE_MAX:
        try:
            _cholesky(_shifted(H, NEGATIVE_EV_PER_A2), np.asarray(positions_A, float)[:, :3],
                      cell_A, k)
        except NotPositiveDefinite:
            w, v = lowest_eigenpairs(H, positions_A, cell_A, k, 1)
            return float(w[0]), v[:, 0]
        return float("nan"), None
    w, v = lowest_eigenpairs(H, positions_A, cell_A, k, k + 1)
    if w[0] < -NEGATIVE_EV_PER_A2:
        return float(w[0]), v[:, 0]
    return float(w[k]), None


def relax_to_minimum(model, positions_A: np.ndarray, cell_A: np.ndarray, symbols: list[str],
                     fmax_eV_per_A: float, max_steps: int, optimizer: str,
                     components: int = 3, max_escapes: int = 4,
                     escape_A: float = 0.1) -> StableRelaxResult:
    """Relax with :func:`kernels.relax.relax` until the end state is a stable minimum.

    Parameters
    ----------
    components : int
        Coordinates per atom the Hessian covers (2 for the planar lattice).
    max_escapes : int
        Saddles left along their softest mode before giving up.
    escape_A : float
        Largest atom displacement (Å) of an escape step.

    Raises
    ------
    RelaxationError
        If the relaxation does not converge, or still ends at a saddle after ``max_escapes``.
    """
    x = np.array(positions_A, float)
    k = int(components)
    steps = calls = 0
    for escapes in range(max_escapes + 1):
        r = relax(model, x, cell_A, symbols, fmax_eV_per_A, max_steps, optimizer)
        steps += r.n_steps
        calls += r.n_force_calls
        H = reference_hessian(model, r.positions_A, cell_A, symbols, k)
        lowest, vector = softest_mode(H, r.positions_A, cell_A, k)
        if vector is None:
            return StableRelaxResult(r.positions_A, r.energy_eV, r.max_force_eV_per_A, steps,
                                     calls, H, lowest_eigenvalue_eV_per_A2=lowest,
                                     escapes=escapes)
        mode = vector.reshape(-1, k)
        # The eigenvector's sign is LAPACK's/ARPACK's; fix it so the step is reproducible.
        flat = mode.ravel()
        if flat[int(np.argmax(np.abs(flat)))] < 0:
            mode = -mode
        x = np.array(r.positions_A, float)
        x[:, :k] += escape_A * mode / float(np.linalg.norm(mode, axis=1).max())
    raise RelaxationError(f"{optimizer} still ends at a saddle (lowest Hessian eigenvalue "
                          f"{lowest:.3g} eV/Å²) after {max_escapes} escapes along its softest "
                          "mode")
