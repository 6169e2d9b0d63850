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

from dataclasses import dataclass, field

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
    """Submitted futures: ``points`` maps each grid point to its future; ``stages`` counts the
    tasks that compute, per stage; ``cached`` counts the stages loaded from the intermediate
    cache; ``parents`` lets the runner release intermediates once no point needs them;
    ``attr_sources`` maps Dataset attributes to ``(future, getter)`` recorded after the run;
    ``entries`` maps the Dask key of every cacheable computing task to its cache entry's path."""

    points: dict = field(default_factory=dict)
    stages: dict = field(default_factory=dict)
    cached: dict = field(default_factory=dict)
    parents: dict = field(default_factory=dict)
    attr_sources: dict = field(default_factory=dict)
    entries: dict = field(default_factory=dict)


def task_key(stage: str, spec: Spec, *coords) -> str:
    """Deterministic key of one stage at some coordinates: equal inputs, equal keys."""
    label = "-".join(str(c) for c in coords)
    return f"{stage}-{label}-{tokenize(spec.fingerprint(), *coords)}"


@dataclass(eq=False)
class _Node:
    """One stage at some coordinates, not yet submitted. ``cache_ident`` digests everything
    its value depends on (None: something has no canonical form, see
    :func:`sweep.cache.canonical`)."""

    stage: str
    key: str
    label: str
    fn: object
    args: tuple
    cache_ident: str | None


def _identify(stage, key, fn, args) -> str | None:
    try:
        return ic.digest(ic.canonical((key, fn, args, ic.environment_token())))
    except ic.Uncacheable:
        return None


def build_graph(client, spec: Spec, todo: list[PointIndex],
                cache: ic.IntermediateCache | None = None) -> SweepGraph:
    """Submit the tasks needed for the grid points ``todo`` (and nothing else); with ``cache``,
    load the stages it holds and persist the others as they finish."""
    g = SweepGraph()
    nodes: dict = {}

    def submit(stage, coords, fn, *args):
        key = task_key(stage, spec, *coords)
        if key not in nodes:
            label = "-".join(str(c) for c in coords)
            nodes[key] = _Node(stage, key, label, fn, args, _identify(stage, key, fn, args))
        return nodes[key]

    points, parents, attr_sources = spec.definition.build(submit, spec, todo)
    fingerprint = spec.fingerprint()
    futures: dict = {}

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

    def materialise(node: _Node):
        if node.key in futures:
            return futures[node.key]
        cacheable = (cache is not None and node.cache_ident is not None
                     and node.stage not in ic.UNCACHED_STAGES)
        if cacheable:
            name = f"{node.stage}-{node.label}-{node.cache_ident[:32]}"
            path = cache.entry_path(fingerprint, node.stage, name)
            if cache.lookup(path):
                fut = client.submit(ic.load, str(path), name, key=CACHED_PREFIX + name,
                                    pure=False, retries=0)
                g.cached[node.stage] = g.cached.get(node.stage, 0) + 1
            else:
                fut = client.submit(ic.compute_and_store, str(path), name, cache.worker_args(),
                                    node.fn, *resolve(node.args), key=name, pure=False,
                                    retries=0)
                g.stages[node.stage] = g.stages.get(node.stage, 0) + 1
                g.entries[name] = path
        else:
            fut = client.submit(node.fn, *resolve(node.args), key=node.key, pure=False,
                                retries=0)
            g.stages[node.stage] = g.stages.get(node.stage, 0) + 1
        futures[node.key] = fut
        return fut

    g.points = {pt: materialise(node) for pt, node in points.items()}
    g.attr_sources = {name: (materialise(node), getter)
                      for name, (node, getter) in attr_sources.items()}
    # only the futures submitted: a stage skipped because its dependant was loaded has none
    g.parents = {pt: tuple(futures[n.key] for n in deps if n.key in futures)
                 for pt, deps in parents.items()}
    return g
