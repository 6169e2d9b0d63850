"""P2 §4.3: a dislocation loop in bcc W, fitted on the union of a screw and an edge training cell.

Kernels in :mod:`kernels.dislocation_loop` (the loop, the edge cell, the union fit) and
:mod:`kernels.dislocations` (lattice, training sets, design rows, prediction); the W screw
training cell is that of ``p2-dislocations-w-screw`` (:data:`kernels.dislocations.W_SCREW`).

==========================  ==============================================  ==================
task                        one per                                         feeds
==========================  ==============================================  ==================
``lattice``                 sweep (a0, bulk energy, ∂²W_cb, ∂³W_cb)         everything
``simulation``              L (the loop of diameter L_D = L in the N cell)  points
``training``                (component, L, rattle_A)                        design rows, fits
``design``                  (component, L, rattle_A, basis_size)            fits
``fit``                     (L, rattle_A, basis_size, weights, observ.)     points
``point``                   grid point                                      the store
==========================  ==============================================  ==================

The grid's ``defect`` is ``"loop"``, ``n_defects`` 1, ``L`` both the training cells' size and
the loop's diameter L_D (a0; P2: "L = L_D in practice"), ``observations`` one of ``E+F``,
``E+F+CLE``, ``E+F+CLE+NL`` (as ``p2-dislocations-w-screw``), ``rattle_A`` the rattle amplitude
α (Å). The components of the union are :data:`COMPONENTS`, ``screw`` and ``edge``.

Spec fields beyond the W screw experiment's:

- ``[simulation] loop``: ``"glide"`` (default: the reading of P2's text, a ½[111](1-10) shear
  loop with screw and edge segments) or ``"prismatic"`` (a ½[111](111) vacancy loop). The glide
  loop annihilates in the reference relaxation at every size measured (kernels docstring), so
  the presets use ``"prismatic"``; a named deviation.
- ``[simulation] loop_images``: in-plane image shells M of the loop's periodic field (default 2).
- ``[training] <component>_n_train``, ``<component>_n_test``: per-component set sizes (0 or
  absent: ``n_train``, ``n_test``), as in ``p1-point-defects-union-2d``.
- ``[weights.NAME] <component>_energy``, ``<component>_forces``: per-component W_E, W_F (absent:
  ``energy``, ``forces``); ``elastic`` and ``nonlinear_elastic`` (W_V1, W_V2) weigh the one set
  of elastic rows of the perfect crystal.

Stored beyond the common variables: ``rmse_virial``, ``elastic_constant_error`` (as the P2
experiments), each component's test RMSEs, and the loop's size (``loop_diameter_*``, Å:
:func:`kernels.dislocation_loop.slipped_diameter_A` of the predictor, of ȳ and of ȳ_ML).
"""

from __future__ import annotations

import math

import numpy as np

from kernels import dislocation_loop as dl
from kernels import dislocations as dk
from kernels.ace import ACEModel
from kernels.force_constants import force_constant_error, force_constants

from .. import tasks
from ..experiment import Experiment, register
from ..spec import NONNEG_INT, POS_INT, STR, SpecError, check_ace_table
from . import p2_dislocations as p2

__all__ = ["EXPERIMENT", "COMPONENTS", "SYSTEMS", "component_weights", "component_sizes",
           "simulation", "fit_union", "point", "build"]

#: The components of the union training set, in the order of the fit's rows.
#: Training domain of both loop components (:data:`kernels.dislocations.TRAINING_DOMAINS`):
#: cells of side L; P2 §3.1's one-dipole domain of side 2L is not built for the W edge.
LOOP_TRAINING_DOMAIN = "checkerboard"

COMPONENTS = ("screw", "edge")
#: Each component's P2 system (cell builder, reference models, seed label).
SYSTEMS = {"screw": p2.W_SCREW,
           "edge": p2.P2System(dl.W_EDGE, p2.REFERENCE_MODELS, "edge")}

FIXED = {**p2.FIXED,
         "simulation": {**p2.FIXED["simulation"], "loop": STR, "loop_images": POS_INT},
         "training": {**p2.FIXED["training"],
                      **{f"{k}_{q}": NONNEG_INT for k in COMPONENTS for q in ("n_train",
                                                                              "n_test")}}}
OPTIONAL = {**p2.OPTIONAL, "simulation.loop": "glide", "simulation.loop_images": dl.LOOP_IMAGES,
            **{f"training.{k}_{q}": 0 for k in COMPONENTS for q in ("n_train", "n_test")}}
ALLOWED = {**p2.ALLOWED, "defect": ("loop",), "n_defects": (1,),
           "simulation.loop": dl.LOOP_KINDS}

