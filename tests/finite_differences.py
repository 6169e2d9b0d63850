"""Finite-difference references shared by the reference-model tests."""

from __future__ import annotations

import numpy as np

#: The six independent components of a symmetric 3 × 3 strain.
VOIGT_PAIRS = ((0, 0), (1, 1), (2, 2), (0, 1), (1, 2), (0, 2))


def strain_derivatives_eV(energy_eV, positions_A: np.ndarray, cell_A: np.ndarray,
                          h: float = 1e-6) -> dict:
    """dE/dε_ab (eV) at ε = 0 for the six symmetric strains ε = h·sym(e_a ⊗ e_b), by central
    differences: positions and cell deformed by I ± ε. ``energy_eV(positions_A, cell_A)`` gives
    the energy (eV). For a correct virial v (eV), dE/dε_ab = −v_ab."""
    out = {}
    for a, b in VOIGT_PAIRS:
        e = np.zeros((3, 3))
        e[a, b] = e[b, a] = h / 2 if a != b else h
        Fp, Fm = np.eye(3) + e, np.eye(3) - e
        out[a, b] = (energy_eV(positions_A @ Fp.T, cell_A @ Fp.T)
                     - energy_eV(positions_A @ Fm.T, cell_A @ Fm.T)) / (2 * h)
    return out


def minus_gradient_eV_per_A(energy_eV, positions_A: np.ndarray, atoms, h: float = 1e-5
                            ) -> dict:
    """−∂E/∂x_ia (eV/Å) of the listed atoms, every Cartesian component, by central differences
    of step ``h`` (Å). ``energy_eV(positions_A)`` gives the energy (eV). For correct forces f,
    the result at (i, a) equals f[i, a]."""
    out = {}
    for i in atoms:
        for a in range(3):
            xp, xm = positions_A.copy(), positions_A.copy()
            xp[i, a] += h
            xm[i, a] -= h
            out[i, a] = -(energy_eV(xp) - energy_eV(xm)) / (2 * h)
    return out
