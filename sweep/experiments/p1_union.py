"""P1's point defects with a *union* training set: several defect cells, each with its own weights.

P1 §4.2.1 (interstitials–vacancies, Figs. 5–7, 11) fits one model on the union of an interstitial
training cell and a vacancy training cell (100 + 100 training, 25 + 25 test configurations,
interstitial W_E 100, W_F 10; vacancy W_E 10, W_F 1) and relaxes simulation cells holding one
interstitial with one (n_D = 2) or three (n_D = 4) vacancies at separation L_D = L.

The spec expresses any such union, not just this one:

- a ``grid.defect`` value is a ``+``-separated list of defect kinds, e.g.
  ``"interstitial+vacancy"``. The simulation cell of ``n_defects = n`` holds the first n kinds of
  the list on the P1 pattern, the last kind repeated to fill it (``interstitial+vacancy`` with
  n_D = 4: one interstitial and three vacancies). The training set is the union of one L × L
  training cell per distinct kind in the list (a plain ``"vacancy"`` is the one-cell set of
  ``p1-point-defects-2d``);
- ``[weights.NAME]``: ``energy`` and ``forces`` are the W_E and W_F of every component;
  ``<kind>_energy`` and ``<kind>_forces`` override them for the cells of that kind;
- ``[training]``: ``n_train`` and ``n_test`` are the set sizes of every component;
  ``<kind>_n_train`` and ``<kind>_n_test`` override them.

Stages (tasks in :mod:`sweep.tasks`): ``lattice`` once; ``simulation`` per (defect, n_D, L);
``training`` per (kind, L) — shared by every union that contains that kind; ``design`` per
(kind, L, basis_size); ``fit`` per (defect, L, basis_size, weights, observations), on the union;
``point`` per grid point. Stored beyond the common variables: each kind's test RMSEs
(``rmse_energy_<kind>``, ``rmse_forces_<kind>``; NaN when the union has no cell of that kind).
"""

from __future__ import annotations

import math

from kernels.defects import KINDS

from .. import tasks
from ..experiment import Experiment, register
from ..spec import FIT_OPTIONAL, NONNEG_INT, RELAX_OPTIONAL, SpecError
from .p1_point_defects import ALLOWED as P1_ALLOWED
from .p1_point_defects import FIXED as P1_FIXED
from .p1_point_defects import GEOMETRY_OPTIONAL
from .p1_point_defects import check as p1_check
from .p1_point_defects import training_seeds

__all__ = ["EXPERIMENT", "kinds_of", "components_of", "component_weights",
           "component_sizes", "build"]


def kinds_of(defect: str) -> list[str]:
    """The defect kinds listed in a ``grid.defect`` value (``"interstitial+vacancy"``)."""
    return defect.split("+")


def simulation_kinds(defect: str, n_defects: int) -> list[str]:
    """Kinds of the n_D defects of the simulation cell: the listed kinds, the last repeated."""
    k = kinds_of(defect)
    return (k + [k[-1]] * n_defects)[:n_defects]


def components_of(defect: str) -> list[str]:
    """The distinct kinds of a defect value, in order: one training cell each."""
    return list(dict.fromkeys(kinds_of(defect)))


def component_weights(weights: dict, kind: str) -> tuple[float, float]:
    """(W_E, W_F) of the cells of ``kind`` in a weight set: its override, else the default."""
    e, f = weights.get(f"{kind}_energy", math.nan), weights.get(f"{kind}_forces", math.nan)
    return (weights["energy"] if math.isnan(e) else e, weights["forces"] if math.isnan(f) else f)


def component_sizes(training: dict, kind: str) -> dict:
    """The ``[training]`` table of one component: its n_train, n_test and the shared rattle."""
    out = {"n_train": training["n_train"], "n_test": training["n_test"],
           "rattle_A": training["rattle_A"]}
    for key in ("n_train", "n_test"):
        if training.get(f"{kind}_{key}", 0):
            out[key] = training[f"{kind}_{key}"]
    return out


FIXED = {**P1_FIXED,
         "training": {**P1_FIXED["training"],
                      **{f"{k}_{q}": NONNEG_INT
                         for k in KINDS for q in ("n_train", "n_test")}}}
OPTIONAL = {**{f"training.{k}_{q}": 0 for k in KINDS for q in ("n_train", "n_test")},
            **FIT_OPTIONAL, **GEOMETRY_OPTIONAL, **RELAX_OPTIONAL}
