"""Cost (wall s) of one energy + forces + virial call of the Kumagai Si reference.

Run: ``.venv/bin/python benchmarks/kumagai_cost.py`` (one BLAS thread). Diamond Si supercells
of n³ cubic cells, rattled by 0.05 Å, the second of two calls timed.
"""

import os
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402

from kernels.diamond import diamond_cell, diamond_sites  # noqa: E402
from kernels.kumagai import kumagai2007_silicon  # noqa: E402


def main(sizes=(3, 9, 14, 15)):
    model = kumagai2007_silicon()
    for n in sizes:
        x = diamond_sites(n, 5.429)
        x = x + 0.05 * np.random.default_rng(1).standard_normal(x.shape)
        c = diamond_cell(n, 5.429)
        model.evaluate(x, c)
        t0 = time.perf_counter()
        model.evaluate(x, c)
        dt = time.perf_counter() - t0
        print(f"{len(x):7d} atoms: {dt:7.3f} s per call, {1e3 * dt / len(x):.4f} ms/atom",
              flush=True)


if __name__ == "__main__":
    main()
