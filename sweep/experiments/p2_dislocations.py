"""P2's dislocation experiment: ½⟨111⟩ screw quadrupoles in bcc W (P2 §4.2.1, Fig. 5).

Kernels in :mod:`kernels.dislocations`; the Dask adapters are the functions below (they take
only picklable arguments and build pyace objects on the worker).

==========================  ==============================================  ==================
task                        one per                                         feeds
==========================  ==============================================  ==================
``lattice``                 sweep (a0, bulk energy, ∂²W_cb, ∂³W_cb)         everything
``simulation``              sweep (the quadrupole of size N, L_D = N/2)     points
``training``                (L, rattle_A)                                   design rows, fits
``design``                  (L, rattle_A): every basis size at once         fits
``fit``                     (L, rattle_A, basis_size, weights, observ.)     points
``point``                   grid point                                      the store
==========================  ==============================================  ==================

The grid's ``defect`` is ``"screw"``, ``n_defects`` is 4 (the quadrupole), ``L`` the
training-cell size in a0, ``observations`` one of ``E+F``, ``E+F+CLE``, ``E+F+CLE+NL`` and the
extra dimension ``rattle_A`` the rattle amplitude α (Å; every atom moves by at most α, JuLIP's rattle!). Weight tables hold W_E, W_F, W_V1
(``elastic``) and W_V2 (``nonlinear_elastic``).

Besides the common variables every point stores :data:`EVIDENCE_VARIABLES`: the geometry error
split into its core part (bonds within 2|b| of a core) and far field, the far-field error the
anisotropic CLE field with the fitted C predicts, and the fitted and reference cubic elastic
constants (GPa) and Zener anisotropy — what ``sweep report``'s "Core vs far field" section shows
— and the energy error's two parts, the models' energy difference at the predictor and at their
relaxed cells (:data:`ENERGY_SPLIT_VARIABLES`, eV).

Other systems reuse these adapters and :func:`build` with a :class:`P2System` (the kernels'
:class:`kernels.dislocations.DislocationSystem`, its reference models and its defect label):
:mod:`sweep.experiments.p2_si_edge` is the edge in Si, :mod:`sweep.experiments.p2_nial_screw`
the a[001] screw in B2 NiAl. The default everywhere is :data:`W_SCREW`, the behaviour above.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kernels import dislocations as dk
from kernels.ace import ACEBasis, ACEModel
from kernels.eam import zhou2001_tungsten
from kernels.force_constants import force_constant_error, force_constants

from .. import tasks
from ..experiment import Experiment, ExtraDimension, register
from ..seeds import derive_seed
from ..spec import (DOMAIN_ALLOWED, DOMAIN_OPTIONAL, FIT_ALLOWED, FIT_OPTIONAL, RELAX_ALLOWED,
                    RELAX_OPTIONAL, STR, SpecError,
                    check_ace_table)
from .p1_point_defects import (ALLOWED as P1_ALLOWED, FIXED as P1_FIXED, GEOMETRY_OPTIONAL,
                               RESOURCES, RESOURCES_OPTIONAL)

__all__ = ["EXPERIMENT", "REFERENCE_MODELS", "VARIABLES", "EVIDENCE_VARIABLES",
           "ENERGY_SPLIT_VARIABLES", "lattice", "simulation", "training", "design",
           "design_streamed", "fit", "point", "evidence_values", "energy_split_values", "build",
           "P2System", "W_SCREW"]

#: Reference models by spec name → constructor.
REFERENCE_MODELS = {"eam-w-zhou2001": zhou2001_tungsten}

#: P1's tables, except that the rattle amplitude is a grid dimension (``rattle_A``) and the
#: training table has the optional ``domain`` (:data:`sweep.spec.TRAINING_DOMAINS`); plus the
#: optional ``[resources]`` table of the streamed design stage.
FIXED = {**P1_FIXED, "training": {**{k: rule for k, rule in P1_FIXED["training"].items()
                                     if k != "rattle_A"}, "domain": STR}, **RESOURCES}

ALLOWED = {
    "defect": ("screw",),
    "n_defects": (4,),
    "observations": dk.OBSERVATION_SETS,
    "reference.model": tuple(REFERENCE_MODELS),
    "fit.solver": dk.SOLVERS,
    "relax.optimizer": ("lbfgs", "precon-lbfgs", "fire", "hessian-lbfgs"),
    "ace.radial_basis": P1_ALLOWED["ace.radial_basis"],
    **FIT_ALLOWED,
    "geometry.stencil": P1_ALLOWED["geometry.stencil"],
    **DOMAIN_ALLOWED,
    **RELAX_ALLOWED,
}
#: Optional fields: the loss conventions of :data:`sweep.spec.FIT_OPTIONAL`, the stencil, the
#: training domain (``"dipole"``, P2 §3.1) and the design stage's chunk bound.
OPTIONAL = {**FIT_OPTIONAL, **GEOMETRY_OPTIONAL, **DOMAIN_OPTIONAL, **RESOURCES_OPTIONAL,
            **RELAX_OPTIONAL}

VARIABLES = {
    "rmse_virial": ("f8", "eV", "test-set RMSE of the virial components (eV per cell)", np.nan),
    "elastic_constant_error": ("f8", "%", "relative (Frobenius) error of the 6×6 elastic "
                               "constants ∂²W_cb of the perfect crystal", np.nan),
}

_CORE = f"{dk.CORE_RADIUS_BURGERS:g} |b|"
#: The energy error's two parts (:class:`kernels.dislocations.DislocationPrediction`):
#: energy_error = |energy_relaxed_difference − energy_predictor_difference|.
ENERGY_SPLIT_VARIABLES = {
    "energy_predictor_difference": ("f8", "eV", "Ẽ(x̂) − E(x̂): fitted minus reference energy "
                                    "at the predictor x̂, the configuration P2 measures both "
                                    "models' energies from", np.nan),
    "energy_relaxed_difference": ("f8", "eV", "Ẽ(ũ) − E(ū): fitted minus reference energy, "
                                  "each at its own relaxed simulation cell", np.nan),
}
#: Where the geometry error sits and what linear elasticity with the fitted C predicts for the
#: far field (:class:`kernels.dislocations.DislocationPrediction`), and the cubic elastic
#: constants of the fitted model and of the reference (cube axes; for multilattices the
#: internally relaxed ones): the evidence behind a geometry error that does or does not stall
#: with L. Stores written before these existed lack them; ``sweep report`` then says so.
EVIDENCE_VARIABLES = {
    "geometry_error_core": ("f8", "Å", "geometry error ‖Dw‖ over the stencil bonds with a site "
                            f"within {_CORE} of a dislocation core of the simulation cell",
                            np.nan),
    "geometry_error_far": ("f8", "Å", "geometry error ‖Dw‖ over the other stencil bonds (far "
                           "field); core² + far² = geometry_error²", np.nan),
    "cle_far_field_error": ("f8", "Å", "far-field ‖Dw‖ of u_CLE(fitted C) − u_CLE(reference C), "
                            "the anisotropic CLE fields of the simulation cell's dislocations: "
                            "the far-field error linear elasticity predicts", np.nan),
    "geometry_error_far_line": ("f8", "Å", "far-field geometry error of the displacement "
                                "component along the dislocation line (z) alone", np.nan),
    "cle_far_field_error_line": ("f8", "Å", "cle_far_field_error of the component along the "
                                 "dislocation line (z) alone (antiplane for a screw)", np.nan),
    "elastic_c11": ("f8", "GPa", "C11 of the fitted model (cubic mean)", np.nan),
    "elastic_c12": ("f8", "GPa", "C12 of the fitted model (cubic mean)", np.nan),
    "elastic_c44": ("f8", "GPa", "C44 of the fitted model (cubic mean)", np.nan),
    "zener_anisotropy": ("f8", "1", "Zener anisotropy 2 C44 / (C11 − C12) of the fitted model",
                         np.nan),
    "reference_c11": ("f8", "GPa", "C11 of the reference model (cubic mean)", np.nan),
    "reference_c12": ("f8", "GPa", "C12 of the reference model (cubic mean)", np.nan),
    "reference_c44": ("f8", "GPa", "C44 of the reference model (cubic mean)", np.nan),
    "reference_zener_anisotropy": ("f8", "1", "Zener anisotropy 2 C44 / (C11 − C12) of the "
                                   "reference model", np.nan),
    **{
        "training_force_residual": ("f8", "eV/Å", "‖F_ML(ȳ_L) − F_ref(ȳ_L)‖ (ℓ² over the atoms "
                                    "of the relaxed training cell): P2's force matching "
                                    "condition ε_F (eq. 3.10) at y_L = ȳ_L, in the ℓ² norm",
                                    np.nan),
        "training_force_residual_core": ("f8", "eV/Å", "training_force_residual over the atoms "
                                         f"within {_CORE} of a core of the training cell",
                                         np.nan),
        "force_residual_core": ("f8", "eV/Å", "‖F_ML(ȳ)‖ over the simulation cell's atoms "
                                f"within {_CORE} of a core (the reference forces vanish at ȳ)",
                                np.nan),
        "force_residual_far": ("f8", "eV/Å", "‖F_ML(ȳ)‖ over the simulation cell's other atoms",
                               np.nan),
        "linear_response_error": ("f8", "Å", "‖D w‖ on the geometry error's stencil of "
                                  "w = H_ref⁻¹ F_ML(ȳ): the geometry error to first "
                                  "order in the fitted model's forces at ȳ", np.nan),
        "linear_response_error_core_forces": ("f8", "Å", "linear_response_error of the core "
                                              "atoms' residual forces alone", np.nan),
        "linear_response_error_far_forces": ("f8", "Å", "linear_response_error of the other "
                                             "atoms' residual forces alone", np.nan),
    },
    **ENERGY_SPLIT_VARIABLES,
}


@dataclass(frozen=True)
class P2System:
    """One dislocation system of P2 as the sweep sees it (picklable: shipped with each task).

    Attributes
    ----------
    kernel : kernels.dislocations.DislocationSystem
        Crystal, cells and stencil for the kernels' stages.
    models : dict
        Reference-model spec name → constructor.
    defect : str
        The grid's ``defect`` value, also part of the training seeds.
    """

    kernel: dk.DislocationSystem
    models: dict
    defect: str


#: The ½⟨111⟩ screw in W with the Zhou EAM: the default of every adapter below.
W_SCREW = P2System(dk.W_SCREW, REFERENCE_MODELS, "screw")


def basis_for(ace: dict, basis_size: int, system: P2System | None = None) -> ACEBasis:
    """The ACE basis of a spec's ``[ace]`` table at one requested size (functions per element)
    over the system's species (W by default)."""
    return tasks.basis_for(ace, basis_size, *(system or W_SCREW).kernel.species)


