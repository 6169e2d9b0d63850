"""Embedded-atom (EAM) reference potentials read from LAMMPS ``eam/alloy`` (setfl) files.

A fast numpy evaluator (matscipy neighbour list, vectorised over pairs) generalising
:mod:`kernels.finnis_sinclair` to several species. The energy is

    E = Σ_i F_{s_i}(ρ_i) + ½ Σ_{i≠j} φ_{s_i s_j}(r_ij),   ρ_i = Σ_{j≠i} f_{s_j}(r_ij),

with the embedding F (eV, tabulated on a ρ grid), the density f of each species and the pair
potential φ (eV; the file stores r·φ(r) in eV·Å), all interpolated here by cubic splines (LAMMPS
uses its own cubic interpolation: energies agree to ~1e-6 eV/atom, elastic constants to the
digits quoted below). Pairs beyond the file's cutoff do not interact.

Shipped parameter files (``kernels/data``):

- ``W_zhou.eam.alloy`` — X. W. Zhou, H. N. G. Wadley, R. A. Johnson et al., "Atomic scale
  structure of sputtered metal multilayers", Acta Mater. 49 (2001) 4005; tabulation by
  G. Ziegenhain (2007) as distributed in LAMMPS's ``potentials/`` folder (LAMMPS is GPL-2.0).
  Measured here with LAMMPS: bcc a = 3.1648 Å, C11/C12/C44 = 522.5/204.2/160.8 GPa.
- ``NiAl_Mishin_2002.eam.alloy`` — Y. Mishin, M. J. Mehl and D. A. Papaconstantopoulos,
  "Embedded-atom potential for B2-NiAl", Phys. Rev. B 65 (2002) 224114; setfl conversion by
  C. A. Becker (NIST), archived in OpenKIM as MO_109933561507_005 (doi:10.25950/46227396; see
  ``NiAl_Mishin_2002.bib``). Measured here with LAMMPS: B2 a = 2.8587 Å,
  C11/C12/C44 = 199.9/139.6/120.0 GPa.

Units: positions and cells in Å, energies in eV, forces in eV/Å, virials in eV.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources

import numpy as np
from matscipy.neighbours import neighbour_list
from scipy.interpolate import CubicSpline

from .finnis_sinclair import EnergyForcesVirial

__all__ = ["EAMAlloy", "read_setfl", "zhou2001_tungsten", "mishin2002_nial"]


@dataclass(frozen=True)
class EAMAlloy:
    """A multi-species EAM potential on uniform grids, as in a LAMMPS setfl file.

    Parameters
    ----------
    elements : tuple of str
        Chemical symbols, in the file's order.
    rho_grid : (m,) ndarray
        Density grid of the embedding functions (arbitrary density units).
    embedding_eV : (n_el, m) ndarray
        F_s(ρ) of each species, eV.
    r_A : (k,) ndarray
        Radial grid, Å.
    density : (n_el, k) ndarray
        f_s(r) of each species (density units).
    r_pair_eVA : (n_el, n_el, k) ndarray
        r·φ_{st}(r), eV·Å (symmetric in s, t).
    cutoff_A : float
        Interaction cutoff, Å.
    name : str
        Label recorded in provenance.

    Instances hold numpy arrays only and pickle without their splines (rebuilt on demand).
    """

    elements: tuple
    rho_grid: np.ndarray
    embedding_eV: np.ndarray
    r_A: np.ndarray
    density: np.ndarray
    r_pair_eVA: np.ndarray
    cutoff_A: float
    name: str = "eam-alloy"
    _cache: dict = field(default_factory=dict, compare=False, repr=False)

    def __getstate__(self):
        return {k: getattr(self, k) for k in ("elements", "rho_grid", "embedding_eV", "r_A",
                                               "density", "r_pair_eVA", "cutoff_A", "name")}

    def __setstate__(self, state):
        for k, v in state.items():
            object.__setattr__(self, k, v)
        object.__setattr__(self, "_cache", {})

    def _splines(self):
        if "s" not in self._cache:
            n = len(self.elements)
            F = [CubicSpline(self.rho_grid, self.embedding_eV[s]) for s in range(n)]
            f = [CubicSpline(self.r_A, self.density[s]) for s in range(n)]
            rphi = [[CubicSpline(self.r_A, self.r_pair_eVA[s, t]) for t in range(n)]
                    for s in range(n)]
            self._cache["s"] = (F, f, rphi)
        return self._cache["s"]

    def species_index(self, symbols) -> np.ndarray:
        """Index into :attr:`elements` of each symbol."""
        lookup = {e: k for k, e in enumerate(self.elements)}
        try:
            return np.array([lookup[s] for s in symbols], dtype=int)
        except KeyError as err:
            raise ValueError(f"{self.name} knows {self.elements}, not {err.args[0]!r}") from None

    def _pairs(self, positions_A, cell_A, symbols, pbc, order: int):
        """Neighbour pairs (i, j, r_ij, x_j − x_i) and the radial functions along them.

        Returns n, each atom's species index, i, j, d (Å), D (Å), the r-derivatives 0…``order``
        of the density function of j's species at r_ij, and those of r·φ_{s_i s_j}(r_ij)."""
        positions_A = np.asarray(positions_A, dtype=float)
        n = len(positions_A)
        spec = (np.zeros(n, int) if symbols is None else self.species_index(symbols))
        i, j, d, D = neighbour_list("ijdD", positions=positions_A, cell=np.asarray(cell_A, float),
                                    pbc=np.asarray(pbc, bool), cutoff=self.cutoff_A)
        _, f, rphi = self._splines()
        ns = len(self.elements)
        si, sj = spec[i], spec[j]
        dens = [np.empty_like(d) for _ in range(order + 1)]
        for t in range(ns):  # density at i contributed by neighbour j of species t
            m = sj == t
            for k in range(order + 1):
                dens[k][m] = f[t](d[m], k)
        z = [np.empty_like(d) for _ in range(order + 1)]
        for s in range(ns):
            for t in range(ns):
                m = (si == s) & (sj == t)
                if m.any():
                    for k in range(order + 1):
                        z[k][m] = rphi[s][t](d[m], k)
        return n, spec, i, j, d, D, dens, z

    def evaluate(self, positions_A: np.ndarray, cell_A: np.ndarray,
                 symbols: list[str] | None = None, pbc=(True, True, True)) -> EnergyForcesVirial:
        """Energy (eV), forces (eV/Å) and virial (eV) of one configuration.

        Parameters
        ----------
        positions_A : (n, 3) ndarray
            Cartesian positions, Å.
        cell_A : (3, 3) ndarray
            Cell vectors as rows, Å.
        symbols : list of str, optional
            Chemical symbol of each atom; default: all atoms of the first element.
        pbc : sequence of 3 bool
            Periodicity along each cell vector.
        """
        n, spec, i, j, d, D, (dens, ddens), (z, dz) = self._pairs(positions_A, cell_A, symbols,
                                                                  pbc, 1)
        F = self._splines()[0]
        ns = len(self.elements)
        phi = z / d
        dphi = (dz - phi) / d
        rho = np.bincount(i, weights=dens, minlength=n)
        emb = np.empty(n)
        demb = np.empty(n)
        for s in range(ns):
            m = spec == s
            emb[m] = F[s](rho[m])
            demb[m] = F[s](rho[m], 1)
        energy = emb.sum() + 0.5 * phi.sum()
        # dE/dr for each ordered pair (i, j): half the pair term plus i's embedding term; the
        # (j, i) entry of the full list carries j's share.
        g = 0.5 * dphi + demb[i] * ddens
        gD = (g / d)[:, None] * D  # dE/dD_ij with D_ij = x_j − x_i
        forces = np.zeros((n, 3))
        np.add.at(forces, i, gD)
        np.add.at(forces, j, -gD)
        virial = -(D.T @ gD)
        return EnergyForcesVirial(float(energy), forces, 0.5 * (virial + virial.T))

    def hessian_eV_per_A2(self, positions_A: np.ndarray, cell_A: np.ndarray,
                          symbols: list[str] | None = None, pbc=(True, True, True)):
        """Analytic Hessian ∂²E/∂x∂x (eV/Å²) as a symmetric sparse (3n × 3n) CSR matrix.

        With ρ_i = Σ_j f_j(r_ij), each ordered neighbour pair (i, j) contributes the radial
        function ψ_ij(r) = ½φ(r) + F_i'(ρ_i) f_j(r), whose block
        K = ψ'' n nᵀ + ψ'/r (I − n nᵀ) (n = (x_j − x_i)/r) enters +K at (i, i) and (j, j) and
        −K at (i, j) and (j, i); the embedding curvature adds Vᵀ diag(F_i''(ρ_i)) V with
        V = ∂ρ/∂x (n × 3n, sparse), which couples the neighbours of each atom. Same splines as
        :meth:`evaluate`; tested against central differences of its forces.
        """
        import scipy.sparse  # noqa: PLC0415

        n, spec, i, j, d, D, (dens, ddens, d2dens), (z, dz, d2z) = self._pairs(
            positions_A, cell_A, symbols, pbc, 2)
        F = self._splines()[0]
        ns = len(self.elements)
        # φ = z/r: φ' = (z' − φ)/r, φ'' = (z'' − 2φ')/r
        phi = z / d
        dphi = (dz - phi) / d
        d2phi = (d2z - 2.0 * dphi) / d
        rho = np.bincount(i, weights=dens, minlength=n)
        demb, d2emb = np.empty(n), np.empty(n)
        for s in range(ns):
            m = spec == s
            demb[m], d2emb[m] = F[s](rho[m], 1), F[s](rho[m], 2)
        a1 = 0.5 * dphi + demb[i] * ddens
        a2 = 0.5 * d2phi + demb[i] * d2dens
        u = D / d[:, None]
        nn = u[:, :, None] * u[:, None, :]
        K = a2[:, None, None] * nn + (a1 / d)[:, None, None] * (np.eye(3) - nn)
        # K is symmetric, so the off-diagonal blocks −K at (i, j) and (j, i) are M + Mᵀ with M
        # holding −K at (i, j) only; the diagonal blocks are summed per atom first (n × 3 × 3).
        # (One COO of the pairs instead of four: the N = 120 a0 W cell's assembly peaked at
        # 7.5 GB with four.)
        c3 = np.arange(3, dtype=np.int32)
        rows = (3 * i.astype(np.int32)[:, None, None] + c3[None, :, None])
        cols = (3 * j.astype(np.int32)[:, None, None] + c3[None, None, :])
        rows, cols = (np.broadcast_to(a, K.shape).ravel() for a in (rows, cols))
        M = scipy.sparse.coo_matrix((-K.ravel(), (rows, cols)), shape=(3 * n, 3 * n)).tocsr()
        del rows, cols
        diag = np.empty((n, 3, 3))
        for a in range(3):
            for b in range(3):
                diag[:, a, b] = (np.bincount(i, weights=K[:, a, b], minlength=n)
                                 + np.bincount(j, weights=K[:, a, b], minlength=n))
        blocks = scipy.sparse.bsr_matrix((diag, np.arange(n), np.arange(n + 1)),
                                         shape=(3 * n, 3 * n)).tocsr()
        H = M + M.T + blocks
        del M
        # V[i, 3j + c] = ∂ρ_i/∂x_jc = f'(r_ij) u_ij,c ; V[i, 3i + c] = −Σ_j f'(r_ij) u_ij,c
        g = ddens[:, None] * u
        vr = np.concatenate([np.repeat(i, 3), np.repeat(i, 3)])
        vc = np.concatenate([(3 * j[:, None] + c3).ravel(), (3 * i[:, None] + c3).ravel()])
        V = scipy.sparse.coo_matrix((np.concatenate([g.ravel(), -g.ravel()]), (vr, vc)),
                                    shape=(n, 3 * n)).tocsr()
        H = H + (V.T @ scipy.sparse.diags(d2emb) @ V).tocsr()
        return (0.5 * (H + H.T)).tocsr()


