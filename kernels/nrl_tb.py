"""NRL tight binding for Si (P1 App. D) through QUIP's ``TB NRL-TB`` potential (quippy-ase).

The reference model of P1-Si: a non-orthogonal tight-binding model whose on-site energies depend
on a pseudo-atomic density (P1 eq. D.2) and whose Slater–Koster bond integrals and overlaps are
analytic functions of distance (eqs. D.3, D.4), with the band energy of a Fermi–Dirac occupation
(QUIP's ``fermi_T`` from the parameter file, 0.01 eV). It is the tested implementation in QUIP
(libAtoms/QUIP, GPL v2), called through the ``quippy-ase`` wheels; nothing of it is rewritten here.

Parameters: :func:`bernstein2000_si_sp` reads ``kernels/data/nrl_tb_si_sp.xml``, the s,p set of
N. Bernstein et al., Phys. Rev. B 62, 4477 (2000) (see ``kernels/data/nrl_tb_si_sp.README``).
P1 used the spd set of the same group through SKTB.jl; the s,p set is the one whose QUIP file is
available and tested here, and with 4 instead of 9 orbitals per atom its dense diagonalisation is
(9/4)³ ≈ 11× cheaper — the difference of reference model changes the numbers, not the physics
that P1-Si tests (a semiconductor with localised forces).

Brillouin-zone sampling. A periodic cell is sampled by a Γ-centred mesh of
``n_i = max(1, ceil(kpoint_length_A / |a_i|))`` points along reciprocal vector i, k = i/n_i. Such a
mesh is exactly the Γ point of the n1 × n2 × n3 supercell, so cells of different sizes are one
reference model: with the default 20 Å the cubic 8-atom cell gets 4×4×4 points, a 2×2×2-cell
supercell 2×2×2 and a 4×4×4-cell supercell Γ only — for the perfect crystal all three are the
same 512-atom Γ-point calculation; cells longer than 20 Å get Γ only. No symmetry reduction.

Units: positions and cells in Å, energies in eV (NRL convention: the energy zero is not the free
atom, so energies per atom are positive), forces in eV/Å, virials in eV.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
from dataclasses import dataclass, field
from importlib import resources

import numpy as np

from .finnis_sinclair import EnergyForcesVirial

__all__ = ["NRLTightBinding", "bernstein2000_si_sp", "monkhorst_pack_mesh", "kpoints_xml"]


@contextlib.contextmanager
def _quiet_fortran_stdout():
    """Send file descriptor 1 to /dev/null for the block (QUIP writes there from Fortran, below
    Python's sys.stdout)."""
    sys.stdout.flush()
    saved = os.dup(1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)
        os.close(devnull)


#: How to get QUIP when it is missing: the optional extra that installs it.
QUIP_EXTRA = "pip install 'mlip-sweep[tb]'"


def quip_potential_class():
    """``quippy.potential.Potential``, or ImportError naming the optional extra that installs
    QUIP (``quippy-ase``, GPL v2; needed only for the NRL tight-binding reference)."""
    try:
        from quippy.potential import Potential  # noqa: PLC0415
    except ImportError as err:
        raise ImportError(f"the NRL tight-binding reference needs QUIP (quippy-ase, GPL v2), "
                          f"which is an optional extra: {QUIP_EXTRA}") from err
    return Potential


def monkhorst_pack_mesh(cell_A: np.ndarray, kpoint_length_A: float) -> tuple[int, int, int]:
    """Mesh sizes n_i = max(1, ceil(kpoint_length_A / |a_i|)) of a cell (rows, Å)."""
    lengths = np.linalg.norm(np.asarray(cell_A, float), axis=1)
    return tuple(max(1, math.ceil(kpoint_length_A / L - 1e-9)) for L in lengths)


def kpoints_xml(mesh: tuple[int, int, int]) -> str:
    """QUIP ``<KPoints>`` block of a Γ-centred mesh k = (i/n1, j/n2, l/n3), reduced coordinates,
    equal weights: exactly the Γ-point sampling of the (n1, n2, n3) supercell."""
    axes = [np.arange(n) / n for n in mesh]
    pts = np.array(np.meshgrid(*axes, indexing="ij")).reshape(3, -1).T
    body = "".join(f'<point weight="1"> {a:.12f} {b:.12f} {c:.12f} </point>' for a, b, c in pts)
    return f'<KPoints N="{len(pts)}">{body}</KPoints>'


@dataclass(frozen=True)
class NRLTightBinding:
    """An NRL tight-binding model evaluated by QUIP (picklable: holds the parameter text).

    Parameters
    ----------
    params_xml : str
        The ``<NRL_TB_params>`` XML block.
    kpoint_length_A : float
        k-point density, Å (see the module docstring); 0 → Γ point only for every cell.
    symbol : str
        The species the parameters describe.
    name : str
        Label recorded in provenance.
    """

    params_xml: str
    kpoint_length_A: float = 20.0
    symbol: str = "Si"
    name: str = "nrl-tb"
    _cache: dict = field(default_factory=dict, compare=False, repr=False)

    def __getstate__(self):
        return {k: getattr(self, k) for k in ("params_xml", "kpoint_length_A", "symbol", "name")}

    def __setstate__(self, state):
        for k, v in state.items():
            object.__setattr__(self, k, v)
        object.__setattr__(self, "_cache", {})

    def _potential(self, mesh: tuple[int, int, int]):
        """The QUIP potential for one k-point mesh (built once per mesh and instance)."""
        if mesh not in self._cache:
            # libgfortran buffers its standard output when it is a regular file (a log, a SLURM
            # job's output), so lines written inside _quiet_fortran_stdout would be flushed
            # after it restores the descriptor; unbuffered, they land in /dev/null. Read by
            # libgfortran when QUIP's library loads, hence before the first import.
            os.environ.setdefault("GFORTRAN_UNBUFFERED_PRECONNECTED", "y")
            Potential = quip_potential_class()

            if mesh == (1, 1, 1):
                text = self.params_xml
            else:
                text = f"<params>{kpoints_xml(mesh)}{self.params_xml}</params>"
            with _quiet_fortran_stdout():  # QUIP's XML reader prints a line per element
                self._cache[mesh] = Potential("TB NRL-TB", param_str=text)
        return self._cache[mesh]

    def mesh(self, cell_A: np.ndarray) -> tuple[int, int, int]:
        """The k-point mesh used for a cell (rows, Å)."""
        if self.kpoint_length_A <= 0:
            return (1, 1, 1)
        return monkhorst_pack_mesh(cell_A, self.kpoint_length_A)

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
            Chemical symbols (default: all ``self.symbol``).
        """
        from ase import Atoms  # noqa: PLC0415

        positions_A = np.asarray(positions_A, float)
        cell_A = np.asarray(cell_A, float)
        symbols = symbols or [self.symbol] * len(positions_A)
        pot = self._potential(self.mesh(cell_A))
        atoms = Atoms(symbols=symbols, positions=positions_A, cell=cell_A, pbc=True)
        pot.calculate(atoms, properties=["energy", "forces", "stress"])
        return EnergyForcesVirial.from_ase_results(pot.results, cell_A)


def bernstein2000_si_sp(kpoint_length_A: float = 20.0) -> NRLTightBinding:
    """The s,p NRL-TB silicon of Bernstein et al., Phys. Rev. B 62, 4477 (2000)."""
    text = (resources.files("kernels") / "data" / "nrl_tb_si_sp.xml").read_text()
    return NRLTightBinding(text, kpoint_length_A, "Si", "nrl-tb-si-sp-bernstein2000")
