"""Elastic constants of a multilattice with its internal (sublattice) relaxation.

In a crystal with several atoms per primitive cell and no inversion centre at the atoms (diamond
Si), a homogeneous strain e moves the sublattices against each other (Kleinman's internal
strain). The clamped-ion constants C⁰ = ∂²w/∂e² (all atoms strained homogeneously,
:func:`kernels.elasticity.cauchy_born_derivatives`) then differ from the relaxed ones that linear
elasticity of the crystal uses (the far field of a dislocation, the measured C44):

    E(u, e) ≈ E₀ + V ½ eᵀC⁰e + eᵀ M u + ½ uᵀ Φ u,   M_ia = ∂²E/∂e_i∂u_a = −∂F_a/∂e_i,

minimised over the atomic displacements u: C = C⁰ − M Φ⁺ Mᵀ / V, Φ the force-constant matrix of
the periodic cell (Φ⁺ its pseudo-inverse: the three translations are zero modes, orthogonal to
M's rows because forces sum to zero). M and Φ are central differences of the forces.

Units: strain dimensionless, displacements Å, energies eV, elastic constants eV/Å³.
"""

from __future__ import annotations

import numpy as np

from .elasticity import cauchy_born_derivatives, deformation

__all__ = ["relaxed_elastic_constants_eV_per_A3"]


def relaxed_elastic_constants_eV_per_A3(model, positions_A: np.ndarray, cell_A: np.ndarray,
                                        symbols: list[str], strain_step: float = 1e-3,
                                        displacement_step_A: float = 1e-3
                                        ) -> tuple[np.ndarray, np.ndarray]:
    """(relaxed C, clamped-ion C⁰), both 6 × 6 Voigt in eV/Å³, of a perfect periodic crystal.

    Parameters
    ----------
    model
        Has ``evaluate(positions_A, cell_A, symbols)`` returning energy (eV) and forces (eV/Å).
    positions_A, cell_A : ndarray
        The equilibrium perfect crystal (Å), e.g. a few conventional cells.
    symbols : list of str
        Chemical symbol per atom.
    strain_step : float
        Strain step of the central differences (dimensionless).
    displacement_step_A : float
        Atomic displacement step of the force-constant differences (Å).
    """
    x = np.asarray(positions_A, float)
    c = np.asarray(cell_A, float)
    V = abs(np.linalg.det(c))
    C0 = cauchy_born_derivatives(model, x, c, symbols, strain_step, third=False).second

    def forces(y, cell):
        return model.evaluate(y, cell, symbols).forces_eV_per_A.reshape(-1)

    M = np.empty((6, x.size))
    for i in range(6):
        e = np.zeros(6)
        e[i] = strain_step
        Fp, Fm = deformation(e), deformation(-e)
        M[i] = -(forces(x @ Fp.T, c @ Fp.T) - forces(x @ Fm.T, c @ Fm.T)) / (2 * strain_step)
    Phi = np.empty((x.size, x.size))
    for a in range(x.size):
        d = np.zeros(x.size)
        d[a] = displacement_step_A
        Phi[a] = -(forces(x + d.reshape(x.shape), c) - forces(x - d.reshape(x.shape), c)) \
            / (2 * displacement_step_A)
    Phi = 0.5 * (Phi + Phi.T)
    C = C0 - M @ np.linalg.pinv(Phi, rcond=1e-8) @ M.T / V
    return 0.5 * (C + C.T), C0
