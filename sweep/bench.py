"""``sweep bench``: P1 Table 2 fits (two vacancies, 2D triangular lattice), fast path against the
straightforward path and against the paper, as ratios measured in one run.

Sections (each prints a table; every ratio is of two times measured here, in this run, except the
paper ratios, which divide P1 Table 2's reported time T — Julia ACE1 on the authors' machine,
design matrix plus solve — by this machine's time):

1. **Force rows** — pyace's ``compute_b_grad`` (one thread) against the chain rule through the
   atomic basis (:mod:`kernels.ace_gradients`) on one thread and on ``--threads`` threads, at
   ``--force-rows-basis`` functions on rattled 8 × 8 cells: ms/atom, ratios, and the largest
   relative difference of the rows.
2. **Each Table 2 fit alone** — for every (L, #B) of the table: the design rows of that basis
   only, their R factors (streaming TSQR, ``--threads`` threads each taking a share of the
   configurations, merged), and the solve (:func:`kernels.point_defect_slices.slice_factors`
   with one basis, :func:`~kernels.point_defect_slices.fit_from_factors`): t_fit (wall) against
   the paper's T, and the CPU time of all threads together ("T/CPU": the speed-up if the work
   ran on one core — a lower bound of the 2-core one, and not inflated by other processes
   taking the cores). Building the basis's pyace objects (t_basis) is shown apart.
3. **Table 2 slices** — for each L, one pass over the training data in the table's largest basis,
   one thread, then every basis size of the table from it: "T/t_fit" charges a fit the
   *whole* pass plus its own solve; "T/t_amort" shares the pass between the slice's fits;
   "paper ΣT / t_slice" compares the whole slice.
4. **Straightforward path** — each fit of section 2 against the basis's whole rows and the
   pivoted QR of the weighted rows (:func:`kernels.point_defects.fit`): pyace rows on the slices
   and sizes given by ``--check-L`` and ``--check-max-basis``, chain-rule rows on
   ``--check-rows-L``: the time ratio and the largest differences of coefficients (relative to
   the largest coefficient), RMSEs and ε_FC.
5. **Relaxation** — one fitted model relaxing an N × N cell with two vacancies from the
   reference equilibrium ū: force evaluations and time of ase's L-BFGS and of the
   Hessian-preconditioned L-BFGS (:mod:`kernels.hessian_precon_relax`; Hessian time shown
   separately — it is paid once per simulation cell, for every fit).

Times are wall times. BLAS runs on one thread (``OPENBLAS_NUM_THREADS``, default 1, as in the
sweep's workers): on a loaded 2-core machine scipy's OpenBLAS QR of a 6000 × 1120 matrix took
1.0 s on one thread and 30 s on two (its threads spin when the cores are oversubscribed). The
two cores are used by the project's own threads instead (numba kernel, TSQR shares), which do
not spin.
"""

from __future__ import annotations

import os
import resource
import time

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


