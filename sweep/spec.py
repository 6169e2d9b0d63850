"""Sweep specifications: a TOML file of grid values per dimension plus fixed parameters.

A spec is data (as in xyzpy): the ``[grid]`` table lists the values of each dimension of the
result Dataset (the six of :data:`DIMENSIONS`, then any its experiment adds), every other table
holds parameters fixed for the whole sweep. Which tables, fields, weight fields and values are
allowed is declared by the experiment the spec names (:mod:`sweep.experiment`, one module per
experiment in :mod:`sweep.experiments`). :func:`load_spec` validates everything before any work
starts and raises :class:`SpecError` naming the offending field and the allowed values. Built-in
specs live in ``sweep/specs/``::

    name = "p1-vacancies-quick"
    experiment = "p1-point-defects-2d"
    description = "..."

    [grid]                      # the dimensions of the result, in this order
    defect = ["vacancy"]
    n_defects = [2]
    L = [4, 5, 6, 8]            # training-cell size = defect separation L_D, in r0
    basis_size = [20, 50, 110]  # requested number of ACE functions
    weights = ["WE100-WF1"]     # names of [weights.*] tables
    observations = ["E+F"]

    [weights.WE100-WF1]
    energy = 100.0              # W_E, on energies per atom
    forces = 1.0                # W_F

    [reference]  model = "fs-w-wang2014"
    [simulation] size = 24      # N, in r0
    [training]   n_train, n_test, rattle_A (Å), seed
    [ace]        cutoff_A (Å), radial_basis, nradmax_by_orders, lmax_by_orders
    [fit]        solver = "rrqr", rtol = 1e-6, and the loss conventions (optional):
                 energy_weighting = "total", weight_form = "squared-residual",
                 bulk_energy_row = false (see FIT_OPTIONAL)
    [relax]      fmax_eV_per_A, max_steps, optimizer
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from kernels.point_defects import REFERENCE_MINIMA, REFERENCE_OPTIMIZERS
from kernels.least_squares import (DEFAULT_ENERGY_WEIGHTING, DEFAULT_WEIGHT_FORM,
                                   ENERGY_WEIGHTINGS, WEIGHT_FORMS)

from .experiment import EXPERIMENTS

__all__ = ["SpecError", "Spec", "load_spec", "parse_spec", "builtin_specs", "DIMENSIONS",
           "EXPERIMENTS", "POS_INT", "NONNEG_INT", "POS_FLOAT", "NONNEG_FLOAT", "STR", "BOOL",
           "INT_LIST",
           "check_ace_table", "RESOURCE_TABLES", "FIT_OPTIONAL", "FIT_ALLOWED",
           "TRAINING_DOMAINS", "DOMAIN_OPTIONAL", "DOMAIN_ALLOWED", "RELAX_OPTIONAL",
           "RELAX_ALLOWED"]

#: Dimensions every result Dataset has, in order (an experiment may add more after them).
DIMENSIONS = ("defect", "n_defects", "L", "basis_size", "weights", "observations")


class SpecError(ValueError):
    """An invalid spec; ``field`` is the dotted path of the offending entry."""

    def __init__(self, field: str, message: str):
        self.field = field
        super().__init__(f"spec field '{field}': {message}")


# Rules for fixed parameters: (type, predicate, description of what is allowed).
POS_INT = (int, lambda v: v > 0, "a positive integer")
NONNEG_INT = (int, lambda v: v >= 0, "a non-negative integer")
POS_FLOAT = (float, lambda v: v > 0, "a positive number")
NONNEG_FLOAT = (float, lambda v: v >= 0, "a non-negative number")
STR = (str, lambda v: len(v) > 0, "a non-empty string")
#: TOML ``true`` or ``false`` only (not 0/1, not "yes").
BOOL = (bool, lambda v: True, "a boolean (true or false)")
INT_LIST = (list, lambda v: len(v) > 0 and all(isinstance(x, int) and not isinstance(x, bool)
                                               and x >= 0 for x in v),
            "a non-empty list of non-negative integers")
_GRID_RULES = {"n_defects": POS_INT, "L": POS_INT, "basis_size": POS_INT}
_KIND_RULES = {int: POS_INT, float: POS_FLOAT, str: STR}
_TOP_COMMON = {"name", "experiment", "description", "grid", "weights"}

#: The loss conventions of the ``[fit]`` table every experiment that fits ACE accepts, with their
#: defaults — the papers' loss as written (P1 eq. 4.2, P2 eq. 4.16):
#:
#: ``energy_weighting``
#:     ``"total"`` (total energies, the equations as written), ``"per-atom"`` (energies per
#:     atom) or ``"sqrt-n"`` (E/√N, the papers' codes IPFitting.jl and ACEpotentials.jl); see
#:     :data:`kernels.least_squares.ENERGY_WEIGHTINGS`. Chosen by measurement: docs/specs.md "Fit
#:     conventions".
#: ``weight_form``
#:     ``"squared-residual"`` (W multiplies |r|², the equations) or ``"residual"`` (W multiplies
#:     r, the codes); :data:`kernels.least_squares.WEIGHT_FORMS`.
#: ``bulk_energy_row``
#:     add the perfect crystal's energy as one more energy observation (weight W_E). Not in the
#:     papers; it makes the model's bulk energy per atom, hence its formation energies,
#:     identifiable (a training set of one defect cell fixes only the sum of its site energies).
#:     Without it the stored ``formation_energy_error`` is NaN (its ``comment`` attribute says
#:     why).
FIT_OPTIONAL = {"fit.energy_weighting": DEFAULT_ENERGY_WEIGHTING,
                "fit.weight_form": DEFAULT_WEIGHT_FORM, "fit.bulk_energy_row": False}
#: Allowed values of the string conventions above.
FIT_ALLOWED = {"fit.energy_weighting": ENERGY_WEIGHTINGS, "fit.weight_form": WEIGHT_FORMS}

#: The dislocation experiments' training domain, optional field ``training.domain``:
#: ``"dipole"`` (default) is P2 §3.1's Ω_L = P(−L, L]², one dipole, cores L apart, in a cell of
#: side 2L tilted by the dipole's plastic strain; ``"checkerboard"`` the quadrupole of side L
#: (four cores L/2 apart), the arrangement of the simulation cell. See docs/p2-dislocations.md
#: "Training domain" and :mod:`kernels.dipole_cells`.
TRAINING_DOMAINS = ("dipole", "checkerboard")
DOMAIN_OPTIONAL = {"training.domain": TRAINING_DOMAINS[0]}
DOMAIN_ALLOWED = {"training.domain": TRAINING_DOMAINS}

#: The optimiser of the reference relaxations, optional field ``relax.reference_optimizer``
#: (:data:`kernels.point_defects.REFERENCE_OPTIMIZERS`): ``"auto"`` (the default) is
#: ``relax.optimizer``, with ase's ``"lbfgs"`` for ``"hessian-lbfgs"``; ``"precon-lbfgs"`` is
#: the papers' own code (JuLIP's ``minimise!`` at fixed cell: L-BFGS with the Exp
#: preconditioner). Every experiment takes it; at ``"auto"`` it stays out of the fingerprint.
#: ``relax.reference_minimum`` (:data:`kernels.point_defects.REFERENCE_MINIMA`): ``"any"`` (the
#: default) stops wherever the forces vanish; ``"stable"`` tests the reference Hessian at the
#: end state and leaves a saddle along its softest mode (:mod:`kernels.stable_relax`).
RELAX_OPTIONAL = {"relax.reference_optimizer": REFERENCE_OPTIMIZERS[0],
                  "relax.reference_minimum": REFERENCE_MINIMA[0]}
RELAX_ALLOWED = {"relax.reference_optimizer": REFERENCE_OPTIMIZERS,
                 "relax.reference_minimum": REFERENCE_MINIMA}

#: Tables that bound resources (memory) and change the values only by rounding: validated like
#: any other, but not part of the fingerprint, so a store can be resumed with other limits.
RESOURCE_TABLES = ("resources",)


@dataclass(frozen=True)
class Spec:
    """A validated sweep specification.

    Attributes
    ----------
    name : str
    experiment : str
        Name of a registered :class:`sweep.experiment.Experiment`.
    grid : dict
        Dimension name → tuple of values, in :attr:`dims` order.
    weights : dict
        Weight-set name → {"energy": W_E, "forces": W_F, ...} (the experiment's weight fields).
    params : dict
        The fixed tables (reference, simulation, training, ace, fit, relax, ...).
    text : str
        The TOML source, recorded in the store's provenance.
    """

    name: str
    experiment: str
    description: str
    grid: dict
    weights: dict
    params: dict
    text: str

    @property
    def definition(self):
        """The registered :class:`sweep.experiment.Experiment` of this spec."""
        return EXPERIMENTS[self.experiment]

    @property
    def dims(self) -> tuple[str, ...]:
        """Dimensions of the result: :data:`DIMENSIONS` then the experiment's extra ones."""
        return DIMENSIONS + tuple(d.name for d in self.definition.extra_dims)

    @property
    def shape(self) -> tuple[int, ...]:
        """Number of values along each dimension."""
        return tuple(len(self.grid[d]) for d in self.dims)

    @property
    def n_points(self) -> int:
        """Number of grid points."""
        n = 1
        for s in self.shape:
            n *= s
        return n

    def fingerprint(self) -> str:
        """Hash of everything that determines the values at a grid point (not the grid itself,
        nor the :data:`RESOURCE_TABLES`, which change values only by rounding)."""
        payload = self.fixed_parameters()
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]

    def fixed_parameters(self) -> dict:
        """Fixed parameters (everything but the grid and the :data:`RESOURCE_TABLES`) as a
        plain, JSON-able dict — what a store belongs to."""
        params = {k: v for k, v in self.params.items() if k not in RESOURCE_TABLES}
        exp = EXPERIMENTS.get(self.experiment)
        neutral = {**RELAX_OPTIONAL, **(exp.neutral_defaults if exp else {})}
        for dotted, default in neutral.items():
            table, name = dotted.split(".", 1)
            if name in params.get(table, {}) and params[table][name] == default:
                params[table] = {k: v for k, v in params[table].items() if k != name}
        return {"experiment": self.experiment, "weights": self.weights, "params": params}