def lattice(reference: str, system: P2System = W_SCREW) -> dk.LatticeReference:
    """a0, bulk energy and Cauchy–Born derivatives of the reference."""
    return dk.lattice_reference(system.models[reference](), system.kernel)


def simulation(reference: str, lat: dk.LatticeReference, size: int, relax: dict,
               system: P2System = W_SCREW) -> dk.SimulationReference:
    """The reference relaxation of the quadrupole cell (shared by every fit)."""
    return dk.simulation_reference(system.models[reference](), lat.a0_A, size,
                                   tasks.relax_options(relax), system.kernel, lat)


def training(reference: str, lat: dk.LatticeReference, size: int, rattle_A: float, params: dict,
             seed_train: int, seed_test: int, relax: dict, system: P2System = W_SCREW
             ) -> dk.TrainingData:
    """Training and test sets of one training cell and rattle amplitude (Å)."""
    return dk.training_data(system.models[reference](), lat.a0_A, size, params["n_train"],
                            params["n_test"], rattle_A, seed_train, seed_test,
                            tasks.relax_options(relax), system.kernel, lat,
                            params.get("domain", DOMAIN_OPTIONAL["training.domain"]))


def design(ace: dict, basis_size: int, data: dk.TrainingData, lat: dk.LatticeReference,
           system: P2System = W_SCREW) -> dk.TrainingRows:
    """Design and elastic rows of one training set in one basis, whole (the loop's union fit)."""
    return dk.design_rows(basis_for(ace, basis_size, system), data, lat.a0_A,
                          system.kernel)


