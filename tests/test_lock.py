"""The store lock: atomic across nodes, refuses a live holder by name, takes over a stale one.

Other hosts cannot be started here, so their locks are written by construction: a lock file with
the record another node's client would write (its host, pid, SLURM job, heartbeat), fresh or old.
Processes on this host are real subprocesses (alive, exited, SIGKILLed and not yet reaped).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import dask.config
import pytest

from sweep import lock as L
from sweep.cli import main as sweep_main

ROOT = Path(__file__).resolve().parents[1]
HOLD = ("import sys\nfrom sweep.lock import store_lock\n"
        "with store_lock(sys.argv[1]):\n    print('held', flush=True)\n    sys.stdin.readline()\n")


def _write_lock(store: Path, *, host: str, pid: int, age_s: float, job: str | None = "4242",
                flock: bool = False, proc_start: str | None = None,
                boot_id: str | None = None) -> bytes:
    """A lock file as a client on ``host`` would have written it, its heartbeat ``age_s`` old."""
    hb = time.time() - age_s
    rec = {"host": host, "pid": pid, "slurm_job_id": job, "proc_start": proc_start,
           "token": "0123456789abcdef", "started": hb - 60.0, "heartbeat": hb, "flock": flock,
           "boot_id": boot_id}
    data = (json.dumps(rec) + "\n").encode()
    L.lock_path(store).write_bytes(data)
    return data


def _holder_process(store: Path) -> subprocess.Popen:
    """A sibling process that holds the store's lock until its stdin closes."""
    p = subprocess.Popen([sys.executable, "-c", HOLD, str(store)], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert p.stdout.readline().strip() == "held"
    return p


def _leftovers(tmp_path: Path) -> list[str]:
    return sorted(p.name for p in tmp_path.iterdir() if ".lock" in p.name)


def test_lock_records_its_holder_and_release_removes_it(tmp_path, monkeypatch):
    monkeypatch.setenv("SLURM_JOB_ID", "777")
    store = tmp_path / "s.zarr"
    t0 = time.time()
    with L.store_lock(store) as held:
        rec = json.loads(L.lock_path(store).read_text())
        assert rec["host"] == socket.gethostname() and rec["pid"] == os.getpid()
        assert rec["slurm_job_id"] == "777"
        assert t0 <= rec["heartbeat"] <= time.time()
        assert held.holder == L.read_holder(store)
        assert _leftovers(tmp_path) == ["s.zarr.lock"]  # no private files left behind
    assert _leftovers(tmp_path) == []
    assert L.read_holder(store) is None


def test_heartbeat_is_refreshed_while_held(tmp_path):
    store = tmp_path / "s.zarr"
    with dask.config.set({"sweep.lock.heartbeat_interval_s": 0.05,
                          "sweep.lock.stale_after_s": 30}):
        with L.store_lock(store) as held:
            first = held.holder.heartbeat
            size = L.lock_path(store).stat().st_size
            held.refresh()
            assert L.read_holder(store).heartbeat >= first
            assert L.read_holder(store).token == held.holder.token
            # the background thread: wait (bounded) for a heartbeat later than the one above
            deadline = time.monotonic() + 60
            while L.read_holder(store).heartbeat <= first and time.monotonic() < deadline:
                time.sleep(0.05)
            assert L.read_holder(store).heartbeat > first
            assert L.lock_path(store).stat().st_size == size  # rewritten in place, same length


def test_live_lock_on_another_host_is_refused_with_its_holder_named(tmp_path):
    store = tmp_path / "s.zarr"
    data = _write_lock(store, host="login2.cluster.example", pid=31337, age_s=5.0)
    with pytest.raises(L.StoreLocked) as e:
        with L.store_lock(store):
            pytest.fail("a live lock of another host was taken")
    msg = str(e.value)
    assert "another sweep is writing" in msg
    for part in ("pid 31337", "login2.cluster.example", "SLURM job 4242",
                 "sweep.lock.stale_after_s = 120 s"):
        assert part in msg, msg
    age = float(msg.split("last heartbeat ")[1].split(" s ago")[0])
    assert 5 <= age < L.STALE_AFTER_S
    assert L.lock_path(store).read_bytes() == data  # the holder's lock is left as it was
    assert _leftovers(tmp_path) == ["s.zarr.lock"]


def test_stale_lock_on_another_host_is_taken_over_with_a_message(tmp_path, caplog):
    store = tmp_path / "s.zarr"
    _write_lock(store, host="node17.cluster.example", pid=4321, age_s=L.STALE_AFTER_S + 60)
    with caplog.at_level(logging.WARNING, logger="sweep.lock"):
        with L.store_lock(store):
            rec = json.loads(L.lock_path(store).read_text())
            assert rec["pid"] == os.getpid() and rec["host"] == socket.gethostname()
    msg = caplog.text
    assert "taking over the stale lock" in msg
    assert "pid 4321 on node17.cluster.example" in msg and "heartbeat is older" in msg
    assert _leftovers(tmp_path) == []


def test_staleness_bound_comes_from_the_dask_config(tmp_path):
    store = tmp_path / "s.zarr"
    _write_lock(store, host="node17.cluster.example", pid=4321, age_s=600)
    with dask.config.set({"sweep.lock.stale_after_s": "1 hour"}):
        with pytest.raises(L.StoreLocked, match="stale_after_s = 3600 s"):
            with L.store_lock(store):
                pass
    with dask.config.set({"sweep.lock.stale_after_s": 300}):
        with L.store_lock(store) as held:
            assert held.holder.pid == os.getpid()


@pytest.mark.parametrize("cfg, key", [
    ({"sweep.lock.heartbeat_interval_s": 60, "sweep.lock.stale_after_s": 120},
     "sweep.lock.stale_after_s"),
    ({"sweep.lock.heartbeat_interval_s": -1}, "sweep.lock.heartbeat_interval_s"),
    ({"sweep.lock.stale_after_s": "soon"}, "sweep.lock.stale_after_s"),
])
def test_invalid_lock_settings_are_refused_naming_the_key(tmp_path, cfg, key):
    with dask.config.set(cfg), pytest.raises(L.LockUnavailable, match=key):
        with L.store_lock(tmp_path / "s.zarr"):
            pass
    assert _leftovers(tmp_path) == []


def test_same_host_lock_of_a_dead_process_is_taken_over_at_once(tmp_path, caplog):
    store = tmp_path / "s.zarr"
    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                           capture_output=True, text=True, check=True)
    dead = int(child.stdout)  # exited and reaped
    _write_lock(store, host=socket.gethostname(), pid=dead, age_s=0.0)  # a fresh heartbeat
    with caplog.at_level(logging.WARNING, logger="sweep.lock"):
        with L.store_lock(store) as held:
            assert held.holder.pid == os.getpid()
    assert f"pid {dead} on {socket.gethostname()}" in caplog.text
    assert "no longer running" in caplog.text


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")
def test_same_host_pid_reused_by_another_process_is_stale(tmp_path, caplog):
    store = tmp_path / "s.zarr"
    # a live pid (this very process) whose start time is not the one the lock recorded
    _write_lock(store, host=socket.gethostname(), pid=os.getpid(), age_s=0.0, proc_start="1")
    with caplog.at_level(logging.WARNING, logger="sweep.lock"):
        with L.store_lock(store):
            pass
    assert "belongs to another process" in caplog.text