#: Spec names become file names (the default store is ``runs/<name>.zarr``): letters, digits,
#: ``.``, ``_`` and ``-``, starting with a letter or digit, so a name never leaves ``runs/``.
SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


def _check(field: str, value, kind, pred, what):
    if kind is bool:
        if not isinstance(value, bool):
            raise SpecError(field, f"must be {what}, got {value!r}")
        return value
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    # every number must be finite: inf and nan pass ``v > 0``-style predicates otherwise
    if kind is float and isinstance(value, float) and not math.isfinite(value):
        raise SpecError(field, f"must be {what} (finite), got {value!r}")
    if not isinstance(value, kind) or isinstance(value, bool) or not pred(value):
        raise SpecError(field, f"must be {what}, got {value!r}")
    return value


def _allowed(field: str, value, allowed):
    if value not in allowed:
        raise SpecError(field, f"{value!r} is not allowed; allowed values: "
                               f"{', '.join(map(repr, allowed))}")


def check_ace_table(ace: dict) -> None:
    """Cross-field checks of an ``[ace]`` table (shared by every experiment that fits ACE)."""
    if len(ace["nradmax_by_orders"]) != len(ace["lmax_by_orders"]):
        raise SpecError("ace.lmax_by_orders", "must have as many entries as nradmax_by_orders")


