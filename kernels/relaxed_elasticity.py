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

Sublattice (Γ-point) form. In the perfect crystal a homogeneous strain gives every atom of one
sublattice (the atoms related by the crystal's lattice translations) the same force, and Φ
commutes with those translations, so only sublattice-uniform displacements enter: with s
sublattices, the internal strain per atom M_s (6 × 3s, eV/Å; any atom of the sublattice), the
Γ-point force constants Φ_s (3s × 3s, eV/Å²; force on one atom of sublattice t when every atom of
sublattice s moves) and the volume per primitive cell Ω = V s / n (Å³),

    C = C⁰ − M Φ⁺ Mᵀ / V = C⁰ − M_s Φ_s⁺ M_sᵀ / Ω

exactly (:func:`relaxed_from_sublattices`). These are 6 × 3s and 3s × 3s numbers whatever the
cell (6 × 6 each for diamond), and 12 + 12 force evaluations instead of 12 + 6n; applied to a
linear model's force *rows* (``forces`` returning (n, 3, B)) the same differences give rows that
are linear in the coefficients (:mod:`kernels.dislocations` fits them).

Units: strain dimensionless, displacements Å, energies eV, forces eV/Å, force constants eV/Å²,
elastic constants eV/Å³.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .elasticity import cauchy_born_derivatives, deformation

__all__ = ["relaxed_elastic_constants_eV_per_A3", "internal_strain_and_force_constants",
           "sublattice_labels", "SublatticeConstants", "sublattice_constants",
           "relaxed_from_sublattices"]


def internal_strain_and_force_constants(model, positions_A: np.ndarray, cell_A: np.ndarray,
                                        symbols: list[str], strain_step: float = 1e-3,
                                        displacement_step_A: float = 1e-3
                                        ) -> tuple[np.ndarray, np.ndarray]:
    """(M (6, 3n) in eV/Å per unit strain, symmetrised Φ (3n, 3n) in eV/Å²) of a periodic cell.

    Central differences of the model's forces: M_ia = −∂F_a/∂e_i (homogeneous Voigt strain of
    atoms and cell), Φ_ab = −∂F_a/∂u_b (one atom component at a time); ``a`` runs over atom × xyz.
    """
    x = np.asarray(positions_A, float)
    c = np.asarray(cell_A, float)

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
    return M, 0.5 * (Phi + Phi.T)


def relaxed_elastic_constants_eV_per_A3(model, positions_A: np.ndarray, cell_A: np.ndarray,
                                        symbols: list[str], strain_step: float = 1e-3,
                                        displacement_step_A: float = 1e-3
                                        ) -> tuple[np.ndarray, np.ndarray]:
    """(relaxed C, clamped-ion C⁰), both 6 × 6 Voigt in eV/Å³, of a perfect periodic crystal.

    Uses the full M and Φ of the cell (:func:`internal_strain_and_force_constants`; 12 + 6n force
    evaluations), independent of the sublattice form of :func:`sublattice_constants`.

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
    M, Phi = internal_strain_and_force_constants(model, x, c, symbols, strain_step,
                                                 displacement_step_A)
    C = C0 - M @ np.linalg.pinv(Phi, rcond=1e-8) @ M.T / V
    return 0.5 * (C + C.T), C0


def sublattice_labels(positions_A: np.ndarray, cell_A: np.ndarray, symbols: list[str],
                      tol_A: float = 1e-6) -> np.ndarray:
    """Sublattice index (0 … s−1, in order of first appearance) of each atom of a perfect
    periodic crystal: two atoms share one when a translation of the whole crystal onto itself
    (species included) maps one onto the other.

    Parameters
    ----------
    positions_A, cell_A : ndarray
        Perfect crystal (Å).
    symbols : list of str
        Species per atom.
    tol_A : float
        Distance (Å) below which two sites coincide.
    """
    x = np.asarray(positions_A, float)
    c = np.asarray(cell_A, float)
    sym = np.asarray(symbols)
    frac = x @ np.linalg.inv(c)
    perms = []
    for a in range(len(x)):
        if sym[a] != sym[0]:
            continue
        d = (frac + frac[a] - frac[0])[:, None, :] - frac[None, :, :]
        d -= np.round(d)
        close = np.linalg.norm(d @ c, axis=-1) < tol_A
        if np.all(close.sum(axis=1) == 1):
            perm = np.argmax(close, axis=1)
            if np.all(sym[perm] == sym):
                perms.append(perm)
    labels = np.full(len(x), -1)
    for b in range(len(x)):
        if labels[b] < 0:
            labels[[p[b] for p in perms]] = labels.max() + 1
    return labels


@dataclass(frozen=True)
class SublatticeConstants:
    """Sublattice form of the internal strain (see the module docstring).

    Attributes
    ----------
    internal_strain : ndarray (6, 3s, …)
        M_s: −∂F/∂e_i on one atom of each sublattice (× xyz), eV/Å per unit strain (averaged
        over the sublattice's atoms, equal by symmetry). Trailing axes: those of ``forces``
        (e.g. a basis's B coefficients for design rows).
    force_constants : ndarray (3s, 3s, …)
        Φ_s[tβ, sα] = −∂F_tβ/∂u_sα, u_s moving every atom of sublattice s (F on one atom of t,
        averaged over t), eV/Å²; symmetric up to the differences' error.
    volume_A3 : float
        Ω, volume per primitive cell (Å³): V s / n.
    """

    internal_strain: np.ndarray
    force_constants: np.ndarray
    volume_A3: float


def sublattice_constants(forces, positions_A: np.ndarray, cell_A: np.ndarray,
                         symbols: list[str], strain_step: float = 1e-3,
                         displacement_step_A: float = 1e-3) -> SublatticeConstants:
    """M_s and Φ_s (eV/Å, eV/Å²) of a perfect crystal by central differences of ``forces``.

    Parameters
    ----------
    forces : callable
        (positions (n, 3) Å, cell (3, 3) Å) → (n, 3, …): a model's forces (eV/Å), or a linear
        basis's force rows (n, 3, B), for which the results are rows linear in the coefficients.
    positions_A, cell_A, symbols
        The perfect crystal (Å), as for :func:`sublattice_labels`.
    strain_step : float
        Voigt strain step of M (dimensionless).
    displacement_step_A : float
        Sublattice displacement step of Φ_s (Å).
    """
    x = np.asarray(positions_A, float)
    c = np.asarray(cell_A, float)
    labels = sublattice_labels(x, c, symbols)
    s = int(labels.max()) + 1
    onehot = (labels[None, :] == np.arange(s)[:, None]) / np.bincount(labels)[:, None]  # (s, n)

    def per_sublattice(f):  # (n, 3, …) → (3s, …), mean over each sublattice's atoms
        return np.tensordot(onehot, f, axes=(1, 0)).reshape((3 * s,) + f.shape[2:])

    M = []
    for i in range(6):
        e = np.zeros(6)
        e[i] = strain_step
        Fp, Fm = deformation(e), deformation(-e)
        M.append(-per_sublattice(forces(x @ Fp.T, c @ Fp.T) - forces(x @ Fm.T, c @ Fm.T))
                 / (2 * strain_step))
    Phi = []
    for sub in range(s):
        for alpha in range(3):
            d = np.zeros_like(x)
            d[labels == sub, alpha] = displacement_step_A
            Phi.append(-per_sublattice(forces(x + d, c) - forces(x - d, c))
                       / (2 * displacement_step_A))
    Phi = np.moveaxis(np.array(Phi), 0, 1)  # [tβ, sα]: force on t when s moves
    return SublatticeConstants(np.array(M), Phi, abs(np.linalg.det(c)) * s / len(x))


def relaxed_from_sublattices(C0_eV_per_A3: np.ndarray, internal_strain_eV_per_A: np.ndarray,
                             force_constants_eV_per_A2: np.ndarray, volume_A3: float
                             ) -> np.ndarray:
    """C = C⁰ − M_s Φ_s⁺ M_sᵀ / Ω (6 × 6, eV/Å³), Φ_s symmetrised, pseudo-inverse at 1e-8."""
    Phi = 0.5 * (force_constants_eV_per_A2 + force_constants_eV_per_A2.T)
    M = internal_strain_eV_per_A
    C = C0_eV_per_A3 - M @ np.linalg.pinv(Phi, rcond=1e-8) @ M.T / volume_A3
    return 0.5 * (C + C.T)