def design_streamed(ace: dict, basis_sizes: list[int], data: dk.TrainingData,
                    lat: dk.LatticeReference, system: P2System = W_SCREW,
                    max_chunk_MB: float | None = None) -> dk.TrainingFactors:
    """One streamed pass over a training set for every basis size of the grid
    (:func:`kernels.dislocations.design_factors`), holding at most ``max_chunk_MB`` MB of rows
    at once (None: :func:`sweep.tasks.design_chunk_MB`)."""
    sizes = sorted(set(int(b) for b in basis_sizes))
    bases = [basis_for(ace, b, system) for b in sizes]
    for b in bases[:-1]:  # only their function keys are needed: free their pyace objects
        b.function_keys()
        b.release()
    return dk.design_factors(bases, data, lat.a0_A, system.kernel,
                             tasks.design_chunk_MB(max_chunk_MB) * 1e6)


def fit(ace: dict, basis_size: int, rows: dk.TrainingRows | dk.TrainingFactors,
        data: dk.TrainingData,
        lat: dk.LatticeReference, weights: dict, observations: str, fit_params: dict,
        system: P2System = W_SCREW):
    """One weighted fit; returns (FitResult, rows build time in s)."""
    w = dk.Weights(weights["energy"], weights["forces"], weights["elastic"],
                   weights["nonlinear_elastic"]).for_observations(observations)
    return dk.fit(basis_for(ace, basis_size, system), rows, data, lat, w,
                  fit_params["solver"], fit_params["rtol"], system.kernel,
                  **tasks.fit_conventions(fit_params)), rows.time_s


