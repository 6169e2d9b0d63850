"""Fixed-cell relaxation of a configuration with any model of this package.

A *model* is any object with ``evaluate(positions_A, cell_A, symbols) -> EnergyForcesVirial``
(the reference potentials and :class:`kernels.ace.ACEModel`). Relaxation uses ase's optimisers
through a thin calculator adapter: ``"lbfgs"`` (ase LBFGS, force-only steps: robust at tight force
tolerances where line searches fail on energy round-off), ``"precon-lbfgs"`` (ase PreconLBFGS with
the Exp preconditioner; fewer force calls, pays when forces are expensive) and ``"fire"``.

PreconLBFGS's Armijo line search needs the energy to fall measurably along each step. Near a
tight tolerance the decrease it asks for can fall below the energy's round-off (a rattled
249-atom W vacancy cell fails so at 1e-8 eV/Å; fitted relaxations of 15,000-atom loop cells
stopped so on the way to 1e-5 eV/Å), and ase aborts with "Armijo linesearch failed after
reset of Hessian". ``"precon-lbfgs"`` then continues with
the force-only ``"lbfgs"`` from the last accepted positions, for the steps left: the minimum
sought is the same, only the last steps change optimiser. A relaxation that converges
without the line search failing is untouched.

Units: Å, eV, eV/Å.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator, all_changes

__all__ = ["ModelCalculator", "RelaxResult", "RelaxationError", "relax", "OPTIMIZERS"]

OPTIMIZERS = ("lbfgs", "precon-lbfgs", "fire")


class RelaxationError(RuntimeError):
    """The optimiser stopped before the force tolerance was reached."""


class ModelCalculator(Calculator):
    """ASE calculator around a model's ``evaluate`` (energy eV, forces eV/Å, stress eV/Å³)."""

    implemented_properties = ["energy", "forces", "stress", "free_energy"]

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.n_calls = 0

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        r = self.model.evaluate(self.atoms.positions, np.asarray(self.atoms.cell),
                                list(self.atoms.get_chemical_symbols()))
        self.n_calls += 1
        stress = -r.virial_eV / self.atoms.get_volume()
        self.results = {"energy": r.energy_eV, "free_energy": r.energy_eV,
                        "forces": r.forces_eV_per_A,
                        "stress": stress[[0, 1, 2, 1, 0, 0], [0, 1, 2, 2, 2, 1]]}


def _factored_exp():
    """ase's Exp preconditioner (A = 3) with an exact, deterministic solve.

    ase picks PyAMG whenever it is importable and starts each of its inexact solves from an
    unseeded random vector, so the same relaxation ends in a different state from run to run
    (on the 8 a0 W screw cell at a saddle 0.5 eV up, one run in four). Its direct path is
    exact but refactors P at every step; P changes only when the atoms have moved by half a
    neighbour distance, so the SuperLU factor is kept until then (the same factorisation as
    ``spsolve``'s, once)."""
    import scipy.sparse.linalg  # noqa: PLC0415
    from ase.optimize.precon import Exp  # noqa: PLC0415

    class FactoredExp(Exp):
        _factored = None

        def solve(self, x):
            if self._factored is None or self._factored[0] is not self.P:
                self._factored = (self.P, scipy.sparse.linalg.splu(self.P.tocsc()))
            return self._factored[1].solve(np.asarray(x, float))

    return FactoredExp(A=3.0, solver="direct")


@dataclass(frozen=True)
class RelaxResult:
    """Relaxed positions (Å), energy (eV), largest force component left (eV/Å) and cost."""

    positions_A: np.ndarray
    energy_eV: float
    max_force_eV_per_A: float
    n_steps: int
    n_force_calls: int
    #: the model's Hessian at ``positions_A`` (eV/Å², sparse) when the relaxation took it
    #: (:func:`kernels.stable_relax.relax_to_minimum`), else None
    hessian_eV_per_A2: object = field(default=None, repr=False, compare=False)
    #: the forces (n, 3), eV/Å, at the starting positions when the optimiser keeps them
    #: (:func:`kernels.hessian_precon_relax.relax_preconditioned`), else None
    initial_forces_eV_per_A: np.ndarray | None = field(default=None, repr=False, compare=False)


