"""Cost of one NRL-TB energy+forces+virial call (QUIP, dense diagonalisation) vs cell size.

Run: ``OMP_NUM_THREADS=1 .venv/bin/python benchmarks/nrl_tb_cost.py [n_cells ...]``
(n cubic cells per side: 2 → 64 atoms, 3 → 216, 4 → 512, 5 → 1000). Γ point only (the cells
from 4 × 4 × 4 cubic cells up are longer than the default k-point length of 20 Å). Prints wall
and CPU seconds per call and the power-law exponent between successive sizes, and extrapolates
to 8000 atoms (10 × 10 × 10 cells, P1-Si) with the exponent of the two largest sizes.
"""

from __future__ import annotations

import sys
import time

import numpy as np

from kernels.diamond import diamond_cell, diamond_sites
from kernels.nrl_tb import bernstein2000_si_sp


def main(sizes):
    model = bernstein2000_si_sp(kpoint_length_A=0.0)  # Γ only
    rows = []
    for n in sizes:
        x = diamond_sites(n, 5.43)
        x = np.delete(x, 0, axis=0)  # a vacancy, as in the experiment
        x += 0.02 * np.random.default_rng(0).standard_normal(x.shape)
        cell = diamond_cell(n, 5.43)
        model.evaluate(x[:8], diamond_cell(1, 5.43))  # build the potential outside the timing
        t0, c0 = time.perf_counter(), time.process_time()
        model.evaluate(x, cell)
        rows.append((len(x), time.perf_counter() - t0, time.process_time() - c0))
        print(f"{rows[-1][0]:6d} atoms: {rows[-1][1]:9.2f} s wall, {rows[-1][2]:9.2f} s CPU",
              flush=True)
    for (n1, _, c1), (n2, _, c2) in zip(rows, rows[1:]):
        print(f"exponent {n1}->{n2}: {np.log(c2 / c1) / np.log(n2 / n1):.2f}")
    if len(rows) >= 2:
        (n1, _, c1), (n2, _, c2) = rows[-2], rows[-1]
        p = np.log(c2 / c1) / np.log(n2 / n1)
        print(f"extrapolated to 7998 atoms with exponent {p:.2f}: {c2 * (7998 / n2) ** p:.0f} s "
              f"CPU; with the dense-diagonalisation exponent 3: {c2 * (7998 / n2) ** 3:.0f} s")


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]] or [2, 3, 4])