def point(reference: str, ace: dict, basis_size: int, fit_and_time, sim: dk.SimulationReference,
          lat: dk.LatticeReference, relax: dict, system: P2System = W_SCREW,
          geometry: dict | None = None, data: dk.TrainingData | None = None) -> dict:
    """Relax the quadrupole with one fitted model: every stored value of a grid point.
    ``geometry`` is the spec's ``[geometry]`` table (the geometry error's stencil); ``data``
    the fit's training set, for the force residual at ȳ_L (None: NaN)."""
    fitted, rows_time_s = fit_and_time
    basis = basis_for(ace, basis_size, system)
    C_ml = getattr(fitted, "elastic_eV_per_A3", None)
    p = dk.predict(basis, fitted.coeffs, sim, lat, tasks.relax_options(relax), system.kernel,
                   tasks.stencil_reading(geometry), elastic_eV_per_A3=C_ml)
    x, c, s = system.kernel.perfect_cell(lat.a0_A)
    ref_model = system.models[reference]()
    K_ref = force_constants(ref_model, x, c, s)
    ml = ACEModel(basis, fitted.coeffs)
    K_ml = force_constants(ml, x, c, s)
    residual = (dk.training_force_residual(ml, ref_model, data) if data is not None
                else (np.nan, np.nan))
    return {**tasks.point_values(fitted, p, rows_time_s, force_constant_error(K_ref, K_ml)),
            "rmse_virial": fitted.rmse_virial_eV,
            "elastic_constant_error": fitted.elastic_constant_error_percent,
            # stored only where declared (P2-Si); equal to the above for W and NiAl
            "clamped_elastic_constant_error": fitted.clamped_elastic_constant_error_percent,
            **evidence_values(p, C_ml, lat),
            "training_force_residual": residual[0], "training_force_residual_core": residual[1]}


