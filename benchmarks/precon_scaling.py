"""Scaling of the Hessian preconditioner's factorisation with the P2 simulation cell.

For each cell size N (a0) of the W screw quadrupole (Zhou 2001 EAM) this prints the reference
Hessian's assembly time, and for each factorisation of H + μ I (:class:`kernels.
hessian_precon_relax.HessianPreconditioner`): the factor's entries, factor and solve times
(wall and CPU), the residual of one solve and the peak RSS of the process. Every (N, method)
runs in a fresh single-threaded process (OPENBLAS_NUM_THREADS=1), so its peak RSS is its own.
The machine's load (/proc/loadavg) is printed before and after each; the ratios are of the
figures measured in this one run.

The Hessian is taken at the perfect sites x₀ of the cell (positive definite, the same sparsity
as at the relaxed ȳ; relaxing the largest cells first would take longer than the benchmark).

    PYTHONPATH=$PWD python benchmarks/precon_scaling.py                  # N = 30 60 90 120
    PYTHONPATH=$PWD python benchmarks/precon_scaling.py --sizes 30 60 --lu-max 60
    PYTHONPATH=$PWD python benchmarks/precon_scaling.py --fitted 120     # a fitted relaxation

``--fitted N`` also fits a 300-function ACE model (E+F+CLE, P2's weights) on the L = 5 a0
dipole training cell, relaxes the reference from the CLE predictor (ase's L-BFGS, as the
stages do) and times the fitted model's Hessian-preconditioned relaxation from ȳ against the
force tolerance ``--fmax``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time


def _load() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def _rss_GB() -> float:
    import resource  # noqa: PLC0415

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6


def _cell(N: int, at_sites: bool = True):
    from kernels import dislocations as dk  # noqa: PLC0415
    from kernels.eam import zhou2001_tungsten  # noqa: PLC0415

    model = zhou2001_tungsten()
    lat = dk.lattice_reference(model)
    c = dk.W_SCREW.cell(lat.a0_A, N, None)
    return model, lat, c


def one(N: int, method: str) -> dict:
    """Assemble, factor and solve once in this process."""
    import numpy as np  # noqa: PLC0415

    from kernels.hessian_precon_relax import HessianPreconditioner  # noqa: PLC0415

    model, _, c = _cell(N)
    x, cell = c.positions0_A, c.cell_A
    sym = ["W"] * len(x)
    t0, c0 = time.perf_counter(), time.process_time()
    H = model.hessian_eV_per_A2(x, cell, sym).tocsr()
    t_h, c_h = time.perf_counter() - t0, time.process_time() - c0
    rss_h = _rss_GB()
    p = HessianPreconditioner(H, method=method, positions_A=x, cell_A=cell)
    v = np.random.default_rng(0).standard_normal(H.shape[0])
    t0, c0 = time.perf_counter(), time.process_time()
    p._solve = p._build()
    t_f, c_f = time.perf_counter() - t0, time.process_time() - c0
    t0 = time.perf_counter()
    s = p.solve(v)
    t_s = time.perf_counter() - t0
    A = p.shifted()
    res = float(np.linalg.norm(A @ s - v) / np.linalg.norm(v))
    fn = p._solve
    closure = getattr(fn, "__closure__", None) or ()
    objs = [getattr(fn, "__self__", None)] + [c.cell_contents for c in closure]
    fill = None
    for obj in objs:
        if hasattr(obj, "nnz") and hasattr(obj, "diag"):  # MultifrontalCholesky: L
            fill = obj.nnz
        elif hasattr(obj, "L") and hasattr(obj, "U"):  # SuperLU: L and U
            fill = int(obj.L.nnz + obj.U.nnz)
    return {"N": N, "atoms": len(x), "coords": int(H.shape[0]),
            "nnz_per_row": H.nnz / H.shape[0], "hessian_s": t_h, "hessian_cpu_s": c_h,
            "rss_hessian_GB": rss_h, "method": p.factorisation, "factor_s": t_f,
            "factor_cpu_s": c_f, "solve_s": t_s, "fill": fill, "residual": res,
            "rss_GB": _rss_GB()}


def fitted(N: int, fmax: float, n_functions: int) -> dict:
    """Reference relaxation of the N cell and one fitted model's preconditioned relaxation."""
    import numpy as np  # noqa: PLC0415

    from kernels import dislocations as dk  # noqa: PLC0415
    from kernels.ace import ACEBasis, ACEModel, ace_potential_config  # noqa: PLC0415
    from kernels.hessian_precon_relax import relax_preconditioned  # noqa: PLC0415

    model, lat, _ = _cell(N)
    plain = dk.RelaxOptions(1e-6, 20000, "lbfgs")
    opts = dk.RelaxOptions(fmax, 20000, "hessian-lbfgs")
    out = {"N": N, "fmax_eV_per_A": fmax, "n_functions": n_functions}
    t0 = time.perf_counter()
    data = dk.training_data(model, lat.a0_A, 5, 20, 2, 0.1, 1, 2, plain)
    basis = ACEBasis(ace_potential_config(["W"], n_functions, 5.0, [15, 8, 6, 4],
                                          [0, 4, 4, 3]))
    rows = dk.design_rows(basis, data, lat.a0_A)
    fit = dk.fit(basis, rows, data, lat, dk.Weights(50, 10, 10, 1).for_observations("E+F+CLE"))
    out["fit_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    sim = dk.simulation_reference(model, lat.a0_A, N, opts)
    out["reference_relax_and_hessian_s"] = time.perf_counter() - t0
    out["reference_relax_steps"] = sim.relax_steps
    out["atoms"] = len(sim.positions_A)
    out["rss_after_reference_GB"] = _rss_GB()
    t0 = time.perf_counter()
    sim.precon.solve(np.zeros(3 * len(sim.positions_A)))
    out["factor_s"] = time.perf_counter() - t0
    out["factorisation"] = sim.precon.factorisation
    ace = ACEModel(basis, fit.coeffs)
    sym = list(sim.symbols)
    t0 = time.perf_counter()
    ace.evaluate(sim.positions_A, sim.cell_A, sym)
    out["ace_first_call_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    ace.evaluate(sim.positions_A, sim.cell_A, sym)
    out["ace_call_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    r = relax_preconditioned(ace, sim.positions_A, sim.cell_A, sym, sim.precon, 3, fmax, 20000)
    out["fitted_relax_s"] = time.perf_counter() - t0
    out["fitted_relax_steps"] = r.n_steps
    out["fitted_force_calls"] = r.n_force_calls
    out["rss_GB"] = _rss_GB()
    return out


def _child(args: list[str]) -> dict:
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    load0 = _load()
    p = subprocess.run([sys.executable, __file__, "--child", *args], env=env,
                       capture_output=True, text=True, check=False)
    if p.returncode:
        return {"error": p.stderr.strip().splitlines()[-1] if p.stderr else p.returncode,
                "args": args}
    d = json.loads(p.stdout.strip().splitlines()[-1])
    d["load_before"], d["load_after"] = load0, _load()
    return d


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[30, 60, 90, 120])
    ap.add_argument("--lu-max", type=int, default=60,
                    help="largest N for the COLAMD LU (its time grows fastest)")
    ap.add_argument("--fitted", type=int, default=None, help="time a fitted relaxation at N")
    ap.add_argument("--fmax", type=float, default=1e-6, help="fitted relaxation tolerance, eV/Å")
    ap.add_argument("--functions", type=int, default=300)
    ap.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.child:
        if a.child[0] == "fitted":
            d = fitted(int(a.child[1]), float(a.child[2]), int(a.child[3]))
        else:
            d = one(int(a.child[0]), a.child[1])
        print(json.dumps(d))
        return
    from sweep.store import git_commit  # noqa: PLC0415

    commit = git_commit()
    print(f"# commit {commit}  {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}  "
          f"load {_load()}  (1-min 5-min 15-min)", flush=True)
    if a.fitted:
        print(json.dumps(_child(["fitted", str(a.fitted), str(a.fmax), str(a.functions)]),
                         indent=1), flush=True)
        return
    print(f"{'N':>4} {'atoms':>6} {'coords':>7} {'method':>12} {'hess s':>7} {'factor s':>9} "
          f"{'cpu s':>7} {'solve s':>8} {'fill M':>7} {'RSS GB':>7} {'resid':>8}  load",
          flush=True)
    for N in a.sizes:
        row = {}
        for method in ("cholesky", "lu"):
            if method == "lu" and N > a.lu_max:
                continue
            d = _child([str(N), method])
            if "error" in d:
                print(f"{N:>4} {method:>12} failed: {d['error']}", flush=True)
                continue
            row[method] = d
            print(f"{N:>4} {d['atoms']:>6} {d['coords']:>7} {d['method']:>12} "
                  f"{d['hessian_s']:>7.1f} {d['factor_s']:>9.1f} {d['factor_cpu_s']:>7.1f} "
                  f"{d['solve_s']:>8.3f} {(d['fill'] or 0) / 1e6:>7.1f} {d['rss_GB']:>7.2f} "
                  f"{d['residual']:>8.1e}  {d['load_before']} → {d['load_after']}", flush=True)
        if len(row) == 2:
            c, lu = row["cholesky"], row["lu"]
            print(f"{N:>4}  LU-COLAMD / Cholesky-ND: factor {lu['factor_s'] / c['factor_s']:.1f}×"
                  f" (CPU {lu['factor_cpu_s'] / c['factor_cpu_s']:.1f}×), fill "
                  f"{lu['fill'] / c['fill']:.1f}×, RSS {lu['rss_GB'] / c['rss_GB']:.1f}×",
                  flush=True)


if __name__ == "__main__":
    main()