def test_live_lock_of_a_sibling_process_is_refused(tmp_path):
    store = tmp_path / "s.zarr"
    p = _holder_process(store)
    try:
        with pytest.raises(L.StoreLocked) as e:
            with L.store_lock(store):
                pytest.fail("a sibling's live lock was taken")
        assert f"pid {p.pid} on {socket.gethostname()}" in str(e.value)
        assert "freed when that process ends" in str(e.value)
    finally:
        p.stdin.close()
        assert p.wait(timeout=60) == 0
    assert _leftovers(tmp_path) == []  # the sibling released it
    with L.store_lock(store) as held:
        assert held.holder.pid == os.getpid()


def test_sigkilled_sibling_lock_is_taken_over_before_it_is_reaped(tmp_path, caplog):
    store = tmp_path / "s.zarr"
    p = _holder_process(store)
    os.kill(p.pid, signal.SIGKILL)
    # wait for its death without reaping it: its pid still answers signals (a zombie), but
    # its flock is gone
    os.waitid(os.P_PID, p.pid, os.WEXITED | os.WNOWAIT)
    os.kill(p.pid, 0)
    assert L.read_holder(store).pid == p.pid  # the kill left its lock file behind
    try:
        with caplog.at_level(logging.WARNING, logger="sweep.lock"):
            with L.store_lock(store) as held:
                assert held.holder.pid == os.getpid()
        assert f"pid {p.pid}" in caplog.text and "taking over" in caplog.text
    finally:
        p.wait(timeout=60)


def test_second_lock_in_the_same_process_is_refused(tmp_path):
    store = tmp_path / "s.zarr"
    with L.store_lock(store):
        with pytest.raises(L.StoreLocked, match=f"pid {os.getpid()}"):
            with L.store_lock(store):
                pass
        assert L.read_holder(store).pid == os.getpid()  # the refusal left the lock held


