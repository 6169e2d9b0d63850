"""The sweep engine alone at 10³–10⁵ points: graph build, scheduling, store writes, resume scan.

Run: ``PYTHONPATH=. .venv/bin/python benchmarks/engine_scale.py`` (default sizes 1000 10000
100000; ``--sizes 1000`` for one; ``--workers`` local worker processes, default 2;
``--store-dir`` where the stores go, default a temporary directory, removed afterwards).

The sweep is the benchmark experiment ``engine-benchmark`` (:data:`EXPERIMENT`), registered by
this module only: its grid is ``L`` (10 values) × ``basis_size`` (n / 10 values) over the six
common dimensions, one shared ``setup`` stage per ``L`` and one ``point`` task per grid point,
both doing nothing but return a few numbers — so all the time measured is the engine's. Each size
runs in a fresh subprocess (its peak RSS is the client's alone) on a new LocalCluster (the
scheduler runs in the client process, as under ``sweep run``), through
:func:`sweep.runner.run_sweep` into a new store. Printed per size:

- ``graph s``: building and submitting the task graph (client side);
- ``run s``: the whole ``run_sweep`` call (create the store, graph, compute, write, finish);
- ``ms/point``: run s / points — the engine's overhead per point, since a point costs nothing;
- ``write s``: writing the points (inside run s), and ``flushes``, the batches written;
- ``files`` and ``files/point``: files in the store directory after the run;
- ``scan s``: reopening the finished store and finding the pending points as a resumed run does
  (:func:`sweep.store.open_existing`, :func:`sweep.runner.pending_points`, and reading its
  values into a :class:`sweep.store.PointWriter`); all points done is the worst case of the
  chunk check;
- ``peak RSS MB``: the client process's peak resident memory (``ru_maxrss``);
- ``load``: the 1-minute load average before and after.

The result is also written as JSON (``--json``; with ``--store-dir``, by default
``engine_scale.json`` there).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from sweep.experiment import Experiment, register  # noqa: E402
from sweep.spec import NONNEG_INT, POS_INT, parse_spec  # noqa: E402
from sweep.store import git_commit  # noqa: E402

#: Number of ``L`` values of the benchmark grid (``basis_size`` takes the rest of the points).
N_L = 10


def setup(L: int) -> dict:
    """The shared stage of one ``L``: a small dict (what a real stage's value stands for)."""
    return {"L": L, "offset": 0.5 * L}


def point(shared: dict, basis_size: int) -> dict:
    """One grid point: a few stored values derived from the labels, nothing computed."""
    import socket  # noqa: PLC0415 -- pickled by value, imports on the worker

    return {"geometry_error": shared["offset"] + 1e-3 * basis_size, "n_basis": basis_size,
            "rank": basis_size, "worker_host": socket.gethostname()}


def build(submit, spec, todo):
    """One ``setup`` per L, one ``point`` per grid point (see the module docstring)."""
    points, parents = {}, {}
    for pt in todo:
        c = pt.labels(spec)
        shared = submit("setup", (c["L"],), setup, c["L"])
        points[pt] = submit("point", tuple(c[d] for d in spec.dims), point, shared,
                            c["basis_size"])
        parents[pt] = (shared,)
    return points, parents, {}


#: The benchmark experiment. The ``simulation``, ``training`` and ``relax`` tables are nominal:
#: the run's duration check reads them (a cell of one atom, one step).
EXPERIMENT = register(Experiment(
    name="engine-benchmark",
    description="the sweep engine alone: points that compute nothing (benchmarks/engine_scale.py)",
    fixed={"simulation": {"size": POS_INT},
           "training": {"n_train": POS_INT, "n_test": NONNEG_INT},
           "relax": {"max_steps": POS_INT}},
    allowed={}, build=build, spatial_dimension=2))


def spec_text(n_points: int, name: str | None = None) -> str:
    """TOML of a benchmark spec with ``n_points`` grid points (a multiple of :data:`N_L`)."""
    if n_points % N_L:
        raise SystemExit(f"the number of points must be a multiple of {N_L}, got {n_points}")
    return f"""name = "{name or f'engine-{n_points}'}"
experiment = "engine-benchmark"
description = "engine benchmark, {n_points} points"

[grid]
defect = ["none"]
n_defects = [1]
L = {list(range(1, N_L + 1))}
basis_size = {list(range(1, n_points // N_L + 1))}
weights = ["w"]
observations = ["E+F"]

[weights.w]
energy = 1.0
forces = 1.0

[simulation]
size = 1

[training]
n_train = 1
n_test = 0

[relax]
max_steps = 1
"""


def engine_spec(n_points: int, name: str | None = None):
    """The parsed benchmark spec of ``n_points`` points."""
    return parse_spec(spec_text(n_points, name))


def local_client(workers: int):
    """A client on a new LocalCluster of ``workers`` single-threaded worker processes, with this
    module's functions sent by value (the workers need not import it)."""
    import cloudpickle  # noqa: PLC0415

    from sweep.cluster import connect  # noqa: PLC0415

    if __name__ != "__main__":  # __main__'s functions are sent by value anyway
        cloudpickle.register_pickle_by_value(sys.modules[__name__])
    return connect(workers=workers, dashboard_address=":0")


def scan(path, spec) -> tuple[float, int]:
    """Seconds to reopen a store and find its pending points (as a resumed run does), and how
    many are pending."""
    from sweep import store as st  # noqa: PLC0415
    from sweep.runner import pending_points  # noqa: PLC0415

    t0 = time.perf_counter()
    ds, _ = st.open_existing(path, spec)
    todo = pending_points(ds)
    st.PointWriter(path, spec)
    return time.perf_counter() - t0, len(todo)


def run_one(n_points: int, store_dir: Path, workers: int) -> dict:
    """Run the benchmark sweep of ``n_points`` points in this process; the measured row."""
    from sweep.runner import run_sweep  # noqa: PLC0415

    spec = engine_spec(n_points)
    path = store_dir / f"{spec.name}.zarr"
    if path.exists():
        raise SystemExit(f"{path} exists: remove it (this benchmark times a run from scratch)")
    load_before = os.getloadavg()[0]
    with local_client(workers) as client:
        client.wait_for_workers(workers)
        t0 = time.perf_counter()
        summary = run_sweep(spec, path, client, progress=False, cache=False)
        run_s = time.perf_counter() - t0
    files = sum(len(f) for _, _, f in os.walk(path))
    scan_s, pending = scan(path, spec)
    assert summary.done == n_points and pending == 0, (summary, pending)
    return {"points": n_points, "graph_s": summary.timings["graph"], "run_s": run_s,
            "ms_per_point": 1e3 * run_s / n_points, "write_s": summary.timings["write"],
            "flushes": summary.timings["flushes"], "files": files,
            "files_per_point": files / n_points, "scan_s": scan_s,
            "peak_rss_MB": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "load_before": load_before, "load_after": os.getloadavg()[0], "workers": workers}


HEADER = ("points", "graph s", "run s", "ms/point", "write s", "flushes", "files",
          "files/point", "scan s", "peak RSS MB", "load")


def format_row(r: dict) -> str:
    return (f"| {r['points']} | {r['graph_s']:.1f} | {r['run_s']:.1f} | {r['ms_per_point']:.2f} "
            f"| {r['write_s']:.1f} | {r['flushes']} | {r['files']} | {r['files_per_point']:.4f} "
            f"| {r['scan_s']:.2f} | {r['peak_rss_MB']:.0f} "
            f"| {r['load_before']:.1f}–{r['load_after']:.1f} |")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 100000])
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--store-dir", type=Path, default=None)
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--one", type=int, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.one is not None:  # the child process of one size
        print(json.dumps(run_one(args.one, args.store_dir, args.workers)))
        return 0
    tmp = None
    if args.store_dir is None:
        tmp = tempfile.TemporaryDirectory(prefix="engine-scale-")
        args.store_dir = Path(tmp.name)
    args.store_dir.mkdir(parents=True, exist_ok=True)
    commit = git_commit()
    rows = []
    print("| " + " | ".join(HEADER) + " |\n|" + "---|" * len(HEADER), flush=True)
    for n in args.sizes:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(
            [str(REPO)] + [x for x in os.environ.get("PYTHONPATH", "").split(os.pathsep) if x])}
        r = subprocess.run([sys.executable, __file__, "--one", str(n), "--store-dir",
                            str(args.store_dir), "--workers", str(args.workers)],
                           capture_output=True, text=True, env=env)
        if r.returncode != 0:
            print(r.stdout, r.stderr, file=sys.stderr)
            return r.returncode
        row = json.loads(r.stdout.strip().splitlines()[-1])
        rows.append(row)
        print(format_row(row), flush=True)
    meta = {"commit": commit, "date": datetime.datetime.now(datetime.timezone.utc).isoformat(
        timespec="seconds"), "cpus": os.cpu_count(), "rows": rows}
    print(f"commit {commit}, {meta['date']}, {meta['cpus']} cores")
    # the JSON goes beside the stores, or where --json says; not into a temporary directory
    out = args.json or (None if tmp is not None else args.store_dir / "engine_scale.json")
    if out is not None:
        out.write_text(json.dumps(meta, indent=1))
        print(f"written {out}")
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
