"""Cauchy–Born elastic observations: strain derivatives of the perfect crystal's energy density.

With W_cb(F) the energy per unit reference volume (eV/Å³) of the perfect crystal under the
homogeneous deformation F, P2's elastic matching conditions are ε_V1 = |∂²W_cb − ∂²W^ML_cb| and
ε_V2 = |∂³W_cb − ∂³W^ML_cb| at F = I (P2 §3, eq. 3.12). Here F = I + ε(e) with ε the symmetric
small-strain tensor of the Voigt vector e = (ε_xx, ε_yy, ε_zz, 2ε_yz, 2ε_xz, 2ε_xy): the
derivatives in the six symmetric directions (rotations are fixed by invariance). Then

    ∂²w/∂e_i∂e_j (0) = C_ij   (elastic constants, eV/Å³; × 160.2177 for GPa),
    ∂³w/∂e_i∂e_j∂e_k (0)      (third-order constants in this strain measure, eV/Å³),

of w(e) = W_cb(I + ε(e)). Both are linear in the energy, hence in the coefficients of a linear
model: applied to the ACE energy *row* of the perfect cell they give the rows of the least-squares
system. Derivatives are central finite differences of step h (O(h²); exact for cubic w, the
third derivatives for quartic w; the
stencils use ±h and ±2h along at most three directions, each point evaluated once).

Virial rows: pyace gives no per-function virial, so the virial row of a configuration is the
central difference −∂E_row/∂e (h ≈ 1e-5) under the same homogeneous strain (eV).

Units: strain dimensionless, energies eV, energy densities and elastic constants eV/Å³.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

__all__ = ["EV_PER_A3_IN_GPA", "VOIGT", "deformation", "StrainDerivatives", "strain_derivatives",
           "cauchy_born_derivatives", "virial_rows", "elastic_constants_eV_per_A3",
           "cubic_constants_GPa", "elastic_rows"]

#: 1 eV/Å³ in GPa.
EV_PER_A3_IN_GPA = 160.21766208
#: Voigt index → Cartesian pair.
VOIGT = ((0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1))


def deformation(e: np.ndarray) -> np.ndarray:
    """F = I + ε for the Voigt strain e (engineering shears: ε_yz = e₄/2, …)."""
    eps = np.zeros((3, 3))
    for k, (a, b) in enumerate(VOIGT):
        if a == b:
            eps[a, a] = e[k]
        else:
            eps[a, b] = eps[b, a] = 0.5 * e[k]
    return np.eye(3) + eps


@dataclass(frozen=True)
class StrainDerivatives:
    """Derivatives of a (possibly vector-valued) function of the Voigt strain at e = 0.

    first (6, …), second (6, 6, …), third (6, 6, 6, …) (or None when not asked for), in the
    function's units per unit strain^k.
    """

    first: np.ndarray
    second: np.ndarray
    third: np.ndarray | None


def strain_derivatives(func, h: float = 1e-3, third: bool = True) -> StrainDerivatives:
    """Central finite-difference derivatives of ``func(e)`` (e a Voigt 6-vector) at e = 0.

    Parameters
    ----------
    func : callable
        e (6,) → value (scalar or ndarray; e.g. an energy density, or a design row).
    h : float
        Strain step (dimensionless).
    third : bool
        Also compute the third derivatives (≈ 5× more evaluations).
    """
    cache: dict = {}

    def f(steps):
        key = tuple(sorted(steps.items()))
        if key not in cache:
            e = np.zeros(6)
            for i, s in steps.items():
                e[i] = s * h
            cache[key] = np.asarray(func(e), float)
        return cache[key]

    f0 = f({})
    shape = f0.shape
    g = np.empty((6,) + shape)
    H = np.empty((6, 6) + shape)
    for i in range(6):
        g[i] = (f({i: 1}) - f({i: -1})) / (2 * h)
        H[i, i] = (f({i: 1}) - 2 * f0 + f({i: -1})) / h**2
    for i, j in itertools.combinations(range(6), 2):
        H[i, j] = H[j, i] = (f({i: 1, j: 1}) - f({i: 1, j: -1}) - f({i: -1, j: 1})
                             + f({i: -1, j: -1})) / (4 * h**2)
    T = None
    if third:
        T = np.empty((6, 6, 6) + shape)
        for i in range(6):
            T[i, i, i] = (f({i: 2}) - 2 * f({i: 1}) + 2 * f({i: -1}) - f({i: -2})) / (2 * h**3)
        for i, j in itertools.permutations(range(6), 2):  # ∂_i ∂_i ∂_j
            v = (f({i: 1, j: 1}) - 2 * f({j: 1}) + f({i: -1, j: 1})
                 - f({i: 1, j: -1}) + 2 * f({j: -1}) - f({i: -1, j: -1})) / (2 * h**3)
            T[i, i, j] = T[i, j, i] = T[j, i, i] = v
        for i, j, k in itertools.combinations(range(6), 3):
            v = sum(si * sj * sk * f({i: si, j: sj, k: sk})
                    for si in (1, -1) for sj in (1, -1) for sk in (1, -1)) / (8 * h**3)
            for p in itertools.permutations((i, j, k)):
                T[p] = v
    return StrainDerivatives(g, H, T)


def _strained(positions_A, cell_A, e):
    F = deformation(e)
    return np.asarray(positions_A, float) @ F.T, np.asarray(cell_A, float) @ F.T


def cauchy_born_derivatives(model, positions_A: np.ndarray, cell_A: np.ndarray,
                            symbols: list[str], h: float = 1e-3,
                            third: bool = True) -> StrainDerivatives:
    """Strain derivatives of W_cb (eV/Å³) of a perfect periodic crystal under a model.

    ``positions_A``/``cell_A`` hold the (equilibrium) perfect crystal; W_cb is its energy divided
    by the reference cell volume. For a Bravais lattice there are no internal relaxations. Nor
    for B2 (CsCl, e.g. NiAl): every atom is a centre of inversion of the homogeneously strained
    crystal too, so the force on each sublattice vanishes at every strain and the clamped-ion
    derivatives here are the relaxed-ion ones to all orders.
    """
    V0 = abs(np.linalg.det(cell_A))

    def w(e):
        x, c = _strained(positions_A, cell_A, e)
        return model.evaluate(x, c, symbols).energy_eV / V0

    return strain_derivatives(w, h, third)


def elastic_rows(basis, positions_A: np.ndarray, cell_A: np.ndarray, symbols: list[str],
                 h: float = 1e-3, third: bool = True) -> StrainDerivatives:
    """Design rows of the Cauchy–Born derivatives: ∂^k(E_row / V0)/∂e^k (eV/Å³ per coefficient).

    Parameters
    ----------
    basis : kernels.ace.ACEBasis
        The linear basis; the rows times the coefficients are the model's W_cb derivatives.
    positions_A, cell_A, symbols
        The perfect crystal (Å).
    h : float
        Strain step.
    third : bool
        Also the third derivatives (the ε_V2 rows).
    """
    V0 = abs(np.linalg.det(cell_A))

    def row(e):
        x, c = _strained(positions_A, cell_A, e)
        return basis.energy_rows(x[None], c, symbols)[0] / V0

    return strain_derivatives(row, h, third)


def virial_rows(basis, positions_A: np.ndarray, cell_A: np.ndarray, symbols: list[str],
                h: float = 1e-5) -> np.ndarray:
    """Virial rows (6, B) in eV of one configuration: −∂E_row/∂e_v by central differences.

    Voigt order xx, yy, zz, yz, xz, xy; the row times the coefficients is the model's virial
    −∂E/∂ε (the stress is −virial/volume).
    """
    out = []
    for v in range(6):
        e = np.zeros(6)
        e[v] = h
        xp, cp = _strained(positions_A, cell_A, e)
        xm, cm = _strained(positions_A, cell_A, -e)
        ep = basis.energy_rows(xp[None], cp, symbols)[0]
        em = basis.energy_rows(xm[None], cm, symbols)[0]
        out.append(-(ep - em) / (2 * h))
    return np.array(out)


def elastic_constants_eV_per_A3(model, positions_A, cell_A, symbols, h: float = 1e-3
                                ) -> np.ndarray:
    """The 6 × 6 Voigt elastic constants C_ij (eV/Å³) of a perfect crystal, ∂²w/∂e_i∂e_j."""
    return cauchy_born_derivatives(model, positions_A, cell_A, symbols, h, third=False).second


def cubic_constants_GPa(C_eV_per_A3: np.ndarray) -> tuple[float, float, float]:
    """(C11, C12, C44) in GPa of a cubic crystal, averaged over the equivalent entries."""
    C = np.asarray(C_eV_per_A3) * EV_PER_A3_IN_GPA
    return (float(np.mean([C[0, 0], C[1, 1], C[2, 2]])),
            float(np.mean([C[0, 1], C[0, 2], C[1, 2]])),
            float(np.mean([C[3, 3], C[4, 4], C[5, 5]])))
