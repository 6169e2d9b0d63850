"""Spec validation: invalid specs fail before any work, naming the field and allowed values."""

import re

import pytest

from sweep.spec import DIMENSIONS, SpecError, builtin_specs, load_spec, parse_spec
from tests.tiny import tiny_spec_text


def test_builtin_specs_are_valid_and_named():
    specs = builtin_specs()
    assert {"p1-vacancies", "p1-vacancies-quick"} <= set(specs)
    paper = load_spec("p1-vacancies")
    assert paper.params["simulation"]["size"] == 60
    assert paper.grid["L"] == (4, 5, 6, 7, 8, 9, 10)
    assert paper.grid["n_defects"] == (2, 3, 4)
    assert paper.grid["basis_size"] == (51, 110, 211, 383, 668, 1119, 1445, 1809, 2849)
    assert (paper.params["training"]["n_train"], paper.params["training"]["n_test"]) == (200, 50)
    assert paper.weights["WE100-WF1"] == {"energy": 100.0, "forces": 1.0}
    assert tuple(paper.grid) == DIMENSIONS


def _broken(pattern, replacement):
    text = tiny_spec_text()
    new = re.sub(pattern, replacement, text, count=1, flags=re.M)
    assert new != text
    return new


@pytest.mark.parametrize("pattern, replacement, field, words", [
    (r"^\[grid\]$", "[grid]\ntemperature = [300]", "grid.temperature", ["unknown dimension",
                                                                         "basis_size"]),
    (r"^L = \[.*\]$", "L = [4, -5]", "grid.L[1]", ["positive integer", "-5"]),
    (r"^basis_size = \[.*\]$", "basis_size = [0, 20]", "grid.basis_size[0]", ["positive"]),
    (r"^n_train = \d+$", "", "training.n_train", ["missing"]),
    (r"^observations = \[.*\]$", 'observations = ["E+F+XYZ"]', "grid.observations[0]",
     ["allowed values", "'E+F'"]),
    (r"^weights = \[.*\]$", 'weights = ["nope"]', "grid.weights[0]", ["[weights.nope]"]),
    (r"^rattle_A = .*$", 'rattle_A = "big"', "training.rattle_A", ["positive number"]),
    (r"^optimizer = .*$", 'optimizer = "newton"', "relax.optimizer", ["'lbfgs'"]),
    (r"^L = \[.*\]$", "L = [4, 7]", "grid.L[1]", ["simulation.size >= 14"]),
    (r"^\[grid\]$", "colour = 1\n[grid]", "colour", ["unknown top-level field"]),
])
def test_invalid_spec_names_the_field(pattern, replacement, field, words):
    with pytest.raises(SpecError) as err:
        parse_spec(_broken(pattern, replacement))
    assert err.value.field == field
    assert f"'{field}'" in str(err.value)
    for w in words:
        assert w in str(err.value)


def test_missing_dimension_is_named():
    with pytest.raises(SpecError, match=r"'grid.defect': missing"):
        parse_spec(_broken(r'^defect = \[.*\]$\n', ""))


def test_invalid_spec_fails_before_any_work(tmp_path):
    """`sweep run` on a bad spec exits 2 with the field's name and creates no store."""
    from sweep.cli import main

    bad = tmp_path / "bad.toml"
    bad.write_text(_broken(r"^L = \[.*\]$", "L = [-4]"))
    store = tmp_path / "never.zarr"
    assert main(["run", str(bad), "--store", str(store), "--workers", "1"]) == 2
    assert not store.exists()


def test_unknown_spec_name_lists_builtins():
    with pytest.raises(SpecError, match="p1-vacancies-quick"):
        load_spec("no-such-spec")


@pytest.mark.parametrize("value, words", [("-5", ["positive number", "-5"]),
                                          ('"big"', ["positive number", "'big'"]),
                                          ("0", ["positive number"])])
