"""``sweep bench``: the P1 Table 2 fit benchmark (two vacancies, 2D triangular lattice).

For each training-cell size L and each of the table's basis sizes, build the training and test
sets of the paper-scale spec ``p1-vacancies`` (N_train 200, N_test 50, W_E 100, W_F 1), time the
design rows and the solve, and print #B, #observations, ε_E, ε_F, ε_FC_hom and both times next to
the paper's figures (Julia ACE1 on the authors' machine, whose time T covers the whole fit).
Times are single-process wall times on this machine; compare rows by ratios, not across machines.
"""

from __future__ import annotations

import os
import time

from kernels import point_defects as pdk

from . import tasks
from .graph import training_seeds
from .spec import load_spec

__all__ = ["PAPER_TABLE2", "main_bench"]

#: P1 Table 2: L → [(#B, ε_E meV, ε_F eV/Å, ε_FC_hom %, T s)], and #O per L.
PAPER_TABLE2 = {
    4: (6800, [(51, 0.329, 0.110, 10.7, 26.5), (110, 0.288, 0.076, 8.9, 27.8),
               (211, 0.206, 0.045, 7.7, 26.8), (383, 0.231, 0.039, 6.8, 30.7),
               (1119, 0.150, 0.036, 6.3, 38.7)]),
    5: (14000, [(110, 0.364, 0.107, 11.0, 56.6), (211, 0.261, 0.072, 8.7, 54.5),
                (383, 0.208, 0.048, 7.4, 55.8), (668, 0.183, 0.043, 7.5, 58.4),
                (1119, 0.143, 0.038, 5.1, 77.9)]),
    6: (17600, [(110, 0.401, 0.106, 11.9, 67.3), (383, 0.274, 0.074, 8.3, 68.4),
                (668, 0.165, 0.038, 6.3, 70.6), (1119, 0.139, 0.035, 5.4, 80.7),
                (1445, 0.127, 0.032, 4.9, 96.0)]),
    7: (28400, [(211, 0.298, 0.113, 11.4, 114.8), (383, 0.297, 0.102, 9.6, 116.2),
                (1119, 0.159, 0.050, 7.6, 119.6), (1445, 0.095, 0.040, 6.8, 135.9),
                (1809, 0.085, 0.034, 5.9, 172.8)]),
    8: (41600, [(383, 0.271, 0.128, 13.8, 166.9), (668, 0.209, 0.114, 9.0, 162.2),
                (1119, 0.127, 0.084, 7.4, 166.0), (1809, 0.092, 0.038, 5.9, 199.8),
                (2849, 0.102, 0.034, 5.8, 256.6)]),
}


def main_bench(Ls, basis_sizes=None, n_train: int = 200, n_test: int = 50,
               spec_name: str = "p1-vacancies") -> int:
    """Print the benchmark table; returns 0."""
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    spec = load_spec(spec_name)
    p = spec.params
    ref = p["reference"]["model"]
    w = spec.weights["WE100-WF1"]
    lat = tasks.lattice(ref)
    print(f"P1 Table 2 benchmark: spec {spec_name}, N_train {n_train}, N_test {n_test}, "
          f"W_E {w['energy']:g}, W_F {w['forces']:g}, r0 = {lat.r0_A:.4f} Å")
    head = (f"{'L':>3} {'#B req':>6} {'#B':>5} {'rank':>5} {'#obs':>6} {'eE meV/at':>9} "
            f"{'eF eV/Å':>8} {'eFC %':>6} {'t_rows s':>8} {'t_solve s':>9} | "
            f"{'paper #B':>8} {'#O':>6} {'eE':>6} {'eF':>6} {'eFC':>5} {'T s':>6}")
    print(head)
    print("-" * len(head))
    for L in Ls:
        n_obs_paper, rows = PAPER_TABLE2.get(L, (0, []))
        sizes = basis_sizes or [r[0] for r in rows]
        seeds = training_seeds(spec, "vacancy", L)
        params = dict(p["training"], n_train=n_train, n_test=n_test)
        data = tasks.training(ref, lat, L, "vacancy", params, *seeds, p["relax"])
        for B in sizes:
            basis = tasks.basis_for(p["ace"], B)
            t0 = time.perf_counter()
            design = pdk.design_rows(basis, data)
            t_rows = time.perf_counter() - t0
            f = pdk.fit(basis, design, data, lat, w["energy"], w["forces"], p["fit"]["rtol"])
            paper = next((r for r in rows if r[0] == B), None)
            ptxt = (f"{paper[0]:>8} {n_obs_paper:>6} {paper[1]:>6.3f} {paper[2]:>6.3f} "
                    f"{paper[3]:>5.1f} {paper[4]:>6.1f}") if paper else f"{'—':>8}"
            print(f"{L:>3} {B:>6} {f.n_basis:>5} {f.rank:>5} {f.n_observations:>6} "
                  f"{f.rmse_energy_meV_per_atom:>9.4f} {f.rmse_forces_eV_per_A:>8.4f} "
                  f"{f.force_constant_error_percent:>6.2f} {t_rows:>8.1f} {f.fit_time_s:>9.2f} | "
                  f"{ptxt}", flush=True)
    return 0
