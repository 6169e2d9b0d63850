"""The intermediate cache (sweep.cache): real LocalCluster, real pyace fits, real Zarr stores.

What a rerun computes is read from the scheduler's task stream (one record per task that ran)
and from the cache's own files; no test depends on the machine's speed.
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import shutil
import time
from pathlib import Path

import dask.config
import numpy as np
import pytest
import xarray as xr
from distributed import get_task_stream

from sweep import cache as ic
from sweep.cli import main as sweep_main
from sweep.graph import CACHED_PREFIX
from sweep.runner import run_sweep
from sweep.spec import parse_spec
from tests.tiny import TIMINGS, tiny_spec, tiny_spec_text

SHARED = ("lattice", "simulation", "training", "design", "fit")


@pytest.fixture(scope="module")
def client(local_client):
    """The session's LocalCluster client (2 single-threaded worker processes)."""
    return local_client


@pytest.fixture(scope="module")
def clean(client, tmp_path_factory):
    """The tiny sweep computed without any cache: the reference values."""
    path = tmp_path_factory.mktemp("clean") / "clean.zarr"
    s = run_sweep(tiny_spec(), path, client, progress=False, cache=False)
    assert s.done == 4 and s.cache_dir is None
    assert not path.with_name(path.name + ".cache").exists()
    return path


def _values(path):
    return xr.open_zarr(path, chunks=None).drop_vars(TIMINGS).load()


def _entries(root: Path) -> set[str]:
    return {p.stem for p in root.rglob("*.pkl")}


def _ran(ts) -> list[str]:
    return [str(t["key"]) for t in ts.data]


@pytest.fixture(scope="module")
def resumed(client, tmp_path_factory):
    """The tiny sweep stopped after one point (``max_points``), then resumed: the cache's entries
    between the two runs and the keys of the tasks the resumed run ran."""
    path = tmp_path_factory.mktemp("resumed") / "tiny.zarr"
    first = run_sweep(tiny_spec(), path, client, max_points=1, progress=False)
    assert first.done == 1 and first.remaining == 3
    root = first.cache_dir
    assert root == path.with_name("tiny.zarr.cache")
    # the stop cancels the other points' tasks, but one already running on a worker finishes
    # (and persists its stage) after run_sweep returns: wait until no worker executes anything
    while any(client.run(lambda dask_worker: dask_worker.state.executing_count).values()):
        time.sleep(0.05)
    persisted = _entries(root)
    with get_task_stream(client) as ts:
        second = run_sweep(tiny_spec(), path, client, progress=False)
    assert second.done == 3 and second.skipped == 1 and second.failed == 0
    return path, root, persisted, _ran(ts), second


def test_resume_recomputes_no_persisted_intermediate(resumed):
    path, root, persisted, ran, second = resumed
    # the finished point's whole chain was persisted before it ran: one entry per shared stage
    for stage in SHARED:
        assert any(e.startswith(stage + "-") for e in persisted), (stage, persisted)
    computed = [k for k in ran if not k.startswith((CACHED_PREFIX, "point-"))]
    assert not set(computed) & persisted, "a persisted intermediate was computed again"
    loaded = {k[len(CACHED_PREFIX):] for k in ran if k.startswith(CACHED_PREFIX)}
    assert loaded and loaded <= persisted
    assert sum(second.cached.values()) == len(loaded)
    assert sum(k.startswith("point-") for k in ran) == 3  # points are never cached
    assert not any(e.startswith("point-") for e in _entries(root))


def test_cached_resume_is_bit_identical_to_a_clean_run(resumed, clean):
    xr.testing.assert_equal(_values(resumed[0]), _values(clean))


