"""P1's point-defect experiment: vacancies in the 2D triangular lattice (P1 §4.1, Table 2).

Stages and what they share (tasks in :mod:`sweep.tasks`, kernels in
:mod:`kernels.point_defects`):

==========================  ===========================================  =====================
task                        one per                                      feeds
==========================  ===========================================  =====================
``lattice``                 sweep (r0, bulk energy, force constants)     everything
``simulation``              (defect, n_defects, L)                       points
``training``                (defect, L)                                  design, fits
``design``                  (defect, L): one pass, all basis sizes       fits
``fit``                     (defect, L, basis_size, weights, observ.)    points
``point``                   grid point (fit × simulation cell)           the store
==========================  ===========================================  =====================

The ``design`` stage builds the rows of the slice's largest basis once and keeps only the R
factors of its observation blocks; each ``fit`` solves its basis size, weight set and
observation set from them (:mod:`kernels.point_defect_slices`; same results as fitting each
basis's own rows).

The optional ``[resources]`` table bounds the memory of the design stage:
``max_design_chunk_MB`` (MB, positive) is the largest chunk of design rows held at once — the
rows are streamed into the R factors chunk by chunk (without it: the Dask config key
``sweep.design.max_chunk_MB``, default 256). It changes the values only by rounding, so, like
the rest of ``[resources]``, it is not part of the spec's fingerprint: a store can be resumed
or grown with another limit.

The optional ``[geometry]`` table chooses the stencil N(ℓ) of the geometry error:
``stencil`` is one of ``"voronoi"`` (default: P1 eq. 6.3 / P2 eq. A.2 as written, the Voronoi
neighbours of x₀ whose closed cells share any point), ``"voronoi-faces"`` (cells sharing a face
of positive measure) or ``"cutoff"`` (the pairs within the lattice's cutoff radius between the
first and second shells); see :mod:`kernels.errors`. It changes the stored geometry errors, so
it is part of the fingerprint. Every experiment of :mod:`sweep.experiments` takes the table.

Two options of this experiment only (both fingerprinted): ``[ace] basis_count`` reads the grid's
``basis_size`` as ``"functions"`` (default, the papers' reading: that many functions of the 3D
basis) or ``"planar-independent"`` (that many functions linearly independent on planar
configurations; :mod:`kernels.planar_basis`), and every point stores ``n_planar_independent``
beside the raw ``n_basis``; ``[fit] scale_columns`` (default true) scales the design columns to
unit norm before the truncated rank-revealing QR (:data:`FIT_SCALE_COLUMNS`: P1's code does not).
"""

from __future__ import annotations

from kernels.errors import STENCILS
from kernels.planar_basis import BASIS_COUNTS, DEFAULT_BASIS_COUNT

from .. import tasks
from ..experiment import Experiment, register
from ..seeds import derive_seed
from ..spec import (BOOL, FIT_ALLOWED, FIT_OPTIONAL, RELAX_ALLOWED, RELAX_OPTIONAL, NONNEG_INT, POS_FLOAT, POS_INT, STR,
                    INT_LIST, SpecError, check_ace_table)

__all__ = ["EXPERIMENT", "FIXED", "FIXED_2D", "OPTIONAL_2D", "VARIABLES_2D", "FIT_SCALE_COLUMNS",
           "point_2d", "RESOURCES", "RESOURCES_OPTIONAL", "OPTIONAL", "GEOMETRY_OPTIONAL",
           "training_seeds", "build"]

#: The fixed-parameter tables of a P1 spec (other experiments start from these).
FIXED = {
    "reference": {"model": STR},
    "simulation": {"size": POS_INT},
    "training": {"n_train": POS_INT, "n_test": POS_INT, "rattle_A": POS_FLOAT,
                 "seed": NONNEG_INT},
    "ace": {"cutoff_A": POS_FLOAT, "radial_basis": STR, "nradmax_by_orders": INT_LIST,
            "lmax_by_orders": INT_LIST},
    # energy_weighting, weight_form, bulk_energy_row: the loss conventions (sweep.spec.FIT_OPTIONAL)
    "fit": {"solver": STR, "rtol": POS_FLOAT, "energy_weighting": STR, "weight_form": STR,
            "bulk_energy_row": BOOL},
    "relax": {"fmax_eV_per_A": POS_FLOAT, "max_steps": POS_INT, "optimizer": STR,
              "reference_optimizer": STR, "reference_minimum": STR},
    "geometry": {"stencil": STR},
}

#: Fields only the planar experiment takes: how a requested basis size is counted
#: (:data:`kernels.planar_basis.BASIS_COUNTS`) and whether the design matrix's columns are scaled
#: to unit norm before the truncated rank-revealing QR.
FIXED_2D = {**FIXED, "ace": {**FIXED["ace"], "basis_count": STR},
            "fit": {**FIXED["fit"], "scale_columns": BOOL}}
