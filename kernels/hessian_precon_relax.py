"""Relaxation of a fitted model preconditioned with the reference model's sparse Hessian.

Every fit of a sweep relaxes the same simulation cell starting from the reference equilibrium ū.
A fitted model's equilibrium lies close to ū and its Hessian close to the reference's, so a
quasi-Newton iteration whose initial inverse Hessian is the reference Hessian H_ref(ū) —
assembled once per simulation cell and factorised once per process — converges in a handful of
force evaluations, where a plain L-BFGS (initial Hessian a multiple of the identity) needs
hundreds on a cell of thousands of atoms (its soft long-wavelength modes).

* :func:`sparse_hessian` — H_ref by central differences of the forces, many atoms displaced at
  once: atoms further apart than twice the range of the force response (2 × 2 × cutoff for a
  many-body potential whose forces depend on neighbours of neighbours) share one displacement,
  so the cost is a few hundred force evaluations whatever the cell size.
* :func:`reference_hessian` — the model's analytic Hessian when it has one
  (``hessian_eV_per_A2``: the EAM models, Kumagai Si), else :func:`sparse_hessian`. On the
  1584-atom W screw quadrupole (Zhou EAM, cutoff 7.9 Å, a cell 2.7 Å thick along the line) the
  differences need 266 displacement groups, ~1,600 force calls; the analytic one is one pass.
* :func:`relax_preconditioned` — force-only L-BFGS (two-loop recursion) with H₀ = (H_ref + μ I)
  applied by an exact sparse factorisation (:class:`HessianPreconditioner`: a Cholesky in a
  nested-dissection order of the atoms by default), unit steps capped at ``max_step_A`` per
  atom, no line search (as :func:`kernels.relax.relax`'s ``"lbfgs"``, robust at tight force
  tolerances).

Units: Å, eV, eV/Å, Hessian eV/Å².
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.sparse
import scipy.sparse.linalg

from .relax import RelaxationError, RelaxResult

__all__ = ["sparse_hessian", "reference_hessian", "HessianPreconditioner", "relax_preconditioned",
           "METHODS"]


def _colour_groups(positions_A, cell_A, separation_A: float) -> list[np.ndarray]:
    """Greedy colouring: atoms of one group are further apart than ``separation_A`` (periodic)."""
    from matscipy.neighbours import neighbour_list  # noqa: PLC0415

    n = len(positions_A)
    i, j = neighbour_list("ij", positions=positions_A, cell=cell_A, pbc=[True] * 3,
                          cutoff=separation_A)
    start = np.searchsorted(i, np.arange(n + 1))
    colour = -np.ones(n, int)
    for a in range(n):
        used = set(colour[j[start[a]:start[a + 1]]])
        c = 0
        while c in used:
            c += 1
        colour[a] = c
    return [np.nonzero(colour == c)[0] for c in range(colour.max() + 1)]


def sparse_hessian(model, positions_A: np.ndarray, cell_A: np.ndarray, symbols: list[str],
                   cutoff_A: float, components: int = 3, step_A: float = 1e-4,
                   symmetric: bool = True) -> scipy.sparse.csr_matrix:
    """Hessian ∂²E/∂x∂x (eV/Å²) of ``model`` at ``positions_A`` over the first ``components``
    Cartesian coordinates of every atom, as a symmetric sparse (n·k × n·k) matrix.

    Parameters
    ----------
    model
        Object with ``evaluate(positions_A, cell_A, symbols)`` (forces in eV/Å).
    cutoff_A : float
        Interaction cutoff of the model, Å; forces on an atom depend on atoms within
        2 × cutoff (many-body), so entries beyond 2 × cutoff are zero and atoms further apart
        than 4 × cutoff are displaced together.
    step_A : float
        Central-difference displacement, Å.
    symmetric : bool
        Return (H + Hᵀ)/2. The differences are not exactly symmetric where a neighbour
        distance sits near a kink of a tabulated potential (measured for the Wang (2014) W
        tables: up to 5 % of an off-diagonal entry next to a vacancy); False returns the raw
        columns −∂F/∂x_b.
    """
    from matscipy.neighbours import neighbour_list  # noqa: PLC0415

    x = np.array(positions_A, float)
    cell_A = np.asarray(cell_A, float)
    n, k = len(x), int(components)
    reach = 2.0 * cutoff_A
    groups = _colour_groups(x, cell_A, 2.0 * reach + 1e-6)
    pi, pj = neighbour_list("ij", positions=x, cell=cell_A, pbc=[True] * 3, cutoff=reach)
    pi = np.concatenate([pi, np.arange(n)])  # the atom itself
    pj = np.concatenate([pj, np.arange(n)])
    owner = -np.ones(n, int)
    rows, cols, vals = [], [], []
    for group in groups:
        owner[:] = -1
        owner[group] = group
        sel = owner[pi] >= 0  # pairs (b in group, j near b)
        b, jn = pi[sel], pj[sel]
        pairs = np.unique(np.column_stack([b, jn]), axis=0)
        b, jn = pairs[:, 0], pairs[:, 1]
        for a in range(k):
            xp, xm = x.copy(), x.copy()
            xp[group, a] += step_A
            xm[group, a] -= step_A
            fp = model.evaluate(xp, cell_A, symbols).forces_eV_per_A[:, :k]
            fm = model.evaluate(xm, cell_A, symbols).forces_eV_per_A[:, :k]
            dF = -(fp - fm) / (2.0 * step_A)  # H[(j, c), (b, a)] for j near b
            for c in range(k):
                rows.append(jn * k + c)
                cols.append(b * k + a)
                vals.append(dF[jn, c])
    H = scipy.sparse.coo_matrix((np.concatenate(vals), (np.concatenate(rows),
                                 np.concatenate(cols))), shape=(n * k, n * k)).tocsr()
    return ((H + H.T) * 0.5).tocsr() if symmetric else H


def reference_hessian(model, positions_A: np.ndarray, cell_A: np.ndarray, symbols: list[str],
                      components: int = 3) -> scipy.sparse.csr_matrix:
    """Hessian (eV/Å²) of ``model`` over the first ``components`` Cartesian coordinates of every
    atom: ``model.hessian_eV_per_A2`` when the model has it, else :func:`sparse_hessian`."""
    if not hasattr(model, "hessian_eV_per_A2"):
        return sparse_hessian(model, positions_A, cell_A, symbols, model.cutoff_A, components)
    H = model.hessian_eV_per_A2(positions_A, cell_A, symbols).tocsr()
    if components == 3:
        return H
    keep = (3 * np.arange(len(positions_A))[:, None] + np.arange(components)).ravel()
    return H[keep][:, keep].tocsr()


#: Factorisations of (H + μ I) (:class:`HessianPreconditioner`): ``"cholesky"`` the default.
METHODS = ("cholesky", "lu", "amg")


@dataclass
class HessianPreconditioner:
    """(H + μ I)⁻¹ applied to a vector, built on first use (picklable: the factor is rebuilt in
    each process). μ = ``shift`` × mean diagonal lifts the zero translation modes.

    Parameters
    ----------
    hessian : scipy.sparse matrix
        Reference Hessian, eV/Å², over n·k coordinates (k consecutive coordinates per atom).
    shift : float
        Relative diagonal shift.
    method : {"cholesky", "lu", "amg"}
        ``"cholesky"`` (the default): exact sparse L Lᵀ in a geometric nested-dissection order
        of the atoms (:mod:`kernels.nested_dissection`; needs ``positions_A`` and ``cell_A``).
        Its fill grows like n log n: the W screw quadrupole of 24,192 atoms (72,576
        coordinates) factors on one core within the worker's memory (figures in
        docs/performance.md). If H + μ I is not positive definite (a Hessian taken away from
        a minimum) the same matrix is factored by SuperLU in the same order instead — still
        exact, about twice the memory; :attr:`factorisation` says which one ran. Without
        positions it is ``"lu"``.
        ``"lu"``: scipy's SuperLU with its COLAMD ordering, the same operator; its fill grows
        much faster than the cell (W screw quadrupole: LU + one solve 4.9 s / 0.58 GB at 4,752
        coordinates, 129 s / 2.0 GB at 18,144).
        ``"amg"`` (experimental, used by no spec): conjugate gradients to relative residual
        ``amg_rtol`` preconditioned by pyamg's smoothed-aggregation multigrid, set-up linear in
        the cell (0.2 s and 0.9 s on those cells; one V-cycle alone was a poor inverse: 61
        steps against LU's 5). Not robust: with rtol 1e-3 on the 6048-atom W quadrupole 3 of
        13 fitted-model relaxations ran 33–38 steps to another minimum (geometry error 3.2 Å)
        where the LU took 4–5 steps to ȳ_ML.
    amg_rtol : float
        Relative residual of the multigrid-preconditioned CG solves.
    positions_A : (n, 3) ndarray, optional
        Atom positions (Å) at which the Hessian was taken: the geometry of the ordering.
    cell_A : (3, 3) ndarray, optional
        Periodic cell rows, Å.
    """

    hessian: scipy.sparse.csr_matrix
    shift: float = 1e-3
    method: str = "cholesky"
    amg_rtol: float = 1e-3
    positions_A: np.ndarray | None = None
    cell_A: np.ndarray | None = None
    _solve: object = field(default=None, repr=False, compare=False)
    #: the factorisation built: "cholesky-nd", "lu-nd" (not positive definite), "lu-colamd",
    #: "amg"; None before the first solve
    factorisation: str | None = field(default=None, repr=False, compare=False)

    _STATE = ("hessian", "shift", "method", "amg_rtol", "positions_A", "cell_A")

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {self.method!r}")
        if (self.positions_A is None) != (self.cell_A is None):
            raise ValueError("positions_A and cell_A go together")

    def __getstate__(self):
        return {k: getattr(self, k) for k in self._STATE}

    def __setstate__(self, state):
        defaults = {"shift": 1e-3, "method": "lu", "amg_rtol": 1e-3, "positions_A": None,
                    "cell_A": None}
        for k in self._STATE:
            setattr(self, k, state.get(k, defaults.get(k)))
        self._solve = None
        self.factorisation = None

    def shifted(self) -> scipy.sparse.csr_matrix:
        """H + μ I, eV/Å²."""
        H = scipy.sparse.csr_matrix(self.hessian)
        mu = self.shift * float(np.mean(H.diagonal()))
        return (H + mu * scipy.sparse.identity(H.shape[0], format="csr")).tocsr()

    def _build(self):
        A = self.shifted()
        if self.method == "amg":
            import pyamg  # noqa: PLC0415

            ml = pyamg.smoothed_aggregation_solver(A, max_coarse=500)
            rtol = self.amg_rtol
            self.factorisation = "amg"
            return lambda b: ml.solve(b, tol=rtol, accel="cg", maxiter=200)
        if self.method == "lu" or self.positions_A is None:
            self.factorisation = "lu-colamd"
            return scipy.sparse.linalg.factorized(A.tocsc())
        from .nested_dissection import (MultifrontalCholesky, NotPositiveDefinite,  # noqa: PLC0415
                                        atom_graph, separator_tree)

        k = A.shape[0] // len(self.positions_A)
        tree = separator_tree(atom_graph(A, k), self.positions_A, self.cell_A)
        try:
            chol = MultifrontalCholesky(A, tree, k)
        except NotPositiveDefinite:
            pass
        else:
            self.factorisation = "cholesky-nd"
            return chol.solve
        # Not positive definite: an LU of the same matrix in the same order. SymmetricMode
        # with a small pivot threshold keeps the diagonal pivots (and so the ordering's fill)
        # unless one is tiny.
        perm = (k * tree.order[:, None] + np.arange(k)).ravel()
        lu = scipy.sparse.linalg.splu(A[perm][:, perm].tocsc(), permc_spec="NATURAL",
                                      diag_pivot_thresh=0.01,
                                      options={"SymmetricMode": True})
        self.factorisation = "lu-nd"

        def solve(b):
            out = np.empty(len(b))
            out[perm] = lu.solve(np.asarray(b, float)[perm])
            return out

        return solve

    def solve(self, v: np.ndarray) -> np.ndarray:
        """(H + μ I)⁻¹ v (exactly with the factorisations, to ``amg_rtol`` with multigrid)."""
        if self._solve is None:
            self._solve = self._build()
        return self._solve(v)


def relax_preconditioned(model, positions_A: np.ndarray, cell_A: np.ndarray, symbols: list[str],
                         precon: HessianPreconditioner, components: int = 3,
                         fmax_eV_per_A: float = 1e-6, max_steps: int = 1000,
                         memory: int = 20, max_step_A: float = 0.2) -> RelaxResult:
    """Relax at fixed periodic cell with H₀⁻¹ = ``precon`` in a force-only L-BFGS.

    Only the first ``components`` coordinates move (2 for the planar lattice, whose z forces
    vanish). Converged when every atom's force norm is below ``fmax_eV_per_A``.

    Raises
    ------
    RelaxationError
        If the tolerance is not reached within ``max_steps``.
    """
    x = np.array(positions_A, float)
    k = int(components)
    n_calls = 0

    def forces(xx):
        nonlocal n_calls
        n_calls += 1
        r = model.evaluate(xx, cell_A, symbols)
        return r.energy_eV, r.forces_eV_per_A

    e, F = forces(x)
    F0 = F
    g = -F[:, :k].ravel()
    S, Y, rho = [], [], []
    steps = 0
    while True:
        fmax = float(np.linalg.norm(F, axis=1).max()) if len(F) else 0.0
        if fmax < fmax_eV_per_A:
            break
        if steps >= max_steps:
            raise RelaxationError(f"preconditioned L-BFGS did not reach fmax {fmax_eV_per_A:g} "
                                  f"eV/Å in {max_steps} steps (largest force {fmax:.3g} eV/Å)")
        q = g.copy()
        alpha = []
        for s, y, r in zip(reversed(S), reversed(Y), reversed(rho)):
            a = r * (s @ q)
            alpha.append(a)
            q -= a * y
        d = precon.solve(q)
        for (s, y, r), a in zip(zip(S, Y, rho), reversed(alpha)):
            d += s * (a - r * (y @ d))
        step = -d.reshape(-1, k)
        longest = float(np.linalg.norm(step, axis=1).max())
        if longest > max_step_A:
            step *= max_step_A / longest
        x_new = x.copy()
        x_new[:, :k] += step
        e, F = forces(x_new)
        g_new = -F[:, :k].ravel()
        s, y = step.ravel(), g_new - g
        sy = float(s @ y)
        if sy > 0:
            S.append(s)
            Y.append(y)
            rho.append(1.0 / sy)
            if len(S) > memory:
                S.pop(0), Y.pop(0), rho.pop(0)
        x, g = x_new, g_new
        steps += 1
    fmax = float(np.linalg.norm(F, axis=1).max()) if len(F) else 0.0
    return RelaxResult(x, float(e), fmax, steps, n_calls, initial_forces_eV_per_A=F0)
