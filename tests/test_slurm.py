"""Sweeps on SLURM through dask-jobqueue.

The first tests need no SLURM (configuration, walltime arithmetic, the up-front duration check).
The others start a real single-node SLURM (munged, slurmctld, slurmd; fixture ``slurm`` in
slurm_fixture.py) and run the tiny sweep through SLURMCluster worker jobs into a Zarr store:
the Dataset must equal the local scheduler's bit for bit (timings aside), also when a worker job
is cancelled mid-sweep (adaptivity replaces it) and when the client itself runs as a job.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import dask
import pytest
import yaml
from hold_preload import hold_env, paused_workers
from slurm_fixture import (REPO, assert_same_values, parse_summary, parse_tasks,
                           tiny_spec_text)

from sweep import cluster as sc
from sweep.cli import main as sweep_main
from sweep.runner import run_sweep
from sweep.spec import load_spec

JOBQUEUE_YAML = REPO / "deploy" / "slurm" / "jobqueue.yaml"
CLIENT_SBATCH = REPO / "deploy" / "slurm" / "sweep-client.sbatch"


def _flatten(cfg: dict, prefix: str = "") -> dict:
    """Nested config → dotted keys (``dask.config.set`` of a nested dict would replace whole
    sections, losing dask-jobqueue's defaults)."""
    out = {}
    for k, v in cfg.items():
        if isinstance(v, dict) and v:
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _slurm_flags(log_dir: Path, max_jobs: int = 2) -> list[str]:
    return ["--cluster", "slurm", "--queue", "debug", "--interface", "lo", "--cores", "1",
            "--memory", "1GB", "--walltime", "00:10:00", "--max-jobs", str(max_jobs),
            "--log-directory", str(log_dir)]


def _pauser():
    """A function for ``Client.run`` that pauses a worker: it finishes the task it is running and
    starts no other, as distributed does under memory pressure; it is never resumed. (Nested,
    so that it is pickled by value: the workers cannot import this test module.)"""
    def pause(dask_worker) -> None:
        from distributed.core import Status  # noqa: PLC0415

        # the memory monitor would resume a paused worker whose memory is low
        dask_worker.memory_manager.memory_pause_fraction = False
        dask_worker.status = Status.paused

    return pause


# --------------------------------------------------------------------------- no SLURM needed

def test_walltime_arithmetic():
    assert sc.parse_walltime("04:00:00") == 4 * 3600
    assert sc.parse_walltime("1-12:30") == 36 * 3600 + 30 * 60
    assert sc.parse_walltime("2-00") == 48 * 3600
    assert sc.parse_walltime("90") == 90 * 60  # SLURM: minutes
    assert sc.parse_walltime("10:30") == 630  # MM:SS
    assert sc.parse_walltime("55m") == 3300
    with pytest.raises(ValueError, match="HH:MM:SS"):
        sc.parse_walltime("soon")
    for wall in (600, 3600, 4 * 3600, 48 * 3600):
        life, stagger = sc.worker_lifetime(wall)
        assert 0 < stagger < life and life + stagger + 60 <= wall, (wall, life, stagger)
    assert sc.format_seconds(3723) == "01:02:03"


def test_jobqueue_yaml_configures_the_cluster_and_flags_override(tmp_path):
    from dask_jobqueue import SLURMCluster

    cfg = _flatten(yaml.safe_load(JOBQUEUE_YAML.read_text()))
    site = {"jobqueue.slurm.queue": "compute", "jobqueue.slurm.account": "proj42",
            "jobqueue.slurm.interface": "lo"}
    with dask.config.set(cfg), dask.config.set(site):
        s = sc.slurm_settings()
        assert (s["minimum_jobs"], s["maximum_jobs"]) == (0, 8)
        assert s["walltime_s"] == 4 * 3600
        assert s["lifetime_s"] + s["stagger_s"] < s["walltime_s"]
        cluster = SLURMCluster(**s["cluster"])
        try:
            script = cluster.job_script()
        finally:
            cluster.close()
        for line in ("#SBATCH -p compute", "#SBATCH -A proj42", "#SBATCH -t 04:00:00",
                     "#SBATCH --export=ALL", "export OMP_NUM_THREADS=1",
                     f"--lifetime {int(s['lifetime_s'])}s",
                     f"--lifetime-stagger {int(s['stagger_s'])}s", "--nworkers 4"):
            assert line in script, (line, script)
        # command-line flags win over the file
        s2 = sc.slurm_settings(walltime="00:10:00", queue="debug", cores=1, max_jobs=2,
                               job_directives=["--constraint=cpu"])
        assert s2["maximum_jobs"] == 2 and s2["cluster"]["queue"] == "debug"
        assert s2["cluster"]["walltime"] == "00:10:00" and s2["cluster"]["processes"] == 1
        assert "--constraint=cpu" in s2["cluster"]["job_extra_directives"]
        assert s2["lifetime_s"] < 600
        # a lifetime set in the config's worker-extra-args is kept, and believed
        with dask.config.set({"jobqueue.slurm.worker-extra-args": ["--lifetime", "30m"]}):
            s3 = sc.slurm_settings()
        assert s3["cluster"]["worker_extra_args"] == ["--lifetime", "30m"]
        assert s3["lifetime_s"] == 1800
    assert int(dask.config.get("distributed.scheduler.allowed-failures")) >= 1


def test_point_longer_than_worker_lifetime_is_refused_up_front(tmp_path, capsys, local_client):
    paper, quick = load_spec("p1-vacancies"), load_spec("p1-vacancies-quick")
    est = sc.estimate_task_seconds(quick)
    assert set(est) == {"simulation", "training", "design", "fit", "point"}
    assert max(est.values()) < 300  # the quick spec's tasks take seconds to a minute
    assert sc.estimate_task_seconds(paper)["point"] > 10 * est["point"]
    sc.check_point_duration(quick, sc.worker_lifetime(600)[0])  # fits in 10 min jobs
    sc.check_point_duration(paper, None)  # no lifetime: nothing to check
    # a client: its workers have no --lifetime on a LocalCluster, so nothing to check either
    assert sc.check_point_duration(paper, local_client) == sc.estimate_task_seconds(paper)
    assert sc.cluster_provenance(local_client)["cluster_kind"] == "local"
    worst = f"L={max(paper.grid['L'])}, basis_size={max(paper.grid['basis_size'])}"
    with pytest.raises(sc.PointTooLong, match=rf"{worst}.*worker lifetime"):
        sc.check_point_duration(paper, sc.worker_lifetime(1800)[0])
    # through the CLI: refused before any job is submitted (no SLURM is touched)
    store = tmp_path / "p1.zarr"
    with pytest.raises(SystemExit) as e:
        sweep_main(["run", "p1-vacancies", "--store", str(store), "--cluster", "slurm",
                    "--walltime", "00:30:00", "--queue", "nonexistent"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "refused" in err and "--walltime" in err and "00:25:30" in err, err
    assert not store.exists()


# --------------------------------------------------------------------------- real SLURM

def test_sweep_through_slurm_equals_local(slurm, clean_store, tiny_spec_path, tmp_path, capsys):
    path = tmp_path / "slurm.zarr"
    rc = sweep_main(["run", str(tiny_spec_path), "--store", str(path), "--no-progress",
                     *_slurm_flags(tmp_path / "logs")])
    out = capsys.readouterr()
    assert rc == 0, out.out + out.err + slurm.log_tail()
    assert parse_summary(out.out) == {"done": 4, "failed": 0, "skipped": 0, "remaining": 0}
    assert "worker lifetime 00:08:30" in out.err
    assert_same_values(path, clean_store)
    # the workers ran as SLURM jobs, and closing the client cancelled them
    assert list((tmp_path / "logs").glob("*.err")), "no worker job logs"
    deadline = time.monotonic() + 30
    while slurm.jobs() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not slurm.jobs(), f"worker jobs left behind: {slurm.jobs()}"


def test_cancelled_worker_job_is_replaced_and_sweep_completes(slurm, clean_store,
                                                              tiny_spec_path, tmp_path):
    """One worker job at a time, cancelled while it runs a point: only a job submitted after
    it can finish the sweep, so the replacement is needed by construction, not by timing."""
    spec = load_spec(str(tiny_spec_path))
    path = tmp_path / "scancel.zarr"
    settings = sc.slurm_settings(cores=1, memory="1GB", walltime="00:10:00", queue="debug",
                                 interface="lo", max_jobs=1, log_directory=str(tmp_path))
    # notice a vanished job quickly (the deploy config uses 15 s)
    with dask.config.set({"distributed.deploy.lost-worker-timeout": "2s"}):
        client = sc.slurm_cluster(settings)
        cluster = client._owned_cluster
        out = {}

        def run():
            try:
                out["summary"] = run_sweep(spec, path, client, progress=False)
            except BaseException as e:  # noqa: BLE001
                out["error"] = e

        t = threading.Thread(target=run, daemon=True)
        t.start()
        seen, cancelled, deadline = set(), None, time.monotonic() + 240
        try:
            while t.is_alive() and time.monotonic() < deadline:
                seen |= {j.job_id for j in list(cluster.workers.values()) if j.job_id}
                if cancelled is None:
                    info = client.scheduler_info()["workers"]
                    for addr, keys in client.processing().items():
                        long_ = [k for k in keys if str(k).startswith(
                            ("simulation", "design", "fit", "point"))]
                        if long_ and addr in info and info[addr]["name"] in cluster.workers:
                            cancelled = cluster.workers[info[addr]["name"]].job_id
                            slurm.run("scancel", cancelled)
                            break
                time.sleep(0.2)
            t.join(timeout=5)
        finally:
            client.close()
    assert not t.is_alive(), "the sweep did not finish after a worker job was cancelled"
    if "error" in out:
        raise out["error"]
    assert cancelled is not None, "no worker job was ever seen running a task"
    s = out["summary"]
    assert (s.done, s.failed, s.remaining) == (spec.n_points, 0, 0), s
    replacements = seen - {cancelled}
    assert replacements and max(map(int, replacements)) > int(cancelled), (
        f"no job submitted after job {cancelled} was cancelled (jobs seen: {sorted(seen)})")
    assert_same_values(path, clean_store)


def test_client_runs_as_a_slurm_job(slurm, clean_store, tiny_spec_path, tmp_path):
    """deploy/slurm/sweep-client.sbatch: the client is itself a job that submits worker jobs
    (one CPU for the client, one for a worker on this 2-CPU node)."""
    path = tmp_path / "client-job.zarr"
    env = {**slurm.env(), "SWEEP_PYTHON": sys.executable,
           "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH"))
                                         if p)}
    r = subprocess.run(
        ["sbatch", "--parsable", "--mem=2G", "--time=00:10:00", "-o", str(tmp_path / "client.out"),
         str(CLIENT_SBATCH), str(tiny_spec_path), str(path), *_slurm_flags(tmp_path, 1)[2:]],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=30, check=True)
    job = r.stdout.strip().split(";")[0]
    deadline = time.monotonic() + 240
    while job in slurm.jobs() and time.monotonic() < deadline:
        time.sleep(1)
    log = (tmp_path / "client.out").read_text() if (tmp_path / "client.out").exists() else ""
    assert job not in slurm.jobs(), f"client job {job} still running:\n{log}"
    assert "sweep-client: exit status 0" in log, log + slurm.log_tail()
    assert parse_summary(log)["done"] == 4 and parse_tasks(log)["point"] == 4, log
    assert_same_values(path, clean_store)