#: ``fit.scale_columns`` when omitted: true, unit-norm columns (:func:`kernels.least_squares.
#: solve_rrqr`), so that the 1e-6 truncation measures near-collinearity, not pyace's
#: normalisation of its functions. P1's code does not scale: IPFitting.jl (commit 21617f5,
#: ``src/lsq.jl`` lines 451-458: the preconditioner P defaults to the identity; line 493:
#: ``pqrfact(Ψ, rtol=rrqr_tol)`` on the weighted rows as they are), on ACE1.jl's own
#: normalisation of the functions, which pyace's does not share.
FIT_SCALE_COLUMNS = True
#: Optional fields of the planar experiment beyond :data:`OPTIONAL`.
OPTIONAL_2D = {"ace.basis_count": DEFAULT_BASIS_COUNT, "fit.scale_columns": FIT_SCALE_COLUMNS}

#: The ``[geometry]`` table may be omitted: the papers' stencil (P1 eq. 6.3, P2 eq. A.2).
GEOMETRY_OPTIONAL = {"geometry": {}, "geometry.stencil": STENCILS[0]}

#: The optional ``[resources]`` table of the experiments whose design stage streams its rows.
RESOURCES = {"resources": {"max_design_chunk_MB": POS_FLOAT}}
RESOURCES_OPTIONAL = {"resources": {}, "resources.max_design_chunk_MB": None}
#: Optional fields of a P1 spec: the resources table and the loss conventions.
OPTIONAL = {**RESOURCES_OPTIONAL, **FIT_OPTIONAL, **GEOMETRY_OPTIONAL, **RELAX_OPTIONAL}

ALLOWED = {
    "defect": ("vacancy",),
    "n_defects": (1, 2, 3, 4),
    "observations": ("E+F",),
    "reference.model": tuple(tasks.REFERENCE_MODELS),
    "fit.solver": ("rrqr",),
    "relax.optimizer": ("lbfgs", "precon-lbfgs", "fire", "hessian-lbfgs"),
    "ace.radial_basis": ("SBessel", "ChebExpCos", "ChebPow", "ChebLinear"),
    **FIT_ALLOWED,
    "geometry.stencil": STENCILS,
    "ace.basis_count": BASIS_COUNTS,
    **RELAX_ALLOWED,
}


def training_seeds(spec, defect: str, L: int) -> tuple[int, int]:
    """Seeds of the training and test sets of one training cell (see store.SEEDS_POLICY)."""
    base = (spec.params["training"]["seed"], spec.experiment, defect, int(L))
    return derive_seed(*base, "train"), derive_seed(*base, "test")


def check(spec) -> None:
    """Defects must be nearer each other than their periodic images; ACE table consistent."""
    size = spec.params["simulation"]["size"]
    for k, L in enumerate(spec.grid["L"]):
        if 2 * L > size and max(spec.grid["n_defects"]) > 1:
            raise SpecError(f"grid.L[{k}]", f"L = L_D = {L} r0 needs simulation.size >= {2 * L} r0 "
                                            f"(got {size}) so that defects are nearer each other "
                                            "than their periodic images")
    check_ace_table(spec.params["ace"])


def build(submit, spec, todo):
    """Submit the stages of the grid points ``todo``; see the module docstring."""
    p = spec.params
    ref = p["reference"]["model"]
    points, parents = {}, {}
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
        sizes = sorted(set(spec.grid["basis_size"]))
        rows = submit("design", (defect, L), tasks.design_slice, p["ace"], sizes, data,
                      p["resources"]["max_design_chunk_MB"], p["fit"]["energy_weighting"])
        fitted = submit("fit", (defect, L, B, w, obs), tasks.fit_slice, p["ace"], sizes, B, rows,
                        lat, spec.weights[w], p["fit"], obs)
        points[point] = submit("point", tuple(c[d] for d in spec.dims), point_2d, p["ace"], B,
                               fitted, sim, lat, p["relax"], p["geometry"])
        parents[point] = (fitted, rows, data, sim)
    return points, parents, {"r0_A": (lat, lambda lattice: float(lattice.r0_A))}


#: Stored variables of the planar experiment beyond :data:`sweep.store.VARIABLES` (whose
#: ``n_basis`` is the raw number of 3D functions).
VARIABLES_2D = {"n_planar_independent": (
    "i8", "1", "number of the basis's functions linearly independent on planar configurations "
    "(kernels.planar_basis; grid basis_size counts these under ace.basis_count = "
    "'planar-independent', the functions themselves under 'functions')", -1)}


def point_2d(ace: dict, basis_size: int, fit_and_time, sim, lat, relax: dict,
             geometry: dict | None) -> dict:
    """:func:`sweep.tasks.point` on the triangular lattice, plus the basis's planar-independent
    count (:data:`VARIABLES_2D`)."""
    values = tasks.point(ace, basis_size, fit_and_time, sim, lat, relax, "triangular", geometry)
    values.update(tasks.planar_counts(ace, basis_size))
    return values


EXPERIMENT = register(Experiment(
    name="p1-point-defects-2d",
    description="vacancies in the 2D triangular lattice, FS W reference (P1 §4.1)",
    fixed={**FIXED_2D, **RESOURCES}, allowed=ALLOWED, build=build, check=check,
    optional={**OPTIONAL, **OPTIONAL_2D}, variables=VARIABLES_2D, spatial_dimension=2,
    slice_design=True, species=("W",), neutral_defaults=OPTIONAL_2D))