#: Upper bounds that every experiment shares: past them a spec means nothing physical or cannot
#: run on one worker. ``fit.rtol`` is a relative singular-value cut-off (a fraction of the
#: largest, so < 1 keeps at least one function); the rattle amplitude stays below 0.4 of the
#: shortest nearest-neighbour distance of the references (Si 2.35 Å), past which the rattled
#: cells are no longer near the lattice the potential is trained on; the ACE cut-off stays
#: within a few neighbour shells (the papers use 5-7 Å); sizes stay within what one worker's
#: memory holds for the reference relaxation and the design matrix.
RANGE_LIMITS = {
    "fit.rtol": (1.0, "below 1 (a fraction of the largest singular value)"),
    "training.rattle_A": (0.94, "below 0.94 Å (0.4 of the shortest nearest-neighbour "
                                "distance, Si 2.35 Å)"),
    "grid.rattle_A": (0.94, "below 0.94 Å (0.4 of the shortest nearest-neighbour "
                            "distance, Si 2.35 Å)"),
    "ace.cutoff_A": (15.0, "at most 15 Å (the papers use 5-7 Å)"),
    "simulation.size": (400, "at most 400 (cell edge, in r0 or a0)"),
    "training.n_train": (100_000, "at most 100000 configurations"),
    "training.n_test": (100_000, "at most 100000 configurations"),
    "grid.basis_size": (20_000, "at most 20000 ACE functions"),
    "grid.L": (400, "at most 400 (cell edge, in r0 or a0)"),
}


