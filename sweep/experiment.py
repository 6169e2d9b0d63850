"""Experiments: what a spec's ``experiment = "..."`` names, and everything that differs between them.

An :class:`Experiment` is data plus one function. It declares

- the fixed-parameter tables its specs must hold (a schema of typed fields, some optional with a
  default), and the values its grids and fields allow;
- the fields of its ``[weights.NAME]`` tables (W_E, W_F, and e.g. W_V1, W_V2 for elastic rows);
- extra grid dimensions after the six common ones (:data:`sweep.spec.DIMENSIONS`), e.g. a rattle
  amplitude;
- extra stored variables, with units, after the common ones (:data:`sweep.store.VARIABLES`);
- a cross-field ``check`` run at validation time (before any work starts);
- ``build``, which submits the tasks of a list of grid points through a caching ``submit`` and
  returns one future per point (see :func:`sweep.graph.build_graph`).

Experiments register themselves in :data:`EXPERIMENTS` when their module in
``sweep/experiments/`` is imported (``sweep.experiments`` imports them all). Adding an
experiment means adding one module there; the spec parser, the store, the runner, the CLI and
the analysis need no change.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

__all__ = ["Experiment", "ExtraDimension", "EXPERIMENTS", "register"]


@dataclass(frozen=True)
class ExtraDimension:
    """A grid dimension beyond the common six.

    Attributes
    ----------
    name : str
        Dimension name in specs (``[grid]``) and in the Dataset, with its unit if it has one
        (``rattle_A``).
    kind : type
        ``int``, ``float`` or ``str``: the type of its values.
    attrs : dict
        Zarr/xarray attributes of its coordinate (``long_name``, ``units``).
    """

    name: str
    kind: type
    attrs: dict


@dataclass(frozen=True)
class Experiment:
    """One kind of sweep (see the module docstring).

    Attributes
    ----------
    name : str
        The value of a spec's ``experiment`` field.
    description : str
        One line for ``sweep specs``.
    fixed : dict
        Table name → {field → rule}; a rule is ``(type, predicate, description)`` as in
        :mod:`sweep.spec`.
    allowed : dict
        ``"grid-dimension"`` or ``"table.field"`` → tuple of allowed values.
    build : callable
        ``build(submit, spec, todo) -> (points, parents, attr_sources)``: ``submit(stage,
        coords, fn, *args)`` submits (once per stage and coords) and returns a future;
        ``points`` maps each :class:`sweep.store.PointIndex` of ``todo`` to the future of its
        values dict; ``parents`` maps it to the futures it depends on (released when written);
        ``attr_sources`` maps a Dataset attribute name to ``(future, getter)`` recorded at the
        end of a run (e.g. ``r0_A``).
    optional : dict
        ``"table.field"`` → default, for fields a spec may omit; also whole optional tables
        (``"table"`` → ``{}``).
    weight_fields : tuple of str
        Required fields of every ``[weights.NAME]`` table.
    optional_weight_fields : dict
        Weight fields a table may omit → default.
    weight_attrs : dict
        Weight field → (long_name, units) of its ``weight_<field>`` coordinate.
    extra_dims : tuple of ExtraDimension
        Grid dimensions after :data:`sweep.spec.DIMENSIONS`.
    variables : dict
        Extra stored variables, name → (dtype, units, long_name, fill), as in
        :data:`sweep.store.VARIABLES`.
    check : callable, optional
        ``check(spec)`` raising :class:`sweep.spec.SpecError` on cross-field problems.
    spatial_dimension : int
        d in the papers' rates (2 for the triangular lattice, 3 for bulk crystals).
    cells_per_fit : callable, optional
        ``cells_per_fit(spec) -> int``: the most training cells one fit stacks (a union of
        defect cells); the memory estimate of :func:`sweep.cluster.estimate_task_bytes` scales
        with it. None: one.
    neutral_defaults : dict
        ``"table.field"`` → default, for optional fields added after stores were written whose
        default reproduces those stores' values: at its default such a field is left out of the
        spec's fingerprint and recorded fixed parameters, so the older stores still resume.
    species : tuple of str, optional
        The chemical species of its ACE basis (``basis_size`` counts functions per species):
        with it, :func:`sweep.cluster.check_basis_sizes` refuses before any work a basis size
        that the spec's ``[ace]`` superset cannot realise.
    slice_design : bool
        Its design stage is one pass per (defect, L) slice that factors the training rows of
        the slice's largest basis, and its fits solve from those factors
        (:mod:`kernels.point_defect_slices`): :func:`sweep.cluster.estimate_task_seconds`
        costs the stages accordingly.
    cell_atoms : callable, optional
        ``cell_atoms(spec, kind, size) -> int``: the atoms of the ``"simulation"`` cell of size
        N or of one ``"training"`` configuration of size L, for the estimates of
        :mod:`sweep.cluster` (None: size ** spatial_dimension).
    force_components : int, optional
        Force components per atom in the design rows (None: ``spatial_dimension``; 3 for the
        dislocation cells, whose rows keep all three).
    """

    name: str
    description: str
    fixed: dict
    allowed: dict
    build: Callable
    optional: dict = field(default_factory=dict)
    weight_fields: tuple = ("energy", "forces")
    optional_weight_fields: dict = field(default_factory=dict)
    weight_attrs: dict = field(default_factory=lambda: {
        "energy": ("energy weight W_E (on energies as fit.energy_weighting says: total by default)", "1"),
        "forces": ("force weight W_F", "1")})
    extra_dims: tuple = ()
    variables: dict = field(default_factory=dict)
    check: Callable | None = None
    spatial_dimension: int = 2
    slice_design: bool = False
    species: tuple | None = None
    neutral_defaults: dict = field(default_factory=dict)
    cells_per_fit: Callable | None = None
    cell_atoms: Callable | None = None
    force_components: int | None = None

    @property
    def all_weight_fields(self) -> tuple:
        """Required then optional weight fields, in declaration order."""
        return tuple(self.weight_fields) + tuple(self.optional_weight_fields)


#: Registered experiments by name (filled by importing :mod:`sweep.experiments`).
EXPERIMENTS: dict[str, Experiment] = {}


def register(experiment: Experiment) -> Experiment:
    """Add ``experiment`` to :data:`EXPERIMENTS` (a name may be registered once)."""
    if experiment.name in EXPERIMENTS and EXPERIMENTS[experiment.name] is not experiment:
        raise ValueError(f"experiment {experiment.name!r} is already registered")
    EXPERIMENTS[experiment.name] = experiment
    return experiment