def read_setfl(text: str, name: str = "eam-alloy") -> EAMAlloy:
    """Parse the text of a LAMMPS ``eam/alloy`` (DYNAMO setfl) file.

    Layout: three comment lines; ``n_el el_1 … el_n``; ``Nrho drho Nr dr cutoff``; per element
    a line ``Z mass a lattice`` followed by Nrho values of F(ρ) and Nr values of f(r); then the
    Nr values of r·φ(r) for every pair (s ≥ t) in the order (1,1), (2,1), (2,2), (3,1), …
    """
    lines = text.splitlines()
    head = lines[3].split()
    n_el = int(head[0])
    elements = tuple(head[1:1 + n_el])
    nrho, drho, nr, dr, cutoff = lines[4].split()[:5]
    nrho, nr = int(nrho), int(nr)
    drho, dr, cutoff = float(drho), float(dr), float(cutoff)
    rest = lines[5:]
    emb = np.empty((n_el, nrho))
    dens = np.empty((n_el, nr))
    k = 0
    tokens: list[str] = []

    def take(count):
        nonlocal k, tokens
        while len(tokens) < count:
            tokens.extend(rest[k].split())
            k += 1
        out, tokens = tokens[:count], tokens[count:]
        return np.array(out, dtype=float)

    for s in range(n_el):
        k += 1  # the "Z mass a lattice" line
        tokens = []
        emb[s] = take(nrho)
        dens[s] = take(nr)
    rphi = np.empty((n_el, n_el, nr))
    for s in range(n_el):
        for t in range(s + 1):
            rphi[s, t] = rphi[t, s] = take(nr)
    return EAMAlloy(elements, np.arange(nrho) * drho, emb, np.arange(nr) * dr, dens, rphi,
                    cutoff, name)


def _from_data(filename: str, name: str) -> EAMAlloy:
    with resources.as_file(resources.files("kernels") / "data" / filename) as p:
        return read_setfl(p.read_text(), name)


def zhou2001_tungsten() -> EAMAlloy:
    """The Zhou et al. (2001) W EAM (LAMMPS ``W_zhou.eam.alloy``), from the package data."""
    return _from_data("W_zhou.eam.alloy", "eam-w-zhou2001")


def mishin2002_nial() -> EAMAlloy:
    """The Mishin–Mehl–Papaconstantopoulos (2002) B2 NiAl EAM, from the package data."""
    return _from_data("NiAl_Mishin_2002.eam.alloy", "eam-nial-mishin2002")
