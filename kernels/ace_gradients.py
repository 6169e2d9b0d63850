"""Design rows of a linear ACE basis by the chain rule through the atomic basis ("density trick").

pyace's ``compute_b_grad`` differentiates every B function separately; its cost grows like the
square of the basis size (pyace-notes.md: ~114 ms/atom at 2,000 functions in 2D). Here the same
rows are computed from pyace's own ingredients, per atom i:

* the atomic basis  A_{nlm} = Σ_j R_{nl}(r_ij) Y_lm(r̂_ij)  (m ≥ 0; A_{l,−m} = (−1)^m conj A_{lm})
  and the rank-1 basis  A1_n = Σ_j g_n(r_ij) Y00,  with pyace's radial functions
  (``ACERadialFunctions.evaluate_range``: g = ``gr``, R = ``fr``) and the spherical harmonics of
  ace-evaluator's ``ACECartesianSphericalHarmonics`` (complex, normalised to 4π (Y00 = 1), Condon–Shortley phase,
  the same recursion in the Cartesian form (x + i y)^m P̄_lm(z));
* every B function  B = Σ_{ms} c_{ms} Re Π_t A_{n_t l_t m_t}  (rank ≥ 2, pyace's "half" ms basis
  with its generalised Clebsch–Gordan coefficients ``gen_cgs``) and B = A1_n (rank 1) — the
  projections of ``ACEBEvaluator``;
* ∂B/∂r_ij = Σ_a Re(∂B/∂A_a · ∂A_a/∂r_ij), where ∂B/∂A is sparse (a function touches a few A's)
  and folded onto m ≥ 0 with A_{l,−m} = (−1)^m conj A_{lm}; ∂A/∂r_ij = R' Y r̂ + R ∇Y / r.

The energy row is Σ_i B_i; the force rows are F_j = −∂(Σ_i B_i)/∂r_j. Both equal pyace's
``projections`` and ``forces_bfuncs`` to rounding (tests/test_kernels_ace_gradients.py). The
per-atom work is linear in the basis size, not quadratic. Single species only.

Units: Å; energy rows in eV per unit coefficient, force rows in eV/Å per unit coefficient.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numba
import numpy as np

__all__ = ["BasisTables", "basis_tables", "design_rows_chain_rule",
           "design_rows_chain_rule_species", "Y00"]

#: ace-evaluator's Y_00 (its spherical harmonics are normalised to 4π, not 1: ``Y00 = 1`` in
#: ace_types.h; measured here: pyace's rank-ν projections are (4π)^(ν/2) times those of
#: orthonormal harmonics).
Y00 = 1.0


@dataclass(frozen=True)
class BasisTables:
    """The B functions of one single-species pyace basis as flat index tables (picklable).

    Function order is pyace's projection order: the ``rank1`` functions first, then the
    rank ≥ 2 functions. A-indices are ``n·(lmax+1)² + l² + l + m`` (n from 0).

    Attributes
    ----------
    nradbase, nradmax, lmax : int
        Sizes of pyace's radial basis g_n, radial functions R_nl and angular degree.
    rank1_n : (F1,) int ndarray
        Radial index n (from 0) of each rank-1 function.
    comb_ptr : (F2+1,) int ndarray
        ms-combinations of rank ≥ 2 function f are ``comb_ptr[f]:comb_ptr[f+1]``.
    comb_rank : (C,) int ndarray
        Rank of each combination's function.
    comb_cg : (C,) ndarray
        Generalised Clebsch–Gordan coefficient of each combination (pyace's ``gen_cgs``).
    comb_a : (C, rankmax) int ndarray
        A-index of each factor (m may be negative).
    comb_slot : (C, rankmax) int ndarray
        Slot (within the function's slots) of the factor's m ≥ 0 partner.
    comb_sign : (C, rankmax) int ndarray
        0 for m ≥ 0; (−1)^m for m < 0 (the factor is then (−1)^m conj A_{l|m|}).
    slot_ptr : (F2+1,) int ndarray
        Slots of function f are ``slot_ptr[f]:slot_ptr[f+1]``.
    slot_a : (S,) int ndarray
        A-index (m ≥ 0) of each slot.
    cutoff_A : float
        Radial cutoff, Å.
    nelements : int
        Species of the basis; with several, A-indices are offset by μ_j·nradmax·(lmax+1)²
        (the neighbour's species) and rank-1 radial indices by μ_j·nradbase.
    """

    nradbase: int
    nradmax: int
    lmax: int
    rank1_n: np.ndarray
    comb_ptr: np.ndarray
    comb_rank: np.ndarray
    comb_cg: np.ndarray
    comb_a: np.ndarray
    comb_slot: np.ndarray
    comb_sign: np.ndarray
    slot_ptr: np.ndarray
    slot_a: np.ndarray
    cutoff_A: float
    nelements: int = 1
    _derived: dict = field(default_factory=dict, compare=False, repr=False)

    @property
    def n_functions(self) -> int:
        """Number of B functions (rank 1 and rank ≥ 2)."""
        return len(self.rank1_n) + len(self.comb_ptr) - 1

    def planar(self) -> "BasisTables":
        """The tables without the ms-combinations that vanish for a planar structure.

        When every neighbour vector has z = 0 exactly, Y_lm with l + m odd is exactly 0
        (odd in z; ace-evaluator's recursion then yields 0.0) and so are its in-plane
        derivatives: a combination with such a factor adds nothing to B or to the x, y force
        rows. Dropping them changes the results only by the order of summation. Computed once
        per instance.
        """
        if "planar" not in self._derived:
            self._derived["planar"] = self._planar()
        return self._derived["planar"]

    def _planar(self) -> "BasisTables":
        nlm = (self.lmax + 1) ** 2
        k = self.comb_a % nlm
        l = np.floor(np.sqrt(k) + 1e-9).astype(np.int64)
        m = k - l * l - l
        used = np.arange(self.comb_a.shape[1])[None, :] < self.comb_rank[:, None]
        keep = np.all(~used | ((l + np.abs(m)) % 2 == 0), axis=1)
        func = np.repeat(np.arange(len(self.comb_ptr) - 1), np.diff(self.comb_ptr))
        nf = len(self.comb_ptr) - 1
        ptr = np.concatenate([[0], np.cumsum(np.bincount(func[keep], minlength=nf))])
        ks = self.slot_a % nlm
        ls = np.floor(np.sqrt(ks) + 1e-9).astype(np.int64)
        keep_slot = (ks - ls * ls) % 2 == 0  # l + m ≡ k − l² (mod 2)
        sfunc = np.repeat(np.arange(nf), np.diff(self.slot_ptr))
        sptr = np.concatenate([[0], np.cumsum(np.bincount(sfunc[keep_slot], minlength=nf))])
        new_global = np.cumsum(keep_slot) - 1
        old_global = self.slot_ptr[func[keep], None] + self.comb_slot[keep]
        slot = np.where(used[keep], new_global[old_global] - sptr[func[keep], None], 0)
        return BasisTables(self.nradbase, self.nradmax, self.lmax, self.rank1_n,
                           ptr.astype(np.int64), self.comb_rank[keep], self.comb_cg[keep],
                           self.comb_a[keep], slot.astype(np.int64), self.comb_sign[keep],
                           sptr.astype(np.int64), self.slot_a[keep_slot], self.cutoff_A,
                           self.nelements)


def basis_tables(bbasis, mu: int | None = None) -> BasisTables:
    """Flatten a ``pyace.ACEBBasisSet`` into :class:`BasisTables`: the functions of one species.

    Parameters
    ----------
    bbasis : pyace.ACEBBasisSet
        The basis.
    mu : int, optional
        Species index (pyace's ``elements_to_index_map``) of the central atom whose functions
        are flattened; required when the basis has several species.
    """
    nel = int(bbasis.nelements)
    if mu is None:
        if nel != 1:
            raise ValueError("a basis of several species needs the central species mu")
        mu = 0
    lmax = int(bbasis.lmax)
    nlm = (lmax + 1) ** 2
    nradmax_ = int(bbasis.nradmax)
    rank1 = bbasis.basis_rank1[mu]
    funcs = bbasis.basis[mu]
    rank1_n = np.array([f.mus[0] * int(bbasis.nradbase) + f.ns[0] - 1 for f in rank1],
                       dtype=np.int64)
    rankmax = max([f.rank for f in funcs], default=1)
    comb_ptr = [0]
    slot_ptr = [0]
    ranks, cgs, aa, slots, signs, slot_a = [], [], [], [], [], []
    for f in funcs:
        if f.ndensity != 1:
            raise ValueError("only one density is supported")
        local: dict[int, int] = {}
        for ms, cg in zip(f.ms_combs, f.gen_cgs):
            a_row, s_row, g_row = [0] * rankmax, [0] * rankmax, [0] * rankmax
            for t in range(f.rank):
                n, l, m = f.ns[t] - 1, f.ls[t], ms[t]
                base = f.mus[t] * nradmax_ * nlm + n * nlm  # the neighbour species' A block
                a_pos = base + l * l + l + abs(m)
                if a_pos not in local:
                    local[a_pos] = len(local)
                    slot_a.append(a_pos)
                a_row[t] = base + l * l + l + m
                s_row[t] = local[a_pos]
                g_row[t] = 0 if m >= 0 else (1 if m % 2 == 0 else -1)
            ranks.append(f.rank)
            cgs.append(cg)
            aa.append(a_row)
            slots.append(s_row)
            signs.append(g_row)
        comb_ptr.append(len(cgs))
        slot_ptr.append(len(slot_a))
    i64 = np.int64
    return BasisTables(
        int(bbasis.nradbase), int(bbasis.nradmax), lmax, rank1_n,
        np.array(comb_ptr, i64), np.array(ranks, i64), np.array(cgs, float),
        np.array(aa, i64).reshape(-1, rankmax), np.array(slots, i64).reshape(-1, rankmax),
        np.array(signs, i64).reshape(-1, rankmax), np.array(slot_ptr, i64),
        np.array(slot_a, i64), float(bbasis.cutoffmax), nel)


@numba.njit(cache=True)
def _ylm(rx, ry, rz, lmax, alm, blm, cl, dl, Y, DY):
    """Y_lm (m ≥ 0) and their tangential gradients at the unit vector (rx, ry, rz), as
    ace-evaluator's ACECartesianSphericalHarmonics computes them. Index l² + l + m."""
    nl = lmax + 1
    plm = np.zeros((nl, nl))
    dplm = np.zeros((nl, nl))
    plm[0, 0] = Y00
    if lmax > 0:
        plm[1, 0] = Y00 * np.sqrt(3.0) * rz
        dplm[1, 0] = Y00 * np.sqrt(3.0)
        plm[1, 1] = -np.sqrt(1.5) * Y00
        for l in range(2, lmax + 1):
            for m in range(0, l - 1):
                plm[l, m] = alm[l, m] * (rz * plm[l - 1, m] + blm[l, m] * plm[l - 2, m])
                dplm[l, m] = alm[l, m] * (plm[l - 1, m] + rz * dplm[l - 1, m]
                                          + blm[l, m] * dplm[l - 2, m])
            t = dl[l] * plm[l - 1, l - 1]
            plm[l, l - 1] = t * rz
            dplm[l, l - 1] = t
            plm[l, l] = cl[l] * plm[l - 1, l - 1]
            dplm[l, l] = 0.0
    phase = complex(rx, ry)
    phasem = complex(1.0, 0.0)
    for m in range(0, lmax + 1):
        # d/dx and d/dy of (x + i y)^m = m (x + i y)^(m-1) · (1, i)
        mphasem1 = m * phasem  # m (x + i y)^(m-1), before phasem becomes (x + i y)^m
        if m > 0:
            phasem = phasem * phase
        for l in range(m, lmax + 1):
            k = l * l + l + m
            Y[k] = phasem * plm[l, m]
            dyx = mphasem1 * plm[l, m]
            dyy = 1j * dyx
            dyz = phasem * dplm[l, m]
            rdy = rx * dyx + ry * dyy + rz * dyz
            DY[k, 0] = dyx - rdy * rx
            DY[k, 1] = dyy - rdy * ry
            DY[k, 2] = dyz - rdy * rz


def _ylm_constants(lmax: int):
    alm = np.zeros((lmax + 1, lmax + 1))
    blm = np.zeros((lmax + 1, lmax + 1))
    cl = np.zeros(lmax + 1)
    dl = np.zeros(lmax + 1)
    for l in range(1, lmax + 1):
        lsq, ld = l * l, 2 * l
        l1, l2 = 4 * lsq - 1, lsq - ld + 1
        for m in range(0, l - 1):
            msq = m * m
            alm[l, m] = np.sqrt(l1 / (lsq - msq))
            blm[l, m] = -np.sqrt((l2 - msq) / (4 * l2 - 1))
        cl[l] = -np.sqrt(1.0 + 0.5 / l)
        dl[l] = np.sqrt(2 * (l - 1) + 3.0)
    return alm, blm, cl, dl


@numba.njit(cache=True)
def _rows_one_structure(n_atoms, pair_i, pair_j, vec, gr, dgr, fr, dfr, lmax, rank1_n,
                        comb_ptr, comb_rank, comb_cg, comb_a, comb_slot, comb_sign,
                        slot_ptr, slot_a, alm, blm, cl, dl, ncomp, E, F, pair_mu, nel):
    """Energy row E (B,) and force rows F (n, ncomp, B) of one structure (pairs sorted by i).

    ``pair_mu``: species index of each pair's neighbour j (all 0 for one species); ``nel``: the
    number of species (A blocks)."""
    nlm = (lmax + 1) * (lmax + 1)
    nradmax = fr.shape[1]
    nradbase_pair = gr.shape[1]
    nradbase = nel * nradbase_pair
    nA = nel * nradmax * nlm
    F1 = rank1_n.shape[0]
    F2 = comb_ptr.shape[0] - 1
    B = F1 + F2
    npairs = pair_i.shape[0]
    Yp = np.zeros(nlm, np.complex128)
    DYp = np.zeros((nlm, 3), np.complex128)
    A = np.zeros(nA, np.complex128)
    A1 = np.zeros(nradbase)
    maxslots = 1
    for f in range(F2):
        maxslots = max(maxslots, slot_ptr[f + 1] - slot_ptr[f])
    Wr = np.zeros(maxslots)
    Wi = np.zeros(maxslots)
    fre = np.where(comb_sign == 0, 1.0, comb_sign.astype(np.float64))
    fim = np.where(comb_sign == 0, 1.0, -comb_sign.astype(np.float64))
    fwd = np.zeros(comb_a.shape[1] + 1, np.complex128)
    dd = np.zeros(max(comb_a.shape[1], 2), np.complex128)
    bwd = np.zeros(comb_a.shape[1] + 1, np.complex128)
    start = 0
    while start < npairs:
        i = pair_i[start]
        stop = start
        while stop < npairs and pair_i[stop] == i:
            stop += 1
        nn = stop - start
        # dA[p, a(m>=0), c] = R' Y r̂ + R ∇Y / r ; dA1[p, n, c] = g' Y00 r̂
        nqc = nn * ncomp
        dAr = np.zeros((nA, nqc))  # real and imaginary parts, contiguous over (pair, component)
        dAi = np.zeros((nA, nqc))
        dA1 = np.zeros((nn, nradbase, ncomp))
        A[:] = 0.0
        A1[:] = 0.0
        for q in range(nn):
            p = start + q
            r = np.sqrt(vec[p, 0] ** 2 + vec[p, 1] ** 2 + vec[p, 2] ** 2)
            rh0, rh1, rh2 = vec[p, 0] / r, vec[p, 1] / r, vec[p, 2] / r
            rhat = (rh0, rh1, rh2)
            _ylm(rh0, rh1, rh2, lmax, alm, blm, cl, dl, Yp, DYp)
            o1 = pair_mu[p] * nradbase_pair
            oA = pair_mu[p] * nradmax * nlm
            for n in range(nradbase_pair):
                A1[o1 + n] += gr[p, n] * Y00
                for c in range(ncomp):
                    dA1[q, o1 + n, c] = dgr[p, n] * Y00 * rhat[c]
            for n in range(nradmax):
                for l in range(lmax + 1):
                    R = fr[p, n, l]
                    DR = dfr[p, n, l]
                    Rr = R / r
                    for m in range(l + 1):
                        k = l * l + l + m
                        a = oA + n * nlm + k
                        A[a] += R * Yp[k]
                        for c in range(ncomp):
                            z = DR * Yp[k] * rhat[c] + Rr * DYp[k, c]
                            dAr[a, q * ncomp + c] = z.real
                            dAi[a, q * ncomp + c] = z.imag
        for n in range(nel * nradmax):  # every species' block
            for l in range(1, lmax + 1):
                for m in range(1, l + 1):
                    s = 1.0 if m % 2 == 0 else -1.0
                    A[n * nlm + l * l + l - m] = s * np.conj(A[n * nlm + l * l + l + m])
        # G[f, q·ncomp + c] = ∂B_f(atom i)/∂r_ij (component c) of pair q
        G = np.zeros((B, nqc))
        for f in range(F1):
            n = rank1_n[f]
            E[f] += A1[n]
            for q in range(nn):
                for c in range(ncomp):
                    G[f, q * ncomp + c] = dA1[q, n, c]
        for f in range(F2):
            s0 = slot_ptr[f]
            ns = slot_ptr[f + 1] - s0
            Wr[:ns] = 0.0
            Wi[:ns] = 0.0
            Bval = 0.0
            for ci in range(comb_ptr[f], comb_ptr[f + 1]):
                rank = comb_rank[ci]
                cg = comb_cg[ci]
                # dB/dA_t = cg · Π_{u≠t} A_u (ranks 2–3 written out; the general case by
                # forward and backward partial products)
                a0 = A[comb_a[ci, 0]]
                a1 = A[comb_a[ci, 1]]
                if rank == 2:
                    Bval += cg * (a0 * a1).real
                    d0 = cg * a1
                    d1 = cg * a0
                    dd[0] = d0
                    dd[1] = d1
                elif rank == 3:
                    a2 = A[comb_a[ci, 2]]
                    a01 = a0 * a1
                    Bval += cg * (a01 * a2).real
                    dd[0] = cg * (a1 * a2)
                    dd[1] = cg * (a0 * a2)
                    dd[2] = cg * a01
                else:
                    fwd[0] = 1.0
                    for t in range(rank):
                        fwd[t + 1] = fwd[t] * A[comb_a[ci, t]]
                    Bval += cg * fwd[rank].real
                    bwd[rank - 1] = 1.0
                    for t in range(rank - 1, 0, -1):
                        bwd[t - 1] = bwd[t] * A[comb_a[ci, t]]
                    for t in range(rank):
                        dd[t] = cg * fwd[t] * bwd[t]
                for t in range(rank):
                    # m ≥ 0: W += d; m < 0: W += (−1)^m conj(d) — branch-free by the factors
                    sl = comb_slot[ci, t]
                    Wr[sl] += fre[ci, t] * dd[t].real
                    Wi[sl] += fim[ci, t] * dd[t].imag
            fc = F1 + f
            E[fc] += Bval
            for sl in range(ns):
                wr, wi = Wr[sl], Wi[sl]
                if wr == 0 and wi == 0:
                    continue
                a = slot_a[s0 + sl]
                for x in range(nqc):
                    G[fc, x] += wr * dAr[a, x] - wi * dAi[a, x]
        GT = np.ascontiguousarray(G.T)
        for q in range(nn):
            j = pair_j[start + q]
            for c in range(ncomp):
                row = GT[q * ncomp + c]
                Fj = F[j, c]
                Fi = F[i, c]
                for f in range(B):
                    Fj[f] -= row[f]
                    Fi[f] += row[f]
        start = stop


def _sorted_pairs(positions_A, cell_A, pbc, cutoff_A):
    """Neighbour pairs (i, j, D = x_j − x_i, r) within the cutoff, sorted by i (stable)."""
    from matscipy.neighbours import neighbour_list  # noqa: PLC0415

    i, j, D = neighbour_list("ijD", positions=positions_A, cutoff=cutoff_A, cell=cell_A, pbc=pbc)
    r = np.linalg.norm(D, axis=1)
    keep = r < cutoff_A
    order = np.argsort(i[keep], kind="stable")
    return i[keep][order], j[keep][order], D[keep][order], r[keep][order]


def _radial(radial_functions, r, tables: BasisTables, mu_i: int, mu_j: int):
    """pyace's g, g', R, R' at the distances r of (mu_i, mu_j) pairs: (p, nradbase) and
    (p, nradmax, l) arrays."""
    radial_functions.evaluate_range(list(r), tables.nradbase, tables.nradmax, mu_i, mu_j)
    gr = np.array(radial_functions.gr_vec).reshape(len(r), -1)
    dgr = np.array(radial_functions.dgr_vec).reshape(len(r), -1)
    fr = np.array(radial_functions.fr_vec).reshape(len(r), tables.nradmax, -1)
    dfr = np.array(radial_functions.dfr_vec).reshape(len(r), tables.nradmax, -1)
    return gr, dgr, fr, dfr


def design_rows_chain_rule(tables: BasisTables, radial_functions, positions_A, cell_A,
                           force_components: int = 3, pbc=True) -> tuple[np.ndarray, np.ndarray]:
    """Energy and force rows of S structures sharing one cell (single species).

    Parameters
    ----------
    tables : BasisTables
        From :func:`basis_tables` of the pyace basis.
    radial_functions : pyace ``ACERadialFunctions``
        ``bbasis.radial_functions`` of the same basis (keep ``bbasis`` referenced).
    positions_A : (S, n, 3) ndarray
        Positions, Å.
    cell_A : (3, 3) ndarray
        Cell rows, Å.
    force_components : int
        Keep the first k Cartesian components of the force rows.
    pbc : bool or sequence of 3 bool
        Periodicity (pyace's neighbour list treats all directions as periodic).

    Returns
    -------
    energy : (S, B) ndarray
        Energy rows, eV per unit coefficient.
    forces : (S, n, k, B) ndarray
        Force rows −∂(energy row)/∂x, eV/Å per unit coefficient.
    """
    positions_A = np.asarray(positions_A, float)
    S, n = positions_A.shape[:2]
    B = tables.n_functions
    k = int(force_components)
    E = np.zeros((S, B))
    F = np.zeros((S, n, k, B))
    alm, blm, cl, dl = _ylm_constants(tables.lmax)
    cell_A = np.asarray(cell_A, float)
    pbc = np.broadcast_to(np.asarray(pbc, bool), (3,))
    if k <= 2 and np.ptp(positions_A[:, :, 2]) == 0.0 and not np.any(cell_A[:2, 2]):
        tables = tables.planar()  # exact: the dropped terms are exactly zero (see planar())
    for s in range(S):
        i, j, D, r = _sorted_pairs(positions_A[s], cell_A, pbc, tables.cutoff_A)
        if len(r):
            gr, dgr, fr, dfr = _radial(radial_functions, r, tables, 0, 0)
        else:
            gr = dgr = np.zeros((0, tables.nradbase))
            fr = dfr = np.zeros((0, tables.nradmax, tables.lmax + 1))
        _rows_one_structure(n, i.astype(np.int64), j.astype(np.int64), np.ascontiguousarray(D),
                            np.ascontiguousarray(gr), np.ascontiguousarray(dgr),
                            np.ascontiguousarray(fr[:, :, :tables.lmax + 1]),
                            np.ascontiguousarray(dfr[:, :, :tables.lmax + 1]),
                            tables.lmax, tables.rank1_n, tables.comb_ptr, tables.comb_rank,
                            tables.comb_cg, tables.comb_a, tables.comb_slot, tables.comb_sign,
                            tables.slot_ptr, tables.slot_a, alm, blm, cl, dl, k, E[s], F[s],
                            np.zeros(len(r), np.int64), 1)
    return E, F


def design_rows_chain_rule_species(tables_by_species: list, radial_functions, positions_A,
                                   cell_A, species: np.ndarray, force_components: int = 3,
                                   pbc=True) -> tuple[np.ndarray, np.ndarray]:
    """:func:`design_rows_chain_rule` for a basis of several species.

    Columns are pyace's: species blocks in species-index order, each the central species'
    functions (:func:`basis_tables` with ``mu``); an atom contributes to its own block only.
    The radial functions of each pair are those of its (central, neighbour) species pair.

    Parameters
    ----------
    tables_by_species : list of BasisTables
        ``basis_tables(bbasis, mu)`` for mu = 0, 1, …
    radial_functions : pyace ``ACERadialFunctions``
        ``bbasis.radial_functions`` (keep ``bbasis`` referenced).
    positions_A : (S, n, 3) ndarray
        Positions, Å.
    cell_A : (3, 3) ndarray
        Cell rows, Å.
    species : (n,) int ndarray
        Species index of each atom.
    force_components : int
        Keep the first k Cartesian components of the force rows.
    pbc : bool or sequence of 3 bool
        Periodicity.
    """
    positions_A = np.asarray(positions_A, float)
    species = np.asarray(species, np.int64)
    S, n = positions_A.shape[:2]
    sizes = [t.n_functions for t in tables_by_species]
    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(int)
    nel = len(tables_by_species)
    t0 = tables_by_species[0]
    k = int(force_components)
    E = np.zeros((S, offsets[-1]))
    F = np.zeros((S, n, k, offsets[-1]))
    alm, blm, cl, dl = _ylm_constants(t0.lmax)
    cell_A = np.asarray(cell_A, float)
    pbc = np.broadcast_to(np.asarray(pbc, bool), (3,))
    nl1 = t0.lmax + 1
    for s in range(S):
        i, j, D, r = _sorted_pairs(positions_A[s], cell_A, pbc, t0.cutoff_A)
        gr = np.zeros((len(r), t0.nradbase))
        dgr = np.zeros_like(gr)
        fr = np.zeros((len(r), t0.nradmax, nl1))
        dfr = np.zeros_like(fr)
        for mi in range(nel):
            for mj in range(nel):
                m = np.nonzero((species[i] == mi) & (species[j] == mj))[0]
                if len(m) == 0:
                    continue
                g, dg, f, df = _radial(radial_functions, r[m], t0, mi, mj)
                gr[m], dgr[m], fr[m], dfr[m] = g, dg, f[:, :, :nl1], df[:, :, :nl1]
        for mu, tb in enumerate(tables_by_species):
            m = np.nonzero(species[i] == mu)[0]  # pairs of central atoms of species mu
            Em = np.zeros(sizes[mu])
            Fm = np.zeros((n, k, sizes[mu]))
            _rows_one_structure(n, i[m].astype(np.int64), j[m].astype(np.int64),
                                np.ascontiguousarray(D[m]), np.ascontiguousarray(gr[m]),
                                np.ascontiguousarray(dgr[m]), np.ascontiguousarray(fr[m]),
                                np.ascontiguousarray(dfr[m]), tb.lmax, tb.rank1_n, tb.comb_ptr,
                                tb.comb_rank, tb.comb_cg, tb.comb_a, tb.comb_slot, tb.comb_sign,
                                tb.slot_ptr, tb.slot_a, alm, blm, cl, dl, k, Em, Fm,
                                species[j[m]].astype(np.int64), nel)
            E[s, offsets[mu]:offsets[mu + 1]] = Em
            F[s, :, :, offsets[mu]:offsets[mu + 1]] = Fm
    return E, F
