"""The store at many points: a few files per variable, batched writes, and the crash guarantees.

Runs the engine benchmark experiment (``benchmarks/engine_scale.py``: points that compute
nothing, so thousands of them take seconds) on the session's real LocalCluster into real Zarr
stores:

- a store holds a few chunk files per variable, far below one file per point, and every value
  and string reads back;
- finished points are written in batches whose size the config bounds;
- a crash between a batch's values and its status leaves those points pending, the earlier ones
  intact, and a rerun gives the clean run's values; a SIGKILLed client likewise, wherever the
  kill lands;
- a store written one chunk per point (the earlier layout) opens, resumes and extends, and a
  missing chunk (of values or of status) is refused in either layout, also by ``sweep status``.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import cloudpickle
import dask
import numpy as np
import pytest
import xarray as xr

from sweep import store as st
from sweep.cli import main as sweep_main
from sweep.runner import pending_points, run_sweep

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
import engine_scale  # noqa: E402

cloudpickle.register_pickle_by_value(engine_scale)  # the workers need not import it

#: What the benchmark's point function stores (see engine_scale.point).
EXPECTED = ("geometry_error", "n_basis", "rank", "status", "error")


def _expected_values(spec) -> dict:
    L = np.array(spec.grid["L"], dtype=float)[:, None]
    B = np.array(spec.grid["basis_size"])[None, :]
    return {"geometry_error": 0.5 * L + 1e-3 * B, "n_basis": np.broadcast_to(B, (len(L), B.size)),
            "rank": np.broadcast_to(B, (len(L), B.size))}


def _assert_clean(path, spec):
    """Every point done with the values the benchmark's point function gives."""
    ds = xr.open_zarr(path, chunks=None).squeeze()
    assert (st.point_status(ds) == "done").all()
    for name, want in _expected_values(spec).items():
        np.testing.assert_array_equal(ds[name].values, want, err_msg=name)
    assert (np.asarray(ds["error"].values) == "").all()
    assert (np.asarray(ds["worker_host"].values) != "").all()
    assert np.isnan(ds["energy_error"].values).all()  # not stored by the point: its fill


def _files(path) -> list[Path]:
    return [p for p in Path(path).rglob("*") if p.is_file()]


