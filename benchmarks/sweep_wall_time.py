"""Wall time, CPU time and peak memory of whole sweeps, run the way a user runs them.

Run: ``.venv/bin/python benchmarks/sweep_wall_time.py p1-vacancies p1-interstitials``
(any built-in spec names or spec files; ``--store-dir`` defaults to ``runs/``).

Each spec is run by the CLI in a subprocess (``sweep run SPEC --store DIR/SPEC.zarr
--workers N --no-progress``) into a fresh store — an existing store is refused, so a resumed
run cannot pass for a full one — while the process tree is sampled once a second for the
resident memory of every process (the client and each worker) and for CPU time. The result
is printed and written as JSON next to the store (``DIR/SPEC.bench.json``): wall time (s),
CPU time of all processes (s), CPU/wall, the peak RSS (MB) of the client and of each worker
process, the points done/failed, and the machine's load average before and after, with the
commit and date. The docs pages are generated from these files and the stores.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import psutil

from sweep.store import git_commit



def run_one(spec: str, store_dir: Path, workers: int) -> dict:
    from sweep.spec import load_spec  # noqa: PLC0415

    name = load_spec(spec).name  # the store a user's `sweep run SPEC` would write
    store = store_dir / f"{name}.zarr"
    if store.exists():
        raise SystemExit(f"{store} exists: remove it (this benchmark times a run from scratch)")
    cmd = [sys.executable, "-m", "sweep.cli", "run", spec, "--store", str(store),
           "--workers", str(workers), "--no-progress"]
    load_before = os.getloadavg()
    commit = git_commit()  # the code that ran, even if the checkout moves during a long run
    t0 = time.perf_counter()
    proc = psutil.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    peak_rss: dict[int, float] = {}
    cpu: dict[int, float] = {}
    roles: dict[int, str] = {proc.pid: "client"}
    while proc.poll() is None:
        try:
            tree = [proc] + proc.children(recursive=True)
        except psutil.NoSuchProcess:
            break
        for p in tree:
            try:
                with p.oneshot():
                    rss = p.memory_info().rss / 2**20
                    t = p.cpu_times()
                    cmdline = " ".join(p.cmdline())
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
            peak_rss[p.pid] = max(peak_rss.get(p.pid, 0.0), rss)
            cpu[p.pid] = t.user + t.system
            if p.pid not in roles:
                roles[p.pid] = "worker" if "spawn_main" in cmdline else "other"
        time.sleep(1.0)
    out = proc.stdout.read()
    wall = time.perf_counter() - t0
    summary = next((line for line in out.splitlines() if line.startswith("sweep:")), "")
    workers_rss = sorted((peak_rss[p] for p in peak_rss if roles.get(p) == "worker"),
                         reverse=True)
    result = {
        "spec": spec, "store": str(store), "command": " ".join(cmd[1:]),
        "returncode": proc.returncode, "summary": summary,
        "wall_s": round(wall, 1), "cpu_s": round(sum(cpu.values()), 1),
        "cpu_per_wall": round(sum(cpu.values()) / wall, 2),
        "peak_rss_client_MB": round(peak_rss.get(proc.pid, float("nan")), 1),
        "peak_rss_workers_MB": [round(v, 1) for v in workers_rss],
        "load_before": [round(x, 2) for x in load_before],
        "load_after": [round(x, 2) for x in os.getloadavg()],
        "cpus": os.cpu_count(), "workers": workers, "commit": commit,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    store.with_suffix(".bench.json").write_text(json.dumps(result, indent=1) + "\n")
    print(out[-2000:])
    return result


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("specs", nargs="+")
    ap.add_argument("--store-dir", default="runs", type=Path)
    ap.add_argument("--workers", type=int, default=os.cpu_count())
    a = ap.parse_args(argv)
    a.store_dir.mkdir(parents=True, exist_ok=True)
    rc = 0
    for spec in a.specs:
        r = run_one(spec, a.store_dir, a.workers)
        print(f"{spec}: wall {r['wall_s'] / 60:.1f} min, CPU {r['cpu_s'] / 3600:.2f} h "
              f"(CPU/wall {r['cpu_per_wall']}), peak RSS client {r['peak_rss_client_MB']} MB, "
              f"workers {r['peak_rss_workers_MB']} MB, load {r['load_before']} → "
              f"{r['load_after']}; {r['summary']}", flush=True)
        rc |= r["returncode"] != 0
    return int(rc)


if __name__ == "__main__":
    sys.exit(main())
