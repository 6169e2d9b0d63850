"""Equilibrium of the perfect triangular lattice under a given model.

r0 is "chosen such that the triangular lattice becomes the ground state of the reference EAM"
(P1 §4.2.1): the spacing that minimises the energy per atom of the periodic triangular lattice.
Units: Å, eV.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize_scalar

from .lattice import triangular_cell, triangular_sites

__all__ = ["triangular_energy_per_atom", "triangular_equilibrium"]

#: Cell size used for energies per atom of the perfect lattice (larger than any cutoff / r0).
_PERFECT_CELL = 6


def triangular_energy_per_atom(model, r0_A: float, symbol: str = "W") -> float:
    """Energy per atom (eV) of the perfect triangular lattice with spacing ``r0_A`` (Å)."""
    n = _PERFECT_CELL
    pos = triangular_sites(n, r0_A)
    return model.evaluate(pos, triangular_cell(n, r0_A), [symbol] * len(pos)).energy_eV / len(pos)


def triangular_equilibrium(model, bracket_A=(2.0, 3.5), symbol: str = "W",
                           xtol_A: float = 1e-10) -> tuple[float, float]:
    """Spacing r0 (Å) minimising the lattice energy, and the energy per atom there (eV)."""
    res = minimize_scalar(lambda r: triangular_energy_per_atom(model, r, symbol),
                          bounds=bracket_A, method="bounded", options={"xatol": xtol_A})
    if not res.success:
        raise RuntimeError(f"r0 minimisation failed: {res.message}")
    return float(res.x), float(res.fun)
