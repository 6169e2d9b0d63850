"""Finnis–Sinclair (EAM-type) reference potential for W, evaluated in any dimension.

The reference model of the 2D point-defect experiments (P1 "EAM W") is the tabulated
Finnis–Sinclair potential for tungsten of

    J. Wang, Y. L. Zhou, M. Li and Q. Hou,
    "A modified W–W interatomic potential based on ab initio calculations",
    Modelling Simul. Mater. Sci. Eng. 22 (2014) 015004,

as shipped by the Julia package JuLIP for its FS W example (the tables in ``kernels/data``
are the ``.plt`` files distributed with that publication). The site energy is

    E_i = ½ Σ_j φ(r_ij) − √( Σ_j A² f(r_ij) ),

with φ the pair potential (eV) and A² f the squared-amplitude density (eV²), both tabulated
on the same radial grid and interpolated here by cubic splines. The cutoff is the largest
radius at which either table is non-zero (≈ 4.45 Å), so in the 2D triangular lattice at
r0 ≈ 2.7 Å only nearest neighbours interact — the embedding still makes the model many-body.

Units: positions and cells in Å, energies in eV, forces in eV/Å, virials in eV.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources

import numpy as np
from matscipy.neighbours import neighbour_list
from scipy.interpolate import CubicSpline

__all__ = ["FinnisSinclair", "wang2014_tungsten", "EnergyForcesVirial"]


@dataclass(frozen=True)
class EnergyForcesVirial:
    """Energy (eV), forces (n, 3) in eV/Å and virial (3, 3) in eV of one configuration.

    The virial is ``−∂E/∂ε`` at zero homogeneous strain ε (so the stress is ``−virial/volume``).
    """

    energy_eV: float
    forces_eV_per_A: np.ndarray
    virial_eV: np.ndarray

    @classmethod
    def from_ase_results(cls, results: dict, cell_A: np.ndarray) -> "EnergyForcesVirial":
        """From an ase calculator's ``results`` (energy eV, forces eV/Å, stress eV/Å³ as Voigt
        xx, yy, zz, yz, xz, xy or 3 × 3) of a periodic cell with rows ``cell_A`` (Å):
        virial = −stress × volume."""
        s = np.asarray(results["stress"], float)
        if s.shape == (6,):
            xx, yy, zz, yz, xz, xy = s
            s = np.array([[xx, xy, xz], [xy, yy, yz], [xz, yz, zz]])
        virial = -s * abs(np.linalg.det(np.asarray(cell_A, float)))
        return cls(float(results["energy"]), np.array(results["forces"], float), virial)


@dataclass(frozen=True)
class FinnisSinclair:
    """A single-species Finnis–Sinclair potential given on a radial grid.

    Parameters
    ----------
    r_A : (m,) ndarray
        Radial grid, Å, strictly increasing.
    pair_eV : (m,) ndarray
        Pair potential φ(r), eV.
    density_eV2 : (m,) ndarray
        Squared density A² f(r), eV².
    name : str
        Label recorded in provenance.

    Instances hold only numpy arrays and are picklable; the splines are rebuilt on demand.
    """

    r_A: np.ndarray
    pair_eV: np.ndarray
    density_eV2: np.ndarray
    name: str = "finnis-sinclair"

    @property
    def cutoff_A(self) -> float:
        """Largest radius (Å) at which φ or A²f is non-zero."""
        nz = np.nonzero((self.pair_eV != 0) | (self.density_eV2 != 0))[0]
        return float(self.r_A[min(nz[-1] + 1, len(self.r_A) - 1)])

    def _splines(self):
        return (CubicSpline(self.r_A, self.pair_eV, extrapolate=False),
                CubicSpline(self.r_A, self.density_eV2, extrapolate=False))

    def evaluate(self, positions_A: np.ndarray, cell_A: np.ndarray,
                 symbols: list[str] | None = None, pbc=(True, True, True)) -> EnergyForcesVirial:
        """Energy, forces and virial of one configuration.

        Parameters
        ----------
        positions_A : (n, 3) ndarray
            Cartesian positions, Å.
        cell_A : (3, 3) ndarray
            Cell vectors as rows, Å.
        symbols : list of str, optional
            Ignored (single species); accepted so that all models share one signature.
        pbc : sequence of 3 bool
            Periodicity along each cell vector.
        """
        positions_A = np.asarray(positions_A, dtype=float)
        n = len(positions_A)
        i, j, d, D = neighbour_list("ijdD", positions=positions_A, cell=np.asarray(cell_A, float),
                                    pbc=np.asarray(pbc, bool), cutoff=self.cutoff_A)
        pair, dens = self._splines()
        phi = np.nan_to_num(pair(d))
        dphi = np.nan_to_num(pair(d, 1))
        f = np.nan_to_num(dens(d))
        df = np.nan_to_num(dens(d, 1))
        rho = np.bincount(i, weights=f, minlength=n)
        sqrt_rho = np.sqrt(np.maximum(rho, 0.0))
        energy = 0.5 * phi.sum() - sqrt_rho.sum()
        # dE/d r_ij for each ordered pair (i, j): half the pair term plus i's embedding term;
        # the (j, i) entry of the full list carries j's share.
        with np.errstate(divide="ignore", invalid="ignore"):
            demb = np.where(rho > 0, -0.5 / sqrt_rho, 0.0)
        g = 0.5 * dphi + demb[i] * df
        gD = (g / d)[:, None] * D  # dE/dD_ij, D_ij = x_j − x_i
        forces = np.zeros((n, 3))
        np.add.at(forces, i, gD)
        np.add.at(forces, j, -gD)
        virial = -(D.T @ gD)
        return EnergyForcesVirial(float(energy), forces, 0.5 * (virial + virial.T))


def wang2014_tungsten() -> FinnisSinclair:
    """The Wang et al. (2014) Finnis–Sinclair W potential from the package's data tables."""
    data = resources.files("kernels") / "data"
    with resources.as_file(data / "W-pair-Wang-2014.plt") as p:
        pair = np.loadtxt(p)
    with resources.as_file(data / "W-e-dens-Wang-2014.plt") as p:
        dens = np.loadtxt(p)
    if not np.array_equal(pair[:, 0], dens[:, 0]):
        raise ValueError("the pair and density tables of Wang (2014) must share one radial grid")
    return FinnisSinclair(pair[:, 0], pair[:, 1], dens[:, 1], name="fs-w-wang2014")
