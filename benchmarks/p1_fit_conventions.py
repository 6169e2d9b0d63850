"""Test RMSEs ε_E (meV/atom) and ε_F (eV/Å) of P1 fits under each loss convention of the
``[fit]`` table (``energy_weighting`` × ``weight_form``), to compare with P1 Table 2.

The training cell, sets, weights (W_E 100, W_F 1), ACE superset and solver are those of the
built-in spec ``p1-vacancies`` at one L (default 8 r0: N_train 200, N_test 50), without the
bulk-energy row (the papers' loss). One design pass per energy weighting (the weighting scales
the energy rows before they are factored, :mod:`kernels.point_defect_slices`), then every basis
size and weight form from its factors.

Run: ``PYTHONPATH=. .venv/bin/python benchmarks/p1_fit_conventions.py [L] [sizes] [seed]``
(``sizes`` comma-separated, default 51,211,383,668,1119,1809,2849; ``seed`` replaces the spec's
``training.seed``, 2022, to draw other training and test sets). Prints one line per fit and
a Markdown table at the end. Minutes on one core at L = 8 (≈ 35 s per design pass).
"""

import os
import sys
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from kernels.least_squares import ENERGY_WEIGHTINGS, WEIGHT_FORMS  # noqa: E402
from sweep import tasks  # noqa: E402
from sweep.experiments.p1_point_defects import training_seeds  # noqa: E402
from sweep.spec import load_spec, parse_spec  # noqa: E402

#: P1 Table 2 at L = 8 r0: basis size → (ε_E meV/atom, ε_F eV/Å).
PAPER_L8 = {383: (0.271, 0.128), 668: (0.209, 0.114), 1119: (0.127, 0.084),
            1809: (0.092, 0.038), 2849: (0.102, 0.034)}


def main(L: int = 8, sizes=(51, 211, 383, 668, 1119, 1809, 2849), seed: int | None = None):
    spec = load_spec("p1-vacancies")
    if seed is not None:
        spec = parse_spec(spec.text.replace("seed = 2022", f"seed = {seed}"), "p1-vacancies")
    p = spec.params
    ref = p["reference"]["model"]
    w = spec.weights["WE100-WF1"]
    sizes = sorted(set(int(s) for s in sizes))
    lat = tasks.lattice(ref)
    data = tasks.training(ref, lat, L, "vacancy", p["training"],
                          *training_seeds(spec, "vacancy", L), p["relax"])
    n = data.train.positions_A.shape[1]
    print(f"L = {L} r0, training.seed {p['training']['seed']}, {n} atoms, N_train {p['training']['n_train']}, "
          f"N_test {p['training']['n_test']}, W_E {w['energy']}, W_F {w['forces']}", flush=True)
    table = {}
    for ew in ENERGY_WEIGHTINGS:
        t0 = time.perf_counter()
        factors = tasks.design_slice(p["ace"], sizes, data, None, ew)
        print(f"design pass ({ew}): {time.perf_counter() - t0:.1f} s", flush=True)
        for B in sizes:
            for wf in WEIGHT_FORMS:
                fit_params = {**p["fit"], "energy_weighting": ew, "weight_form": wf,
                              "bulk_energy_row": False}
                f, _ = tasks.fit_slice(p["ace"], sizes, B, factors, lat, w, fit_params)
                table[(ew, wf, B)] = f
                print(f"{ew:9s} {wf:17s} B {B:5d}: eps_E {f.rmse_energy_meV_per_atom:.4f} "
                      f"meV/atom, eps_F {f.rmse_forces_eV_per_A:.4f} eV/A, rank {f.rank}, "
                      f"eps_FC_hom {f.force_constant_error_percent:.1f} %", flush=True)
    print("\n| energy_weighting | weight_form | " + " | ".join(f"B = {B}" for B in sizes) + " |")
    print("|---|---|" + "---|" * len(sizes))
    for ew in ENERGY_WEIGHTINGS:
        for wf in WEIGHT_FORMS:
            cells = [f"{table[(ew, wf, B)].rmse_energy_meV_per_atom:.3f} / "
                     f"{table[(ew, wf, B)].rmse_forces_eV_per_A:.3f}" for B in sizes]
            print(f"| {ew} | {wf} | " + " | ".join(cells) + " |")
    if L == 8:
        cells = [f"{PAPER_L8[B][0]:.3f} / {PAPER_L8[B][1]:.3f}" if B in PAPER_L8 else "–"
                 for B in sizes]
        print("| P1 Table 2 | | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    args = sys.argv[1:]
    L = int(args[0]) if args else 8
    sizes = [int(s) for s in args[1].split(",")] if len(args) > 1 else \
        (51, 211, 383, 668, 1119, 1809, 2849)
    main(L, sizes, int(args[2]) if len(args) > 2 else None)
