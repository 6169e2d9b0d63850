"""Run a sweep: create or resume the store, submit what is missing, write points as they finish.

The client is the store's only writer. Finished points are buffered and written in batches
(:class:`sweep.store.PointWriter`: values, then status), at the latest
``sweep.store.flush_seconds`` (10 s) after they finish and at the end of the run; a failing
point is recorded as ``failed`` with its message and the sweep goes on; the tasks are submitted
a window of points at a time (:func:`sweep.graph.build_graph`); a re-run computes only points whose status is not ``done`` (and, with
``retry_failed``, re-runs failed ones), giving identical values for identical inputs. The shared
stages those points need are loaded from the intermediate cache beside the store when an earlier
run computed them (:mod:`sweep.cache`).
"""

from __future__ import annotations

import sys
import time
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
    per stage, the cache directory (None: no cache), and where the client's time went
    (``timings``, s: ``scan`` opening the store and finding the pending points, ``graph``
    building and submitting the task graph, ``write`` writing points, ``run`` the whole run;
    ``flushes``: batches written)."""

    done: int = 0
    failed: int = 0
    skipped: int = 0
    remaining: int = 0
    stages: dict = field(default_factory=dict)
    failures: list = field(default_factory=list)
    cached: dict = field(default_factory=dict)
    cache_dir: Path | None = None
    timings: dict = field(default_factory=dict)


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


#: Seconds between looks at finished tasks while finished points wait in the write buffer.
POLL_S = 0.05

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

    t_start = time.perf_counter()
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
    summary.timings["scan"] = time.perf_counter() - t_start
    st.update_attrs(path, run_started_at=st._now(), run_finished_at="")
    if not todo:
        st.update_attrs(path, run_finished_at=st._now())
        summary.timings["run"] = time.perf_counter() - t_start
        return summary
    check_point_duration(spec, client)  # refuse points that would outlive their workers
    st.update_attrs(path, **cluster_provenance(client))
    t_load = time.perf_counter()
    writer = st.PointWriter(path, spec)  # reads the store's values once
    summary.timings["scan"] += time.perf_counter() - t_load
    t_graph = time.perf_counter()
    graph = build_graph(client, spec, todo, icache)
    summary.timings["graph"] = time.perf_counter() - t_graph
    by_key = {fut.key: pt for pt, fut in graph.points.items()}
    bar = None
    if progress:
        from tqdm.auto import tqdm  # noqa: PLC0415

        bar = tqdm(total=len(todo), desc=spec.name, unit="point")
    ac = as_completed(list(graph.points.values()))
    lost = 0
    try:
        while not ac.is_empty():
            if len(writer) and not ac.has_ready():
                # finished points wait in the buffer at most sweep.store.flush_seconds
                wait = writer.seconds_until_due()
                if wait > 0:
                    time.sleep(min(wait, POLL_S))
                    continue
                writer.flush()
                continue
            batch = ac.next_batch(block=not len(writer))
            if not batch:
                continue
            finished = [f for f in batch if f.status == "finished"]
            results = dict(zip((f.key for f in finished), client.gather(finished)))
            for fut in batch:
                pt = by_key.pop(fut.key)
                if fut.key in results:
                    writer.add_done(pt, results[fut.key])
                    summary.done += 1
                elif (fut.status != "error" or _lost_cache_entry(fut)) and rounds_left > 0:
                    lost += 1  # not the point's failure: it stays pending, resubmitted below
                else:
                    msg = _failure_message(fut)
                    writer.add_failed(pt, msg)
                    summary.failed += 1
                    summary.failures.append((pt.labels(spec), msg.splitlines()[0]))
                graph.points.pop(pt)
                graph.parents.pop(pt)
                if max_points is not None and summary.done + summary.failed >= max_points:
                    break
            if bar is not None:
                bar.update(len(batch))
            if writer.due():
                writer.flush()
            if max_points is not None and summary.done + summary.failed >= max_points:
                break
            # keep up to a window of points in flight, topped up in large batches (one graph
            # each) once half of it has finished
            more = (graph.submit_more(graph.window - len(graph.points))
                    if graph.waiting and len(graph.points) <= graph.window // 2 else {})
            if more:
                by_key.update((f.key, pt) for pt, f in more.items())
                ac.update(more.values())
    except (KeyboardInterrupt, SystemExit):
        print(f"sweep: interrupted; this run wrote {summary.done} done and {summary.failed} "
              f"failed points, {graph.unfinished} not yet run: rerun the same command to "
              "resume", file=sys.stderr, flush=True)
        raise
    finally:
        writer.flush()  # what finished is written, also on Ctrl-C or an error
        if bar is not None:
            bar.close()
        summary.remaining = graph.unfinished
        summary.stages = dict(graph.stages)
        summary.cached = dict(graph.cached)
        for fut in graph.points.values():
            fut.cancel()
        attrs = {"run_finished_at": st._now()}
        for name, (fut, getter) in graph.attr_sources.items():
            if fut.status == "finished":
                attrs[name] = getter(fut.result())
        st.update_attrs(path, **attrs)
        graph.close()
        ac.clear()
        summary.timings.update(write=writer.seconds, flushes=writer.flushes,
                               run=time.perf_counter() - t_start)
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
        for k, v in sub.timings.items():
            summary.timings[k] = summary.timings.get(k, 0) + v
    return summary