def relax(model, positions_A: np.ndarray, cell_A: np.ndarray, symbols: list[str],
          fmax_eV_per_A: float = 1e-6, max_steps: int = 10_000,
          optimizer: str = "lbfgs") -> RelaxResult:
    """Relax positions at fixed periodic cell until every force is below ``fmax_eV_per_A``.

    Parameters
    ----------
    model
        Object with ``evaluate(positions_A, cell_A, symbols)``.
    positions_A : (n, 3) ndarray
        Starting positions, Å.
    cell_A : (3, 3) ndarray
        Cell rows, Å; periodic in all directions.
    symbols : list of str
        Chemical symbols.
    fmax_eV_per_A : float
        Convergence: largest atomic force norm, eV/Å.
    max_steps : int
        Optimiser steps before giving up with :class:`RelaxationError`.
    optimizer : {"lbfgs", "precon-lbfgs", "fire"}

    Raises
    ------
    RelaxationError
        If the tolerance is not reached within ``max_steps``.
    """
    from ase.optimize import FIRE, LBFGS  # noqa: PLC0415

    atoms = Atoms(symbols=symbols, positions=np.array(positions_A, float), cell=cell_A, pbc=True)
    calc = ModelCalculator(model)
    atoms.calc = calc
    if optimizer == "lbfgs":
        opt = LBFGS(atoms, logfile=None)
    elif optimizer == "precon-lbfgs":
        from ase.optimize.precon import PreconLBFGS  # noqa: PLC0415

        opt = PreconLBFGS(atoms, precon=_factored_exp(), use_armijo=True, logfile=None)
    elif optimizer == "fire":
        opt = FIRE(atoms, logfile=None)
    else:
        raise ValueError(f"unknown optimizer {optimizer!r}; allowed: {', '.join(OPTIMIZERS)}")
    if optimizer == "precon-lbfgs":
        converged, n_steps = _precon_then_lbfgs(opt, atoms, fmax_eV_per_A, max_steps)
    else:
        converged = opt.run(fmax=fmax_eV_per_A, steps=max_steps)
        n_steps = int(opt.nsteps)
    fmax_left = float(np.linalg.norm(atoms.get_forces(), axis=1).max()) if len(atoms) else 0.0
    if not converged and fmax_left > fmax_eV_per_A:
        raise RelaxationError(f"{optimizer} did not reach fmax {fmax_eV_per_A:g} eV/Å in "
                              f"{max_steps} steps (largest force {fmax_left:.3g} eV/Å)")
    return RelaxResult(atoms.positions.copy(), float(atoms.get_potential_energy()), fmax_left,
                       n_steps, calc.n_calls)


def _precon_then_lbfgs(opt, atoms: Atoms, fmax_eV_per_A: float, max_steps: int
                       ) -> tuple[bool, int]:
    """Run ase's PreconLBFGS ``opt``; when its Armijo line search gives up (module docstring),
    go on with force-only LBFGS from the last accepted positions for the steps left.
    Returns (converged, steps taken by both)."""
    from ase.optimize import LBFGS  # noqa: PLC0415

    accepted = [atoms.positions.copy()]
    opt.attach(lambda: accepted.__setitem__(0, atoms.positions.copy()))
    try:
        return opt.run(fmax=fmax_eV_per_A, steps=max_steps), int(opt.nsteps)
    except RuntimeError as e:
        if "Armijo" not in str(e):
            raise
    atoms.positions = accepted[0]
    done = int(opt.nsteps)
    rest = LBFGS(atoms, logfile=None)
    converged = rest.run(fmax=fmax_eV_per_A, steps=max(max_steps - done, 0))
    return converged, done + int(rest.nsteps)
