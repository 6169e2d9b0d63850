"""Cost of the paper-scale P2-Si simulation cell: building it (periodic CLE predictor) and one
Kumagai energy + forces + virial call on it.

Run: ``.venv/bin/python benchmarks/si_edge_cell_cost.py [size]`` (default size 100 a0, the
``p2-si-edge`` cell of 98,832 atoms).
"""

import os
import sys
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from kernels import dislocations as dk  # noqa: E402
from kernels.kumagai import kumagai2007_silicon  # noqa: E402
from kernels.si_edge import SI_EDGE  # noqa: E402


def main(size: int = 100):
    model = kumagai2007_silicon()
    t0 = time.perf_counter()
    lat = dk.lattice_reference(model, SI_EDGE)
    t1 = time.perf_counter()
    cell = SI_EDGE.cell(lat.a0_A, size, lat)
    t2 = time.perf_counter()
    n = len(cell.positions_A)
    print(f"lattice stage {t1 - t0:.1f} s; cell of size {size} a0: {n} atoms, "
          f"built in {t2 - t1:.1f} s", flush=True)
    for k in range(2):
        t = time.perf_counter()
        model.evaluate(cell.positions_A, cell.cell_A)
        dt = time.perf_counter() - t
        print(f"Kumagai call {k + 1}: {dt:.2f} s ({1e3 * dt / n:.3f} ms/atom)", flush=True)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 100)
