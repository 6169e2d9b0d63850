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
per-atom work is linear in the basis size, not quadratic.

Several species (:func:`design_rows_chain_rule_species`; the Ni–Al basis of P2-NiAl): pyace's
columns are one block per central species μ_i (species-index order, rank-1 first), so each
central species has its own tables (:func:`basis_tables` with ``mu``) and fills only its block;
an atom's A has one block per neighbour species μ_j (a factor A_{μ_j n l m} of a function sums
over that species' neighbours only), with the radial functions of the pair (μ_i, μ_j) (one
pyace call per species pair for all structures). An atom's pairs are grouped by neighbour
species, so ∂A/∂r is stored for the pair's own block only and a slot's contraction runs over the
columns of its species' neighbours. The one-species kernel is a separate compiled copy without
this code (``_ONE_SPECIES``), its rows bit-identical to the kernel before several species.
Cost on a 128-atom rattled B2 NiAl cell (cutoff 5 Å, 58 neighbours), one thread, one run at
load 2.6: 0.17 / 0.32 ms/atom CPU at 2 × 100 / 2 × 300 functions per element, against 1.57 /
7.0 ms/atom for pyace's ``compute_b_grad`` (9.4× / 22×).

Where the time goes (2,000 functions, planar 8 × 8 cell, 6 neighbours, one thread, per atom):
A and ∂A/∂r ~7 %, the ∂B/∂A products over the ms-combinations ~40 %, the contraction
Re(W · ∂A/∂r) ~35 %, adding the values into the force rows ~20 %; the neighbour list and
pyace's radial functions ~2 % (profile before the scatter below was changed). The kernel
therefore works in real arithmetic with ranks 2–4 written out, accumulates ∂B/∂A without
per-factor signs (P + (−1)^m conj N per slot), runs the contraction's inner loop over padded
(pair, component) columns (SIMD), gathers the values of 32 functions before adding them to F
row-wise, sums an atom's own row over its pairs in a buffer of those 32 values (vectorised;
one scalar sum per function was latency-bound), allocates nothing per atom, and evaluates the
radial functions of all structures in one pyace call. The last two scatter changes took 14–23 %
off (paired runs against the previous kernel, same load), with the same additions in the same
order, so the same rows bit for bit. Tried and slower or no better: padding the columns to 4
instead of 16 (1.2× slower), 16 accumulators held across slots (1.4× slower), two slots per
pass of the contraction, int32 tables, 64 functions per gather (no better than 32).

