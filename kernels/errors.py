"""The error measures recorded per sweep point (P1 eq. 2.1 and §4, P2 eq. A.1).

All functions are pure numpy. Units: Å for geometry, eV for energies, eV/Å for forces.
"""

from __future__ import annotations

import numpy as np
from matscipy.neighbours import neighbour_list

__all__ = ["neighbour_pairs", "geometry_error", "energy_error", "formation_energy_error",
           "rmse"]


def neighbour_pairs(positions0_A: np.ndarray, cell_A: np.ndarray, cutoff_A: float
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Ordered pairs (ℓ, ℓ+ρ) of the interaction stencil N(ℓ) in the reference configuration.

    Every pair within ``cutoff_A`` of the *unrelaxed* configuration ``positions0_A`` is listed
    once per direction, periodic images included (an atom's image is the atom itself: the
    displacement field w is periodic).
    """
    i, j = neighbour_list("ij", positions=np.asarray(positions0_A, float),
                          cell=np.asarray(cell_A, float), pbc=[True, True, True], cutoff=cutoff_A)
    return i, j


def geometry_error(positions0_A: np.ndarray, relaxed_A: np.ndarray, relaxed_ml_A: np.ndarray,
                   cell_A: np.ndarray, neighbour_cutoff_A: float) -> float:
    """Geometry error ‖Dū − Dũ‖ (Å) of two relaxed configurations of the same atoms.

    ‖Dw‖ = ( Σ_ℓ Σ_{ρ ∈ N(ℓ) − ℓ} |w(ℓ+ρ) − w(ℓ)|² )^½ with w = ū − ũ (P1 eq. 2.1, P2 eq. A.1),
    N(ℓ) the neighbours of site ℓ within ``neighbour_cutoff_A`` in the unrelaxed reference
    configuration ``positions0_A`` (nearest neighbours: choose a cutoff between the first and the
    second neighbour shell). Rigid translations have zero error.

    Parameters
    ----------
    positions0_A : (n, 3) ndarray
        Unrelaxed reference configuration x₀, Å (defines the stencil).
    relaxed_A, relaxed_ml_A : (n, 3) ndarray
        Equilibria of the reference and of the fitted model, Å (same atom order, not wrapped).
    cell_A : (3, 3) ndarray
        Periodic cell, Å.
    neighbour_cutoff_A : float
        Radius of the stencil, Å.
    """
    i, j = neighbour_pairs(positions0_A, cell_A, neighbour_cutoff_A)
    w = np.asarray(relaxed_A, float) - np.asarray(relaxed_ml_A, float)
    Dw = w[j] - w[i]
    return float(np.sqrt(np.sum(Dw * Dw)))


def energy_error(energy_ref_eV: float, energy_ref_x0_eV: float, energy_ml_eV: float,
                 energy_ml_x0_eV: float) -> float:
    """|E(ū) − Ẽ(ũ)| (eV), each model's energy measured from its own value at x₀ (V(0) = 0)."""
    return abs((energy_ref_eV - energy_ref_x0_eV) - (energy_ml_eV - energy_ml_x0_eV))


def formation_energy_error(energy_ref_eV: float, bulk_ref_eV_per_atom: float, energy_ml_eV: float,
                           bulk_ml_eV_per_atom: float, n_atoms: int) -> float:
    """Error (eV) of the formation energy E_tot − n·e_bulk, each model against its own crystal."""
    return abs((energy_ref_eV - n_atoms * bulk_ref_eV_per_atom)
               - (energy_ml_eV - n_atoms * bulk_ml_eV_per_atom))


def rmse(predicted: np.ndarray, reference: np.ndarray) -> float:
    """Root-mean-square of ``predicted − reference`` over all entries."""
    d = np.asarray(predicted, float) - np.asarray(reference, float)
    return float(np.sqrt(np.mean(d * d)))
