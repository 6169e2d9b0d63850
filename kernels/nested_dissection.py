"""Geometric nested dissection of a periodic atomistic cell and a multifrontal sparse Cholesky
factorisation on its separator tree.

A force-constant (Hessian) matrix of an atomistic cell couples the coordinates of atoms closer
than its reach (twice the cutoff for a many-body potential). Its exact factor is affordable on
cells of tens of thousands of atoms only with an ordering whose fill grows like n log n: nested
dissection, which eliminates the two halves of the cell before the strip (separator) between
them, recursively. scipy has the factorisations but no nested-dissection ordering; SuperLU's
COLAMD, blind to the geometry, fills far more (measured in ``benchmarks/precon_scaling.py``).

* :func:`separator_tree` — recursive coordinate bisection of the atoms (fractional coordinates of
  a periodic cell, cut across its longest Cartesian extent at the median). Each separator is the
  set of atoms of one half coupled to the other half in the matrix's atom graph, so the halves
  are exactly disconnected whatever the geometry (a periodic cell's first cut has two strips: at
  the median and across the periodic boundary). The coordinates of one atom stay together.
* :class:`MultifrontalCholesky` — L Lᵀ of a symmetric positive-definite matrix in the tree's
  order: each node's dense front (its pivots and the later coordinates they couple to) is
  assembled from the matrix and its children's Schur complements, factored by LAPACK, and its
  Schur complement passed to the parent. Stores L only (half of an LU's fill). Not positive
  definite → :class:`NotPositiveDefinite`.

Deterministic (no random numbers; ties of the median split follow the atoms' index order),
pure numpy/scipy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.linalg
import scipy.linalg.blas
import scipy.sparse

__all__ = ["SeparatorTree", "separator_tree", "atom_graph", "MultifrontalCholesky",
           "NotPositiveDefinite", "LEAF_ATOMS"]

#: Subdomains of at most this many atoms are not dissected further: below it the separators
#: (strips one reach wide) would hold most of the subdomain.
LEAF_ATOMS = 64


class NotPositiveDefinite(np.linalg.LinAlgError):
    """The matrix handed to :class:`MultifrontalCholesky` has a non-positive pivot."""


@dataclass(frozen=True)
class SeparatorTree:
    """Nested-dissection tree in postorder (children before parents, root last).

    Attributes
    ----------
    order : (n,) int ndarray
        Atoms in elimination order.
    starts : (m + 1,) int ndarray
        Node ``v`` owns ``order[starts[v]:starts[v + 1]]`` (a leaf subdomain or a separator).
    parent : (m,) int ndarray
        Parent node of each node, −1 for the root.
    """

    order: np.ndarray
    starts: np.ndarray
    parent: np.ndarray


def atom_graph(matrix, components: int) -> scipy.sparse.csr_matrix:
    """Boolean atom adjacency of a matrix over ``components`` consecutive coordinates per atom."""
    A = scipy.sparse.coo_matrix(matrix)
    n = A.shape[0] // components
    G = scipy.sparse.csr_matrix((np.ones(A.nnz, np.int8), (A.row // components,
                                 A.col // components)), shape=(n, n))
    G.sum_duplicates()
    return G


def separator_tree(graph, positions_A: np.ndarray, cell_A: np.ndarray,
                   leaf_atoms: int = LEAF_ATOMS) -> SeparatorTree:
    """Nested dissection of the atoms by recursive coordinate bisection.

    Parameters
    ----------
    graph : scipy.sparse matrix
        Symmetric atom adjacency (:func:`atom_graph`); only its pattern is used.
    positions_A : (n, 3) ndarray
        Atom positions, Å.
    cell_A : (3, 3) ndarray
        Periodic cell rows, Å.
    leaf_atoms : int
        Largest subdomain left undivided.
    """
    G = scipy.sparse.csr_matrix(graph)
    n = G.shape[0]
    cell_A = np.asarray(cell_A, float)
    frac = np.linalg.solve(cell_A.T, np.asarray(positions_A, float).T).T % 1.0
    lengths = np.linalg.norm(cell_A, axis=1)
    indptr, indices = G.indptr, G.indices
    in_b = np.zeros(n, bool)
    blocks: list[np.ndarray] = []
    parents: list[int] = []

    def dissect(atoms) -> list[int]:
        """Emit the nodes of ``atoms`` in postorder; return the roots (nodes without parent)."""
        if len(atoms) <= leaf_atoms:
            blocks.append(atoms)
            parents.append(-1)
            return [len(blocks) - 1]
        f = frac[atoms]
        axis = int(np.argmax((f.max(0) - f.min(0)) * lengths))
        left = np.zeros(len(atoms), bool)
        left[np.argsort(f[:, axis], kind="stable")[: len(atoms) // 2]] = True
        A, B = atoms[left], atoms[~left]
        in_b[B] = True
        lo, hi = indptr[A], indptr[A + 1]
        owner = np.repeat(np.arange(len(A)), hi - lo)
        nbr = indices[np.concatenate([np.arange(a, b) for a, b in zip(lo, hi)])]
        touches = np.zeros(len(A), bool)
        touches[owner[in_b[nbr]]] = True
        in_b[B] = False
        S, A_rest = A[touches], A[~touches]
        roots = (dissect(A_rest) if len(A_rest) else []) + dissect(B)
        if not len(S):  # the halves were not coupled
            return roots
        blocks.append(S)
        parents.append(-1)
        for r in roots:
            parents[r] = len(blocks) - 1
        return [len(blocks) - 1]

    dissect(np.arange(n))
    order = np.concatenate(blocks)
    starts = np.concatenate([[0], np.cumsum([len(b) for b in blocks])])
    return SeparatorTree(order, starts, np.asarray(parents, int))


class MultifrontalCholesky:
    """A = L Lᵀ of a symmetric positive-definite sparse matrix in a :class:`SeparatorTree`'s
    order; :meth:`solve` applies A⁻¹.

    Parameters
    ----------
    matrix : scipy.sparse matrix
        Symmetric positive definite, over ``components`` consecutive coordinates per atom of
        the tree's atoms.
    tree : SeparatorTree
    components : int

    Raises
    ------
    NotPositiveDefinite
        If a pivot block is not positive definite (A is not).
    """

    def __init__(self, matrix, tree: SeparatorTree, components: int):
        k = int(components)
        A = scipy.sparse.csr_matrix(matrix)
        self.n = A.shape[0]
        self.perm = (k * tree.order[:, None] + np.arange(k)).ravel()
        A = A[self.perm][:, self.perm].tocsr()
        A.sort_indices()
        starts = tree.starts * k
        m = len(tree.parent)
        children: list[list[int]] = [[] for _ in range(m)]
        for v, p in enumerate(tree.parent):
            if p >= 0:
                children[p].append(v)
        self.starts = starts
        self.diag: list[np.ndarray] = []       # L11 of each node (lower triangular)
        self.below: list[np.ndarray] = []      # L21ᵀ of each node (pivots × boundary)
        self.boundary: list[np.ndarray] = []   # boundary coordinates (new order, ascending)
        updates: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        for v in range(m):
            s, e = int(starts[v]), int(starts[v + 1])
            rows = A[s:e]
            own = rows.indices[rows.indices >= e]
            bnd = [own] + [updates[c][0] for c in children[v]]
            bnd = np.unique(np.concatenate(bnd))
            bnd = bnd[bnd >= e]
            front = np.concatenate([np.arange(s, e), bnd])
            p, size = e - s, len(front)
            # Fortran order: LAPACK works in place and a front's columns are contiguous. Only
            # the lower triangle of a front is kept up to date.
            F = np.zeros((size, size), order="F")
            # the pivot columns from the matrix (the later rows and columns belong to the
            # ancestors, which assemble them themselves)
            F[:, :p] = rows[:, front].toarray().T
            for c in children[v]:
                cb, U = updates.pop(c)
                loc = np.searchsorted(front, cb)
                for j in range(len(cb)):  # extend-add, lower triangle, column by column
                    F[loc[j:], loc[j]] += U[j:, j]
                del U
            try:
                L11 = scipy.linalg.cholesky(F[:p, :p], lower=True, overwrite_a=True,
                                            check_finite=False)
            except np.linalg.LinAlgError as err:
                raise NotPositiveDefinite(f"pivot block of node {v} is not positive definite"
                                          ) from err
            # W = L21ᵀ = L11⁻¹ F12 (pivots × boundary)
            W = scipy.linalg.solve_triangular(L11, F[p:, :p].T, lower=True,
                                              check_finite=False)
            if len(bnd):
                U = np.asfortranarray(F[p:, p:])
                del F
                # Schur complement F22 − Wᵀ W, lower triangle, in place
                U = scipy.linalg.blas.dsyrk(-1.0, W, beta=1.0, c=U, trans=1, lower=1,
                                            overwrite_c=1)
                updates[v] = (bnd, U)
            self.diag.append(np.ascontiguousarray(L11))
            self.below.append(W)
            self.boundary.append(bnd)

    @property
    def nnz(self) -> int:
        """Entries of L (lower triangle of each pivot block plus its boundary rows)."""
        return int(sum(d.shape[0] * (d.shape[0] + 1) // 2 + b.size
                       for d, b in zip(self.diag, self.below)))

    def solve(self, b: np.ndarray) -> np.ndarray:
        """A⁻¹ b (b in the matrix's own order)."""
        y = np.array(b, float)[self.perm]
        st = self.starts
        for v, (L11, W, bnd) in enumerate(zip(self.diag, self.below, self.boundary)):
            s, e = st[v], st[v + 1]
            y[s:e] = scipy.linalg.solve_triangular(L11, y[s:e], lower=True, check_finite=False)
            if len(bnd):
                y[bnd] -= W.T @ y[s:e]
        for v in range(len(self.diag) - 1, -1, -1):
            L11, W, bnd = self.diag[v], self.below[v], self.boundary[v]
            s, e = st[v], st[v + 1]
            r = y[s:e] - W @ y[bnd] if len(bnd) else y[s:e]
            y[s:e] = scipy.linalg.solve_triangular(L11, r, lower=True, trans="T",
                                                   check_finite=False)
        out = np.empty_like(y)
        out[self.perm] = y
        return out
