"""Equilibrium of a perfect lattice (the triangular lattice, diamond Si, ...) under a given model.

r0 is "chosen such that the triangular lattice becomes the ground state of the reference EAM"
(P1 §4.2.1): the spacing that minimises the energy per atom of the periodic triangular lattice.
Units: Å, eV.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize_scalar

from .lattice import TRIANGULAR, Crystal, triangular_cell, triangular_sites

__all__ = ["triangular_energy_per_atom", "triangular_equilibrium", "energy_per_atom",
           "lattice_equilibrium"]

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


def energy_per_atom(model, crystal: Crystal, a_A: float) -> float:
    """Energy per atom (eV) of the perfect ``crystal`` with lattice parameter ``a_A`` (Å), on its
    ``perfect_cell`` supercell."""
    n = crystal.perfect_cell
    pos = crystal.sites(n, a_A)
    return model.evaluate(pos, crystal.cell(n, a_A), [crystal.symbol] * len(pos)).energy_eV / len(pos)


def lattice_equilibrium(model, crystal: Crystal = TRIANGULAR,
                        xtol_A: float = 1e-10) -> tuple[float, float]:
    """Lattice parameter (Å) minimising the energy per atom of ``crystal``, and that energy (eV).

    For :data:`kernels.lattice.TRIANGULAR` this is :func:`triangular_equilibrium` (same cell,
    bracket and tolerance, identical values).
    """
    if crystal is TRIANGULAR:
        return triangular_equilibrium(model, crystal.lattice_parameter_bracket_A, crystal.symbol,
                                      xtol_A)
    res = minimize_scalar(lambda a: energy_per_atom(model, crystal, a),
                          bounds=crystal.lattice_parameter_bracket_A, method="bounded",
                          options={"xatol": xtol_A})
    if not res.success:
        raise RuntimeError(f"lattice-parameter minimisation failed: {res.message}")
    return float(res.x), float(res.fun)
