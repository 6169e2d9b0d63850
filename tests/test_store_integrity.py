"""Issue #3, fault 5: a grid extended in the spec keeps every finished point; a damaged store or
one that the spec would shrink is refused with a message saying what is wrong, and left as it
was. Real LocalCluster, real fits, real Zarr stores damaged on disk."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest
import xarray as xr
from slurm_fixture import physics

from sweep.cli import main as sweep_main
from sweep.runner import run_sweep
from sweep.store import StoreDamaged, StoreMismatch, _backup_path, chunk_file, chunk_shape
from tests.tiny import tiny_spec, tiny_spec_text



@pytest.fixture(scope="module")
def client(local_client):
    """The session's LocalCluster client (2 single-threaded worker processes)."""
    return local_client


@pytest.fixture(scope="module")
def full(client, tmp_path_factory):
    """A clean run of the grid L = 4, 5 × basis 20, 25, 30 (the extensions' target)."""
    path = tmp_path_factory.mktemp("full") / "full.zarr"
    run_sweep(tiny_spec(basis_sizes=(20, 25, 30)), path, client, progress=False)
    return path


def _values(path):
    return physics(path)  # every variable but the timings


def _snapshot(path):
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*"))
            if p.is_file()}


def test_extending_the_grid_keeps_finished_points(client, full, tmp_path):
    path = tmp_path / "grown.zarr"
    first = run_sweep(tiny_spec(L=(4,), basis_sizes=(20, 30)), path, client, progress=False)
    assert first.done == 2
    before = _values(path)

    # append an L value: only its 2 points are computed, the 2 finished ones are kept
    second = run_sweep(tiny_spec(L=(4, 5), basis_sizes=(20, 30)), path, client, progress=False)
    assert (second.done, second.skipped) == (2, 2)
    # the engine's own count of the point tasks it submitted: the scheduler's task stream,
    # read back after the run, once counted none of them on a loaded machine
    assert second.stages.get("point") == 2, second.stages
    grown = _values(path)
    assert list(grown.L.values) == [4, 5]
    xr.testing.assert_equal(grown.sel(L=[4]).drop_vars("status"), before.drop_vars("status"))

    # insert a basis size between the others: again only the new points run
    third = run_sweep(tiny_spec(L=(4, 5), basis_sizes=(20, 25, 30)), path, client,
                      progress=False)
    assert (third.done, third.skipped) == (2, 4)
    assert third.stages.get("point") == 2, third.stages
    ds = xr.open_zarr(path)
    assert list(ds.basis_size.values) == [20, 25, 30]
    assert len(json.loads(ds.attrs["extensions"])) == 2
    # the grown store equals a clean run of the final grid, value for value
    xr.testing.assert_equal(_values(path), _values(full))
    assert not _backup_path(path).exists()


def test_a_spec_that_drops_grid_values_is_refused(client, full, tmp_path):
    path = tmp_path / "copy.zarr"
    shutil.copytree(full, path)
    before = _snapshot(path)
    with pytest.raises(StoreMismatch, match=r"grid.L: the spec drops \['4'\]"):
        run_sweep(tiny_spec(L=(5,), basis_sizes=(20, 25, 30)), path, client, progress=False)
    assert _snapshot(path) == before


def _damaged_copy(full, tmp_path, damage):
    path = tmp_path / "damaged.zarr"
    shutil.copytree(full, path)
    damage(path)
    return path, _snapshot(path)


def test_deleted_chunk_is_refused_naming_variable_and_point(client, full, tmp_path):
    # the chunk file of geometry_error that holds L = 5, basis 25 (and, with chunks of up to
    # POINTS_PER_CHUNK points, every point of this small grid)
    spec = tiny_spec(basis_sizes=(20, 25, 30))
    chunks = chunk_shape(spec.shape)
    in_chunk = int(np.prod([min(c, n) for c, n in zip(chunks, spec.shape)]))
    path, before = _damaged_copy(
        full, tmp_path, lambda p: os.remove(chunk_file(p, "geometry_error", (0, 0, 1, 1, 0, 0))))
    with pytest.raises(StoreDamaged) as err:
        run_sweep(spec, path, client, progress=False)
    msg = str(err.value)
    assert f"geometry_error: chunks of {in_chunk} finished point(s) are missing" in msg
    assert "'L': 4" in msg and "'basis_size': 25" in msg
    assert _snapshot(path) == before


def test_truncated_metadata_is_refused(client, full, tmp_path, capsys):
    def truncate(p):
        meta = p / ".zmetadata"
        meta.write_bytes(meta.read_bytes()[: len(meta.read_bytes()) // 2])

    path, before = _damaged_copy(full, tmp_path, truncate)
    spec_file = tmp_path / "spec.toml"
    spec_file.write_text(tiny_spec_text(basis_sizes=(20, 25, 30)))
    # through the command line: exit 2, before any cluster starts, and the store is untouched
    code = sweep_main(["run", str(spec_file), "--store", str(path), "--no-progress"])
    assert code == 2
    err = capsys.readouterr().err
    assert "is damaged: its metadata cannot be read" in err and "will not be overwritten" in err
    assert _snapshot(path) == before


def test_truncated_array_metadata_is_refused(client, full, tmp_path):
    def truncate(p):
        meta = p / "rmse_forces" / ".zarray"
        meta.write_text(meta.read_text()[:40])

    path, before = _damaged_copy(full, tmp_path, truncate)
    with pytest.raises(StoreDamaged, match=r"rmse_forces/\.zarray: unreadable"):
        run_sweep(tiny_spec(basis_sizes=(20, 25, 30)), path, client, progress=False)
    assert _snapshot(path) == before


def test_extension_interrupted_between_renames_is_recovered(client, full, tmp_path):
    """A run killed after moving the old store aside but before moving the new one in leaves
    only the backup; the next run puts it back and goes on."""
    path = tmp_path / "interrupted.zarr"
    run_sweep(tiny_spec(L=(4,), basis_sizes=(20, 25, 30)), path, client, progress=False)
    os.rename(path, _backup_path(path))  # the state that crash leaves behind
    summary = run_sweep(tiny_spec(basis_sizes=(20, 25, 30)), path, client, progress=False)
    assert (summary.done, summary.skipped) == (3, 3)
    xr.testing.assert_equal(_values(path), _values(full))
    assert not _backup_path(path).exists()
    assert np.all(np.asarray(xr.open_zarr(path).status.values) == "done")
