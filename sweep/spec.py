"""Sweep specifications: a TOML file of grid values per dimension plus fixed parameters.

A spec is data (as in xyzpy): the ``[grid]`` table lists the values of each of the six
dimensions of the result Dataset, every other table holds parameters fixed for the whole sweep.
:func:`load_spec` validates everything before any work starts and raises :class:`SpecError`
naming the offending field and the allowed values. Built-in specs live in ``sweep/specs/``::

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
    [fit]        solver = "rrqr", rtol = 1e-6
    [relax]      fmax_eV_per_A, max_steps, optimizer
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

__all__ = ["SpecError", "Spec", "load_spec", "parse_spec", "builtin_specs", "DIMENSIONS",
           "EXPERIMENTS"]

#: Dimensions of every result Dataset, in order.
DIMENSIONS = ("defect", "n_defects", "L", "basis_size", "weights", "observations")

#: Experiments this version can run, with the values their grids allow.
EXPERIMENTS = {
    "p1-point-defects-2d": {
        "defect": ("vacancy",),
        "n_defects": (1, 2, 3, 4),
        "observations": ("E+F",),
        "reference.model": ("fs-w-wang2014",),
        "fit.solver": ("rrqr",),
        "relax.optimizer": ("lbfgs", "precon-lbfgs", "fire"),
        "ace.radial_basis": ("SBessel", "ChebExpCos", "ChebPow", "ChebLinear"),
    },
}


class SpecError(ValueError):
    """An invalid spec; ``field`` is the dotted path of the offending entry."""

    def __init__(self, field: str, message: str):
        self.field = field
        super().__init__(f"spec field '{field}': {message}")


# (type, constraint) of every fixed parameter; constraint is a predicate and its description.
_POS_INT = (int, lambda v: v > 0, "a positive integer")
_NONNEG_INT = (int, lambda v: v >= 0, "a non-negative integer")
_POS_FLOAT = (float, lambda v: v > 0, "a positive number")
_NONNEG_FLOAT = (float, lambda v: v >= 0, "a non-negative number")
_STR = (str, lambda v: len(v) > 0, "a non-empty string")
_INT_LIST = (list, lambda v: len(v) > 0 and all(isinstance(x, int) and not isinstance(x, bool)
                                                and x >= 0 for x in v),
             "a non-empty list of non-negative integers")

_FIXED = {
    "reference": {"model": _STR},
    "simulation": {"size": _POS_INT},
    "training": {"n_train": _POS_INT, "n_test": _POS_INT, "rattle_A": _POS_FLOAT,
                 "seed": _NONNEG_INT},
    "ace": {"cutoff_A": _POS_FLOAT, "radial_basis": _STR, "nradmax_by_orders": _INT_LIST,
            "lmax_by_orders": _INT_LIST},
    "fit": {"solver": _STR, "rtol": _POS_FLOAT},
    "relax": {"fmax_eV_per_A": _POS_FLOAT, "max_steps": _POS_INT, "optimizer": _STR},
}
_TOP = {"name", "experiment", "description", "grid", "weights", *_FIXED}


@dataclass(frozen=True)
class Spec:
    """A validated sweep specification.

    Attributes
    ----------
    name : str
    experiment : str
    grid : dict
        Dimension name → tuple of values, in :data:`DIMENSIONS` order.
    weights : dict
        Weight-set name → {"energy": W_E, "forces": W_F}.
    params : dict
        The fixed tables (reference, simulation, training, ace, fit, relax).
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
    def shape(self) -> tuple[int, ...]:
        """Number of values along each dimension."""
        return tuple(len(self.grid[d]) for d in DIMENSIONS)

    @property
    def n_points(self) -> int:
        """Number of grid points."""
        n = 1
        for s in self.shape:
            n *= s
        return n

    def fingerprint(self) -> str:
        """Hash of everything that determines the values at a grid point (not the grid itself)."""
        payload = {"experiment": self.experiment, "weights": self.weights, "params": self.params}
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]

    def fixed_parameters(self) -> dict:
        """Fixed parameters (everything but the grid) as a plain, JSON-able dict."""
        return {"experiment": self.experiment, "weights": self.weights, "params": self.params}


def _check(field: str, value, kind, pred, what):
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or isinstance(value, bool) or not pred(value):
        raise SpecError(field, f"must be {what}, got {value!r}")
    return value


