"""Which functions of a 3D ACE basis are linearly independent on planar configurations.

pyace builds O(3)-invariant bases (spherical harmonics Y_lm, Σ l even, generalised
Clebsch–Gordan couplings). On 3D environments its functions are linearly independent (measured:
full rank on rattled 3D cells for P1's superset), but restricted to configurations in the z = 0
plane they are not: every Y_lm with l + m odd vanishes at θ = π/2, the atomic density is even in
z, and the O(3) invariants collapse onto the far smaller space of O(2) invariants of the plane.
For P1's ACE superset (cutoff 4.5 Å, ``nradmax_by_orders = [15, 8, 6, 4]``,
``lmax_by_orders = [0, 6, 4, 3]``) the first 51 and 110 functions of pyace's truncation order are
all independent in the plane, but only 372 of the first 383, 1017 of 1119, 2208 of 2849 and 3075
of the 4733 of the whole superset (every pair function is independent; the losses are in the 3-
and 4-body functions).

:func:`planar_independence` finds these identities numerically: it evaluates the site functions
(pyace's per-atom projections) on generic planar environments — strongly rattled triangular cells
of varied density, not the near-lattice training data, whose additional near-dependencies are the
rank-revealing QR's business — and marks a function independent when its values are not in the
span of those of the functions before it in pyace's truncation order
(:func:`kernels.ace.truncation_rank`). The identities are exact, so the decision has a wide gap
(distances of a unit-norm column from the span either ≲ 3e-15 or ≳ 1e-4: the same flags for any
threshold 1e-10…1e-4 and for other seeds and environment generators, measured). Functions of
different (body order, multiset of radial indices) differ in their products of radial functions
and are taken to be independent of each other, so the span test runs per such group (measured: the same flags as the test over the
whole basis at once, at a fraction of the cost).

:func:`independent_truncation` then reads a requested basis size as a number of planar-independent
functions: the shortest prefix of the truncation order holding that many.

Units: Å.
"""

from __future__ import annotations

import json
from collections import defaultdict

import numpy as np
import scipy.linalg

from .ace import ACEBasis, truncation_rank
from .lattice import triangular_cell, triangular_sites

__all__ = ["BASIS_COUNTS", "DEFAULT_BASIS_COUNT", "planar_independence",
           "independent_truncation", "n_planar_independent", "INDEPENDENCE_TOL"]

#: Readings of a requested basis size #B on the planar lattice:
#:
#: ``"functions"``
#:     #B functions of the 3D basis (pyace's ``number_of_functions_per_element``), however many
#:     of them are linearly independent in the plane. P1's reading: its ACE1.jl bases are 3D
#:     O(3) bases (ACE1.jl has no planar basis; P1 Appendix C builds φ from Y_l^m), and #B is
#:     their length.
#: ``"planar-independent"``
#:     #B functions that are linearly independent on planar configurations: the shortest prefix of
#:     pyace's truncation order holding #B of them (:func:`independent_truncation`); the functions
#:     dependent in the plane ride along and the rank-revealing QR drops them.
BASIS_COUNTS = ("functions", "planar-independent")
#: The papers' reading (see :data:`BASIS_COUNTS`).
DEFAULT_BASIS_COUNT = "functions"

#: A function is independent of those before it when the distance of its unit-norm column from
#: their span exceeds this (the measured gap: ≲ 3e-15 against ≳ 1e-4).
INDEPENDENCE_TOL = 1e-8

#: Sites per environment cell (8 × 8) and rows per group member: enough generic rows that every
#: group's span is resolved.
_CELL = 8
_ROWS_PER_FUNCTION = 4

#: Independence flags by basis configuration (JSON), computed once per process.
_FLAGS: dict = {}


def _environments(cutoff_A: float, n_cells: int, seed: int):
    """Generic planar cells: triangular 8 × 8 cells of spacing cutoff/U(1.2, 2.0) (so 6 to ~20
    neighbours within the cutoff), every site displaced in-plane by N(0, (0.12 a)²)."""
    rng = np.random.default_rng(seed)
    for _ in range(n_cells):
        a = cutoff_A / rng.uniform(1.2, 2.0)
        cell = triangular_cell(_CELL, a)
        x = triangular_sites(_CELL, a)
        x[:, :2] += rng.normal(0.0, 0.12 * a, (len(x), 2))
        yield x, cell


