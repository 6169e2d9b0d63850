"""The reference relaxation of the P2 W screw quadrupole under each optimiser: steps, CPU time,
energy, and whether the end state is a minimum.

Run: ``.venv/bin/python benchmarks/reference_relaxation.py 8 60 --optimizers lbfgs precon-lbfgs``
(add ``--no-eigen`` to skip the stability check, e.g. at 120 a0; ``--stable`` relaxes with
``kernels.stable_relax.relax_to_minimum``, which leaves saddles along their softest mode).

For each cell side N (a0) the cell of ``kernels.dislocations.W_SCREW.cell`` (CLE predictor, Zhou
EAM) is relaxed to fmax 1e-6 eV/Å with ``kernels.relax.relax`` in this process, one BLAS thread
recommended (``OMP_NUM_THREADS=1``). The stability check is the six lowest eigenvalues of the
reference Hessian at the end state (eV/Å², ``kernels.stable_relax.lowest_eigenpairs``; the
three translations are zero): a negative fourth one means the optimiser stopped at a saddle. One JSON
line per (N, optimiser), with the load average, commit and date.
"""

from __future__ import annotations

import argparse
import datetime
import json
import time

import numpy as np

from sweep.store import git_commit


def _load() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def one(N: int, optimizer: str, eigen: bool, stable: bool = False) -> dict:
    from kernels import dislocations as dk  # noqa: PLC0415
    from kernels.eam import zhou2001_tungsten  # noqa: PLC0415
    from kernels.hessian_precon_relax import reference_hessian  # noqa: PLC0415
    from kernels.relax import relax  # noqa: PLC0415

    model = zhou2001_tungsten()
    lat = dk.lattice_reference(model)
    c = dk.W_SCREW.cell(lat.a0_A, N, None)
    sym = ["W"] * len(c.positions_A)
    load = _load()
    t, w = time.process_time(), time.time()
    if stable:
        from kernels.stable_relax import relax_to_minimum  # noqa: PLC0415

        r = relax_to_minimum(model, c.positions_A, c.cell_A, sym, 1e-6, 20000, optimizer)
    else:
        r = relax(model, c.positions_A, c.cell_A, sym, 1e-6, 20000, optimizer)
    out = {"N_a0": N, "atoms": len(sym), "optimizer": optimizer, "stable": stable,
           "steps": r.n_steps,
           "energy_eV": r.energy_eV, "cpu_s": round(time.process_time() - t, 1),
           "wall_s": round(time.time() - w, 1), "load_before": load}
    if stable:
        out.update(escapes=r.escapes, lowest_eigenvalue_eV_per_A2=r.lowest_eigenvalue_eV_per_A2)
    if eigen and not stable:
        from kernels.stable_relax import lowest_eigenpairs  # noqa: PLC0415

        H = reference_hessian(model, r.positions_A, c.cell_A, sym, 3)
        vals, _ = lowest_eigenpairs(H, r.positions_A, c.cell_A, 3, 6)
        out["lowest_eigenvalues_eV_per_A2"] = [round(float(v), 5) for v in vals]
        out["minimum"] = bool(vals[3] > 0)
    out.update(load_after=_load(), commit=git_commit(),
               date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("sizes", nargs="+", type=int, help="cell sides N, a0")
    ap.add_argument("--optimizers", nargs="+", default=["lbfgs", "precon-lbfgs"])
    ap.add_argument("--no-eigen", action="store_true", help="skip the stability check")
    ap.add_argument("--stable", action="store_true",
                    help="relax with kernels.stable_relax.relax_to_minimum (leaves saddles)")
    a = ap.parse_args()
    for N in a.sizes:
        for o in a.optimizers:
            print(json.dumps(one(N, o, not a.no_eigen, a.stable)), flush=True)


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
