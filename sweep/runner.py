"""Run a sweep: create or resume the store, submit what is missing, write points as they finish.

The client is the store's only writer. Finished points are written by region as soon as they
complete (values, then status); a failing point is recorded as ``failed`` with its message and
the sweep goes on; a re-run computes only points whose status is not ``done`` (and, with
``retry_failed``, re-runs failed ones), giving identical values for identical inputs. The shared
stages those points need are loaded from the intermediate cache beside the store when an earlier
run computed them (:mod:`sweep.cache`).
"""

from __future__ import annotations

import sys
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import cache as ic
from . import store as st
from .cluster import check_point_duration, cluster_provenance
from .graph import build_graph
from .lock import store_lock
from .spec import Spec

__all__ = ["RunSummary", "run_sweep", "pending_points"]


@dataclass
class RunSummary:
    """What a run did: points written done/failed, points skipped as already done, the tasks
    that computed (``stages``) and the stages loaded from the intermediate cache (``cached``),
    per stage, and the cache directory (None: no cache)."""

    done: int = 0
    failed: int = 0
    skipped: int = 0
    remaining: int = 0
    stages: dict = field(default_factory=dict)
    failures: list = field(default_factory=list)
    cached: dict = field(default_factory=dict)
    cache_dir: Path | None = None


def pending_points(ds, retry_failed: bool = False) -> list[st.PointIndex]:
    """Grid points still to compute, in grid order."""
    wanted = ["pending", "failed"] if retry_failed else ["pending"]
    todo = np.isin(st.point_status(ds), wanted)
    dims = tuple(ds["status"].dims)
    return [st.PointIndex(tuple(int(i) for i in idx), dims) for idx in np.argwhere(todo)]


def _failure_message(fut) -> str:
    exc = fut.exception()
    if exc is None:
        return f"task {fut.status} without an error of its own (its worker left) {fut.key}\n"
    tb = fut.traceback()
    frames = traceback.format_tb(tb)[-3:] if tb is not None else []
    return f"{type(exc).__name__}: {exc}\n" + "".join(frames)


def run_sweep(spec: Spec, path: str | Path, client, *, retry_failed: bool = False,
              max_points: int | None = None, progress: bool = True,
              cache: bool | None = None) -> RunSummary:
    """Compute every missing point of ``spec`` into the store at ``path``.

    Parameters
    ----------
    spec : Spec
        Validated spec.
    path : path-like
        Zarr store; created (template first) if absent, else checked against the spec.
    client : distributed.Client
        Where tasks run.
    retry_failed : bool
        Also recompute points recorded as failed.
    max_points : int, optional
        Stop (cancelling the rest) after writing this many points; a later run resumes.
    progress : bool
        Show a progress bar.
    cache : bool, optional
        Load and persist the shared stages in the intermediate cache (:mod:`sweep.cache`);
        None: as the Dask config key ``sweep.cache.enabled`` says (default on).
    """
    path = Path(path)
    icache = ic.from_config(path, cache)
    with store_lock(path):
        return _run_locked(spec, path, client, retry_failed, max_points, progress, icache)


#: Rounds of resubmission for points whose tasks were lost with their worker (cancelled, no
#: error of their own: e.g. a worker retiring at its lifetime mid-task).
LOST_POINT_ROUNDS = 3


def _lost_cache_entry(fut) -> bool:
    """Whether a point failed only because a cache entry vanished before its load (the
    resubmitted point computes the stage instead)."""
    try:
        return isinstance(fut.exception(), ic.CacheEntryGone)
    except Exception:  # noqa: BLE001 -- a cancelled future has no exception to inspect
        return False


def _run_locked(spec, path, client, retry_failed, max_points, progress, icache=None,
                rounds_left: int = LOST_POINT_ROUNDS) -> RunSummary:
    from distributed import as_completed  # noqa: PLC0415

    st.recover_interrupted_extension(path)
    if path.exists():
        ds, added = st.open_existing(path, spec)  # refuses another spec's or a damaged store
        if added:
            ds = st.extend_store(path, ds, spec, added)
            summary_note = "; ".join(f"grid.{d} + {v}" for d, v in added.items())
            print(f"extended the store's grid ({summary_note}); finished points are kept")
    else:
        ds = st.create_store(path, spec)
    todo = pending_points(ds, retry_failed)
    summary = RunSummary(skipped=spec.n_points - len(todo),
                         cache_dir=None if icache is None else icache.root)
    st.update_attrs(path, run_started_at=st._now(), run_finished_at="")
    if not todo:
        st.update_attrs(path, run_finished_at=st._now())
        return summary
    check_point_duration(spec, client)  # refuse points that would outlive their workers
    st.update_attrs(path, **cluster_provenance(client))
    graph = build_graph(client, spec, todo, icache)
    summary.stages = dict(graph.stages)
    summary.cached = dict(graph.cached)
    by_key = {fut.key: pt for pt, fut in graph.points.items()}
    bar = None
    if progress:
        from tqdm.auto import tqdm  # noqa: PLC0415

        bar = tqdm(total=len(todo), desc=spec.name, unit="point")
    ac = as_completed(list(graph.points.values()))
    lost = 0
    try:
        for fut in ac:
            pt = by_key[fut.key]
            if fut.status == "finished":
                values = fut.result()
                st.write_point(path, spec, pt, values)
                summary.done += 1
            elif (fut.status != "error" or _lost_cache_entry(fut)) and rounds_left > 0:
                lost += 1  # not the point's failure: it stays pending and is resubmitted below
            else:
                msg = _failure_message(fut)
                st.write_failure(path, spec, pt, msg)
                summary.failed += 1
                summary.failures.append((pt.labels(spec), msg.splitlines()[0]))
            graph.points.pop(pt)
            graph.parents.pop(pt)
            if bar is not None:
                bar.update(1)
            if max_points is not None and summary.done + summary.failed >= max_points:
                break
    except (KeyboardInterrupt, SystemExit):
        print(f"sweep: interrupted; this run wrote {summary.done} done and {summary.failed} "
              f"failed points, {len(graph.points)} not yet run: rerun the same command to "
              "resume", file=sys.stderr, flush=True)
        raise
    finally:
        if bar is not None:
            bar.close()
        summary.remaining = len(graph.points)
        for fut in graph.points.values():
            fut.cancel()
        attrs = {"run_finished_at": st._now()}
        for name, (fut, getter) in graph.attr_sources.items():
            if fut.status == "finished":
                attrs[name] = getter(fut.result())
        st.update_attrs(path, **attrs)
    stopped_early = max_points is not None and summary.done + summary.failed >= max_points
    if lost and not stopped_early:
        print(f"sweep: {lost} point(s) lost with their worker or a vanished cache entry, "
              "resubmitting", flush=True)
        more = None if max_points is None else max_points - summary.done - summary.failed
        sub = _run_locked(spec, path, client, False, more, progress, icache, rounds_left - 1)
        summary.done += sub.done
        summary.failed += sub.failed
        summary.failures += sub.failures
        summary.remaining = sub.remaining
        for stage, n in sub.stages.items():
            summary.stages[stage] = summary.stages.get(stage, 0) + n
        for stage, n in sub.cached.items():
            summary.cached[stage] = summary.cached.get(stage, 0) + n
    return summary