def _allowed(field: str, value, allowed):
    if value not in allowed:
        raise SpecError(field, f"{value!r} is not allowed; allowed values: "
                               f"{', '.join(map(repr, allowed))}")


def parse_spec(text: str, source: str = "<spec>") -> Spec:
    """Parse and validate a spec from TOML text; raises :class:`SpecError` on any problem."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise SpecError("<toml>", f"{source} is not valid TOML: {e}") from None
    for key in raw:
        if key not in _TOP:
            raise SpecError(key, f"unknown top-level field; allowed: {', '.join(sorted(_TOP))}")
    for key in ("name", "experiment", "grid", "weights", *_FIXED):
        if key not in raw:
            raise SpecError(key, "missing (required)")
    name = _check("name", raw["name"], *_STR)
    experiment = raw["experiment"]
    _allowed("experiment", experiment, tuple(EXPERIMENTS))
    allowed = EXPERIMENTS[experiment]

    params = {}
    for table, fields in _FIXED.items():
        got = raw[table]
        if not isinstance(got, dict):
            raise SpecError(table, "must be a table")
        for key in got:
            if key not in fields:
                raise SpecError(f"{table}.{key}", f"unknown field; allowed: {', '.join(fields)}")
        params[table] = {}
        for key, rule in fields.items():
            if key not in got:
                raise SpecError(f"{table}.{key}", "missing (required)")
            params[table][key] = _check(f"{table}.{key}", got[key], *rule)
            if f"{table}.{key}" in allowed:
                _allowed(f"{table}.{key}", params[table][key], allowed[f"{table}.{key}"])

    weights = {}
    if not isinstance(raw["weights"], dict) or not raw["weights"]:
        raise SpecError("weights", "must hold at least one [weights.NAME] table")
    for wname, table in raw["weights"].items():
        if not isinstance(table, dict):
            raise SpecError(f"weights.{wname}", "must be a table with 'energy' and 'forces'")
        for key in table:
            if key not in ("energy", "forces"):
                raise SpecError(f"weights.{wname}.{key}", "unknown field; allowed: energy, forces")
        weights[wname] = {k: _check(f"weights.{wname}.{k}", table.get(k), *_NONNEG_FLOAT)
                          if k in table else _missing(f"weights.{wname}.{k}")
                          for k in ("energy", "forces")}

    grid_raw = raw["grid"]
    if not isinstance(grid_raw, dict):
        raise SpecError("grid", "must be a table")
    for key in grid_raw:
        if key not in DIMENSIONS:
            raise SpecError(f"grid.{key}", f"unknown dimension; allowed: {', '.join(DIMENSIONS)}")
    grid = {}
    for dim in DIMENSIONS:
        values = grid_raw.get(dim)
        if values is None:
            raise SpecError(f"grid.{dim}", "missing (required; give a list of values)")
        if not isinstance(values, list) or not values:
            raise SpecError(f"grid.{dim}", f"must be a non-empty list, got {values!r}")
        if len(set(map(str, values))) != len(values):
            raise SpecError(f"grid.{dim}", f"values must be distinct, got {values!r}")
        for k, v in enumerate(values):
            f = f"grid.{dim}[{k}]"
            if dim in ("n_defects", "L", "basis_size"):
                _check(f, v, *_POS_INT)
            else:
                _check(f, v, *_STR)
            if dim in allowed:
                _allowed(f, v, allowed[dim])
            if dim == "weights" and v not in weights:
                raise SpecError(f, f"names no [weights.{v}] table; defined: {', '.join(weights)}")
        grid[dim] = tuple(values)

    size = params["simulation"]["size"]
    for k, L in enumerate(grid["L"]):
        if 2 * L > size and max(grid["n_defects"]) > 1:
            raise SpecError(f"grid.L[{k}]", f"L = L_D = {L} r0 needs simulation.size >= {2 * L} r0 "
                                            f"(got {size}) so that defects are nearer each other "
                                            "than their periodic images")
    if len(params["ace"]["nradmax_by_orders"]) != len(params["ace"]["lmax_by_orders"]):
        raise SpecError("ace.lmax_by_orders", "must have as many entries as nradmax_by_orders")
    return Spec(name, experiment, str(raw.get("description", "")), grid, weights, params, text)


def _missing(field):
    raise SpecError(field, "missing (required)")


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
    return parse_spec(path.read_text(), str(path))

