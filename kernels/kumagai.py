"""The Kumagai et al. (2007) bond-order potential for Si, through matscipy's manybody calculator.

T. Kumagai, S. Izumi, S. Hara and S. Sakai, "Development of bond-order potentials that can
reproduce the elastic constants and melting point of silicon for classical molecular dynamics
simulation", Comput. Mater. Sci. 39 (2007) 457–464 — P2's Si reference ("an optimized bond-order
interatomic potential", P2 §4.2). A Tersoff-type potential with the modified cutoff and angular
function; LAMMPS calls it ``tersoff/mod`` (``Si.tersoff.mod``).

The evaluator is :class:`matscipy.calculators.manybody.Manybody` with matscipy's explicit form
``Kumagai`` and its shipped parameter set ``Kumagai_Comp_Mat_Sci_39_Si`` (A = 3281.5905 eV,
B = 121.00047 eV, λ₁ = 3.2300135 Å⁻¹, λ₂ = 1.3457970 Å⁻¹, η = 1, δ = 0.53298909,
α = 2.3890327 Å⁻¹, c₁…c₅, h = −0.365, R₁ = 2.70 Å, R₂ = 3.30 Å). Tested here
(tests/test_kumagai_si_edge.py): forces = −∇E and the virial = −∂E/∂ε by finite differences, and
the diamond lattice constant, cohesive energy and (internally relaxed) elastic constants against
the values published with the potential (a = 5.429 Å, E_c = 4.630 eV/atom, C11/C12/C44 =
166.4/65.3/77.1 GPa).

Cost of one call (one core of the shared 2-core machine): energy + forces 0.52 s for 5,832 atoms
and 2.4 s for 21,952 atoms; with the virial 0.9 s, 5.7 s, and 12–15 s for the 98,832-atom
paper-scale edge cell (0.12–0.26 ms/atom, linear; benchmarks/kumagai_cost.py,
benchmarks/si_edge_cell_cost.py).

Units: positions and cells in Å, energies in eV, forces in eV/Å, virials in eV.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .finnis_sinclair import EnergyForcesVirial

__all__ = ["KumagaiSi", "kumagai2007_silicon"]


@dataclass(frozen=True)
class KumagaiSi:
    """The Kumagai (2007) Si potential as a reference model (``evaluate`` like the EAM models).

    Parameters
    ----------
    name : str
        Label recorded in provenance.

    The matscipy calculator is built on first use and not pickled (instances ship to Dask
    workers as their name only).
    """

    name: str = "kumagai-si-2007"
    symbol: str = "Si"
    _cache: dict = field(default_factory=dict, compare=False, repr=False)

    def __getstate__(self):
        return {"name": self.name, "symbol": self.symbol}

    def __setstate__(self, state):
        for k, v in state.items():
            object.__setattr__(self, k, v)
        object.__setattr__(self, "_cache", {})

    def calculator(self):
        """The matscipy ``Manybody`` calculator with Kumagai's published parameters."""
        if "calc" not in self._cache:
            from matscipy.calculators.manybody import Manybody  # noqa: PLC0415
            from matscipy.calculators.manybody.explicit_forms import Kumagai  # noqa: PLC0415
            from matscipy.calculators.manybody.explicit_forms.kumagai import (  # noqa: PLC0415
                Kumagai_Comp_Mat_Sci_39_Si)

            self._cache["calc"] = Manybody(**Kumagai(Kumagai_Comp_Mat_Sci_39_Si))
        return self._cache["calc"]

    @property
    def cutoff_A(self) -> float:
        """Interaction range R₂ (Å)."""
        return 3.30

    def _atoms(self, positions_A, cell_A, symbols):
        """The periodic ase ``Atoms`` of a configuration (Å); refuses species other than Si."""
        from ase import Atoms  # noqa: PLC0415

        positions_A = np.asarray(positions_A, float)
        if symbols is not None and any(s != self.symbol for s in symbols):
            raise ValueError(f"{self.name} knows only {self.symbol}")
        return Atoms(symbols=[self.symbol] * len(positions_A), positions=positions_A,
                     cell=np.asarray(cell_A, float), pbc=True)

    def evaluate(self, positions_A: np.ndarray, cell_A: np.ndarray,
                 symbols: list[str] | None = None) -> EnergyForcesVirial:
        """Energy (eV), forces (eV/Å) and virial (eV) of one periodic configuration.

        Parameters
        ----------
        positions_A : (n, 3) ndarray
            Cartesian positions, Å.
        cell_A : (3, 3) ndarray
            Cell rows, Å; periodic in all three directions.
        symbols : list of str, optional
            Chemical symbols; only "Si" is known (default: all Si).
        """
        atoms = self._atoms(positions_A, cell_A, symbols)
        calc = self.calculator()
        calc.calculate(atoms, ["energy", "forces", "stress"], ["positions", "cell"])
        return EnergyForcesVirial.from_ase_results(calc.results, cell_A)

    def hessian_eV_per_A2(self, positions_A: np.ndarray, cell_A: np.ndarray,
                          symbols: list[str] | None = None):
        """Analytic Hessian ∂²E/∂x∂x (eV/Å²), symmetric sparse (3n × 3n) CSR, from matscipy's
        ``Manybody.get_hessian`` (tested against central differences of the forces)."""
        H = self.calculator().get_hessian(self._atoms(positions_A, cell_A, symbols),
                                          format="sparse")
        return (0.5 * (H + H.T)).tocsr()


def kumagai2007_silicon() -> KumagaiSi:
    """The Kumagai–Izumi–Hara–Sakai (2007) Si potential (matscipy's parameter set)."""
    return KumagaiSi()
