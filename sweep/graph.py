"""The task graph of a sweep: every intermediate computed once and shared by its dependants.

Each experiment (:mod:`sweep.experiments`) says which stages a grid point needs; this module
gives them deterministic keys (the stage name, its coordinates, and the spec's fingerprint),
records each (stage, coordinates) once, and then submits, starting from the points, only what
they need: a stage whose value the intermediate cache holds (:mod:`sweep.cache`) is loaded by a
task without dependencies, so whatever only it needed is not submitted at all. Futures, not
values, are passed to dependants so that data moves worker to worker; the stage tables of each
experiment are in its module's docstring (e.g. :mod:`sweep.experiments.p1_point_defects`).
"""

from __future__ import annotations

import uuid
from collections import deque
from dataclasses import dataclass, field

from dask._expr import LLGExpr
from dask._task_spec import Task, TaskRef, parse_input
from dask.base import tokenize

from . import cache as ic
from .experiments.p1_point_defects import training_seeds
from .spec import Spec
from .store import PointIndex

__all__ = ["SweepGraph", "build_graph", "training_seeds", "task_key", "CACHED_PREFIX"]

#: Prefix of the Dask key of a task that loads a stage from the intermediate cache.
CACHED_PREFIX = "cached-"


@dataclass
class SweepGraph:
    """The tasks of a sweep, submitted a window of points at a time.

    ``window`` is the number of points submitted at first, and the most the runner keeps in
    flight; ``points`` maps each submitted, not yet written grid point to its future; ``waiting`` holds
    the points not submitted yet, in grid order (:meth:`submit_more` submits the next ones);
    ``stages`` counts the tasks submitted that compute, per stage; ``cached`` the stages loaded
    from the intermediate cache; ``parents`` lets the runner release intermediates once no
    point needs them; ``attr_sources`` maps Dataset attributes to ``(future, getter)`` recorded
    after the run; ``entries`` maps the Dask key of every cacheable computing task to its cache
    entry's path."""

    points: dict = field(default_factory=dict)
    stages: dict = field(default_factory=dict)
    cached: dict = field(default_factory=dict)
    parents: dict = field(default_factory=dict)
    attr_sources: dict = field(default_factory=dict)
    entries: dict = field(default_factory=dict)
    waiting: deque = field(default_factory=deque)
    window: int = 1
    _submit_points: object = None

    def submit_more(self, n: int) -> dict:
        """Submit the next ``n`` waiting points (with whatever they need that is not
        submitted yet); returns their futures by point."""
        take = [self.waiting.popleft() for _ in range(min(n, len(self.waiting)))]
        return self._submit_points(take) if take else {}

    def close(self) -> None:
        """Drop every future and the submission closure (which refers back to this graph), so
        that nothing of the run stays on the scheduler once the runner lets go: a later run of
        the same keys must compute them again rather than find them in memory."""
        self._submit_points = None
        self.waiting.clear()
        self.points.clear()
        self.parents.clear()
        self.attr_sources.clear()

    @property
    def unfinished(self) -> int:
        """Points submitted and not yet taken out of :attr:`points`, plus those waiting."""
        return len(self.points) + len(self.waiting)


def task_key(stage: str, spec: Spec, *coords) -> str:
    """Deterministic key of one stage at some coordinates: equal inputs, equal keys."""
    label = "-".join(str(c) for c in coords)
    return f"{stage}-{label}-{tokenize(spec.fingerprint(), *coords)}"


@dataclass(eq=False)
class _Node:
    """One stage at some coordinates, not yet submitted. :attr:`cache_ident` digests
    everything its value depends on (None: something has no canonical form, see
    :func:`sweep.cache.canonical`); computed on first use, i.e. only for the stages that may be
    cached and what they depend on, not for every point."""

    stage: str
    key: str
    label: str
    fn: object
    args: tuple

    @property
    def cache_ident(self) -> str | None:
        try:
            return self._ident
        except AttributeError:
            self._ident = _identify(self.stage, self.key, self.fn, self.args)
            return self._ident


def _identify(stage, key, fn, args) -> str | None:
    try:
        return ic.digest(ic.canonical((key, fn, args, ic.environment_token())))
    except ic.Uncacheable:
        return None


#: Default number of points submitted at once (Dask config ``sweep.graph.window_points``): the
#: scheduler and the client hold the tasks of at most this many points (plus the shared stages
#: they need), whatever the size of the grid.
WINDOW_POINTS = 10_000


def window_points() -> int:
    """How many points :func:`build_graph` submits at first (and the runner keeps in flight)."""
    import dask  # noqa: PLC0415

    return max(1, int(dask.config.get("sweep.graph.window_points", WINDOW_POINTS)))


