"""Nested truncations of one ACE superset and the prefix least-squares problems (kernels.
nested_basis, kernels.tsqr): the columns of every truncation equal the superset's at equal keys,
and one QR of the largest [A | y] gives each smaller basis's solution."""

import numpy as np
import pytest
import scipy.linalg

from kernels.ace import ACEBasis, ace_potential_config
from kernels.lattice import triangular_cell, triangular_sites
from kernels.least_squares import solve_rrqr
from kernels.nested_basis import nested_columns
from kernels.tsqr import StreamingR, r_factor, residual_norm2

R0 = 2.7328662547
SHAPE = ([12, 6, 4], [0, 4, 3])
SIZES = [8, 20, 45, 80]


@pytest.fixture(scope="module")
def bases():
    return [ACEBasis(ace_potential_config(["W"], s, 4.5, *SHAPE)) for s in SIZES]


@pytest.fixture(scope="module")
def configs():
    rng = np.random.default_rng(3)
    pos = triangular_sites(4, R0)[1:]
    P = np.repeat(pos[None], 3, axis=0)
    P[:, :, :2] += 0.05 * rng.standard_normal(P[:, :, :2].shape)
    return P, triangular_cell(4, R0)


def test_truncations_are_nested_prefixes_with_equal_columns(bases, configs):
    P, cell = configs
    nested = nested_columns([b.function_keys() for b in bases])
    assert nested.sizes == tuple(SIZES)
    assert sorted(nested.order) == list(range(SIZES[-1]))
    big = bases[-1].design_rows(P, cell, ["W"] * P.shape[1], 2, method="pyace")
    E_big, F_big = big.energy[:, nested.order], big.forces[..., nested.order]
    for b, basis in enumerate(bases):
        assert sorted(nested.positions[b]) == list(range(SIZES[b]))  # a prefix
        small = basis.design_rows(P, cell, ["W"] * P.shape[1], 2, method="pyace")
        np.testing.assert_array_equal(small.energy, E_big[:, nested.positions[b]])
        np.testing.assert_array_equal(small.forces, F_big[..., nested.positions[b]])


def test_not_nested_is_refused():
    with pytest.raises(ValueError, match="not nested"):
        nested_columns([["a", "b"], ["a", "c"], ["a", "b", "c"]])


def test_prefix_of_one_r_factor_solves_every_basis(bases, configs):
    """Same coefficients (1e-8) and residuals as solving each basis's own rows directly."""
    P, cell = configs
    rng = np.random.default_rng(0)
    nested = nested_columns([b.function_keys() for b in bases])
    big = bases[-1].design_rows(P, cell, ["W"] * P.shape[1], 2)
    A = big.forces.reshape(-1, SIZES[-1])[:, nested.order]
    y = A[:, :30] @ rng.standard_normal(30) + 0.01 * rng.standard_normal(len(A))
    R = r_factor(np.column_stack([A, y]))
    for b, basis in enumerate(bases):
        B = SIZES[b]
        own = basis.design_rows(P, cell, ["W"] * P.shape[1], 2).forces.reshape(-1, B)
        direct = solve_rrqr(own, y)
        # leading block, columns in the basis's own order (pivoting order as on the direct path)
        prefix = solve_rrqr(R[:B, nested.positions[b]], R[:B, -1])
        c = prefix.coeffs
        assert prefix.rank == direct.rank
        np.testing.assert_allclose(c, direct.coeffs, rtol=1e-8,
                                   atol=1e-8 * np.abs(direct.coeffs).max())
        res = np.sum((own @ direct.coeffs - y) ** 2)
        assert residual_norm2(R, nested.positions[b], c) == pytest.approx(res, rel=1e-8)


def test_streaming_r_equals_one_qr():
    rng = np.random.default_rng(1)
    M = rng.standard_normal((500, 40))
    s = StreamingR(40)
    for k in range(0, 500, 70):
        s.add(M[k:k + 70])
    assert s.n_rows == 500 and s.is_factored
    R1 = scipy.linalg.qr(M, mode="r")[0][:40]
    # R is unique up to the signs of its rows
    np.testing.assert_allclose(np.abs(s.R), np.abs(R1), atol=1e-12 * np.abs(R1).max())
    np.testing.assert_allclose(s.R.T @ s.R, M.T @ M, rtol=1e-10, atol=1e-10)


