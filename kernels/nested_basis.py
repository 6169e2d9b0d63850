"""Nested truncations of one basis superset: a column order in which every smaller basis is a
prefix of the largest.

pyace's ``number_of_functions_per_element`` truncates one superset; the truncations are nested
(each smaller basis's functions are among the larger one's, with equal columns at equal function
keys — tests/test_kernels_nested_basis.py). Ordering the superset's columns as "the smallest
basis's functions, then those the next basis adds, …" makes basis b the leading ``sizes[b]``
columns. With the R factor of the largest weighted [A | y] in that order, the least-squares
problem of basis b is R[:sizes[b], :sizes[b]] c ≈ R[:sizes[b], −1]: one QR serves every size.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["NestedColumns", "nested_columns"]


@dataclass(frozen=True)
class NestedColumns:
    """A nested column order of a superset and where each basis's own columns sit in it.

    Attributes
    ----------
    order : (n,) int ndarray
        ``order[p]`` is the superset column placed at nested position p.
    sizes : tuple of int
        Number of functions of each basis (ascending; the last is the superset).
    positions : tuple of int ndarrays
        ``positions[b][j]`` is the nested position of basis b's own column j; it is a
        permutation of ``range(sizes[b])``.
    """

    order: np.ndarray
    sizes: tuple
    positions: tuple

    def to_basis_order(self, b: int, coeffs_prefix: np.ndarray) -> np.ndarray:
        """Coefficients of basis b in its own column order from those of the nested prefix."""
        return np.asarray(coeffs_prefix)[self.positions[b]]


def nested_columns(keys_per_basis: list[list], canonical_key=None) -> NestedColumns:
    """Nested order from the function keys of bases listed from smallest to the superset.

    Parameters
    ----------
    keys_per_basis : list of lists of hashable
        Each basis's function keys in its column order (e.g. :meth:`kernels.ace.ACEBasis.
        function_keys`); the last basis is the superset.
    canonical_key : callable, optional
        Sort key of the truncation ranking (e.g. :func:`kernels.ace.truncation_rank`). When
        every basis is a prefix of the superset sorted by it, that order is used: it does not
        depend on which intermediate bases are listed, so the factors of a slice — and every
        fit from them — are the same for any set of basis sizes with the same largest one.
        Otherwise the order is built from the listed bases.

    Raises
    ------
    ValueError
        If a basis is not contained in the next one (the truncations are not nested) or keys
        repeat within a basis.
    """
    if not keys_per_basis:
        raise ValueError("no bases given")
    superset = keys_per_basis[-1]
    index = {k: i for i, k in enumerate(superset)}
    if len(index) != len(superset):
        raise ValueError("function keys repeat within the superset")
    if canonical_key is not None:
        canon = sorted(superset, key=canonical_key)
        if all(set(keys) == set(canon[:len(keys)]) and len(set(keys)) == len(keys)
               for keys in keys_per_basis):
            position = {k: p for p, k in enumerate(canon)}
            return NestedColumns(np.array([index[k] for k in canon], dtype=np.int64),
                                 tuple(len(k) for k in keys_per_basis),
                                 tuple(np.array([position[k] for k in keys], dtype=np.int64)
                                       for keys in keys_per_basis))
    position: dict = {}
    order: list[int] = []
    previous: set = set()
    for b, keys in enumerate(keys_per_basis):
        ks = set(keys)
        if len(ks) != len(keys):
            raise ValueError(f"function keys repeat within basis {b}")
        if not previous <= ks:
            raise ValueError(f"basis {b - 1} is not contained in basis {b}: not nested")
        if not ks <= set(index):
            raise ValueError(f"basis {b} has functions outside the superset")
        for k in keys:
            if k not in position:
                position[k] = len(order)
                order.append(index[k])
        previous = ks
    positions = tuple(np.array([position[k] for k in keys], dtype=np.int64)
                      for keys in keys_per_basis)
    return NestedColumns(np.array(order, dtype=np.int64),
                         tuple(len(k) for k in keys_per_basis), positions)