def build_graph(client, spec: Spec, todo: list[PointIndex],
                cache: ic.IntermediateCache | None = None,
                window: int | None = None) -> SweepGraph:
    """Submit the tasks needed for the first ``window`` grid points of ``todo`` (default
    :func:`window_points`; the rest wait for :meth:`SweepGraph.submit_more`), and nothing else;
    with ``cache``, load the stages it holds and persist the others as they finish.

    A shared stage is submitted once, with the first point that needs it, and the graph keeps
    its future only while a waiting point still needs it (the scheduler keeps it while a
    submitted task does)."""
    from distributed import Future  # noqa: PLC0415

    g = SweepGraph(window=window or window_points())
    nodes: dict = {}
    # the fingerprint is part of every task key (task_key); computed once, the build is linear
    fingerprint = spec.fingerprint()

    def submit(stage, coords, fn, *args):
        label = "-".join(str(c) for c in coords)
        key = f"{stage}-{label}-{tokenize(fingerprint, *coords)}"
        if key not in nodes:
            nodes[key] = _Node(stage, key, label, fn, args)
        return nodes[key]

    points, parents, attr_sources = spec.definition.build(submit, spec, todo)
    nodes.clear()  # the points hold what they need; the rest is garbage once they are written
    futures: dict = {}

    def children(obj, out: list):
        if isinstance(obj, _Node):
            out.append(obj)
        elif isinstance(obj, (tuple, list)):
            for v in obj:
                children(v, out)
        elif isinstance(obj, dict):
            for v in obj.values():
                children(v, out)
        return out

    # every node a point needs, transitively, and how many waiting points need each node
    closure: dict = {}

    def needs(node: _Node) -> frozenset:
        got = closure.get(node.key)
        if got is None:
            direct = children(node.args, [])
            got = frozenset().union(*(needs(c) for c in direct), (c.key for c in direct))
            closure[node.key] = got
        return got

    needed_by: dict = {}
    for node in points.values():
        for key in needs(node):
            needed_by[key] = needed_by.get(key, 0) + 1

    def resolve(obj):
        if isinstance(obj, _Node):
            return materialise(obj)
        if isinstance(obj, tuple):
            return tuple(resolve(v) for v in obj)
        if isinstance(obj, list):
            return [resolve(v) for v in obj]
        if isinstance(obj, dict):
            return {k: resolve(v) for k, v in obj.items()}
        return obj

    # tasks are collected here and sent to the scheduler in one graph per window (one message
    # and one graph update for thousands of tasks, instead of one per task); until then a task
    # is known by a TaskRef, and a task submitted earlier by its Future (also a TaskRef)
    batch: dict = {}

    def task(key, fn, *args):
        batch[key] = Task(key, fn, *(parse_input(a) for a in args))
        return TaskRef(key)

    def materialise(node: _Node):
        if node.key in futures:
            return futures[node.key]
        cacheable = cache is not None and node.stage not in ic.UNCACHED_STAGES
        ident = node.cache_ident if cacheable else None
        if ident is not None:
            name = f"{node.stage}-{node.label}-{ident[:32]}"
            path = cache.entry_path(fingerprint, node.stage, name)
            if cache.lookup(path):
                ref = task(CACHED_PREFIX + name, ic.load, str(path), name)
                g.cached[node.stage] = g.cached.get(node.stage, 0) + 1
            else:
                ref = task(name, ic.compute_and_store, str(path), name, cache.worker_args(),
                           node.fn, *resolve(node.args))
                g.stages[node.stage] = g.stages.get(node.stage, 0) + 1
                g.entries[name] = path
        else:
            ref = task(node.key, node.fn, *resolve(node.args))
            g.stages[node.stage] = g.stages.get(node.stage, 0) + 1
        futures[node.key] = ref
        return ref

    def send() -> dict:
        """Submit the collected tasks as one graph; their futures by task key."""
        if not batch:
            return {}
        keys = list(batch)
        expr = LLGExpr(dict(batch), _determ_token=uuid.uuid4().hex)  # unique: no hashing
        batch.clear()
        sent = dict(zip(keys, client.get(expr, keys, sync=False, retries=0)))
        for k, ref in list(futures.items()):  # the shared stages still needed: their futures
            if not isinstance(ref, Future) and ref.key in sent:
                futures[k] = sent[ref.key]
        return sent

    def real(ref, sent):
        return ref if isinstance(ref, Future) else sent[ref.key]

    def submit_points(pts) -> dict:
        staged = []
        for pt in pts:
            node = points.pop(pt)
            ref = materialise(node)
            # only the futures submitted: a stage skipped because its dependant was loaded has
            # none
            deps = tuple(futures[n.key] for n in parents.pop(pt, ()) if n.key in futures)
            staged.append((pt, ref, deps))
            futures.pop(node.key, None)
            for key in closure.pop(node.key):
                needed_by[key] -= 1
                if needed_by[key] == 0:  # no waiting point needs it: the scheduler has it
                    futures.pop(key, None)
                    closure.pop(key, None)
        sent = send()
        out = {}
        for pt, ref, deps in staged:
            g.parents[pt] = tuple(real(d, sent) for d in deps)
            out[pt] = g.points[pt] = real(ref, sent)
        return out

    attr_refs = {name: (materialise(node), getter) for name, (node, getter) in attr_sources.items()}
    sent = send()
    g.attr_sources = {name: (real(ref, sent), getter) for name, (ref, getter) in attr_refs.items()}
    g._submit_points = submit_points
    g.waiting = deque(pt for pt in todo if pt in points)
    g.submit_more(g.window)
    return g