def planar_independence(basis: ACEBasis, seed: int = 0) -> np.ndarray:
    """Per function of ``basis`` (column order): True if it is linearly independent, on planar
    configurations, of the functions before it in pyace's truncation order.

    One species only. Deterministic given ``seed`` (which, the identities being exact, does not
    change the result). Cached per process by the basis configuration.
    """
    from ase import Atoms  # noqa: PLC0415

    key = json.dumps({"config": basis.config, "seed": seed}, sort_keys=True)
    if key in _FLAGS:
        return _FLAGS[key].copy()
    if len(basis.config["elements"]) != 1:
        raise ValueError("planar_independence handles one species only")
    keys = basis.function_keys()
    order = sorted(range(len(keys)), key=lambda j: truncation_rank(keys[j]))
    groups = defaultdict(list)
    for j in order:
        mu, rank, ns = keys[j][:3]
        groups[(mu, rank, tuple(sorted(ns)))].append(j)
    largest = max(len(g) for g in groups.values())
    n_cells = max(2, -(-_ROWS_PER_FUNCTION * largest // _CELL ** 2))
    objs = basis._objects()
    sym = basis.config["elements"][0]
    rows = []
    for x, cell in _environments(basis.config["bonds"]["ALL"]["rcut"], n_cells, seed):
        atoms = Atoms([sym] * len(x), positions=x, cell=cell, pbc=True)
        ae = objs.aseatoms_to_atomicenvironment(
            atoms, cutoff=objs.basis.cutoffmax,
            elements_mapper_dict=objs.basis.elements_to_index_map)
        objs.calculator.compute(ae, compute_projections=True, compute_b_grad=False)
        rows.append(np.asarray(objs.calculator.projections))
    P = np.vstack(rows)
    flags = np.zeros(len(keys), dtype=bool)
    for cols in groups.values():
        M = P[:, cols]
        norms = np.linalg.norm(M, axis=0)
        ok = norms > 0  # a function vanishing on every planar environment is dependent
        M = M[:, ok] / norms[ok]
        d = np.abs(np.diag(scipy.linalg.qr(M, mode="r")[0])) if M.shape[1] else np.zeros(0)
        sel = np.asarray(cols)[ok]
        flags[sel[: d.size]] = d > INDEPENDENCE_TOL
    _FLAGS[key] = flags
    return flags.copy()


#: (keys in truncation order, flag by key) of each superset, by its configuration (JSON).
_TABLES: dict = {}


def _flags_by_key(superset: ACEBasis) -> tuple[list, dict]:
    key = json.dumps(superset.config, sort_keys=True)
    if key not in _TABLES:
        keys = superset.function_keys()
        flags = planar_independence(superset)
        superset.release()  # only its keys and flags are needed from here on
        _TABLES[key] = (sorted(keys, key=truncation_rank), dict(zip(keys, flags)))
    return _TABLES[key]


def independent_truncation(superset: ACEBasis, n_independent: int) -> tuple[int, int]:
    """The number of functions k of the shortest prefix of ``superset``'s truncation order that
    holds ``n_independent`` planar-independent functions, and the number it holds (below
    ``n_independent`` only when the whole superset holds fewer; k is then its size)."""
    if n_independent < 1:
        raise ValueError(f"n_independent must be >= 1, got {n_independent}")
    ordered, flag = _flags_by_key(superset)
    count = np.cumsum([flag[k] for k in ordered])
    if count[-1] < n_independent:
        return len(ordered), int(count[-1])
    k = int(np.searchsorted(count, n_independent)) + 1
    return k, int(count[k - 1])


def n_planar_independent(basis: ACEBasis, superset: ACEBasis) -> int:
    """Number of ``basis``'s functions that are planar-independent (``basis`` a truncation of
    ``superset``, whose flags are computed once and looked up by function key)."""
    _, flag = _flags_by_key(superset)
    return int(sum(flag[k] for k in basis.function_keys()))