def _peak_rss_MB() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _bench_force_rows(ace: dict, r0_A: float, n_functions: int, L: int, n_configs: int,
                      rattle_A: float, threads: int) -> None:
    import numpy as np  # noqa: PLC0415

    from kernels.lattice import triangular_cell, triangular_sites  # noqa: PLC0415

    from . import tasks  # noqa: PLC0415

    basis = tasks.basis_for(ace, n_functions)
    pos = triangular_sites(L, r0_A)
    rng = np.random.default_rng(0)
    P = np.repeat(pos[None], n_configs, axis=0)
    P[:, :, :2] += rattle_A * rng.standard_normal(P[:, :, :2].shape)
    cell, sym = triangular_cell(L, r0_A), ["W"] * len(pos)
    basis.design_rows(P[:1], cell, sym, 2)  # compile (numba cache) and build tables
    basis.design_rows(P[:2], cell, sym, 2, n_threads=threads)
    n_atoms = P.shape[0] * P.shape[1]

    def timed(**kw):
        best = None
        for _ in range(1 if kw.get("method") == "pyace" else 3):  # best of 3 for the fast one
            t0, c0 = time.perf_counter(), time.process_time()
            rows = basis.design_rows(P, cell, sym, 2, **kw)
            t, c = time.perf_counter() - t0, time.process_time() - c0
            best = (t, c, rows) if best is None or t < best[0] else best
        return best

    t_1, c_1, fast = timed()
    t_n, c_n, fast_n = timed(n_threads=threads)
    t_ref, c_ref, ref = timed(method="pyace")
    d_f = np.abs(fast.forces - ref.forces).max() / np.abs(ref.forces).max()
    d_e = np.abs(fast.energy - ref.energy).max() / np.abs(ref.energy).max()
    same = np.array_equal(fast.forces, fast_n.forces)
    print(f"\n1. Force rows: {basis.n_functions} functions, {n_configs} rattled {L}×{L} cells "
          f"({n_atoms} atoms); load {os.getloadavg()[0]:.1f}")
    print(f"   pyace compute_b_grad (1 thread) {1e3 * t_ref / n_atoms:8.2f} ms/atom "
          f"(CPU {1e3 * c_ref / n_atoms:.2f})")
    print(f"   chain rule, 1 thread  {1e3 * t_1 / n_atoms:7.3f} ms/atom (CPU "
          f"{1e3 * c_1 / n_atoms:.3f}): {t_ref / t_1:6.1f}× wall, {c_ref / c_1:6.1f}× CPU time")
    print(f"   chain rule, {threads} threads {1e3 * t_n / n_atoms:7.3f} ms/atom (CPU "
          f"{1e3 * c_n / n_atoms:.3f}): {t_ref / t_n:6.1f}× wall ({threads} threads vs pyace's 1)"
          f" | max rel diff to pyace: forces {d_f:.1e}, energies {d_e:.1e}; "
          f"threaded rows identical: {same}", flush=True)


def _training_data(spec, lat, L, n_train, n_test):
    from . import tasks  # noqa: PLC0415
    from .experiments.p1_point_defects import training_seeds  # noqa: PLC0415

    p = spec.params
    return tasks.training(p["reference"]["model"], lat, L, "vacancy",
                          dict(p["training"], n_train=n_train, n_test=n_test),
                          *training_seeds(spec, "vacancy", L), p["relax"])


def _bench_slices(spec, lat, Ls, n_train, n_test, basis_sizes, w, datas):
    from kernels.point_defect_slices import fit_from_factors, slice_factors  # noqa: PLC0415

    from . import tasks  # noqa: PLC0415

    p = spec.params
    print("\n3. Table 2 slices (one pass per L serving every basis size, one thread; "
          "t_fit = t_pass + t_solve, t_amort = t_pass / #sizes + t_solve)")
    head = (f"{'L':>3} {'#B':>5} {'rank':>5} {'#obs':>6} {'eE meV/at':>9} {'eF eV/Å':>8} "
            f"{'eFC %':>6} {'t_fit s':>8} {'t_solve':>7} | {'paper eE':>8} {'eF':>6} "
            f"{'eFC':>5} {'T s':>6} {'T/t_fit':>7} {'T/t_amort':>9}")
    print(head)
    print("-" * len(head))
    results = {}
    for L in Ls:
        _, paper_rows = PAPER_TABLE2.get(L, (0, []))
        sizes = sorted(basis_sizes or [r[0] for r in paper_rows])
        data = datas[L]
        bases = [tasks.basis_for(p["ace"], B) for B in sizes]
        for b in bases:
            b.function_keys()  # build the pyace objects outside the timed pass
        c0 = time.process_time()
        factors = slice_factors(bases, data)
        c_pass = time.process_time() - c0
        t_slice = factors.time_s
        c_slice = c_pass
        for i, (B, basis) in enumerate(zip(sizes, bases)):
            t0, c0 = time.perf_counter(), time.process_time()
            f = fit_from_factors(factors, i, basis, lat, w["energy"], w["forces"],
                                 p["fit"]["rtol"])
            t_slice += time.perf_counter() - t0
            c_slice += time.process_time() - c0
            t_fit = factors.time_s + f.fit_time_s
            t_amort = factors.time_s / len(sizes) + f.fit_time_s
            results[(L, B)] = (f, basis, data, t_fit, t_amort)
            paper = next((r for r in paper_rows if r[0] == B), None)
            ptxt = (f"{paper[1]:>8.3f} {paper[2]:>6.3f} {paper[3]:>5.1f} {paper[4]:>6.1f} "
                    f"{paper[4] / t_fit:>6.1f}× {paper[4] / t_amort:>8.1f}×") if paper \
                else f"{'—':>8}"
            print(f"{L:>3} {f.n_basis:>5} {f.rank:>5} {f.n_observations:>6} "
                  f"{f.rmse_energy_meV_per_atom:>9.4f} {f.rmse_forces_eV_per_A:>8.4f} "
                  f"{f.force_constant_error_percent:>6.2f} {t_fit:>8.1f} {f.fit_time_s:>7.2f} | "
                  f"{ptxt}", flush=True)
        paper_total = sum(r[4] for r in paper_rows if r[0] in sizes)
        ratio = f", paper ΣT {paper_total:.0f} s → {paper_total / t_slice:.1f}×" \
            if paper_total else ""
        cratio = f" ({paper_total / c_slice:.1f}× by CPU time)" if paper_total else ""
        print(f"    L = {L}: pass {factors.time_s:.1f} s wall, {c_pass:.1f} s CPU (rows "
              f"{factors.time_rows_s:.1f} s, factors {factors.time_s - factors.time_rows_s:.1f} s);"
              f" whole slice incl. ε_FC/bulk checks {t_slice:.1f} s wall, {c_slice:.1f} s CPU"
              f"{ratio}{cratio}; peak RSS {_peak_rss_MB():.0f} MB; load "
              f"{os.getloadavg()[0]:.1f}", flush=True)
    return results


