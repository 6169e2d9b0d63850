"""Force constants of the homogeneous lattice and the relative error ε_FC_hom (P1 eq. 3.6, Table 2).

In a perfect (homogeneous) periodic lattice every site is equivalent, so the force constants
∇²E_h(0) are the blocks K_j = −∂F_j/∂x_0 of one column, found by central differences of the
forces when site 0 is moved. ε_FC_hom is reported, as in P1 Table 2, as the relative
root-mean-square error of these blocks in percent:

    ε_FC_hom = 100 · ‖K − K̃‖_F / ‖K‖_F   (%).

Units: K in eV/Å².
"""

from __future__ import annotations

import numpy as np

__all__ = ["force_constants", "force_constant_error"]


def force_constants(model, positions_A: np.ndarray, cell_A: np.ndarray, symbols: list[str],
                    components: int = 3, step_A: float = 1e-3) -> np.ndarray:
    """Column of force constants −∂F_j/∂x_{0,a} (eV/Å²), shape (n, components, components).

    Central differences with displacement ``step_A`` (Å) of atom 0 along each of the first
    ``components`` Cartesian directions (2 for the planar lattice).
    """
    x = np.array(positions_A, float)
    n = len(x)
    K = np.empty((n, components, components))
    for a in range(components):
        xp = x.copy()
        xp[0, a] += step_A
        xm = x.copy()
        xm[0, a] -= step_A
        fp = model.evaluate(xp, cell_A, symbols).forces_eV_per_A[:, :components]
        fm = model.evaluate(xm, cell_A, symbols).forces_eV_per_A[:, :components]
        K[:, :, a] = -(fp - fm) / (2 * step_A)
    return K


def force_constant_error(K_ref: np.ndarray, K_ml: np.ndarray) -> float:
    """Relative force-constant error 100·‖K − K̃‖_F/‖K‖_F, in percent."""
    return float(100.0 * np.linalg.norm(K_ref - K_ml) / np.linalg.norm(K_ref))
