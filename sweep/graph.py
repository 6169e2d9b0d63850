"""The task graph of a sweep: every intermediate computed once and shared by its dependants.

Each experiment (:mod:`sweep.experiments`) says which stages a grid point needs; this module
gives them deterministic keys (the stage name, its coordinates, and the spec's fingerprint),
submits each (stage, coordinates) once, and counts tasks per stage. Futures, not values, are
passed to dependants so that data moves worker to worker; the stage tables of each experiment
are in its module's docstring (e.g. :mod:`sweep.experiments.p1_point_defects`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from dask.base import tokenize

from .experiments.p1_point_defects import training_seeds
from .spec import Spec
from .store import PointIndex

__all__ = ["SweepGraph", "build_graph", "training_seeds", "task_key"]


@dataclass
class SweepGraph:
    """Submitted futures: ``points`` maps each grid point to its future; ``stages`` counts tasks
    per stage; ``parents`` lets the runner release intermediates once no point needs them;
    ``attr_sources`` maps Dataset attributes to ``(future, getter)`` recorded after the run."""

    points: dict = field(default_factory=dict)
    stages: dict = field(default_factory=dict)
    parents: dict = field(default_factory=dict)
    attr_sources: dict = field(default_factory=dict)


def task_key(stage: str, spec: Spec, *coords) -> str:
    """Deterministic key of one stage at some coordinates: equal inputs, equal keys."""
    label = "-".join(str(c) for c in coords)
    return f"{stage}-{label}-{tokenize(spec.fingerprint(), *coords)}"


def build_graph(client, spec: Spec, todo: list[PointIndex]) -> SweepGraph:
    """Submit the tasks needed for the grid points ``todo`` (and nothing else)."""
    g = SweepGraph()
    cache: dict = {}

    def submit(stage, coords, fn, *args):
        key = task_key(stage, spec, *coords)
        if key not in cache:
            cache[key] = client.submit(fn, *args, key=key, pure=False, retries=0)
            g.stages[stage] = g.stages.get(stage, 0) + 1
        return cache[key]

    g.points, g.parents, g.attr_sources = spec.definition.build(submit, spec, todo)
    return g