Units: Å; energy rows in eV per unit coefficient, force rows in eV/Å per unit coefficient.
"""

from __future__ import annotations

import threading
import types
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
        Species of the basis (A blocks). With several, the tables hold one central species'
        functions and A-indices carry the neighbour species μ: ``μ·nradmax·(lmax+1)² +
        n·(lmax+1)² + l² + l + m``; rank-1 radial indices are ``μ·nradbase + n``.
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
    """Flatten the functions of one central species of a ``pyace.ACEBBasisSet`` into
    :class:`BasisTables`.

    Parameters
    ----------
    bbasis : pyace.ACEBBasisSet
        The basis (one density).
    mu : int, optional
        Species index (pyace's ``elements_to_index_map``) of the central atom whose functions
        are flattened, in pyace's order (its block of columns); required when the basis has
        several species, 0 by default for one.
    """
    nel = int(bbasis.nelements)
    if mu is None:
        if nel != 1:
            raise ValueError("a basis of several species needs the central species mu")
        mu = 0
    if not 0 <= mu < nel:
        raise ValueError(f"species index {mu} is not one of the basis's {nel}")
    lmax = int(bbasis.lmax)
    nlm = (lmax + 1) ** 2
    nradbase = int(bbasis.nradbase)
    block = int(bbasis.nradmax) * nlm  # A-indices of one neighbour species
    rank1 = bbasis.basis_rank1[mu]
    funcs = bbasis.basis[mu]
    rank1_n = np.array([f.mus[0] * nradbase + f.ns[0] - 1 for f in rank1], dtype=np.int64)
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
                base = f.mus[t] * block + n * nlm  # the neighbour species' A block
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


def _rows_structures_py(pair_ptr, pair_i, pair_j, pair_mu, nel, col0, vec, gr, dgr, fr, dfr,
                        lmax, rank1_n, comb_ptr, comb_rank, comb_cg, comb_a, comb_slot,
                        comb_sign, slot_ptr, slot_a, alm, blm, cl, dl, E, F):
    """Energy rows E (S, B) and force rows F (S, n, ncomp, B) of S structures.

    Pairs of structure s are ``pair_ptr[s]:pair_ptr[s+1]``, sorted by their centre atom i and,
    for each i, by the neighbour's species ``pair_mu`` (of ``nel``; all 0 for one species).
    The tables are those of one central species, whose functions are the columns
    ``col0:col0 + n_functions`` of E and F (0 for one species); only the pairs of centres of
    that species are given. A is kept for every neighbour species (blocks of
    nradmax·(lmax+1)²); ∂A/∂r only for the pair's own block, so a slot's contraction runs over
    the (pair, component) columns of the neighbours of its species only. Per
    atom: A and ∂A/∂r of its pairs (real and imaginary parts apart), then per function the
    slot weights W = ∂B/∂A (real arithmetic, ranks 2–4 written out) and g = Re(W · ∂A/∂r) for
    every (pair, component), in blocks of four columns held in registers; g is gathered for
    ``_FBLOCK`` consecutive functions and added to F row-wise. No per-atom allocation.
    Structures are independent: compiled once serial and once with ``prange`` over structures
    (each thread writes only its own E[s], F[s]).
    """
    S = pair_ptr.shape[0] - 1
    ncomp = F.shape[2]
    nlm = (lmax + 1) * (lmax + 1)
    nradmax = fr.shape[1]
    nradbase = gr.shape[1]  # per neighbour species
    nAb = nradmax * nlm  # A of one neighbour species
    nA = nel * nAb
    F1 = rank1_n.shape[0]
    F2 = comb_ptr.shape[0] - 1
    FB = _FBLOCK
    maxslots = 1
    for f in range(F2):
        maxslots = max(maxslots, slot_ptr[f + 1] - slot_ptr[f])
    # W of a slot = P + (−1)^m conj(N): P sums the factors with m ≥ 0, N those with m < 0;
    # both accumulate ∂B/∂A_t as it is (no sign per factor), interleaved at 2·slot + (m < 0)
    cslot = 2 * comb_slot + (comb_sign != 0)
    slot_sgn = np.empty(slot_a.shape[0])
    for t in range(slot_a.shape[0]):
        kk = slot_a[t] % nlm
        ll = int(np.sqrt(kk + 0.5))
        slot_sgn[t] = 1.0 if (kk - ll * ll - ll) % 2 == 0 else -1.0
    slot_mu = slot_a // nAb  # neighbour species of a slot, and its row of ∂A/∂r
    slot_loc = slot_a - slot_mu * nAb
    rankmax = comb_a.shape[1]
    # most neighbours of any atom: sizes the per-atom work arrays once
    maxnn = 1
    for s in range(S):
        p = pair_ptr[s]
        while p < pair_ptr[s + 1]:
            q = p
            while q < pair_ptr[s + 1] and pair_i[q] == pair_i[p]:
                q += 1
            maxnn = max(maxnn, q - p)
            p = q
    nqp = (maxnn * ncomp + 15) // 16 * 16  # (pair, component) columns, padded
    for s in numba.prange(S):
        Es = E[s]
        Fs = F[s]
        Yp = np.zeros(nlm, np.complex128)
        DYp = np.zeros((nlm, 3), np.complex128)
        Ar = np.zeros(nA)
        Ai = np.zeros(nA)
        A1 = np.zeros(nel * nradbase)
        Wr = np.zeros(2 * maxslots)
        Wi = np.zeros(2 * maxslots)
        fwd = np.zeros(rankmax + 1, np.complex128)
        bwd = np.zeros(rankmax + 1, np.complex128)
        # ∂A/∂r: real and imaginary parts, columns (pair, component) padded to a multiple of 16
        # (the contraction's inner loop then runs in full SIMD blocks)
        # (rows of the pair's own species block only)
        dAr = np.zeros((nAb, nqp))
        dAi = np.zeros((nAb, nqp))
        g = np.zeros(nqp)
        dA1 = np.zeros((nradbase, nqp))
        G = np.zeros((nqp, FB))  # g of FB consecutive functions
        gsum = np.zeros(FB)
        jj = np.zeros(maxnn, np.int64)
        rhat = np.zeros(3)
        # pairs [qlo[μ], qhi[μ]) of the current atom have neighbours of species μ, their
        # (pair, component) columns are [xlo[μ], xhi[μ]) (several species only)
        qlo = np.zeros(nel, np.int64)
        qhi = np.zeros(nel, np.int64)
        xlo = np.zeros(nel, np.int64)
        xhi = np.zeros(nel, np.int64)
        start = pair_ptr[s]
        end = pair_ptr[s + 1]
        while start < end:
            i = pair_i[start]
            stop = start
            while stop < end and pair_i[stop] == i:
                stop += 1
            nn = stop - start
            nqc = nn * ncomp
            nq16 = (nqc + 15) // 16 * 16
            Ar[:] = 0.0
            Ai[:] = 0.0
            A1[:] = 0.0
            dAr[:, nqc:] = 0.0
            dAi[:, nqc:] = 0.0
            dA1[:, nqc:] = 0.0
            qlo[:] = 0
            qhi[:] = nn
            if not _ONE_SPECIES:
                qhi[:] = 0
                for q in range(nn - 1, -1, -1):
                    qlo[pair_mu[start + q]] = q
                for q in range(nn):
                    qhi[pair_mu[start + q]] = q + 1
                for mu in range(nel):
                    xlo[mu] = qlo[mu] * ncomp
                    xhi[mu] = qhi[mu] * ncomp
            for q in range(nn):
                p = start + q
                jj[q] = pair_j[p]
                o1 = 0 if _ONE_SPECIES else pair_mu[p] * nradbase
                oA = 0 if _ONE_SPECIES else pair_mu[p] * nAb
                r = np.sqrt(vec[p, 0] ** 2 + vec[p, 1] ** 2 + vec[p, 2] ** 2)
                rhat[0] = vec[p, 0] / r
                rhat[1] = vec[p, 1] / r
                rhat[2] = vec[p, 2] / r
                _ylm(rhat[0], rhat[1], rhat[2], lmax, alm, blm, cl, dl, Yp, DYp)
                for n in range(nradbase):
                    A1[o1 + n] += gr[p, n] * Y00
                    for c in range(ncomp):
                        dA1[n, q * ncomp + c] = dgr[p, n] * Y00 * rhat[c]
                for n in range(nradmax):
                    for l in range(lmax + 1):
                        R = fr[p, n, l]
                        DR = dfr[p, n, l]
                        Rr = R / r
                        for m in range(l + 1):
                            k = l * l + l + m
                            a = n * nlm + k
                            y = Yp[k]
                            Ar[oA + a] += R * y.real
                            Ai[oA + a] += R * y.imag
                            for c in range(ncomp):
                                z = DR * y * rhat[c] + Rr * DYp[k, c]
                                dAr[a, q * ncomp + c] = z.real
                                dAi[a, q * ncomp + c] = z.imag
            for n in range(nel * nradmax):  # every neighbour species' block
                for l in range(1, lmax + 1):
                    for m in range(1, l + 1):
                        sg = 1.0 if m % 2 == 0 else -1.0
                        Ar[n * nlm + l * l + l - m] = sg * Ar[n * nlm + l * l + l + m]
                        Ai[n * nlm + l * l + l - m] = -sg * Ai[n * nlm + l * l + l + m]
            for f in range(F1):
                n = rank1_n[f]
                mu = n // nradbase
                nl = n - mu * nradbase
                fc = col0 + f
                Es[fc] += A1[n]
                for c in range(ncomp):
                    acc = 0.0
                    for q in range(qlo[mu], qhi[mu]):
                        v = dA1[nl, q * ncomp + c]
                        Fs[jj[q], c, fc] -= v
                        acc += v
                    Fs[i, c, fc] += acc
            for f in range(F2):
                s0 = slot_ptr[f]
                ns = slot_ptr[f + 1] - s0
                for sl in range(2 * ns):
                    Wr[sl] = 0.0
                    Wi[sl] = 0.0
                Bval = 0.0
                for ci in range(comb_ptr[f], comb_ptr[f + 1]):
                    rank = comb_rank[ci]
                    cg = comb_cg[ci]
                    # ∂B/∂A_t = cg · Π_{u≠t} A_u, into P (m ≥ 0) or N (m < 0) of the slot
                    k0 = comb_a[ci, 0]
                    k1 = comb_a[ci, 1]
                    x0r, x0i, x1r, x1i = Ar[k0], Ai[k0], Ar[k1], Ai[k1]
                    if rank == 2:
                        Bval += cg * (x0r * x1r - x0i * x1i)
                        s_ = cslot[ci, 0]
                        Wr[s_] += cg * x1r
                        Wi[s_] += cg * x1i
                        s_ = cslot[ci, 1]
                        Wr[s_] += cg * x0r
                        Wi[s_] += cg * x0i
                    elif rank == 3:
                        k2 = comb_a[ci, 2]
                        x2r, x2i = Ar[k2], Ai[k2]
                        p01r = cg * (x0r * x1r - x0i * x1i)
                        p01i = cg * (x0r * x1i + x0i * x1r)
                        Bval += p01r * x2r - p01i * x2i
                        c2r = cg * x2r
                        c2i = cg * x2i
                        s_ = cslot[ci, 0]
                        Wr[s_] += (x1r * c2r - x1i * c2i)
                        Wi[s_] += (x1r * c2i + x1i * c2r)
                        s_ = cslot[ci, 1]
                        Wr[s_] += (x0r * c2r - x0i * c2i)
                        Wi[s_] += (x0r * c2i + x0i * c2r)
                        s_ = cslot[ci, 2]
                        Wr[s_] += p01r
                        Wi[s_] += p01i
                    elif rank == 4:
                        k2 = comb_a[ci, 2]
                        k3 = comb_a[ci, 3]
                        x2r, x2i, x3r, x3i = Ar[k2], Ai[k2], Ar[k3], Ai[k3]
                        p01r = cg * (x0r * x1r - x0i * x1i)
                        p01i = cg * (x0r * x1i + x0i * x1r)
                        p23r = x2r * x3r - x2i * x3i
                        p23i = x2r * x3i + x2i * x3r
                        Bval += p01r * p23r - p01i * p23i
                        q23r = cg * p23r
                        q23i = cg * p23i
                        s_ = cslot[ci, 0]
                        Wr[s_] += (x1r * q23r - x1i * q23i)
                        Wi[s_] += (x1r * q23i + x1i * q23r)
                        s_ = cslot[ci, 1]
                        Wr[s_] += (x0r * q23r - x0i * q23i)
                        Wi[s_] += (x0r * q23i + x0i * q23r)
                        s_ = cslot[ci, 2]
                        Wr[s_] += (x3r * p01r - x3i * p01i)
                        Wi[s_] += (x3r * p01i + x3i * p01r)
                        s_ = cslot[ci, 3]
                        Wr[s_] += (x2r * p01r - x2i * p01i)
                        Wi[s_] += (x2r * p01i + x2i * p01r)
                    else:
                        fwd[0] = 1.0
                        for t in range(rank):
                            fwd[t + 1] = fwd[t] * complex(Ar[comb_a[ci, t]], Ai[comb_a[ci, t]])
                        Bval += cg * fwd[rank].real
                        bwd[rank - 1] = 1.0
                        for t in range(rank - 1, 0, -1):
                            bwd[t - 1] = bwd[t] * complex(Ar[comb_a[ci, t]], Ai[comb_a[ci, t]])
                        for t in range(rank):
                            d = cg * fwd[t] * bwd[t]
                            s_ = cslot[ci, t]
                            Wr[s_] += d.real
                            Wi[s_] += d.imag
                Es[col0 + F1 + f] += Bval
                for sl in range(ns):
                    sg = slot_sgn[s0 + sl]
                    Wr[sl] = Wr[2 * sl] + sg * Wr[2 * sl + 1]
                    Wi[sl] = Wi[2 * sl] - sg * Wi[2 * sl + 1]
                u = f % FB
                # g[x] = Σ_slots Re(W ∂A/∂r[x]) for every (pair, component) column x
                for x in range(nq16):
                    g[x] = 0.0
                if _ONE_SPECIES:
                    for sl in range(ns):
                        a = slot_a[s0 + sl]
                        wr = Wr[sl]
                        wi = Wi[sl]
                        dr = dAr[a]
                        di = dAi[a]
                        for x in range(nq16):
                            g[x] += wr * dr[x] - wi * di[x]
                else:
                    for sl in range(ns):
                        wr = Wr[sl]
                        wi = Wi[sl]
                        dr = dAr[slot_loc[s0 + sl]]
                        di = dAi[slot_loc[s0 + sl]]
                        mu = slot_mu[s0 + sl]
                        x0 = xlo[mu]
                        gg = g[x0:xhi[mu]]
                        ddr = dr[x0:]
                        ddi = di[x0:]
                        for x in range(gg.shape[0]):
                            gg[x] += wr * ddr[x] - wi * ddi[x]
                for x in range(nqc):
                    G[x, u] = g[x]
                if u == FB - 1 or f == F2 - 1:
                    f0 = col0 + F1 + f - u
                    nb = u + 1
                    for c in range(ncomp):
                        # Σ_q g row-wise (the same sums as pair by pair, vectorised over v)
                        for v in range(nb):
                            gsum[v] = 0.0
                        for q in range(nn):
                            Gx = G[q * ncomp + c]
                            for v in range(nb):
                                gsum[v] += Gx[v]
                        Fi = Fs[i, c, f0:f0 + nb]
                        for v in range(nb):
                            Fi[v] += gsum[v]
                        for q in range(nn):
                            Fj = Fs[jj[q], c, f0:f0 + nb]
                            Gx = G[q * ncomp + c]
                            for v in range(nb):
                                Fj[v] -= Gx[v]
            start = stop


#: pyace's radial functions keep their last evaluation in the object: one thread at a time.
_RADIAL_LOCK = threading.Lock()

#: Functions whose force-row values are gathered before they are added to F row-wise.
_FBLOCK = 32

#: Set per compiled copy of the kernel (:func:`_compiled`); numba freezes it as a constant.
_ONE_SPECIES = False


def _compiled(one_species: bool, parallel: bool):
    """The kernel compiled with ``_ONE_SPECIES`` fixed: the one-species copy has no species
    offsets, ranges or branches left (LLVM folds them), so its code is that of the kernel before
    several species were added. Each copy has its own name, hence its own numba cache file."""
    name = "_rows_" + ("one" if one_species else "species") + ("_parallel" if parallel else "")
    fn = types.FunctionType(_rows_structures_py.__code__,
                            dict(_rows_structures_py.__globals__, _ONE_SPECIES=one_species), name)
    fn.__qualname__ = name
    fn.__doc__ = _rows_structures_py.__doc__
    return numba.njit(cache=True, nogil=True, parallel=parallel)(fn)


#: kernels[(one_species, parallel)]
_KERNELS = {(one, par): _compiled(one, par) for one in (True, False) for par in (False, True)}


def _pairs(positions_A, cell_A, pbc, cutoff_A, species=None):
    """Neighbour pairs of S structures: (pair_ptr, i, j, D = x_j − x_i, r), the pairs of
    structure s at ``pair_ptr[s]:pair_ptr[s+1]``, sorted by i (stable) and, when ``species``
    (n,) is given, for each i by the neighbour's species (stable)."""
    from matscipy.neighbours import neighbour_list  # noqa: PLC0415

    ii, jj, DD = [], [], []
    for x in positions_A:
        i, j, D = neighbour_list("ijD", positions=x, cutoff=cutoff_A, cell=cell_A, pbc=pbc)
        keep = np.linalg.norm(D, axis=1) < cutoff_A
        i, j, D = i[keep], j[keep], D[keep]
        if species is None:
            order = np.argsort(i, kind="stable")
        else:
            order = np.lexsort((species[j], i))  # stable: by i, then by the neighbour's species
        ii.append(i[order])
        jj.append(j[order])
        DD.append(D[order])
    pair_ptr = np.concatenate([[0], np.cumsum([len(i) for i in ii])]).astype(np.int64)
    i = np.concatenate(ii).astype(np.int64)
    j = np.concatenate(jj).astype(np.int64)
    D = np.ascontiguousarray(np.concatenate(DD).reshape(-1, 3))
    return pair_ptr, i, j, D, np.linalg.norm(D, axis=1)


def _radial(radial_functions, r, tables: BasisTables, mu_i: int, mu_j: int):
    """pyace's g, g' (p, nradbase) and R, R' (p, nradmax, lmax + 1) at the distances r (Å) of
    pairs of a central atom of species mu_i and a neighbour of species mu_j."""
    if len(r) == 0:
        z = np.zeros((0, tables.nradmax, tables.lmax + 1))
        return np.zeros((0, tables.nradbase)), np.zeros((0, tables.nradbase)), z, z
    # the results live in the pyace object until read, so threads sharing it take turns
    with _RADIAL_LOCK:
        radial_functions.evaluate_range(list(r), tables.nradbase, tables.nradmax, mu_i, mu_j)
        gr = np.array(radial_functions.gr_vec).reshape(len(r), -1)
        dgr = np.array(radial_functions.dgr_vec).reshape(len(r), -1)
        fr = np.array(radial_functions.fr_vec).reshape(len(r), tables.nradmax, -1)
        dfr = np.array(radial_functions.dfr_vec).reshape(len(r), tables.nradmax, -1)
    nl1 = tables.lmax + 1
    return gr, dgr, fr[:, :, :nl1], dfr[:, :, :nl1]


def _run(args, S: int, n_threads: int) -> None:
    """The kernel on one thread, or over structures on ``n_threads`` numba threads."""
    n_threads = int(n_threads)
    if n_threads < 1:
        raise ValueError(f"n_threads must be >= 1, got {n_threads}")
    one_species = args[4] == 1
    if n_threads == 1 or S == 1:
        _KERNELS[one_species, False](*args)
    else:
        previous = numba.get_num_threads()
        numba.set_num_threads(min(n_threads, numba.config.NUMBA_NUM_THREADS))
        try:
            _KERNELS[one_species, True](*args)
        finally:
            numba.set_num_threads(previous)


def _table_args(tables: BasisTables) -> tuple:
    return (tables.lmax, tables.rank1_n, tables.comb_ptr, tables.comb_rank, tables.comb_cg,
            tables.comb_a, tables.comb_slot, tables.comb_sign, tables.slot_ptr, tables.slot_a)


def design_rows_chain_rule(tables: BasisTables, radial_functions, positions_A, cell_A,
                           force_components: int = 3, pbc=True, n_threads: int = 1
                           ) -> tuple[np.ndarray, np.ndarray]:
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
    n_threads : int
        Threads over structures (numba ``prange``); 1 (the default, as in the sweep's
        one-thread workers) runs the serial kernel. The rows do not depend on it.

    Returns
    -------
    energy : (S, B) ndarray
        Energy rows, eV per unit coefficient.
    forces : (S, n, k, B) ndarray
        Force rows −∂(energy row)/∂x, eV/Å per unit coefficient.
    """
    if tables.nelements != 1:
        raise ValueError("tables of a basis of several species: use "
                         "design_rows_chain_rule_species")
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
    pair_ptr, i, j, D, r = _pairs(positions_A, cell_A, pbc, tables.cutoff_A)
    # one radial call for every pair of every structure
    gr, dgr, fr, dfr = _radial(radial_functions, r, tables, 0, 0)
    args = (pair_ptr, i, j, np.zeros(len(i), np.int64), 1, 0, D, np.ascontiguousarray(gr),
            np.ascontiguousarray(dgr), np.ascontiguousarray(fr), np.ascontiguousarray(dfr),
            *_table_args(tables), alm, blm, cl, dl, E, F)
    _run(args, S, n_threads)
    return E, F


def design_rows_chain_rule_species(tables_by_species: list, radial_functions, positions_A,
                                   cell_A, species, force_components: int = 3, pbc=True,
                                   n_threads: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """:func:`design_rows_chain_rule` for a basis of several species.

    Columns are pyace's (those of ``compute_b_grad``'s ``forces_bfuncs``): one block per
    species in species-index order, each holding that central species' functions
    (:func:`basis_tables` with ``mu``), rank-1 first; an atom's energy enters its own species'
    block only, while its position moves the rows of every block. Each pair's radial functions
    are those of its (central, neighbour) species pair (one pyace call per species pair for all
    structures); the A basis of an atom has one block per neighbour species.

    Parameters
    ----------
    tables_by_species : list of BasisTables
        ``basis_tables(bbasis, mu)`` for mu = 0, 1, … (pyace's species indices).
    radial_functions : pyace ``ACERadialFunctions``
        ``bbasis.radial_functions`` of the same basis (keep ``bbasis`` referenced).
    positions_A : (S, n, 3) ndarray
        Positions, Å.
    cell_A : (3, 3) ndarray
        Cell rows, Å.
    species : (n,) int array_like
        Species index of each atom (pyace's ``elements_to_index_map``).
    force_components : int
        Keep the first k Cartesian components of the force rows.
    pbc : bool or sequence of 3 bool
        Periodicity.
    n_threads : int
        Threads over structures (numba ``prange``); the rows do not depend on it.

    Returns
    -------
    energy : (S, B) ndarray
        Energy rows, eV per unit coefficient (B = Σ of the species' function counts).
    forces : (S, n, k, B) ndarray
        Force rows −∂(energy row)/∂x, eV/Å per unit coefficient.
    """
    positions_A = np.asarray(positions_A, float)
    species = np.asarray(species, np.int64)
    S, n = positions_A.shape[:2]
    nel = len(tables_by_species)
    if species.shape != (n,) or species.min(initial=0) < 0 or species.max(initial=0) >= nel:
        raise ValueError(f"species must be {n} indices in [0, {nel})")
    if any(t.nelements != nel for t in tables_by_species):
        raise ValueError("tables_by_species must hold one table per species of the basis")
    offsets = np.concatenate([[0], np.cumsum([t.n_functions for t in tables_by_species])])
    t0 = tables_by_species[0]
    k = int(force_components)
    E = np.zeros((S, int(offsets[-1])))
    F = np.zeros((S, n, k, int(offsets[-1])))
    alm, blm, cl, dl = _ylm_constants(t0.lmax)
    cell_A = np.asarray(cell_A, float)
    pbc = np.broadcast_to(np.asarray(pbc, bool), (3,))
    pair_ptr, i, j, D, r = _pairs(positions_A, cell_A, pbc, t0.cutoff_A, species)
    mu_i, mu_j = species[i], species[j]
    nl1 = t0.lmax + 1
    gr = np.zeros((len(r), t0.nradbase))
    dgr = np.zeros_like(gr)
    fr = np.zeros((len(r), t0.nradmax, nl1))
    dfr = np.zeros_like(fr)
    for a in range(nel):
        for b in range(nel):
            m = np.nonzero((mu_i == a) & (mu_j == b))[0]
            if len(m):
                gr[m], dgr[m], fr[m], dfr[m] = _radial(radial_functions, r[m], t0, a, b)
    structure = np.repeat(np.arange(S), np.diff(pair_ptr))
    for mu, tables in enumerate(tables_by_species):
        m = np.nonzero(mu_i == mu)[0]  # pairs whose centre is of species mu, order kept
        ptr = np.concatenate([[0], np.cumsum(np.bincount(structure[m], minlength=S))])
        args = (ptr.astype(np.int64), i[m], j[m], mu_j[m], nel, int(offsets[mu]),
                np.ascontiguousarray(D[m]), gr[m], dgr[m], fr[m], dfr[m],
                *_table_args(tables), alm, blm, cl, dl, E, F)
        _run(args, S, n_threads)
    return E, F