def _bench_fit_alone(spec, lat, Ls, n_train, n_test, basis_sizes, w, threads, datas):
    """Every Table 2 fit on its own: rows of that basis only, its R factors, its solve."""
    from kernels.point_defect_slices import fit_from_factors, slice_factors  # noqa: PLC0415

    from . import tasks  # noqa: PLC0415

    p = spec.params
    print(f"\n2. Table 2, each fit alone on {threads} threads (design rows of that basis, "
          f"R factors, solve; the basis's pyace objects built beforehand, t_basis)")
    head = (f"{'L':>3} {'#B':>5} {'rank':>5} {'eE meV/at':>9} {'eF eV/Å':>8} {'eFC %':>6} "
            f"{'t_basis':>7} {'t_rows':>7} {'t_fit s':>8} {'CPU s':>7} | {'paper T s':>9} "
            f"{'T/t_fit':>8} {'T/CPU':>7} {'load':>5}")
    print(head)
    print("-" * len(head))
    results = {}
    for L in Ls:
        _, paper_rows = PAPER_TABLE2.get(L, (0, []))
        sizes = sorted(basis_sizes or [r[0] for r in paper_rows])
        data = datas[L]
        for B in sizes:
            basis = tasks.basis_for(p["ace"], B)
            t0 = time.perf_counter()
            basis._tables()  # pyace basis objects and tables (seconds at 2,849 functions)
            t_basis = time.perf_counter() - t0
            c0 = time.process_time()
            factors = slice_factors([basis], data, n_workers=threads)
            c_pass = time.process_time() - c0
            f = fit_from_factors(factors, 0, basis, lat, w["energy"], w["forces"],
                                 p["fit"]["rtol"])
            t_fit = factors.time_s + f.fit_time_s
            # the pass's CPU time on all threads, plus the one-thread solve's wall time (≥ its
            # CPU time); the ε_FC/bulk check after the solve is not part of the fit
            c_fit = c_pass + f.fit_time_s
            results[(L, B)] = (f, basis, data, t_fit)
            paper = next((r for r in paper_rows if r[0] == B), None)
            ptxt = (f"{paper[4]:>9.1f} {paper[4] / t_fit:>7.1f}× {paper[4] / c_fit:>6.1f}×"
                    if paper else f"{'—':>9}")
            print(f"{L:>3} {f.n_basis:>5} {f.rank:>5} {f.rmse_energy_meV_per_atom:>9.4f} "
                  f"{f.rmse_forces_eV_per_A:>8.4f} {f.force_constant_error_percent:>6.2f} "
                  f"{t_basis:>7.1f} {factors.time_rows_s / threads:>7.1f} {t_fit:>8.1f} "
                  f"{c_fit:>7.1f} | {ptxt} {os.getloadavg()[0]:>5.1f}", flush=True)
            basis.release()
    return results


