"""The task graph of a sweep: every intermediate computed once and shared by its dependants.

==========================  ===========================================  =====================
task                        one per                                      feeds
==========================  ===========================================  =====================
``lattice``                 sweep (r0, bulk energy, force constants)     everything
``simulation``              (defect, n_defects, L)                       points
``training``                (defect, L)                                  design rows, fits
``design``                  (defect, L, basis_size)                      fits
``fit``                     (defect, L, basis_size, weights, observ.)    points
``point``                   grid point (fit × simulation cell)           the store
==========================  ===========================================  =====================

Futures are submitted with deterministic keys (the stage name and its coordinates), and
futures, not values, are passed to dependants so that data moves worker to worker.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from dask.base import tokenize

from . import tasks
from .seeds import derive_seed
from .spec import DIMENSIONS, Spec
from .store import PointIndex

__all__ = ["SweepGraph", "build_graph", "STAGES"]

STAGES = ("lattice", "simulation", "training", "design", "fit", "point")


@dataclass
class SweepGraph:
    """Submitted futures: ``points`` maps each grid point to its future; ``stages`` counts tasks
    per stage; ``parents`` lets the runner release intermediates once no point needs them."""

    points: dict = field(default_factory=dict)
    stages: dict = field(default_factory=dict)
    parents: dict = field(default_factory=dict)


def _key(stage: str, spec: Spec, *coords) -> str:
    label = "-".join(str(c) for c in coords)
    return f"{stage}-{label}-{tokenize(spec.fingerprint(), *coords)}"


def training_seeds(spec: Spec, defect: str, L: int) -> tuple[int, int]:
    """Seeds of the training and test sets of one training cell (see store.SEEDS_POLICY)."""
    base = (spec.params["training"]["seed"], spec.experiment, defect, int(L))
    return derive_seed(*base, "train"), derive_seed(*base, "test")


def build_graph(client, spec: Spec, todo: list[PointIndex]) -> SweepGraph:
    """Submit the tasks needed for the grid points ``todo`` (and nothing else)."""
    p = spec.params
    ref = p["reference"]["model"]
    g = SweepGraph()
    cache: dict = {}

    def submit(stage, coords, fn, *args):
        key = _key(stage, spec, *coords)
        if key not in cache:
            cache[key] = client.submit(fn, *args, key=key, pure=False, retries=0)
            g.stages[stage] = g.stages.get(stage, 0) + 1
        return cache[key]

    lat = submit("lattice", (ref,), tasks.lattice, ref)
    for point in todo:
        c = point.labels(spec)
        defect, n_d, L, B = c["defect"], c["n_defects"], c["L"], c["basis_size"]
        w, obs = c["weights"], c["observations"]
        sim = submit("simulation", (defect, n_d, L), tasks.simulation, ref, lat,
                     p["simulation"]["size"], [defect] * n_d, L, p["relax"])
        seeds = training_seeds(spec, defect, L)
        data = submit("training", (defect, L), tasks.training, ref, lat, L, defect,
                      p["training"], *seeds, p["relax"])
        rows = submit("design", (defect, L, B), tasks.design, p["ace"], B, data)
        fitted = submit("fit", (defect, L, B, w, obs), tasks.fit, p["ace"], B, rows, data, lat,
                        spec.weights[w], p["fit"])
        fut = submit("point", tuple(c[d] for d in DIMENSIONS), tasks.point, p["ace"], B, fitted,
                     sim, lat, p["relax"])
        g.points[point] = fut
        g.parents[point] = (fitted, rows, data, sim)
    g.parents["lattice"] = lat
    return g