def test_many_points_make_a_few_files_per_variable(local_client, tmp_path):
    spec = engine_scale.engine_spec(5000)
    path = tmp_path / "many.zarr"
    summary = run_sweep(spec, path, local_client, progress=False)
    assert summary.done == 5000 and summary.failed == 0
    _assert_clean(path, spec)
    chunks = st.chunk_shape(spec.shape)
    assert np.prod(chunks) <= st.POINTS_PER_CHUNK
    n_chunks = int(np.prod([-(-n // c) for n, c in zip(spec.shape, chunks)]))
    for name in st.variables_for(spec):
        assert st._array_meta(path, name)["chunks"] == list(chunks), name
        data_files = [p for p in (path / name).iterdir() if not p.name.startswith(".")]
        assert len(data_files) == n_chunks, name  # every chunk written, nothing else left
    files = _files(path)
    assert len(files) <= 5000 / 50, len(files)  # (≤ 1 file per point is the target)
    assert not [p for p in files if p.name.endswith(".partial")]


def test_points_are_written_in_batches_of_the_configured_size(local_client, tmp_path):
    spec = engine_scale.engine_spec(2000)
    path = tmp_path / "batched.zarr"
    with dask.config.set({"sweep.store.flush_points": 300, "sweep.store.flush_seconds": 1e6}):
        summary = run_sweep(spec, path, local_client, progress=False)
    assert summary.done == 2000
    # every batch but the last holds at least 300 points
    assert 1 <= summary.timings["flushes"] <= 2000 // 300 + 1, summary.timings
    _assert_clean(path, spec)


def test_strings_of_any_length_read_back(tmp_path):
    spec = engine_scale.engine_spec(20)
    path = tmp_path / "strings.zarr"
    st.create_store(path, spec)
    dims = spec.dims
    message = "ValueError: äöü — ∂B/∂A\n" + "  frame\n" * 300
    writer = st.PointWriter(path, spec, max_points=10)
    writer.add_failed(st.PointIndex((0, 0, 3, 1, 0, 0), dims), message)
    writer.add_done(st.PointIndex((0, 0, 2, 0, 0, 0), dims), {"worker_host": "nœud-7",
                                                            "geometry_error": 1.5})
    assert writer.flush() == 2
    ds = st.open_store(path).squeeze()
    status = st.point_status(ds)
    assert status[3, 1] == "failed" and status[2, 0] == "done"
    assert (status == "pending").sum() == 18
    assert str(ds["error"].values[3, 1]) == message
    assert str(ds["worker_host"].values[2, 0]) == "nœud-7"
    assert ds["geometry_error"].values[2, 0] == 1.5 and np.isnan(ds["geometry_error"].values[3, 1])
    assert str(ds["error"].values[2, 0]) == "" and str(ds["status"].values[0, 0]) == "pending"


def test_a_crash_between_values_and_status_leaves_the_batch_pending(local_client, tmp_path):
    spec = engine_scale.engine_spec(200)
    path = tmp_path / "crashed.zarr"
    first = run_sweep(spec, path, local_client, progress=False, max_points=50)
    assert first.done == 50
    done_before = st.point_status(st.open_store(path)) == "done"
    # the state a client killed inside a flush leaves: the values of a batch are written, its
    # status is not
    writer = st.PointWriter(path, spec)
    todo = pending_points(st.open_store(path))[:30]
    for pt in todo:
        writer.add_done(pt, {"geometry_error": -1.0, "n_basis": -7})
    writer._write_chunks([n for n in writer.variables if n != "status"], writer._stage())
    del writer
    ds, _ = st.open_existing(path, spec)  # not damaged
    status = st.point_status(ds)
    np.testing.assert_array_equal(status == "done", done_before)  # the batch is still pending
    assert len(pending_points(ds)) == 150
    second = run_sweep(spec, path, local_client, progress=False)
    assert (second.done, second.skipped) == (150, 50)
    _assert_clean(path, spec)  # the half-written batch was recomputed and overwritten


def test_client_sigkilled_while_writing_batches_resumes_cleanly(tmp_path):
    """Wherever the kill lands (between batches, inside one), the store opens, its done points
    are whole, and the rerun computes only what is not done and gives the clean values."""
    n = 20000
    path = tmp_path / "killed.zarr"
    script = tmp_path / "run.py"
    script.write_text(
        "import sys, dask\n"
        f"sys.path[:0] = [{str(REPO)!r}, {str(REPO / 'benchmarks')!r}]\n"
        "import engine_scale\n"
        "from sweep.runner import run_sweep\n"
        "if __name__ == '__main__':  # the worker processes import this file\n"
        "    with engine_scale.local_client(2) as client, dask.config.set("
        "{'sweep.store.flush_points': 500}):\n"
        f"        s = run_sweep(engine_scale.engine_spec({n}), {str(path)!r}, client, "
        "progress=False)\n"
        "        print('done', s.done, 'skipped', s.skipped, flush=True)\n")
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)

    def n_done():
        try:
            return int((st.point_status(st.open_store(path)) == "done").sum())
        except Exception:  # noqa: BLE001 -- not created yet
            return 0

    try:
        deadline = time.monotonic() + 300
        while n_done() < 1000:
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "no batch written in 300 s"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.communicate()
    spec = engine_scale.engine_spec(n)
    ds, _ = st.open_existing(path, spec)  # whole: neither damaged nor half written
    status = st.point_status(ds).squeeze()
    done = status == "done"
    assert 1000 <= done.sum() < n, done.sum()
    got = ds.squeeze()
    for name, want in _expected_values(spec).items():
        np.testing.assert_array_equal(got[name].values[done], want[done], err_msg=name)
    r = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"done {n - done.sum()} skipped {done.sum()}" in r.stdout, r.stdout
    _assert_clean(path, spec)


# ------------------------------------------------------------------ the earlier layout

def _old_store(path, spec, done_idx):
    """A store as the earlier code wrote it: chunk size 1 along every dimension, and each done
    point written by two region writes (values, then status)."""
    ds = st.template(spec)
    enc = {name: {"chunks": (1,) * ds[name].ndim} for name in ds.data_vars}
    for name in ds.data_vars:
        if ds[name].dtype.kind == "i":
            enc[name]["_FillValue"] = None
    ds.to_zarr(path, mode="w-", encoding=enc, consolidated=True, zarr_format=2,
               write_empty_chunks=True)
    variables = st.variables_for(spec)
    want = _expected_values(spec)
    for idx in done_idx:
        region = {d: slice(i, i + 1) for d, i in zip(spec.dims, idx)}
        one = (1,) * len(spec.dims)
        values = {n: (spec.dims, np.full(one, variables[n][3], dtype=variables[n][0]))
                  for n in variables if n not in ("status", "error")}
        for name in want:
            values[name] = (spec.dims, np.full(one, want[name][idx[2], idx[3]],
                                               dtype=variables[name][0]))
        values["worker_host"] = (spec.dims, np.full(one, "old-host", dtype=object))
        xr.Dataset(values).to_zarr(path, region=region, consolidated=True,
                                   write_empty_chunks=True)
        xr.Dataset({"error": (spec.dims, np.full(one, "", dtype=object)),
                    "status": (spec.dims, np.full(one, "done", dtype=object))}).to_zarr(
            path, region=region, consolidated=True, write_empty_chunks=True)


def test_a_store_of_the_earlier_layout_resumes_and_extends(local_client, tmp_path):
    old_spec = engine_scale.engine_spec(40)
    path = tmp_path / "old.zarr"
    done_idx = [(0, 0, 0, 0, 0, 0), (0, 0, 3, 2, 0, 0), (0, 0, 9, 3, 0, 0)]
    _old_store(path, old_spec, done_idx)
    assert len(list((path / "status").glob("0.*"))) == 40  # one chunk file per point
    ds, added = st.open_existing(path, old_spec)
    assert added == {} and len(pending_points(ds)) == 37

    resumed = run_sweep(old_spec, path, local_client, progress=False)
    assert (resumed.done, resumed.skipped) == (37, 3)
    _assert_clean(path, old_spec)
    assert st._array_meta(path, "status")["chunks"] == [1] * 6  # resumed in its own layout
    hosts = np.asarray(xr.open_zarr(path, chunks=None).squeeze()["worker_host"].values)
    assert [str(hosts[i[2], i[3]]) for i in done_idx] == ["old-host"] * 3  # kept, not redone

    # a damaged old store is refused: the chunk of a done point is gone
    damaged = tmp_path / "old-damaged.zarr"
    shutil.copytree(path, damaged)
    os.remove(st.chunk_file(damaged, "rank", (0, 0, 3, 2, 0, 0)))
    with pytest.raises(st.StoreDamaged, match=r"rank: chunks of 1 finished point"):
        st.open_existing(damaged, old_spec)

    # extended: a larger basis grid, the finished points kept, the new layout written
    text = engine_scale.spec_text(40).replace("basis_size = [1, 2, 3, 4]",
                                              "basis_size = [1, 2, 3, 4, 5, 6]")
    new_spec = engine_scale.parse_spec(text)
    grown = run_sweep(new_spec, path, local_client, progress=False)
    assert (grown.done, grown.skipped) == (20, 40)
    _assert_clean(path, new_spec)
    assert st._array_meta(path, "status")["chunks"] == list(st.chunk_shape(new_spec.shape))
    hosts = np.asarray(xr.open_zarr(path, chunks=None).squeeze()["worker_host"].values)
    assert [str(hosts[i[2], i[3]]) for i in done_idx] == ["old-host"] * 3


def test_a_missing_chunk_is_refused_and_reported_by_status(local_client, tmp_path, capsys):
    spec = engine_scale.engine_spec(8000)  # two chunks per variable
    path = tmp_path / "full.zarr"
    run_sweep(spec, path, local_client, progress=False)
    assert st.chunk_shape(spec.shape) == (1, 1, 5, 800, 1, 1)
    assert sweep_main(["status", str(path)]) == 0
    capsys.readouterr()
    for name, count in (("geometry_error", 4000), ("status", 4000)):
        damaged = tmp_path / f"no-{name}.zarr"
        shutil.copytree(path, damaged)
        chunk = st.chunk_file(damaged, name, (0, 0, 7, 5, 0, 0))
        assert chunk.name == "0.0.1.0.0.0"
        before = {p: p.read_bytes() for p in _files(damaged)}
        chunk.unlink()
        with pytest.raises(st.StoreDamaged, match=rf"{name}: .*of {count} .*point\(s\) are "
                                                  r"missing, e.g. \[\{.*'L': 6"):
            st.open_existing(damaged, spec)
        assert {p: p.read_bytes() for p in _files(damaged)} == {
            p: b for p, b in before.items() if p != chunk}  # left as it was
        assert sweep_main(["status", str(damaged)]) == 2
        err = capsys.readouterr().err
        assert "damaged" in err and name in err, err


def test_a_window_of_points_at_a_time_shares_each_stage_once(local_client, tmp_path):
    """Submitted 100 points at a time, 1000 points still compute each shared stage once (a
    stage's future is kept while a waiting point needs it) and every point once."""
    spec = engine_scale.engine_spec(1000)
    path = tmp_path / "windowed.zarr"
    with dask.config.set({"sweep.graph.window_points": 100}):
        summary = run_sweep(spec, path, local_client, progress=False, cache=False)
    assert summary.done == 1000 and summary.remaining == 0
    assert summary.stages == {"setup": 10, "point": 1000}, summary.stages
    _assert_clean(path, spec)
    stopped = tmp_path / "stopped.zarr"
    with dask.config.set({"sweep.graph.window_points": 100}):
        first = run_sweep(spec, stopped, local_client, progress=False, cache=False,
                          max_points=250)
    assert first.done == 250 and first.remaining == 750  # the waiting points count too
    assert first.stages["point"] <= 250 + 100