def test_rank_deficient_prefix_solutions_agree_with_direct(bases):
    """Small, nearly degenerate training sets (rank-deficient fits): the prefix solve and the
    direct solve drop the same columns, thanks to the pivot tie-break of solve_rrqr (without it,
    measured: 47 of 160 such solves disagreed)."""
    nested = nested_columns([b.function_keys() for b in bases])
    cell, pos = triangular_cell(4, R0), triangular_sites(4, R0)[1:]
    n_deficient = 0
    for seed in range(8):
        rng = np.random.default_rng(seed)
        P = np.repeat(pos[None], 3, axis=0)
        P[:, :, :2] += 0.01 * rng.standard_normal(P[:, :, :2].shape)
        big = bases[-1].design_rows(P, cell, ["W"] * P.shape[1], 2)
        A = np.vstack([big.forces.reshape(-1, SIZES[-1]), 10 * big.energy / 15])[:, nested.order]
        y = A[:, :30] @ rng.standard_normal(30) + 0.01 * rng.standard_normal(len(A))
        R = r_factor(np.column_stack([A, y]))
        assert R.shape[0] == SIZES[-1] + 1  # factored (more rows than columns)
        for b, B in enumerate(SIZES):
            cols = nested.positions[b]
            direct = solve_rrqr(A[:, cols], y)
            prefix = solve_rrqr(R[:B, cols], R[:B, -1])
            n_deficient += direct.rank < B
            assert prefix.rank == direct.rank
            np.testing.assert_allclose(prefix.coeffs, direct.coeffs, rtol=0,
                                       atol=1e-8 * np.abs(direct.coeffs).max())
    assert n_deficient >= 8


def test_streaming_r_keeps_rows_up_to_its_limit():
    rng = np.random.default_rng(2)
    M = rng.standard_normal((90, 10))
    s = StreamingR(10, keep_rows=100)
    s.add(M[:50])
    s.add(M[50:])
    assert not s.is_factored
    np.testing.assert_array_equal(s.R, M)
    s.add(M[:20])
    assert s.is_factored and s.R.shape == (10, 10)
    full = np.vstack([M, M[:20]])
    np.testing.assert_allclose(s.R.T @ s.R, full.T @ full, rtol=1e-10, atol=1e-10)


def test_canonical_order_does_not_depend_on_the_listed_sizes(bases):
    """pyace's truncations are prefixes of its truncation ranking, so the nested order (and every
    factor built in it) is the same whichever intermediate sizes a grid lists."""
    from kernels.ace import truncation_rank

    full = nested_columns([b.function_keys() for b in bases], truncation_rank)
    ends = nested_columns([bases[0].function_keys(), bases[-1].function_keys()], truncation_rank)
    np.testing.assert_array_equal(full.order, ends.order)
    np.testing.assert_array_equal(full.positions[0], ends.positions[0])
    for b in range(len(bases)):
        assert sorted(full.positions[b]) == list(range(SIZES[b]))


def test_streaming_r_merge():
    """Factors of two disjoint row sets, merged (either side factored or still rows), are a
    factor of all rows."""
    rng = np.random.default_rng(3)
    M = rng.standard_normal((300, 25))
    for split in (10, 150, 290):
        a, b = StreamingR(25), StreamingR(25)
        for k in range(0, split, 40):
            a.add(M[k:min(k + 40, split)])
        for k in range(split, 300, 40):
            b.add(M[k:k + 40])
        a.merge(b)
        assert a.n_rows == 300 and a.is_factored
        np.testing.assert_allclose(a.R.T @ a.R, M.T @ M, rtol=1e-10, atol=1e-10)
        assert np.all(np.tril(a.R, -1) == 0)


def test_truncated_pivoted_qr_matches_lapack_dgeqp3():
    """The pivoted QR stopped at the truncation picks dgeqp3's pivots and gives its solution,
    on random rank-deficient, badly scaled systems (tall and wide)."""
    from kernels.least_squares import _pivoted_solve

    rng = np.random.default_rng(5)
    for trial in range(12):
        m, n = int(rng.integers(20, 200)), int(rng.integers(5, 150))
        k = int(rng.integers(1, min(m, n) + 1))
        A = rng.standard_normal((m, k)) @ rng.standard_normal((k, n))
        A *= np.logspace(0, -rng.uniform(0, 9), n) + 1e-9 * (trial % 2)
        z = rng.standard_normal(m)
        w, R2, piv = scipy.linalg.qr_multiply(A, z, mode="right", pivoting=True)
        d = np.abs(np.diag(R2))
        rank = int(np.count_nonzero(d > 1e-6 * d[0]))
        ref = np.zeros(n)
        ref[piv[:rank]] = scipy.linalg.solve_triangular(R2[:rank, :rank], w[:rank])
        sol = _pivoted_solve(A, z, 1e-6)
        assert sol.rank == rank
        np.testing.assert_allclose(sol.coeffs, ref, rtol=0, atol=1e-10 * np.abs(ref).max())