VARIABLES = {**p2.VARIABLES, **p2.ENERGY_SPLIT_VARIABLES,
             "loop_diameter_predictor": ("f8", "Å", "slipped diameter of the loop in the "
                                         "solid-angle predictor", np.nan),
             "loop_diameter_reference": ("f8", "Å", "slipped diameter of the loop in ȳ "
                                         "(reference relaxation)", np.nan),
             "loop_diameter_fitted": ("f8", "Å", "slipped diameter of the loop in ȳ_ML "
                                      "(fitted-model relaxation)", np.nan)}
for _k in COMPONENTS:
    VARIABLES[f"rmse_energy_{_k}"] = ("f8", "meV/atom",
                                      f"test RMSE of the energy per atom, {_k} training cell",
                                      math.nan)
    VARIABLES[f"rmse_forces_{_k}"] = ("f8", "eV/Å",
                                      f"test RMSE of the force components, {_k} training cell",
                                      math.nan)
    VARIABLES[f"rmse_virial_{_k}"] = ("f8", "eV",
                                      f"test RMSE of the virial components, {_k} training cell",
                                      math.nan)


def component_weights(weights: dict, kind: str) -> tuple[float, float]:
    """(W_E, W_F) of a component in a weight set: its override, else the default."""
    e, f = weights.get(f"{kind}_energy", math.nan), weights.get(f"{kind}_forces", math.nan)
    return (weights["energy"] if math.isnan(e) else e, weights["forces"] if math.isnan(f) else f)


def component_sizes(training: dict, kind: str) -> dict:
    """The ``[training]`` table of one component: its n_train and n_test (override or default)."""
    out = {"n_train": training["n_train"], "n_test": training["n_test"]}
    for key in ("n_train", "n_test"):
        if training.get(f"{kind}_{key}", 0):
            out[key] = training[f"{kind}_{key}"]
    return out


def simulation(reference: str, lat: dk.LatticeReference, size: int, diameter: int, kind: str,
               images: int, relax: dict) -> dl.LoopSimulation:
    """The loop cell (side ``size`` a0, loop diameter ``diameter`` a0) relaxed with the
    reference."""
    return dl.simulation_reference(p2.REFERENCE_MODELS[reference](), lat.a0_A, size, diameter,
                                   kind, tasks.relax_options(relax), lat, images)


def fit_union(ace: dict, basis_size: int, components: list, lat: dk.LatticeReference,
              weights: dict, observations: str, fit_params: dict):
    """One fit on the union; ``components`` lists ``(name, rows, data, (W_E, W_F))``. Returns
    (UnionFitResult, summed rows build time in s, component names)."""
    w = dk.Weights(weights["energy"], weights["forces"], weights["elastic"],
                   weights["nonlinear_elastic"]).for_observations(observations)
    comps = [dl.LoopComponent(n, rows, data, float(we), float(wf))
             for n, rows, data, (we, wf) in components]
    fitted = dl.fit_union(p2.basis_for(ace, basis_size), comps, lat, w, fit_params["solver"],
                          fit_params["rtol"], **tasks.fit_conventions(fit_params))
    return fitted, sum(c.rows.time_s for c in comps), tuple(c.name for c in comps)


def point(reference: str, ace: dict, basis_size: int, fit_time_names, sim: dl.LoopSimulation,
          lat: dk.LatticeReference, relax: dict, geometry: dict | None = None) -> dict:
    """Relax the loop cell with one fitted model: every stored value of a grid point."""
    fitted, rows_time_s, names = fit_time_names
    basis = p2.basis_for(ace, basis_size)
    p, diameter_ml = dl.predict(basis, fitted.coeffs, sim, lat, tasks.relax_options(relax),
                                tasks.stencil_reading(geometry))
    x, c, s = dk.W_SCREW.perfect_cell(lat.a0_A)
    model = ACEModel(basis, fitted.coeffs)
    K_ref = force_constants(p2.REFERENCE_MODELS[reference](), x, c, s)
    K_ml = force_constants(model, x, c, s)
    values = {**tasks.point_values(fitted, p, rows_time_s, force_constant_error(K_ref, K_ml)),
              "rmse_virial": fitted.rmse_virial_eV,
              "elastic_constant_error": fitted.elastic_constant_error_percent,
              "loop_diameter_predictor": sim.predictor_diameter_A,
              "loop_diameter_reference": sim.relaxed_diameter_A,
              "loop_diameter_fitted": diameter_ml,
              **p2.energy_split_values(p)}
    for name, e, f, v in zip(names, fitted.rmse_energy_by_component_meV_per_atom,
                             fitted.rmse_forces_by_component_eV_per_A,
                             fitted.rmse_virial_by_component_eV):
        values[f"rmse_energy_{name}"] = e
        values[f"rmse_forces_{name}"] = f
        values[f"rmse_virial_{name}"] = v
    return values


