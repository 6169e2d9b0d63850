"""Cost of P2-W's fit stage at one training-cell size: training sets, the streamed design pass
and every fit of ``p2-w-screw-paper`` at that L.

Run: ``PYTHONPATH=. .venv/bin/python benchmarks/p2_fit_cost.py L [n_train n_test]`` (one BLAS
thread). Prints the wall time of each stage, the peak resident memory sampled every 0.2 s
during it, and each fit's solver time, rank and test RMSEs; the load average with every line.
"""

import os
import sys
import threading
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import psutil  # noqa: E402

from kernels import dislocations as dk  # noqa: E402
from kernels.eam import zhou2001_tungsten  # noqa: E402
from sweep import tasks  # noqa: E402
from sweep.spec import builtin_specs, parse_spec  # noqa: E402


class PeakRSS:
    """Peak resident set size (bytes) of this process while the block runs."""

    def __enter__(self):
        self.peak = psutil.Process().memory_info().rss
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()
        return self

    def _run(self):
        p = psutil.Process()
        while not self._stop.wait(0.2):
            self.peak = max(self.peak, p.memory_info().rss)

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()
        self.peak = max(self.peak, psutil.Process().memory_info().rss)


def load() -> str:
    return "load " + "/".join(f"{x:.1f}" for x in os.getloadavg())


def main(L: int, n_train: int | None = None, n_test: int | None = None,
         spec_name: str = "p2-w-screw-paper"):
    spec = parse_spec(builtin_specs()[spec_name])
    p = spec.params
    n_train = n_train or p["training"]["n_train"]
    n_test = n_test or p["training"]["n_test"]
    opts = tasks.relax_options(p["relax"])
    model = zhou2001_tungsten()
    lat = dk.lattice_reference(model)
    t0 = time.perf_counter()
    with PeakRSS() as m:
        data = dk.training_data(model, lat.a0_A, L, n_train, n_test, spec.grid["rattle_A"][0],
                                1, 2, opts, domain=p["training"]["domain"])
    n = data.train.positions_A.shape[1]
    print(f"L = {L} a0: {n} atoms, {n_train} + {n_test} configurations; training "
          f"{time.perf_counter() - t0:.1f} s, peak RSS {m.peak / 1e9:.2f} GB; {load()}",
          flush=True)
    sizes = sorted(spec.grid["basis_size"])
    bases = [tasks.basis_for(p["ace"], b, "W") for b in sizes]
    bases[-1].design_rows(data.train.positions_A[:1, :8], data.cell_A, ["W"] * 8)  # compile
    t0 = time.perf_counter()
    with PeakRSS() as m:
        f = dk.design_factors(bases, data, lat.a0_A,
                              max_chunk_bytes=tasks.design_chunk_MB() * 1e6)
    print(f"design pass (bases {sizes}): {time.perf_counter() - t0:.1f} s, rows "
          f"{f.time_rows_s:.1f} s, peak RSS {m.peak / 1e9:.2f} GB; {load()}", flush=True)
    wt = spec.weights[spec.grid["weights"][0]]
    W = dk.Weights(wt["energy"], wt["forces"], wt["elastic"], wt["nonlinear_elastic"])
    for basis in bases:
        for obs in spec.grid["observations"]:
            for solver in ("ard", "rrqr"):
                t0 = time.perf_counter()
                with PeakRSS() as m:
                    r = dk.fit(basis, f, data, lat, W.for_observations(obs), solver,
                               p["fit"]["rtol"], **tasks.fit_conventions(p["fit"]))
                print(f"  B = {basis.n_functions:5d} {obs:11s} {solver}: fit task "
                      f"{time.perf_counter() - t0:6.1f} s (solver {r.fit_time_s:6.1f} s), "
                      f"rank {r.rank}, RMSE E {r.rmse_energy_meV_per_atom:.3g} meV/atom, "
                      f"F {r.rmse_forces_eV_per_A:.3g} eV/Å, V {r.rmse_virial_eV:.3g} eV, "
                      f"C {r.elastic_constant_error_percent:.3g} %, peak RSS "
                      f"{m.peak / 1e9:.2f} GB; {load()}", flush=True)


if __name__ == "__main__":
    main(int(sys.argv[1]), *(int(a) for a in sys.argv[2:4]))