def test_workers_reaching_their_lifetime_are_replaced(slurm, local_client, tmp_path):
    """Workers live 8 ± 1 s (as if their jobs were near walltime) in a 9-point sweep on one job
    at a time: the worker that reaches its lifetime retires gracefully, adaptivity submits a
    new job, and the sweep completes with the values of a clean local run.

    That a lifetime is reached mid-sweep holds by construction, whatever the machine's speed:
    once the first worker has started a point, the test pauses it (the state distributed puts
    a worker in under memory pressure), so it runs no further task while its lifetime clock
    runs out; its replacement is never paused and finishes the sweep."""
    spec_path = tmp_path / "lifetime.toml"
    spec_path.write_text(tiny_spec_text("lifetime", L="L = [4, 5, 6]",
                                        basis_size="basis_size = [20, 30, 40]"))
    spec = load_spec(str(spec_path))
    clean = tmp_path / "clean.zarr"
    run_sweep(spec, clean, local_client, progress=False)
    path = tmp_path / "lifetime.zarr"
    logs = tmp_path / "logs"
    settings = sc.slurm_settings(cores=1, memory="1GB", walltime="00:10:00", queue="debug",
                                 interface="lo", max_jobs=1, log_directory=str(logs),
                                 lifetime="8s", lifetime_stagger="1s")
    assert (settings["lifetime_s"], settings["stagger_s"]) == (8, 1)
    client = sc.slurm_cluster(settings)
    assert "--lifetime 8s --lifetime-stagger 1s" in client._owned_cluster.job_script()
    out = {}

    def run():
        try:
            out["summary"] = run_sweep(spec, path, client, progress=False)
        except BaseException as e:  # noqa: BLE001
            out["error"] = e

    t = threading.Thread(target=run, daemon=True)
    t.start()
    paused, deadline = None, time.monotonic() + 240
    try:
        while t.is_alive() and time.monotonic() < deadline:
            if paused is None:
                for addr, keys in client.processing().items():
                    if any(str(k).startswith("point") for k in keys):
                        client.run(_pauser(), workers=[addr])
                        paused = addr
                        break
            time.sleep(0.1)
        t.join(timeout=5)
    finally:
        client.close()
    assert not t.is_alive(), "the sweep did not finish after its worker was paused"
    if "error" in out:
        raise out["error"]
    assert paused is not None, "no worker was ever seen running a point"
    s = out["summary"]
    assert (s.done, s.failed, s.remaining) == (spec.n_points, 0, 0), s
    worker_logs = [p.read_text() for p in logs.glob("*.err")]
    retired = sum("worker-lifetime-reached" in text for text in worker_logs)
    assert retired >= 1, f"no worker reached its lifetime ({len(worker_logs)} worker jobs)"
    assert len(worker_logs) > 1, "no replacement job was submitted"
    assert_same_values(path, clean)


