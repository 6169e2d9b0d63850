"""Reading a requested ACE basis size on planar configurations (kernels.planar_basis) and the
spec options ``[ace] basis_count`` and ``[fit] scale_columns`` of the planar experiment: real
pyace bases, real evaluations."""

from __future__ import annotations

import re

import numpy as np
import pytest
from ase import Atoms

from kernels.ace import ACEBasis, ace_potential_config, truncation_rank
from kernels.lattice import triangular_cell, triangular_sites
from kernels.planar_basis import (BASIS_COUNTS, DEFAULT_BASIS_COUNT, independent_truncation,
                                  n_planar_independent, planar_independence)
from sweep import tasks
from sweep.spec import SpecError, builtin_specs, parse_spec
from tests.tiny import tiny_spec_text

#: A small superset (a few hundred functions) with planar identities among its 3- and 4-body
#: functions.
ACE = {"cutoff_A": 4.5, "radial_basis": "SBessel", "nradmax_by_orders": [6, 4, 3, 2],
       "lmax_by_orders": [0, 4, 3, 2]}


def _site_values(basis: ACEBasis, seed: int, planar: bool, n_cells: int = 12) -> np.ndarray:
    """Site-function values (rows: atoms) of rattled cells drawn here, independently of the
    kernel's own environments: planar (z = 0) or with every site displaced along z too."""
    rng = np.random.default_rng(seed)
    objs = basis._objects()
    rows = []
    for _ in range(n_cells):
        a = rng.uniform(2.4, 3.2)
        cell = triangular_cell(8, a)
        x = triangular_sites(8, a)
        x[:, :2] += rng.normal(0.0, 0.3, (len(x), 2))
        if not planar:
            cell[2, 2] = 8 * a
            x[:, 2] += rng.normal(0.0, 0.3, len(x))
        ae = objs.aseatoms_to_atomicenvironment(
            Atoms(["W"] * len(x), positions=x, cell=cell, pbc=True),
            cutoff=objs.basis.cutoffmax, elements_mapper_dict=objs.basis.elements_to_index_map)
        objs.calculator.compute(ae, compute_projections=True, compute_b_grad=False)
        rows.append(np.asarray(objs.calculator.projections))
    return np.vstack(rows)


def _rank(values: np.ndarray, rtol: float = 1e-8) -> int:
    s = np.linalg.svd(values / np.linalg.norm(values, axis=0), compute_uv=False)
    return int(np.count_nonzero(s > rtol * s[0]))


def test_planar_independent_count_realises_the_requested_rank():
    """A basis of #B planar-independent functions has rank #B on planar configurations the
    kernel never saw, although it holds more 3D functions; the same functions are all
    independent in 3D (the losses are the plane's)."""
    superset = tasks.superset_for(ACE)
    flags = planar_independence(superset)
    assert 0 < flags.sum() < flags.size  # the plane does lose functions of this superset
    for requested in (60, 150, int(flags.sum())):
        basis = tasks.basis_for({**ACE, "basis_count": "planar-independent"}, requested)
        assert n_planar_independent(basis, superset) == requested
        planar = _site_values(basis, seed=11, planar=True)
        assert planar.shape[0] > 2 * basis.n_functions
        assert _rank(planar) == requested
    assert _rank(_site_values(superset, seed=12, planar=False, n_cells=24)) == flags.size
    k, got = independent_truncation(superset, int(flags.sum()) + 1)
    assert (k, got) == (superset.n_functions, int(flags.sum()))  # realised, not invented


def test_planar_independence_is_a_property_of_the_functions():
    """Other seeds draw other environments and give the same flags; the flags of a truncation
    are those of the superset's prefix (the independence is of the functions before it)."""
    superset = tasks.superset_for(ACE)
    assert np.array_equal(planar_independence(superset, seed=0),
                          planar_independence(superset, seed=5))
    keys = superset.function_keys()
    by_key = dict(zip(keys, planar_independence(superset)))
    prefix = ACEBasis(ace_potential_config(["W"], 120, ACE["cutoff_A"], ACE["nradmax_by_orders"],
                                           ACE["lmax_by_orders"], ACE["radial_basis"]))
    own = dict(zip(prefix.function_keys(), planar_independence(prefix)))
    assert own == {k: by_key[k] for k in own}
    ordered = sorted(keys, key=truncation_rank)
    assert set(own) == set(ordered[:120])


def test_functions_reading_is_the_default_and_the_raw_count():
    """Without ``basis_count`` the requested size is the number of 3D functions (the papers'
    reading); ``scale_columns`` defaults to true."""
    assert DEFAULT_BASIS_COUNT == "functions" == BASIS_COUNTS[0]
    for name in ("p1-vacancies", "p1-vacancies-quick"):
        spec = parse_spec(builtin_specs()[name], name)
        assert spec.params["ace"]["basis_count"] == "functions"
        assert spec.params["fit"]["scale_columns"] is True
    assert tasks.basis_for(ACE, 150).n_functions == 150
    assert tasks.basis_for({**ACE, "basis_count": "functions"}, 150).n_functions == 150
    assert tasks.basis_for({**ACE, "basis_count": "planar-independent"}, 150).n_functions > 150


def _with(text: str, table: str, line: str) -> str:
    return re.sub(rf"^\[{table}\]$", f"[{table}]\n{line}", text, count=1, flags=re.M)


@pytest.mark.parametrize("table, line, field", [
    ("ace", 'basis_count = "independent"', "ace.basis_count"),
    ("ace", "basis_count = 3", "ace.basis_count"),
    ("fit", 'scale_columns = "yes"', "fit.scale_columns"),
    ("fit", "scale_columns = 1", "fit.scale_columns"),
])
def test_options_are_validated(table, line, field):
    with pytest.raises(SpecError) as err:
        parse_spec(_with(tiny_spec_text(), table, line))
    assert err.value.field == field


def test_options_are_fingerprinted_and_only_in_the_planar_experiment():
    plain = parse_spec(tiny_spec_text())
    other = parse_spec(_with(tiny_spec_text(), "ace", 'basis_count = "planar-independent"'))
    unscaled = parse_spec(_with(tiny_spec_text(), "fit", "scale_columns = false"))
    assert other.params["ace"]["basis_count"] == "planar-independent"
    assert unscaled.params["fit"]["scale_columns"] is False
    assert len({plain.fingerprint(), other.fingerprint(), unscaled.fingerprint()}) == 3
    # at their defaults the options reproduce stores written before they existed: same fingerprint
    explicit = parse_spec(_with(_with(tiny_spec_text(), "ace", 'basis_count = "functions"'),
                                "fit", "scale_columns = true"))
    assert explicit.fingerprint() == plain.fingerprint()
    assert "basis_count" not in plain.fixed_parameters()["params"]["ace"]
    for name in ("p2-w-screw-quick", "p1-interstitials-quick"):
        with pytest.raises(SpecError) as err:
            parse_spec(_with(builtin_specs()[name], "ace", 'basis_count = "functions"'), name)
        assert err.value.field == "ace.basis_count"


def test_realised_counts_are_stored_with_units():
    from sweep.store import template

    ds = template(parse_spec(tiny_spec_text()))
    assert ds["n_planar_independent"].attrs["units"] == "1"
    assert "planar" in ds["n_planar_independent"].attrs["long_name"]
    assert ds["n_basis"].attrs["units"] == "1"