def test_lock_file_of_the_earlier_flock_format(tmp_path):
    store = tmp_path / "s.zarr"
    lock = L.lock_path(store)
    lock.write_text("pid 999 on oldnode\n")  # no heartbeat: the file's time stands for it
    with pytest.raises(L.StoreLocked, match="pid 999 on oldnode"):
        with L.store_lock(store):
            pass
    old = time.time() - L.STALE_AFTER_S - 60
    os.utime(lock, (old, old))
    with L.store_lock(store) as held:
        assert held.holder.pid == os.getpid()


def test_lock_taken_over_while_held_is_reported_on_release(tmp_path, caplog):
    store = tmp_path / "s.zarr"
    with pytest.raises(L.StoreLocked) as e:
        with L.store_lock(store) as held:
            # another node's client judged this lock stale and replaced it by its own
            os.unlink(L.lock_path(store))
            theirs = _write_lock(store, host="node9.cluster.example", pid=55, age_s=0.0)
            with caplog.at_level(logging.WARNING, logger="sweep.lock"):
                held.refresh()
            assert held.lost is not None and held.lost.host == "node9.cluster.example"
            assert "taken over by pid 55 on node9.cluster.example" in caplog.text
    assert "taken over by pid 55 on node9.cluster.example" in str(e.value)
    assert L.lock_path(store).read_bytes() == theirs  # their lock is not removed


def test_filesystem_refusing_the_lock_fails_clearly(tmp_path):
    with pytest.raises(L.LockUnavailable, match="cannot lock .*creating a file"):
        with L.store_lock(tmp_path / "missing-dir" / "s.zarr"):
            pass
    if Path("/proc/self").is_dir():  # procfs makes no regular files, not even for root
        with pytest.raises(L.LockUnavailable, match="cannot lock /proc/s.zarr"):
            with L.store_lock("/proc/s.zarr"):
                pass