def test_a_sweep_from_the_cache_alone_equals_a_clean_run(client, resumed, clean, tmp_path):
    """A new store on the same cache (``sweep.cache.dir``) computes only its points, and every
    value equals the clean run's bit for bit."""
    root = resumed[1]
    with dask.config.set({"sweep.cache.dir": str(root)}), get_task_stream(client) as ts:
        s = run_sweep(tiny_spec(), tmp_path / "again.zarr", client, progress=False)
    assert s.done == 4 and s.stages == {"point": 4}, s.stages
    # the points need fits, simulation cells and the lattice; with the fits loaded, the
    # design passes and training sets behind them are not even loaded
    assert s.cached == {"lattice": 1, "simulation": 2, "fit": 4}, s.cached
    assert not any(k.startswith(SHARED) for k in _ran(ts))
    xr.testing.assert_equal(_values(tmp_path / "again.zarr"), _values(clean))


def test_changed_fingerprint_loads_nothing(client, resumed, tmp_path):
    root = resumed[1]
    other = parse_spec(tiny_spec_text().replace("rattle_A = 0.03", "rattle_A = 0.02"))
    assert other.fingerprint() != tiny_spec().fingerprint()
    with dask.config.set({"sweep.cache.dir": str(root)}):
        s = run_sweep(other, tmp_path / "other.zarr", client, progress=False, max_points=1)
    assert s.done == 1 and s.cached == {}, s.cached
    # its entries live beside the first spec's, under its own fingerprint
    u = ic.usage(root, fingerprint=other.fingerprint())
    assert u["current_entries"] >= len(SHARED) and u["entries"] > u["current_entries"]


def test_changed_package_version_loads_nothing(client, resumed, tmp_path, monkeypatch):
    """The same spec on the same cache after (say) a numpy upgrade computes everything."""
    real = ic.environment()
    upgraded = {**real, "packages": {**real["packages"], "numpy": real["packages"]["numpy"]
                                     + ".post1"}}
    monkeypatch.setattr(ic, "environment", lambda: upgraded)
    ic.environment_token.cache_clear()
    try:
        with dask.config.set({"sweep.cache.dir": str(resumed[1])}):
            s = run_sweep(tiny_spec(), tmp_path / "upgraded.zarr", client, progress=False,
                          max_points=1)
    finally:
        monkeypatch.undo()
        ic.environment_token.cache_clear()
    assert s.done == 1 and s.cached == {}, s.cached
    assert s.stages["lattice"] == 1


def test_environment_names_the_packages_and_digests_the_sources(tmp_path):
    env = ic.environment()
    assert set(env["packages"]) == set(ic.VALUE_PACKAGES)
    assert env["packages"]["numpy"] == np.__version__
    repo = Path(ic.__file__).resolve().parent.parent
    copy = tmp_path / "repo"
    for part in ("kernels", "sweep"):
        shutil.copytree(repo / part, copy / part, ignore=shutil.ignore_patterns("__pycache__"))
    assert ic.source_digest(copy) == env["source_sha256"]
    with open(copy / "sweep" / "report.py", "a") as f:  # no intermediate depends on it
        f.write("\n# an edit\n")
    assert ic.source_digest(copy) == env["source_sha256"]
    with open(copy / "kernels" / "errors.py", "a") as f:  # uncommitted edits count
        f.write("\n# an edit\n")
    assert ic.source_digest(copy) != env["source_sha256"]


def test_grown_basis_grid_reuses_what_it_can(client, tmp_path):
    """Adding a basis size changes the design pass's arguments (it factors the largest basis),
    so the design passes and fits are computed anew, while the lattice, the reference
    relaxations and the training sets are loaded."""
    path = tmp_path / "grow.zarr"
    small = tiny_spec(L=(4,), basis_sizes=(20,))
    assert run_sweep(small, path, client, progress=False).done == 1
    grown = tiny_spec(L=(4,), basis_sizes=(20, 30))
    s = run_sweep(grown, path, client, progress=False)
    assert s.done == 1 and s.skipped == 1
    assert s.cached == {"lattice": 1, "simulation": 1, "training": 1}, s.cached
    assert s.stages == {"design": 1, "fit": 1, "point": 1}, s.stages