def test_client_job_resubmits_itself_near_walltime(slurm, clean_store, tiny_spec_path, tmp_path):
    """RESUBMIT=1: the USR1 that SLURM sends before the client job's walltime (sent here by
    hand, once a point is written) makes the client stop cleanly and submit a copy of itself,
    which resumes: every point is computed once over the two jobs.

    That the signal arrives mid-sweep holds by construction, whatever the machine's speed: the
    client job's worker is held (tests/hold_preload.py: it finishes the point it has started and
    starts nothing else) until the first client job has left the queue; the test signals only
    once the worker is held and a point is written."""
    path = tmp_path / "resubmit.zarr"
    hold = tmp_path / "hold"
    hold.touch()
    env = {**slurm.env(), "SWEEP_PYTHON": sys.executable, "RESUBMIT": "1", **hold_env(hold),
           "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH"))
                                         if p)}
    r = subprocess.run(
        ["sbatch", "--parsable", "--mem=2G", "--time=00:10:00", "-o",
         str(tmp_path / "client-%j.out"), str(CLIENT_SBATCH), str(tiny_spec_path), str(path),
         *_slurm_flags(tmp_path, 1)[2:]],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=30, check=True)
    first = r.stdout.strip().split(";")[0]
    deadline = time.monotonic() + 240
    import xarray as xr  # noqa: PLC0415

    def n_done() -> int:
        try:
            return int((xr.open_zarr(path).status.values == "done").sum())
        except Exception:  # noqa: BLE001 - not created yet
            return 0

    while not (paused_workers(hold) and n_done() >= 1) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert paused_workers(hold) and n_done() >= 1, slurm.log_tail()
    assert n_done() < 4  # held: one point per worker job at most
    slurm.run("scancel", "--batch", "--signal=USR1", first)
    while first in slurm.jobs() and time.monotonic() < deadline:
        time.sleep(0.2)
    hold.unlink()  # the resubmitted client's worker runs freely (or resumes, if it was held)
    while time.monotonic() < deadline:
        outs = list(tmp_path.glob("*client-*.out"))  # the copy writes sweep-client-JOBID.out
        if len(outs) >= 2 and not slurm.jobs() and n_done() == 4:
            break
        time.sleep(1)
    outs = sorted(tmp_path.glob("*client-*.out"), key=lambda p: int(p.stem.rsplit("-", 1)[1]))
    logs = [p.read_text() for p in outs]
    assert len(logs) == 2, "\n".join(logs) + slurm.log_tail()
    assert "resubmitted" in logs[0] and "sweep: interrupted; this run wrote" in logs[0], logs[0]
    m = re.search(r"this run wrote (\d+) done", logs[0])
    written_first = int(m.group(1))
    assert "sweep-client: exit status 0" in logs[1], logs[1]
    second_run = parse_summary(logs[1])
    assert written_first >= 1 and second_run["skipped"] == written_first
    assert written_first + second_run["done"] == 4  # every point computed once over both jobs
    assert_same_values(path, clean_store)