def _bench_straightforward(results, lat, w, rtol, check_L, check_max_basis, check_rows_L):
    import numpy as np  # noqa: PLC0415

    from kernels import point_defects as pdk  # noqa: PLC0415

    print("\n4. Agreement of each fit alone (section 2) with the straightforward path: the "
          "basis's rows, whole, and the pivoted QR of the weighted rows (kernels.point_defects."
          "fit); rows from pyace's compute_b_grad ('pyace') or from the chain rule ('chain', "
          "equal to pyace's to ~1e-13, section 1)")
    head = (f"{'L':>3} {'#B':>5} {'rows':>6} {'t_straight s':>12} {'t_fit s':>8} {'ratio':>7} "
            f"{'max|Δc|/max|c|':>15} {'ΔeE rel':>8} {'ΔeF rel':>8} {'ΔeFC rel':>8} {'rank':>9}")
    print(head)
    print("-" * len(head))
    for (L, B), (fast, basis, data, t_fit) in results.items():
        if L in check_L and B <= check_max_basis:
            method = "pyace"
        elif L in check_rows_L:
            method = "chain_rule"
        else:
            continue
        t0 = time.perf_counter()
        n = data.train.positions_A.shape[1]
        sym = [pdk.SYMBOL] * n
        rows = [basis.design_rows(o.positions_A, data.cell_A, sym, 2, method=method)
                for o in (data.train, data.test)]
        perfect = basis.design_rows(data.perfect.positions_A, data.cell_A, sym[:1] * len(
            data.perfect.positions_A[0]), 2, method=method)
        tr = pdk.TrainingRows(rows[0], rows[1], rows[0].energy.shape[1], 0.0, perfect)
        del rows
        ref = pdk.fit(basis, tr, data, lat, w["energy"], w["forces"], rtol)
        t_ref = time.perf_counter() - t0
        del tr
        dc = np.abs(fast.coeffs - ref.coeffs).max() / np.abs(ref.coeffs).max()
        de = abs(fast.rmse_energy_meV_per_atom / ref.rmse_energy_meV_per_atom - 1)
        df = abs(fast.rmse_forces_eV_per_A / ref.rmse_forces_eV_per_A - 1)
        dfc = abs(fast.force_constant_error_percent / ref.force_constant_error_percent - 1)
        print(f"{L:>3} {B:>5} {method[:6]:>6} {t_ref:>12.1f} {t_fit:>8.1f} "
              f"{t_ref / t_fit:>6.1f}× {dc:>15.1e} {de:>8.1e} {df:>8.1e} {dfc:>8.1e} "
              f"{fast.rank:>4}/{ref.rank:<4}", flush=True)
        basis.release()