def test_unreadable_entry_is_recomputed_and_the_values_stay_clean(client, resumed, clean,
                                                                   tmp_path):
    """An entry that vanished or was damaged after the client found it fails the points that
    loaded it with CacheEntryGone; the runner resubmits them and they compute the stage."""
    root = tmp_path / "cache"
    shutil.copytree(resumed[1], root)
    # a reference relaxation the points need (other tests add entries of other fingerprints
    # and environments beside it)
    sim = sorted((root / ic.environment_token() / tiny_spec().fingerprint() / "simulation")
                 .glob("*.pkl"))[0]
    sim.write_bytes(sim.read_bytes()[: sim.stat().st_size // 2])
    with dask.config.set({"sweep.cache.dir": str(root)}):
        s = run_sweep(tiny_spec(), tmp_path / "damaged.zarr", client, progress=False)
    assert (s.done, s.failed) == (4, 0), s.failures
    # loaded once (and failed), then computed once for the two resubmitted points (whose
    # point tasks the summary counts in both rounds)
    assert s.stages == {"point": 6, "simulation": 1}, s.stages
    assert s.cached["simulation"] == 2, s.cached  # both in the first round
    with open(sim, "rb") as f:  # rewritten whole by the resubmitted relaxation
        assert pickle.load(f)["key"] == sim.stem
    xr.testing.assert_equal(_values(tmp_path / "damaged.zarr"), _values(clean))


def test_no_cache_option_and_status(client, resumed, tmp_path, capsys):
    addr = client.scheduler.address
    path = tmp_path / "off.zarr"
    spec = tmp_path / "tiny.toml"
    spec.write_text(tiny_spec_text(L=(4,), basis_sizes=(20,)))
    assert sweep_main(["run", str(spec), "--store", str(path), "--scheduler", addr,
                       "--no-progress", "--no-cache"]) == 0
    assert "loaded from the cache" not in capsys.readouterr().out
    assert not path.with_name("off.zarr.cache").exists()
    with dask.config.set({"sweep.cache.enabled": False}):
        assert run_sweep(tiny_spec(L=(4,), basis_sizes=(20,)), tmp_path / "off2.zarr", client,
                         progress=False).cache_dir is None
    assert sweep_main(["status", str(resumed[0])]) == 0
    out = capsys.readouterr().out
    # the tiny spec's 11 shared stages: 1 lattice, 2 simulations, 2 training sets, 2 design
    # passes, 4 fits (other tests add entries of other fingerprints and environments)
    assert "usable by this store (its spec, this code and these packages): 11 entries" in out
    assert "design 2, fit 4, lattice 1, simulation 2, training 2" in out, out
    assert sweep_main(["status", str(path)]) == 0
    assert f"cache: none at {path.with_name('off.zarr.cache')}" in capsys.readouterr().out


# ------------------------------------------------------------------------------------------
# The entry files themselves: atomic writes, concurrent writers, bounds.

def _value(n: int = 250_000, seed: int = 0):
    return {"array": np.random.default_rng(seed).normal(size=n), "label": "x" * 10}


def _writer(path: str, barrier, rounds: int) -> None:
    value = _value()
    barrier.wait()
    for _ in range(rounds):
        ic.store_entry(Path(path), "entry", value, 10**9)


def test_concurrent_writers_never_expose_a_partial_entry(tmp_path):
    """Four processes write the same 2 MB entry over and over while this one reads it: every
    read is either "not there yet" or the whole value, and no temporary file is left."""
    path = tmp_path / "stage" / "entry.pkl"
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(5)
    procs = [ctx.Process(target=_writer, args=(str(path), barrier, 20)) for _ in range(4)]
    for p in procs:
        p.start()
    barrier.wait()
    want = _value()
    reads = 0
    while any(p.is_alive() for p in procs) or reads == 0:
        try:
            got = ic.load(str(path), "entry")
        except ic.CacheEntryGone as e:
            assert "is gone" in str(e), e  # absent, never unreadable
            continue
        np.testing.assert_array_equal(got["array"], want["array"])
        reads += 1
    for p in procs:
        p.join(timeout=120)
        assert p.exitcode == 0
    assert reads >= 1
    assert [f.name for f in path.parent.iterdir()] == ["entry.pkl"]


def _must_not_run():
    raise AssertionError("computed although its entry was stored")


def test_a_rerun_task_reloads_the_entry_its_first_run_stored(tmp_path):
    """A compute task run a second time (its worker died after storing the entry) returns the
    stored value without computing; an unreadable entry is removed and computed again."""
    path = tmp_path / "stage" / "entry.pkl"
    settings = (str(tmp_path), 10**9, 10**9)
    first = ic.compute_and_store(str(path), "entry", settings, _value)
    again = ic.compute_and_store(str(path), "entry", settings, _must_not_run)
    np.testing.assert_array_equal(again["array"], first["array"])
    path.write_bytes(b"not a pickle")
    redone = ic.compute_and_store(str(path), "entry", settings, _value)
    np.testing.assert_array_equal(redone["array"], first["array"])
    np.testing.assert_array_equal(ic.load(str(path), "entry")["array"], first["array"])


def test_a_crashed_writer_leaves_no_entry(tmp_path):
    """A writer killed mid-write leaves only its temporary file: readers see no entry, the
    cache's usage counts it, and eviction removes it once older than STALE_TMP_S."""
    path = tmp_path / "stage" / "entry.pkl"
    path.parent.mkdir()
    blob = pickle.dumps({"key": "entry", "value": _value()})
    tmp = path.with_name(f".tmp-{path.name}-999-deadbeef")
    tmp.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(ic.CacheEntryGone, match="is gone"):
        ic.load(str(path), "entry")
    assert ic.usage(tmp_path)["tmp_files"] == 1 and ic.usage(tmp_path)["entries"] == 0
    ic.evict(tmp_path, 0)
    assert tmp.exists()  # it could be a live writer's
    old = tmp.stat().st_mtime - ic.STALE_TMP_S - 60
    os.utime(tmp, (old, old))
    ic.evict(tmp_path, 0)
    assert not tmp.exists()


def test_size_cap_evicts_least_recently_used_and_refuses_large_entries(tmp_path):
    paths = [tmp_path / "env" / "fp" / "stage" / f"e{i}.pkl" for i in range(5)]
    for i, p in enumerate(paths):
        assert ic.store_entry(p, f"e{i}", _value(10_000, i), 10**9)
        os.utime(p, (1000.0 * (i + 1), 1000.0 * (i + 1)))  # e0 oldest … e4 newest
    size = paths[0].stat().st_size
    ic.load(str(paths[0]), "e0")  # a load makes e0 the most recently used
    gone = ic.evict(tmp_path, 3 * size)
    assert sorted(gone) == sorted(paths[1:3])
    assert [p.exists() for p in paths] == [True, False, False, True, True]
    assert ic.usage(tmp_path)["bytes"] <= 3 * size
    # an entry above max_entry_bytes is not written at all
    big = tmp_path / "env" / "fp" / "stage" / "big.pkl"
    assert not ic.store_entry(big, "big", _value(), size)
    assert not big.exists()
    assert sorted(f.name for f in big.parent.iterdir()) == ["e0.pkl", "e3.pkl", "e4.pkl"]


def test_cap_from_config_bounds_a_real_run(client, tmp_path):
    with dask.config.set({"sweep.cache.max_bytes": 0}):
        s = run_sweep(tiny_spec(L=(4,), basis_sizes=(20,)), tmp_path / "capped.zarr", client,
                      progress=False)
    assert s.done == 1
    assert ic.usage(s.cache_dir)["entries"] == 0
    with dask.config.set({"sweep.cache.max_bytes": 10**6, "sweep.cache.max_entry_bytes": 10**9}):
        c = ic.from_config(tmp_path / "x.zarr")
    assert c.max_entry_bytes == 10**6  # an entry can never exceed the whole cap
