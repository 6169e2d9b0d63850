"""Faults a long sweep must survive, on a real LocalCluster and a real Zarr store.

1. a worker process SIGKILLed mid-sweep: the sweep completes, values equal a clean run;
3. the client (a ``sweep run`` process) SIGKILLed mid-sweep: the same command resumes, finished
   points are not recomputed (task counts), nor is any shared stage the killed run persisted in
   the intermediate cache (its entry files are untouched), the final store equals a clean run's;
4. a point whose kernel raises (a reference relaxation given too few steps): recorded ``failed``
   with the message and a traceback summary, the other points finish, ``--retry-failed``
   recomputes only the failed ones, and of their stages only the one that failed;
6. two ``sweep run`` processes on one store: the second refuses (exit status 2, message).

(2, a SLURM job cancelled mid-sweep, is in test_slurm.py; 5, damaged/foreign stores, in
test_engine.py.) Every comparison is bit for bit on all variables but the timings.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time

import numpy as np
import pytest
from hold_preload import hold_env, paused_workers
from slurm_fixture import (assert_same_values, parse_summary, parse_tasks, sweep_cmd,
                           tiny_spec_text)

from sweep import store as st
from sweep.cli import main as sweep_main
from sweep.runner import run_sweep
from sweep.spec import load_spec

LONG_TASKS = ("simulation", "design", "fit", "point")


def _n_done(path) -> int:
    """Points recorded done so far (None while the store is absent or mid-write)."""
    try:
        return int(np.sum(st.point_status(st.open_store(path)) == "done"))
    except Exception:  # noqa: BLE001 -- the writer may be replacing metadata right now
        return -1


def _wait(pred, timeout: float, what: str, proc=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        if proc is not None and proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"process ended (status {proc.returncode}) while waiting for {what}:"
                        f"\n{out}\n{err}")
        time.sleep(0.1)
    pytest.fail(f"timed out after {timeout} s waiting for {what}")


def _env():
    return {**os.environ, "PYTHONUNBUFFERED": "1"}


def test_worker_sigkilled_mid_sweep_completes_with_clean_values(local_client, clean_store,
                                                                tiny_spec_path, tmp_path):
    spec = load_spec(str(tiny_spec_path))
    path = tmp_path / "killed-worker.zarr"
    pids = local_client.run(os.getpid)
    out = {}

    def run():
        try:
            out["summary"] = run_sweep(spec, path, local_client, progress=False)
        except BaseException as e:  # noqa: BLE001 -- re-raised in the test thread
            out["error"] = e

    t = threading.Thread(target=run, daemon=True)
    t.start()

    def busy_worker():
        for addr, keys in local_client.processing().items():
            if any(str(k).startswith(LONG_TASKS) for k in keys) and addr in pids:
                return addr, list(keys)
        return None

    victim, keys = _wait(busy_worker, 120, "a worker running a task")
    os.kill(pids[victim], signal.SIGKILL)
    t.join(timeout=240)
    assert not t.is_alive(), "the sweep did not finish after a worker was killed"
    if "error" in out:
        raise out["error"]
    s = out["summary"]
    assert (s.done, s.failed, s.remaining) == (spec.n_points, 0, 0), s
    # the nanny brought up a new worker process in place of the killed one
    local_client.wait_for_workers(2, timeout=60)
    assert pids[victim] not in local_client.run(os.getpid).values(), f"{victim} survived"
    assert_same_values(path, clean_store)


def test_client_sigkilled_mid_sweep_resumes_without_recomputing(clean_store, tiny_spec_path,
                                                                 tmp_path):
    path = tmp_path / "killed-client.zarr"
    cmd = sweep_cmd("run", str(tiny_spec_path), "--store", str(path), "--workers", "2",
                    "--no-progress")
    # the workers are held at their first point (tests/hold_preload.py), so the client is
    # killed with points pending whatever the machine's speed
    hold = tmp_path / "hold"
    hold.touch()
    # own session: the client and the LocalCluster it starts form one process group
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**_env(), **hold_env(hold)}, start_new_session=True)
    try:
        _wait(lambda: _n_done(path) >= 1, 180, "the first finished point", proc)
        os.kill(proc.pid, signal.SIGKILL)  # the client, mid-sweep
        proc.wait(timeout=30)
    finally:
        try:  # its orphaned worker processes (a dead client's cluster is gone anyway)
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    done_before = _n_done(path)
    n = load_spec(str(tiny_spec_path)).n_points
    assert 1 <= done_before < n, f"{done_before} points done when the client was killed"

    lock = path.with_name(path.name + ".lock")
    assert json.loads(lock.read_text())["pid"] == proc.pid  # SIGKILL left its lock file behind
    # the finished point's shared stages were persisted before it ran; a recomputed stage would
    # replace its entry file (a new inode), a loaded one only refreshes its modification time
    cache = path.with_name(path.name + ".cache")
    persisted = {p: p.stat().st_ino for p in cache.rglob("*.pkl")}
    assert {p.name.split("-")[0] for p in persisted} >= {"lattice", "simulation", "training",
                                                         "design", "fit"}, persisted

    r = subprocess.run(cmd, capture_output=True, text=True, env=_env(), timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    # the dead client's lock is stale at once on its own host: taken over, with a message
    assert "taking over the stale lock" in r.stderr and f"pid {proc.pid}" in r.stderr, r.stderr
    assert not lock.exists()
    summary, tasks = parse_summary(r.stdout), parse_tasks(r.stdout)
    assert summary == {"done": n - done_before, "failed": 0, "skipped": done_before,
                       "remaining": 0}, r.stdout
    assert tasks["point"] == n - done_before, tasks  # finished points were not recomputed
    assert all(p.stat().st_ino == ino for p, ino in persisted.items()), "a persisted stage was " \
        "computed again"
    assert "loaded from the cache" in r.stdout, r.stdout
    assert_same_values(path, clean_store)


@pytest.fixture(scope="module")
def failing_spec_path(tmp_path_factory):
    """One and four vacancies at L = 4 with a relaxation budget of 55 steps: the reference
    relaxation of the four-vacancy cell needs 67, so its points fail with RelaxationError; the
    one-vacancy cell needs 34 and its fitted models ~32, so those points finish."""
    p = tmp_path_factory.mktemp("failing") / "failing.toml"
    p.write_text(tiny_spec_text("tiny-failing", n_defects="n_defects = [1, 4]", L="L = [4]",
                                max_steps="max_steps = 55"))
    return p


def test_raising_kernel_is_recorded_and_retry_failed_recomputes_only_failed(
        local_client, failing_spec_path, tmp_path, capsys):
    path = tmp_path / "failing.zarr"
    addr = local_client.scheduler.address
    base = ["run", str(failing_spec_path), "--store", str(path), "--scheduler", addr,
            "--no-progress"]

    assert sweep_main(base) == 1  # some points failed
    out = capsys.readouterr().out
    assert parse_summary(out) == {"done": 2, "failed": 2, "skipped": 0, "remaining": 0}, out
    ds = st.open_store(path)
    status = st.point_status(ds)
    errors = np.array(np.asarray(ds["error"].values).tolist(), dtype=str)
    nd = list(ds["n_defects"].values)
    i1, i4 = nd.index(1), nd.index(4)
    assert (status[:, i1] == "done").all() and (status[:, i4] == "failed").all(), status
    for msg in errors[:, i4].ravel():
        assert msg.startswith("RelaxationError: lbfgs did not reach fmax 1e-06 eV/Å in 55 steps")
        assert 'File "' in msg  # traceback summary
    assert (errors[:, i1] == "").all()
    before = st.open_store(path).load()

    # sweep status lists each failed point by its labels (string coordinates included)
    assert sweep_main(["status", str(path)]) == 0
    out = capsys.readouterr().out
    failed = [line for line in out.splitlines() if line.strip().startswith("failed {")]
    assert len(failed) == 2, out
    assert all("'n_defects': 4" in line and "RelaxationError" in line for line in failed), out
    assert all("'defect': 'vacancy'" in line for line in failed), out

    # a plain rerun has nothing to do: failed points are not retried without the flag
    assert sweep_main(base) == 0
    out = capsys.readouterr().out
    assert parse_summary(out)["skipped"] == 4 and parse_tasks(out) == {}, out

    # --retry-failed recomputes the failed points only (they fail again: the kernel is
    # deterministic), and leaves the finished ones untouched, timings included
    assert sweep_main(base + ["--retry-failed"]) == 1
    out = capsys.readouterr().out
    assert parse_summary(out) == {"done": 0, "failed": 2, "skipped": 2, "remaining": 0}, out
    tasks = parse_tasks(out)
    # the failed relaxation again; the lattice, training set, design pass and fits the failed
    # points share with the finished ones come from the intermediate cache
    assert tasks == {"point": 2, "simulation": 1}, tasks
    after = st.open_store(path).load()
    assert after.isel(n_defects=[i1]).equals(before.isel(n_defects=[i1]))
    assert (st.point_status(after)[:, i4] == "failed").all()


def test_second_sweep_on_the_same_store_refuses(local_client, clean_store, tiny_spec_path,
                                                tmp_path):
    path = tmp_path / "shared.zarr"
    addr = local_client.scheduler.address
    args = ("run", str(tiny_spec_path), "--store", str(path), "--no-progress")
    # the first on its own one-worker LocalCluster, the second on the running scheduler
    # the first sweep's worker is held at its first point (tests/hold_preload.py) until the
    # second has been refused: the first is mid-sweep then, whatever the machine's speed
    hold = tmp_path / "hold"
    hold.touch()
    first = subprocess.Popen(sweep_cmd(*args, "--workers", "1"), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env={**_env(), **hold_env(hold)})
    cmd = sweep_cmd(*args, "--scheduler", addr)
    lock = path.with_name(path.name + ".lock")
    try:
        _wait(lambda: path.exists() and lock.exists() and "pid" in lock.read_text()
              and paused_workers(hold), 120, "the first sweep to hold the store", first)
        second = subprocess.run(cmd, capture_output=True, text=True, env=_env(), timeout=120)
        assert first.poll() is None, "the first sweep ended before the second started"
        assert second.returncode == 2, second.stdout + second.stderr
        assert "another sweep is writing" in second.stderr
        assert f"pid {first.pid}" in second.stderr
        hold.unlink()
        out, err = first.communicate(timeout=300)
    finally:
        if first.poll() is None:
            first.kill()
            first.communicate()
    assert first.returncode == 0, out + err
    assert parse_summary(out)["done"] == 4
    assert_same_values(path, clean_store)  # the refused process touched nothing