def _bench_relax(spec, lat, fitted, size, L):
    import numpy as np  # noqa: PLC0415

    from kernels import point_defects as pdk  # noqa: PLC0415
    from kernels.ace import ACEModel  # noqa: PLC0415
    from kernels.hessian_precon_relax import (HessianPreconditioner,  # noqa: PLC0415
                                              relax_preconditioned, sparse_hessian)
    from kernels.relax import relax  # noqa: PLC0415

    from . import tasks  # noqa: PLC0415

    p = spec.params
    f, basis = fitted[:2]
    ref_model = tasks.REFERENCE_MODELS[p["reference"]["model"]]()
    opts = pdk.RelaxOptions(p["relax"]["fmax_eV_per_A"], p["relax"]["max_steps"], "lbfgs")
    sim = pdk.simulation_reference(ref_model, lat.r0_A, size, ["vacancy"] * 2, L, opts)
    sym = [pdk.SYMBOL] * len(sim.positions_A)
    t0 = time.perf_counter()
    H = sparse_hessian(ref_model, sim.positions_A, sim.cell_A, sym, ref_model.cutoff_A, 2)
    precon = HessianPreconditioner(H)
    precon.solve(np.zeros(H.shape[0]))
    t_h = time.perf_counter() - t0
    model = ACEModel(basis, f.coeffs)
    model.evaluate(sim.positions_A, sim.cell_A, sym)  # build the calculator outside the timing
    fmax = opts.fmax_eV_per_A
    t0 = time.perf_counter()
    plain = relax(model, sim.positions_A, sim.cell_A, sym, fmax, opts.max_steps, "lbfgs")
    t_plain = time.perf_counter() - t0
    t0 = time.perf_counter()
    fast = relax_preconditioned(model, sim.positions_A, sim.cell_A, sym, precon, 2, fmax,
                                opts.max_steps)
    t_fast = time.perf_counter() - t0
    d = fast.positions_A - plain.positions_A
    d -= d.mean(axis=0)
    print(f"\n5. Relaxation of a {size}×{size} cell (two vacancies, L_D = {L}) with the fitted "
          f"model (L = {L}, #B = {f.n_basis}) from ū to fmax {fmax:g} eV/Å")
    print(f"   ase L-BFGS: {plain.n_force_calls} force evaluations, {t_plain:.1f} s | "
          f"Hessian-preconditioned: {fast.n_force_calls} evaluations, {t_fast:.1f} s "
          f"(+ reference Hessian {t_h:.1f} s once per cell) | "
          f"{plain.n_force_calls / fast.n_force_calls:.1f}× fewer evaluations | "
          f"max |Δx| {np.abs(d).max():.1e} Å", flush=True)


def main_bench(Ls, basis_sizes=None, n_train: int = 200, n_test: int = 50,
               spec_name: str = "p1-vacancies", check_L=(4,), check_max_basis: int = 383,
               force_rows_basis: int = 2000, relax_size: int = 20, paper_scale: bool = False,
               threads: int = 2, check_rows_L=(), skip_slices: bool = False) -> int:
    """Print the benchmark tables; returns 0.

    ``threads`` is the number of threads of the fast paths in sections 1 and 2 (BLAS itself
    stays on one thread: the threads are the kernel's and the TSQR's own). ``check_rows_L``
    adds the straightforward check with chain-rule rows for every basis of those L.
    ``paper_scale`` runs every L of P1 Table 2, checks the straightforward path on L = 4 up to
    1119 functions and relaxes on the spec's 60 × 60 cell.
    """
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    from . import tasks  # noqa: PLC0415
    from .spec import load_spec  # noqa: PLC0415

    spec = load_spec(spec_name)
    p = spec.params
    if paper_scale:
        Ls, check_max_basis = sorted(PAPER_TABLE2), max(check_max_basis, 1119)
        relax_size = p["simulation"]["size"]
    w = spec.weights["WE100-WF1"]
    lat = tasks.lattice(p["reference"]["model"])
    print(f"P1 Table 2 benchmark: spec {spec_name}, N_train {n_train}, N_test {n_test}, "
          f"W_E {w['energy']:g}, W_F {w['forces']:g}, r0 = {lat.r0_A:.4f} Å, "
          f"OPENBLAS_NUM_THREADS={os.environ['OPENBLAS_NUM_THREADS']}, threads {threads}, "
          f"cpus {os.cpu_count()}, load {os.getloadavg()[0]:.1f}")
    _bench_force_rows(p["ace"], lat.r0_A, force_rows_basis, 8, 4, p["training"]["rattle_A"],
                      threads)
    datas = {L: _training_data(spec, lat, L, n_train, n_test) for L in Ls}
    alone = _bench_fit_alone(spec, lat, Ls, n_train, n_test, basis_sizes, w, threads, datas)
    results = {} if skip_slices else _bench_slices(spec, lat, Ls, n_train, n_test, basis_sizes,
                                                   w, datas)
    _bench_straightforward(alone, lat, w, p["fit"]["rtol"], set(check_L), check_max_basis,
                           set(check_rows_L))
    if relax_size > 0:
        L_relax = max(L for L in Ls if 2 * L <= relax_size)
        B_relax = max(B for (L, B) in alone if L == L_relax)
        _bench_relax(spec, lat, alone[(L_relax, B_relax)], relax_size, L_relax)
    print(f"\npeak RSS of this process {_peak_rss_MB():.0f} MB; load {os.getloadavg()[0]:.1f}")
    return 0