def test_cli_refuses_a_store_locked_on_another_host(tmp_path, tiny_spec_path, capsys):
    store = tmp_path / "s.zarr"
    _write_lock(store, host="login2.cluster.example", pid=31337, age_s=1.0, job="9001")
    rc = sweep_main(["run", str(tiny_spec_path), "--store", str(store), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2, err
    line = [ln for ln in err.splitlines() if ln.startswith("sweep: ")]
    assert len(line) == 1 and "another sweep is writing" in line[0], err
    assert "pid 31337 on login2.cluster.example, SLURM job 9001" in line[0]
    assert "Traceback" not in err
    assert not store.exists()  # refused before any store or cluster


def test_same_host_zombie_without_flock_is_stale(tmp_path, caplog):
    store = tmp_path / "s.zarr"
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        os.waitid(os.P_PID, p.pid, os.WEXITED | os.WNOWAIT)  # exited, not reaped
        _write_lock(store, host=socket.gethostname(), pid=p.pid, age_s=0.0, flock=False)
        with caplog.at_level(logging.WARNING, logger="sweep.lock"):
            with L.store_lock(store):
                pass
        assert "has exited" in caplog.text or "no longer running" in caplog.text
    finally:
        p.wait(timeout=60)


RACE = ("import sys\nfrom sweep.lock import StoreLocked, store_lock\n"
        "print('ready', flush=True); sys.stdin.readline()\n"
        "try:\n    with store_lock(sys.argv[1]):\n"
        "        print('held', flush=True); sys.stdin.readline()\n"
        "except StoreLocked as e:\n    print('refused', flush=True); sys.stdin.readline()\n")


def test_clients_racing_for_a_stale_lock_leave_exactly_one_holder(tmp_path):
    store = tmp_path / "s.zarr"
    _write_lock(store, host="node17.cluster.example", pid=4321, age_s=L.STALE_AFTER_S + 60)
    procs = [subprocess.Popen([sys.executable, "-c", RACE, str(store)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": str(ROOT)}) for _ in range(4)]
    try:
        for p in procs:
            assert p.stdout.readline().strip() == "ready"
        for p in procs:
            p.stdin.write("go\n")
            p.stdin.flush()
        outcome = [p.stdout.readline().strip() for p in procs]
        assert sorted(outcome) == ["held", "refused", "refused", "refused"], outcome
        winner = procs[outcome.index("held")]
        assert L.read_holder(store).pid == winner.pid
    finally:
        for p in procs:
            p.stdin.close()
            p.wait(timeout=60)
    assert _leftovers(tmp_path) == []


def test_guard_left_by_a_client_that_died_taking_over_is_removed(tmp_path, caplog):
    store = tmp_path / "s.zarr"
    _write_lock(store, host="node17.cluster.example", pid=4321, age_s=L.STALE_AFTER_S + 60)
    guard = L.lock_path(store).with_name("s.zarr.lock.break")
    _write_lock(store, host="node18.cluster.example", pid=99, age_s=L.STALE_AFTER_S + 30)
    os.rename(L.lock_path(store), guard)
    _write_lock(store, host="node17.cluster.example", pid=4321, age_s=L.STALE_AFTER_S + 60)
    with caplog.at_level(logging.WARNING, logger="sweep.lock"):
        with L.store_lock(store) as held:
            assert held.holder.pid == os.getpid()
    assert "stale take-over guard" in caplog.text and "pid 99 on node18" in caplog.text
    assert "taking over the stale lock" in caplog.text
    assert _leftovers(tmp_path) == []


@pytest.mark.skipif(L._boot_id() is None, reason="needs /proc/sys/kernel/random/boot_id")
def test_same_host_name_on_another_kernel_counts_as_another_host(tmp_path):
    """Nodes that share a host name (as some container setups do) are told apart by their boot
    id: a fresh lock naming a pid that is not running here, but recorded under another boot, is
    live (it may be running there), not stale."""
    store = tmp_path / "s.zarr"
    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                           capture_output=True, text=True, check=True)
    _write_lock(store, host=socket.gethostname(), pid=int(child.stdout), age_s=1.0,
                boot_id="00000000-0000-0000-0000-000000000000")
    with pytest.raises(L.StoreLocked, match="taken over once its heartbeat is older"):
        with L.store_lock(store):
            pass


def test_same_host_lock_whose_flock_is_free_is_stale(tmp_path, caplog):
    """A lock of the earlier format names a live pid (this process: as if the pid were reused)
    but nobody holds its flock: its writer is gone."""
    store = tmp_path / "s.zarr"
    L.lock_path(store).write_text(f"pid {os.getpid()} on {socket.gethostname()}\n")
    with caplog.at_level(logging.WARNING, logger="sweep.lock"):
        with L.store_lock(store) as held:
            assert held.holder.token is not None
    assert "its flock is free" in caplog.text


def test_lock_file_removed_while_held_is_reported(tmp_path):
    store = tmp_path / "s.zarr"
    with pytest.raises(L.StoreLocked, match="its lock file is gone"):
        with L.store_lock(store) as held:
            os.unlink(L.lock_path(store))
            held.refresh()
            assert held.lost is not None
    assert _leftovers(tmp_path) == []


CONTEND = ("import os, sys\nfrom sweep.lock import StoreLocked, store_lock\n"
           "store, log, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])\n"
           "print('ready', flush=True); sys.stdin.readline()\n"
           "held = refused = 0\n"
           "while held < rounds:\n"
           "    try:\n"
           "        with store_lock(store):\n"
           "            fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT)\n"
           "            os.write(fd, f'in {os.getpid()}\\n'.encode())\n"
           "            os.write(fd, f'out {os.getpid()}\\n'.encode())\n"
           "            os.close(fd)\n"
           "        held += 1\n"
           "    except StoreLocked:\n"
           "        refused += 1\n"
           "print('refused', refused, flush=True)\n")


def test_contending_clients_never_hold_the_lock_together(tmp_path):
    """Four processes each take and release the lock 25 times as fast as they can; every
    critical section in the shared log is one process's ``in``, then the same process's
    ``out``, whatever the interleaving."""
    store, log_file, rounds = tmp_path / "s.zarr", tmp_path / "sections.log", 25
    errs = [tmp_path / f"stderr{i}.txt" for i in range(4)]
    procs = [subprocess.Popen([sys.executable, "-c", CONTEND, str(store), str(log_file),
                               str(rounds)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=err.open("w"), text=True,
                              env={**os.environ, "PYTHONPATH": str(ROOT)}) for err in errs]
    try:
        for p in procs:
            assert p.stdout.readline().strip() == "ready"
        for p in procs:
            p.stdin.write("go\n")
            p.stdin.flush()
        refused = [int(p.stdout.readline().split()[1]) for p in procs]
        for p in procs:
            assert p.wait(timeout=300) == 0
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    lines = log_file.read_text().splitlines()
    assert len(lines) == 2 * rounds * len(procs)
    for enter, leave in zip(lines[::2], lines[1::2]):
        assert enter.startswith("in ") and leave == "out " + enter[3:], (enter, leave)
    for err in errs:  # every holder was alive: no lock was ever judged stale and taken over
        assert "taking over" not in err.read_text(), err.read_text()
    print("refusals per process:", refused)
    assert _leftovers(tmp_path) == []