def evidence_values(p: dk.DislocationPrediction, C_ml, lat: dk.LatticeReference) -> dict:
    """The :data:`EVIDENCE_VARIABLES` of one point: the core/far split and CLE prediction of
    the prediction ``p`` (Å) and the cubic constants (GPa) of the fitted C ``C_ml`` (eV/Å³,
    None: NaN) and of the reference."""
    fitted = dk.cubic_constants_and_anisotropy(C_ml) if C_ml is not None else (np.nan,) * 4
    ref = dk.cubic_constants_and_anisotropy(dk.reference_elastic_constants(lat))
    names = ("c11", "c12", "c44")
    return {"geometry_error_core": p.geometry_error_core_A,
            "geometry_error_far": p.geometry_error_far_A,
            "cle_far_field_error": p.cle_far_field_error_A,
            "geometry_error_far_line": p.geometry_error_far_line_A,
            "cle_far_field_error_line": p.cle_far_field_error_line_A,
            **{f"elastic_{k}": v for k, v in zip(names, fitted)},
            "zener_anisotropy": fitted[3],
            **{f"reference_{k}": v for k, v in zip(names, ref)},
            "reference_zener_anisotropy": ref[3],
            "force_residual_core": p.force_residual_core_eV_per_A,
            "force_residual_far": p.force_residual_far_eV_per_A,
            "linear_response_error": p.linear_response_error_A,
            "linear_response_error_core_forces": p.linear_response_error_core_forces_A,
            "linear_response_error_far_forces": p.linear_response_error_far_forces_A,
            **energy_split_values(p)}


def energy_split_values(p: dk.DislocationPrediction) -> dict:
    """The :data:`ENERGY_SPLIT_VARIABLES` of one prediction (eV)."""
    return {"energy_predictor_difference": p.energy_predictor_difference_eV,
            "energy_relaxed_difference": p.energy_relaxed_difference_eV}


#: Atoms per unit cell (a√6 × a√2 × a√3/2, volume 3a³) of the W screw cells
#: (:func:`kernels.screw_quadrupole.cell_repeats`).
W_SCREW_ATOMS_PER_UNIT_CELL = 6


def w_screw_cell_atoms(spec, kind: str, size: float) -> int:
    """Atoms of the W screw's ``"simulation"`` quadrupole of size N, or of one ``"training"``
    configuration of size L (the dipole domain has side 2L, the checkerboard side L), for the
    cost and memory estimates of :mod:`sweep.cluster` (no cell is built)."""
    from kernels.dipole_cells import training_side_a  # noqa: PLC0415
    from kernels.screw_quadrupole import cell_repeats  # noqa: PLC0415

    side = float(size)
    if kind == "training" and spec.params["training"].get(
            "domain", DOMAIN_OPTIONAL["training.domain"]) == "dipole":
        side = training_side_a(size)
    nx, ny = cell_repeats(side)
    return W_SCREW_ATOMS_PER_UNIT_CELL * nx * ny


def training_seeds(spec, L: int, rattle_A: float, defect: str = "screw") -> tuple[int, int]:
    """Seeds of the training and test sets of one training cell and amplitude."""
    base = (spec.params["training"]["seed"], spec.experiment, defect, int(L), float(rattle_A))
    return derive_seed(*base, "train"), derive_seed(*base, "test")


def separation_a(size: float) -> float:
    """L_D (a0), the minimum core separation of the simulation cell of side ≈ ``size`` a0: its
    quadrupole's cores are size/2 apart (nominal, as the cell sizes are)."""
    return 0.5 * float(size)