def test_invalid_memory_limit_names_the_field(value, words):
    text = tiny_spec_text() + f"\n[resources]\nmax_design_chunk_MB = {value}\n"
    with pytest.raises(SpecError) as err:
        parse_spec(text)
    assert err.value.field == "resources.max_design_chunk_MB"
    assert "'resources.max_design_chunk_MB'" in str(err.value)
    for w in words:
        assert w in str(err.value)
    with pytest.raises(SpecError, match=r"'resources.max_chunk': unknown field"):
        parse_spec(tiny_spec_text() + "\n[resources]\nmax_chunk = 5\n")


def test_memory_limit_is_optional_and_outside_the_fingerprint():
    """The limit changes values only by rounding: a store made without it accepts a spec with
    it (same fingerprint, same recorded fixed parameters), and the graph hands it to the
    design stage."""
    from sweep import tasks
    from sweep.experiments.p1_point_defects import build

    plain = parse_spec(tiny_spec_text())
    limited = parse_spec(tiny_spec_text() + "\n[resources]\nmax_design_chunk_MB = 12\n")
    assert plain.params["resources"]["max_design_chunk_MB"] is None
    assert limited.params["resources"]["max_design_chunk_MB"] == 12.0
    assert limited.fingerprint() == plain.fingerprint()
    assert limited.fixed_parameters() == plain.fixed_parameters()
    submitted = []

    def submit(stage, coords, fn, *args):
        submitted.append((stage, fn, args))
        return stage

    from sweep.store import PointIndex
    build(submit, limited, [PointIndex((0,) * len(limited.dims), limited.dims)])
    design = [(fn, args) for stage, fn, args in submitted if stage == "design"]
    assert design and design[0][0] is tasks.design_slice
    assert design[0][1][3] == 12.0  # (ace, sizes, data, max_chunk_MB, energy_weighting)


def test_geometry_stencil_is_optional_validated_and_fingerprinted():
    """``[geometry] stencil`` defaults to the papers' eq. 6.3 reading in every experiment,
    accepts the three readings, rejects others naming the field, changes the fingerprint and
    is recorded on the stored geometry error."""
    from kernels.errors import STENCILS
    from sweep.store import template

    for name, text in builtin_specs().items():
        assert parse_spec(text, name).params["geometry"] == {"stencil": "voronoi"}, name
    plain = parse_spec(tiny_spec_text())
    fingerprints = {plain.fingerprint()}
    for reading in STENCILS[1:]:
        spec = parse_spec(tiny_spec_text() + f'\n[geometry]\nstencil = "{reading}"\n')
        assert spec.params["geometry"]["stencil"] == reading
        assert template(spec).geometry_error.attrs["stencil"] == reading
        fingerprints.add(spec.fingerprint())
    assert len(fingerprints) == len(STENCILS)
    assert template(plain).geometry_error.attrs["stencil"] == "voronoi"
    with pytest.raises(SpecError) as err:
        parse_spec(tiny_spec_text() + '\n[geometry]\nstencil = "delaunay"\n')
    assert err.value.field == "geometry.stencil"
    assert "'voronoi-faces'" in str(err.value)
    with pytest.raises(SpecError, match=r"'geometry.cutoff_A': unknown field"):
        parse_spec(tiny_spec_text() + "\n[geometry]\ncutoff_A = 3.0\n")
    p2 = builtin_specs()["p2-w-screw-quick"] + '\n[geometry]\nstencil = "banana"\n'
    with pytest.raises(SpecError, match="geometry.stencil"):
        parse_spec(p2)


def test_geometry_stencil_reaches_the_point_stage():
    """The graph hands the spec's ``[geometry]`` table to each point task (P1 and P2)."""
    from sweep.store import PointIndex

    for text in (tiny_spec_text(), builtin_specs()["p2-w-screw-quick"]):
        spec = parse_spec(text + '\n[geometry]\nstencil = "cutoff"\n')
        submitted = []

        def submit(stage, coords, fn, *args):
            submitted.append((stage, args))
            return stage

        spec.definition.build(submit, spec, [PointIndex((0,) * len(spec.dims), spec.dims)])
        point = [args for stage, args in submitted if stage == "point"]
        assert point and {"stencil": "cutoff"} in point[0]