#: As P1, except ``defect``: any "+"-list of kinds (checked in :func:`check`).
ALLOWED = {k: v for k, v in P1_ALLOWED.items() if k != "defect"}

VARIABLES = {}
for _k in KINDS:
    VARIABLES[f"rmse_energy_{_k}"] = ("float64", "meV/atom",
                                      f"test RMSE of the energy per atom, {_k} training cell",
                                      math.nan)
    VARIABLES[f"rmse_forces_{_k}"] = ("float64", "eV/Å",
                                      f"test RMSE of the force components, {_k} training cell",
                                      math.nan)


def check(spec) -> None:
    """Defect values are "+"-lists of known kinds; cells and ACE table consistent."""
    for i, defect in enumerate(spec.grid["defect"]):
        for k in kinds_of(defect):
            if k not in KINDS:
                raise SpecError(f"grid.defect[{i}]", f"{defect!r}: unknown kind {k!r}; a value is "
                                f"a '+'-separated list of {', '.join(map(repr, KINDS))}")
    p1_check(spec)  # defect separation and ACE table, as for P1's vacancies


def reference_of(params: dict):
    """What the tasks get as the reference: the model name, or the whole ``[reference]`` table
    when it carries options for the model's constructor."""
    ref = params["reference"]
    return ref["model"] if set(ref) == {"model"} else dict(ref)


def build_on(crystal: str):
    """The graph builder of this experiment on the lattice ``crystal`` (a name in
    :data:`sweep.tasks.CRYSTALS`)."""

    def build(submit, spec, todo):
        """Submit the stages of the grid points ``todo``; see the module docstring."""
        p = spec.params
        ref, name = reference_of(p), p["reference"]["model"]
        points, parents = {}, {}
        lat = submit("lattice", (name,), tasks.lattice, ref, crystal)
        for point in todo:
            c = point.labels(spec)
            defect, n_d, L, B = c["defect"], c["n_defects"], c["L"], c["basis_size"]
            w, obs = c["weights"], c["observations"]
            sim = submit("simulation", (defect, n_d, L), tasks.simulation, ref, lat,
                         p["simulation"]["size"], simulation_kinds(defect, n_d), L, p["relax"],
                         crystal)
            comps, deps = [], []
            for kind in components_of(defect):
                sizes = component_sizes(p["training"], kind)
                data = submit("training", (kind, L, sizes["n_train"], sizes["n_test"]),
                              tasks.training, ref, lat, L, kind, sizes,
                              *training_seeds(spec, kind, L), p["relax"], crystal)
                rows = submit("design", (kind, L, sizes["n_train"], sizes["n_test"], B),
                              tasks.design, p["ace"], B, data, crystal)
                comps.append((kind, rows, data, component_weights(spec.weights[w], kind)))
                deps += [rows, data]
            fitted = submit("fit", (defect, L, B, w, obs), tasks.fit_union, p["ace"], B, comps,
                            lat, p["fit"], crystal)
            points[point] = submit("point", tuple(c[d] for d in spec.dims), tasks.point_union,
                                   p["ace"], B, fitted, sim, lat, p["relax"], crystal,
                                   p["geometry"])
            parents[point] = (fitted, *deps, sim)
        return points, parents, {"r0_A": (lat, lambda lattice: float(lattice.r0_A))}

    return build


build = build_on("triangular")


EXPERIMENT = register(Experiment(
    name="p1-point-defects-union-2d",
    description="point defects in the 2D triangular lattice, one fit on a union of defect "
                "training cells with per-cell weights, FS W reference (P1 §4.2.1)",
    fixed=FIXED, allowed=ALLOWED, build=build, check=check, optional=OPTIONAL,
    optional_weight_fields={f"{k}_{q}": math.nan for k in KINDS for q in ("energy", "forces")},
    weight_attrs={"energy": ("default energy weight W_E (on energies as fit.energy_weighting says: total by default)", "1"),
                  "forces": ("default force weight W_F", "1"),
                  **{f"{k}_{q}": (f"{q} weight of the {k} training cell (NaN: the default)", "1")
                     for k in KINDS for q in ("energy", "forces")}},
    variables=VARIABLES, spatial_dimension=2, species=("W",),
    cells_per_fit=lambda spec: max(len(components_of(d)) for d in spec.grid["defect"])))