def check(spec) -> None:
    """The loop (diameter L a0) fits in the simulation cell with one a0 between images; rattle
    amplitudes positive; the ACE table."""
    size = spec.params["simulation"]["size"]
    kind = spec.params["simulation"]["loop"]
    largest = dl.max_loop_diameter_a0(size, kind)
    for k, L in enumerate(spec.grid["L"]):
        if L > largest:
            raise SpecError(f"grid.L[{k}]", f"a {kind} loop of diameter L = {L} a0 does not fit "
                            f"in simulation.size = {size} a0 with one a0 between images (at "
                            f"most {largest:.2f} a0)")
    for k, a in enumerate(spec.grid["rattle_A"]):
        if not a > 0:
            raise SpecError(f"grid.rattle_A[{k}]", f"must be a positive number (Å), got {a}")
    check_ace_table(spec.params["ace"])


#: Atoms per unit cell of the loop frame (a√3/2 × a√2 × a√6, :func:`kernels.dislocation_loop.
#: bcc_loop_unit_cell`) and of the W screw frame (a√6 × a√2 × a√3/2).
LOOP_ATOMS_PER_UNIT_CELL = 6


def loop_cell_atoms(spec, kind: str, size: float) -> int:
    """Atoms of the ``"simulation"`` loop cell of side N a0, or of the larger of the two
    ``"training"`` configurations of size L (the screw's four-core cell, the edge's strip
    dipole, one unit cell thick), for the estimates of :mod:`sweep.cluster` (no cell is
    built). The loop cell is three-dimensional, ≈ 2N³ atoms, not the N² of the straight
    dislocations' cells; the atoms a prismatic loop removes (a disc one |b| thick) are not
    subtracted, so both counts are upper bounds."""
    from kernels.screw_quadrupole import cell_repeats  # noqa: PLC0415

    if kind == "simulation":
        return LOOP_ATOMS_PER_UNIT_CELL * math.prod(dl.loop_cell_repeats(size))
    return LOOP_ATOMS_PER_UNIT_CELL * max(math.prod(cell_repeats(size)),
                                          math.prod(dl.edge_cell_repeats(size)))


def build(submit, spec, todo):
    """Submit the stages of the grid points ``todo``; see the module docstring."""
    p = spec.params
    ref = p["reference"]["model"]
    sim_p = p["simulation"]
    points, parents = {}, {}
    lat = submit("lattice", (ref,), p2.lattice, ref)
    for pt in todo:
        c = pt.labels(spec)
        L, B, w, obs, a = c["L"], c["basis_size"], c["weights"], c["observations"], c["rattle_A"]
        sim = submit("simulation", (L,), simulation, ref, lat, sim_p["size"], L, sim_p["loop"],
                     sim_p["loop_images"], p["relax"])
        comps, deps = [], []
        for kind in COMPONENTS:
            system = SYSTEMS[kind]
            # the loop's training cells have side L (the screw's four-core cell, the edge's strip
            # dipole), not P2 §3.1's one-dipole cell of side 2L used by the straight dislocations
            sizes = {**component_sizes(p["training"], kind), "domain": LOOP_TRAINING_DOMAIN}
            data = submit("training", (kind, L, a, sizes["n_train"], sizes["n_test"]),
                          p2.training, ref, lat, L, a, sizes,
                          *p2.training_seeds(spec, L, a, kind), p["relax"], system)
            rows = submit("design", (kind, L, a, sizes["n_train"], sizes["n_test"], B),
                          p2.design, p["ace"], B, data, lat, system)
            comps.append((kind, rows, data, component_weights(spec.weights[w], kind)))
            deps += [rows, data]
        fitted = submit("fit", (L, a, B, w, obs), fit_union, p["ace"], B, comps, lat,
                        spec.weights[w], obs, p["fit"])
        points[pt] = submit("point", tuple(c[d] for d in spec.dims), point, ref, p["ace"], B,
                            fitted, sim, lat, p["relax"], p["geometry"])
        parents[pt] = (fitted, *deps, sim)
    return points, parents, {"a0_A": (lat, lambda lattice: float(lattice.a0_A))}


EXPERIMENT = register(Experiment(
    name="p2-dislocations-w-loop",
    description="a ½<111> dislocation loop in bcc W, Zhou EAM reference, one fit on a screw "
                "and an edge training cell, elastic observations (P2 §4.3)",
    fixed=FIXED, allowed=ALLOWED, build=build, check=check, spatial_dimension=3,
    optional=OPTIONAL,
    optional_weight_fields={**p2.EXPERIMENT.optional_weight_fields,
                            **{f"{k}_{q}": math.nan for k in COMPONENTS
                               for q in ("energy", "forces")}},
    weight_attrs={**p2.EXPERIMENT.weight_attrs,
                  **{f"{k}_{q}": (f"{q} weight of the {k} training cell (NaN: the default)", "1")
                     for k in COMPONENTS for q in ("energy", "forces")}},
    extra_dims=p2.EXPERIMENT.extra_dims, variables=VARIABLES, species=("W",),
    cell_atoms=loop_cell_atoms, force_components=3, cells_per_fit=lambda spec: len(COMPONENTS)))