def check(spec, system: P2System | None = None) -> None:
    """L ≤ L_D (P2 Theorem 3.1); rattle amplitudes positive; ACE table.

    The training cores' separation is L in the ``"dipole"`` domain (P2's) and L/2 in the
    ``"checkerboard"`` one; that separation must not exceed L_D. A dipole smaller than the
    system's ``dipole_min_L`` (one that annihilates when relaxed) is refused too."""
    min_L = (system or W_SCREW).kernel.dipole_min_L
    size = spec.params["simulation"]["size"]
    L_D = separation_a(size)
    checkerboard = spec.params["training"].get("domain") == "checkerboard"
    for k, L in enumerate(spec.grid["L"]):
        if checkerboard and L / 2 > L_D:
            raise SpecError(f"grid.L[{k}]", f"L = {L} a0 (checkerboard, cores L/2 apart) "
                            f"exceeds 2 L_D = {size} a0 = simulation.size")
        if not checkerboard and L < min_L:
            raise SpecError(f"grid.L[{k}]", f"L = {L} a0 is below {min_L:g} a0, the smallest "
                            f"dipole training cell of this system that keeps its cores when "
                            f"relaxed (smaller ones annihilate); use L >= {min_L:g} or "
                            f'training.domain = "checkerboard"')
        if not checkerboard and L > L_D:
            raise SpecError(f"grid.L[{k}]", f"L = {L} a0 exceeds L_D = {L_D:g} a0, the core "
                            f"separation of the simulation cell (simulation.size / 2 = "
                            f"{size} / 2): P2 Theorem 3.1 needs L <= L_D")
    for k, a in enumerate(spec.grid["rattle_A"]):
        if not a > 0:
            raise SpecError(f"grid.rattle_A[{k}]", f"must be a positive number (Å), got {a}")
    check_ace_table(spec.params["ace"])


def build(submit, spec, todo, system: P2System = W_SCREW):
    """Submit the stages of the grid points ``todo``; see the module docstring. Other systems:
    ``functools.partial(build, system=...)``."""
    p = spec.params
    ref = p["reference"]["model"]
    points, parents = {}, {}
    lat = submit("lattice", (ref,), lattice, ref, system)
    sim = submit("simulation", (ref,), simulation, ref, lat, p["simulation"]["size"], p["relax"],
                 system)
    for pt in todo:
        c = pt.labels(spec)
        L, B, w, obs, a = c["L"], c["basis_size"], c["weights"], c["observations"], c["rattle_A"]
        data = submit("training", (L, a), training, ref, lat, L, a, p["training"],
                      *training_seeds(spec, L, a, system.defect), p["relax"], system)
        rows = submit("design", (L, a), design_streamed, p["ace"], spec.grid["basis_size"],
                      data, lat, system, p["resources"]["max_design_chunk_MB"])
        fitted = submit("fit", (L, a, B, w, obs), fit, p["ace"], B, rows, data, lat,
                        spec.weights[w], obs, p["fit"], system)
        points[pt] = submit("point", tuple(c[d] for d in spec.dims), point, ref, p["ace"], B,
                            fitted, sim, lat, p["relax"], system, p["geometry"], data)
        parents[pt] = (fitted, rows, data, sim)
    return points, parents, {"a0_A": (lat, lambda lattice: float(lattice.a0_A))}


EXPERIMENT = register(Experiment(
    name="p2-dislocations-w-screw",
    description="½<111> screw quadrupole in bcc W, Zhou EAM reference, elastic observations "
                "(P2 §4.2.1)",
    fixed=FIXED, allowed=ALLOWED, build=build, check=check, spatial_dimension=2,
    optional=OPTIONAL, optional_weight_fields={"elastic": 0.0, "nonlinear_elastic": 0.0},
    species=("W",), slice_design=True, cell_atoms=w_screw_cell_atoms, force_components=3,
    weight_attrs={"energy": ("energy weight W_E (on energies as fit.energy_weighting says: total by default)", "1"),
                  "forces": ("force weight W_F", "1"),
                  "elastic": ("linear-elastic weight W_V1 (on ∂²W_cb per atom, eV; P2 eq. A.6)",
                              "1"),
                  "nonlinear_elastic": ("nonlinear-elastic weight W_V2 (on ∂³W_cb per atom, eV; "
                                        "P2 eq. A.6)", "1")},
    extra_dims=(ExtraDimension("rattle_A", float, {"long_name": "rattle amplitude α (largest displacement, JuLIP rattle!)",
                                                   "units": "Å"}),),
    variables={**VARIABLES, **EVIDENCE_VARIABLES}))
