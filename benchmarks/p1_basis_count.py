"""Test RMSEs ε_E (meV/atom), ε_F (eV/Å) and ε_FC_hom (%) of P1 fits against the requested basis
size #B under each reading of #B (``[ace] basis_count``) and with and without unit-norm column
scaling before the truncated rank-revealing QR (``[fit] scale_columns``), beside P1 Table 2.

The training cell, sets, weights (W_E 100, W_F 1), ACE superset and solver are those of the
built-in spec ``p1-vacancies`` at one L (default 8 r0: N_train 200, N_test 50), without
relaxations. One design pass per reading (one basis per requested size, each a truncation of the
superset), then every size and scaling from its factors. Per fit it prints the raw number of 3D
functions ``n_basis``, how many of them are independent on planar configurations
(:mod:`kernels.planar_basis`) and the rank the truncated QR kept.

Run: ``PYTHONPATH=. .venv/bin/python benchmarks/p1_basis_count.py [L] [sizes] [n_train,n_test]``
(``sizes`` comma-separated, default P1 Table 2's nine). Prints a Markdown table at the end.
"""

import os
import sys
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from kernels.planar_basis import BASIS_COUNTS  # noqa: E402
from sweep import tasks  # noqa: E402
from sweep.experiments.p1_point_defects import training_seeds  # noqa: E402
from sweep.paper_values import p1_table2  # noqa: E402
from sweep.spec import load_spec  # noqa: E402

SIZES = (51, 110, 211, 383, 668, 1119, 1445, 1809, 2849)


def main(L: int = 8, sizes=SIZES, n_train: int | None = None, n_test: int | None = None):
    spec = load_spec("p1-vacancies")
    p = spec.params
    ref = p["reference"]["model"]
    w = spec.weights["WE100-WF1"]
    training = dict(p["training"], **({"n_train": n_train} if n_train else {}),
                    **({"n_test": n_test} if n_test else {}))
    sizes = sorted(set(int(s) for s in sizes))
    lat = tasks.lattice(ref)
    data = tasks.training(ref, lat, L, "vacancy", training,
                          *training_seeds(spec, "vacancy", L), p["relax"])
    print(f"L = {L} r0, {data.train.positions_A.shape[1]} atoms, N_train {training['n_train']}, "
          f"N_test {training['n_test']}, W_E {w['energy']}, W_F {w['forces']}, load "
          f"{os.getloadavg()[0]:.1f}", flush=True)
    table = {}
    for count in BASIS_COUNTS:
        ace = {**p["ace"], "basis_count": count}
        t0 = time.perf_counter()
        factors = tasks.design_slice(ace, sizes, data)
        print(f"design pass ({count}): {time.perf_counter() - t0:.1f} s, load "
              f"{os.getloadavg()[0]:.1f}", flush=True)
        for B in sizes:
            n_ind = tasks.planar_counts(ace, B)["n_planar_independent"]
            for scale in (True, False):
                fit_params = {**p["fit"], "scale_columns": scale}
                f, _ = tasks.fit_slice(ace, sizes, B, factors, lat, w, fit_params)
                table[(count, scale, B)] = (f, n_ind)
                print(f"{count:18s} scale {scale!s:5s} #B {B:5d}: n_basis {f.n_basis:5d}, "
                      f"planar-independent {n_ind:5d}, rank {f.rank:5d} | eps_E "
                      f"{f.rmse_energy_meV_per_atom:.4f} meV/atom, eps_F "
                      f"{f.rmse_forces_eV_per_A:.4f} eV/A, eps_FC_hom "
                      f"{f.force_constant_error_percent:.2f} %", flush=True)
    paper = {r.n_basis: r for r in p1_table2(L)}
    print("\n| basis_count | scale_columns | #B | n_basis | planar-indep. | rank | ε_E meV/atom "
          "| ε_F eV/Å | ε_FC_hom % | P1 ε_E | P1 ε_F | P1 ε_FC_hom |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for (count, scale, B), (f, n_ind) in sorted(table.items(), key=lambda kv: (
            BASIS_COUNTS.index(kv[0][0]), not kv[0][1], kv[0][2])):
        r = paper.get(B)
        ptxt = (f"{r.rmse_energy_meV:.3f} | {r.rmse_forces_eV_per_A:.3f} | {r.force_constant_error_percent:.1f}"
                if r else "– | – | –")
        print(f"| {count} | {str(scale).lower()} | {B} | {f.n_basis} | {n_ind} | {f.rank} | "
              f"{f.rmse_energy_meV_per_atom:.3f} | {f.rmse_forces_eV_per_A:.3f} | "
              f"{f.force_constant_error_percent:.1f} | {ptxt} |")


if __name__ == "__main__":
    args = sys.argv[1:]
    L = int(args[0]) if args else 8
    sizes = [int(s) for s in args[1].split(",")] if len(args) > 1 else SIZES
    nt = [int(s) for s in args[2].split(",")] if len(args) > 2 else [None, None]
    main(L, sizes, *nt)
