"""Published numbers of the papers, typed in for side-by-side comparison in the report.

These are the authors' values, not results of this project. Source of every number below:

P1 Table 2
    *Generalisation analysis of MLIPs for point defects* (P1,
    ``papers/point-defects-generalisation.txt``, Appendix B, Table 2: "2D toy model: The fitting
    accuracy (RMSE), force constant error and fitting time for the case of two separated
    vacancies, where r0 is the rescaled lattice constant"). EAM W reference in the plane, two
    vacancies, N_train 200, N_test 50, W_E 100, W_F 1, rank-revealing QR at 1e-6, Julia ACE1 fits
    timed on the authors' machine. Columns: #B (basis functions), #O (observations, one value per
    L), ε_E (test RMSE of the energy; the paper's unit is "meV", which this project reads as
    meV/atom, the unit of its own ``rmse_energy``), ε_F (test RMSE of the forces, eV/Å),
    ε_FC_hom (relative force-constant error on the homogeneous lattice, %), T (fit time, s).

The paper gives no such table for the interstitial cases (P1 §4.2.1 reports only figures), nor
for Si (P1 §4.2.2), nor does P2 tabulate its fits.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["FitRow", "P1_TABLE2", "P1_TABLE2_OBSERVATIONS", "P1_TABLE2_SOURCE", "p1_table2"]

P1_TABLE2_SOURCE = "P1 Appendix B, Table 2 (2D toy model, two separated vacancies)"


@dataclass(frozen=True)
class FitRow:
    """One row of P1 Table 2.

    Attributes
    ----------
    L_r0 : int
        Training-cell size L (r0).
    n_basis : int
        #B, number of basis functions.
    rmse_energy_meV : float
        ε_E, test RMSE of the energy (meV; read as meV/atom).
    rmse_forces_eV_per_A : float
        ε_F, test RMSE of the forces (eV/Å).
    force_constant_error_percent : float
        ε_FC_hom (%).
    fit_time_s : float
        T, fit time on the authors' machine (s).
    """

    L_r0: int
    n_basis: int
    rmse_energy_meV: float
    rmse_forces_eV_per_A: float
    force_constant_error_percent: float
    fit_time_s: float


#: #O, the number of observations, per L (r0).
P1_TABLE2_OBSERVATIONS = {4: 6800, 5: 14000, 6: 17600, 7: 28400, 8: 41600}

#: P1 Table 2, all rows, in the paper's order.
P1_TABLE2 = tuple(FitRow(*r) for r in (
    (4, 51, 0.329, 0.110, 10.7, 26.5),
    (4, 110, 0.288, 0.076, 8.9, 27.8),
    (4, 211, 0.206, 0.045, 7.7, 26.8),
    (4, 383, 0.231, 0.039, 6.8, 30.7),
    (4, 1119, 0.150, 0.036, 6.3, 38.7),
    (5, 110, 0.364, 0.107, 11.0, 56.6),
    (5, 211, 0.261, 0.072, 8.7, 54.5),
    (5, 383, 0.208, 0.048, 7.4, 55.8),
    (5, 668, 0.183, 0.043, 7.5, 58.4),
    (5, 1119, 0.143, 0.038, 5.1, 77.9),
    (6, 110, 0.401, 0.106, 11.9, 67.3),
    (6, 383, 0.274, 0.074, 8.3, 68.4),
    (6, 668, 0.165, 0.038, 6.3, 70.6),
    (6, 1119, 0.139, 0.035, 5.4, 80.7),
    (6, 1445, 0.127, 0.032, 4.9, 96.0),
    (7, 211, 0.298, 0.113, 11.4, 114.8),
    (7, 383, 0.297, 0.102, 9.6, 116.2),
    (7, 1119, 0.159, 0.050, 7.6, 119.6),
    (7, 1445, 0.095, 0.040, 6.8, 135.9),
    (7, 1809, 0.085, 0.034, 5.9, 172.8),
    (8, 383, 0.271, 0.128, 13.8, 166.9),
    (8, 668, 0.209, 0.114, 9.0, 162.2),
    (8, 1119, 0.127, 0.084, 7.4, 166.0),
    (8, 1809, 0.092, 0.038, 5.9, 199.8),
    (8, 2849, 0.102, 0.034, 5.8, 256.6),
))


def p1_table2(L_r0: int) -> list[FitRow]:
    """The rows of P1 Table 2 for one training-cell size L (r0); empty if the paper has none."""
    return [r for r in P1_TABLE2 if r.L_r0 == int(L_r0)]