def check_ranges(spec: "Spec") -> None:
    """Refuse values beyond :data:`RANGE_LIMITS` (the field and the allowed range named)."""
    for dotted, (limit, what) in RANGE_LIMITS.items():
        table, key = dotted.split(".")
        if table == "grid":
            values = [(f"grid.{key}[{k}]", v) for k, v in enumerate(spec.grid.get(key, ()))]
        else:
            got = spec.params.get(table, {})
            values = [(dotted, got[key])] if key in got else []
        strict = dotted in ("fit.rtol", "training.rattle_A", "grid.rattle_A")
        for field, v in values:
            if (v >= limit) if strict else (v > limit):
                raise SpecError(field, f"must be {what}, got {v!r}")


def parse_spec(text: str, source: str = "<spec>") -> Spec:
    """Parse and validate a spec from TOML text; raises :class:`SpecError` on any problem.

    The experiment named by the spec decides which tables, fields, weight fields and grid
    dimensions are required and which values they allow (:mod:`sweep.experiment`).
    """
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise SpecError("<toml>", f"{source} is not valid TOML: {e}") from None
    if "experiment" not in raw:
        raise SpecError("experiment", "missing (required); registered experiments: "
                                      f"{', '.join(EXPERIMENTS)}")
    experiment = raw["experiment"]
    _allowed("experiment", experiment, tuple(EXPERIMENTS))
    exp = EXPERIMENTS[experiment]
    allowed = exp.allowed
    top = _TOP_COMMON | set(exp.fixed)
    for key in raw:
        if key not in top:
            raise SpecError(key, f"unknown top-level field; allowed: {', '.join(sorted(top))}")
    for key in ("name", "grid", "weights", *exp.fixed):
        if key not in raw and key not in exp.optional:
            raise SpecError(key, "missing (required)")
    name = _check("name", raw["name"], *STR)
    if not SAFE_NAME.match(name):
        raise SpecError("name", f"must be a safe file name (letters, digits, '.', '_', '-', "
                                f"starting with a letter or digit, at most 100), got {name!r}")

    params = {}
    for table, fields in exp.fixed.items():
        got = raw.get(table, {})
        if not isinstance(got, dict):
            raise SpecError(table, "must be a table")
        for key in got:
            if key not in fields:
                raise SpecError(f"{table}.{key}", f"unknown field; allowed: {', '.join(fields)}")
        params[table] = {}
        for key, rule in fields.items():
            dotted = f"{table}.{key}"
            if key not in got:
                if dotted in exp.optional:
                    params[table][key] = exp.optional[dotted]
                    continue
                raise SpecError(dotted, "missing (required)")
            params[table][key] = _check(dotted, got[key], *rule)
            if dotted in allowed:
                _allowed(dotted, params[table][key], allowed[dotted])

    weights = {}
    wfields = exp.all_weight_fields
    if not isinstance(raw["weights"], dict) or not raw["weights"]:
        raise SpecError("weights", "must hold at least one [weights.NAME] table")
    for wname, table in raw["weights"].items():
        if not isinstance(table, dict):
            raise SpecError(f"weights.{wname}", f"must be a table with {', '.join(wfields)}")
        for key in table:
            if key not in wfields:
                raise SpecError(f"weights.{wname}.{key}",
                                f"unknown field; allowed: {', '.join(wfields)}")
        weights[wname] = {}
        for k in wfields:
            if k in table:
                weights[wname][k] = _check(f"weights.{wname}.{k}", table[k], *NONNEG_FLOAT)
            elif k in exp.optional_weight_fields:
                weights[wname][k] = float(exp.optional_weight_fields[k])
            else:
                raise SpecError(f"weights.{wname}.{k}", "missing (required)")

    grid_raw = raw["grid"]
    if not isinstance(grid_raw, dict):
        raise SpecError("grid", "must be a table")
    dims = DIMENSIONS + tuple(d.name for d in exp.extra_dims)
    rules = {**_GRID_RULES, **{d.name: _KIND_RULES[d.kind] for d in exp.extra_dims}}
    for key in grid_raw:
        if key not in dims:
            raise SpecError(f"grid.{key}", f"unknown dimension; allowed: {', '.join(dims)}")
    grid = {}
    for dim in dims:
        values = grid_raw.get(dim)
        if values is None:
            raise SpecError(f"grid.{dim}", "missing (required; give a list of values)")
        if not isinstance(values, list) or not values:
            raise SpecError(f"grid.{dim}", f"must be a non-empty list, got {values!r}")
        if len(set(map(str, values))) != len(values):
            raise SpecError(f"grid.{dim}", f"values must be distinct, got {values!r}")
        checked = []
        for k, v in enumerate(values):
            f = f"grid.{dim}[{k}]"
            v = _check(f, v, *rules.get(dim, STR))
            if dim in allowed:
                _allowed(f, v, allowed[dim])
            if dim == "weights" and v not in weights:
                raise SpecError(f, f"names no [weights.{v}] table; defined: {', '.join(weights)}")
            checked.append(v)
        grid[dim] = tuple(checked)

    spec = Spec(name, experiment, str(raw.get("description", "")), grid, weights, params, text)
    check_ranges(spec)
    if exp.check is not None:
        exp.check(spec)
    return spec


def builtin_specs() -> dict[str, str]:
    """Names of the built-in specs → their TOML text."""
    root = resources.files("sweep") / "specs"
    return {p.name.removesuffix(".toml"): p.read_text() for p in sorted(root.iterdir(),
            key=lambda p: p.name) if p.name.endswith(".toml")}


def load_spec(name_or_path: str) -> Spec:
    """A built-in spec by name, or a spec file by path; validated."""
    builtins = builtin_specs()
    if name_or_path in builtins:
        return parse_spec(builtins[name_or_path], name_or_path)
    path = Path(name_or_path)
    if not path.exists():
        raise SpecError("<spec>", f"{name_or_path!r} is neither a built-in spec "
                                  f"({', '.join(builtins)}) nor an existing file")
    if not path.is_file():
        raise SpecError("<spec>", f"{name_or_path!r} is not a regular file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise SpecError("<spec>", f"{name_or_path!r} is not a UTF-8 text (TOML) file") from None
    except OSError as e:
        raise SpecError("<spec>", f"{name_or_path!r} cannot be read: {e.strerror}") from None
    return parse_spec(text, str(path))



# Register the built-in experiments (they import this module's rules, so this comes last).
from . import experiments  # noqa: E402, F401
