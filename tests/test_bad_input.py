"""Bad input is refused before any work: a seeded fuzz of invalid specs through the real
command line (in-process, in a temporary working directory), each refused with one line on
stderr naming the field, exit 2, no store directory created and no cluster started; unreadable
spec files and stores that are not stores or have lost chunks of done points likewise."""

from __future__ import annotations

import random
import re

import dask
import pytest
import zarr

from sweep.cli import main
from sweep.spec import SpecError, parse_spec
from sweep.store import create_store
from tests.tiny import tiny_spec, tiny_spec_text

SEED = 20261207


def _sub(text, pattern, line):
    new = re.sub(pattern, line, text, count=1, flags=re.M)
    assert new != text, pattern
    return new


def _cases():
    """(class, spec text, field the error must name), drawn from a seeded generator."""
    rng = random.Random(SEED)
    base = tiny_spec_text()
    cases = []
    for bad in ("inf", "-inf", "nan"):
        cases += [("non-finite", _sub(base, r"^forces = .*$", f"forces = {bad}"),
                   "weights.WE100-WF1.forces"),
                  ("non-finite", _sub(base, r"^rtol = .*$", f"rtol = {bad}"), "fit.rtol"),
                  ("non-finite", _sub(base, r"^cutoff_A = .*$", f"cutoff_A = {bad}"),
                   "ace.cutoff_A")]
    for _ in range(3):
        cases += [
            ("range", _sub(base, r"^rtol = .*$", f"rtol = {rng.uniform(1.0, 100.0)!r}"),
             "fit.rtol"),
            ("range", _sub(base, r"^rattle_A = .*$", f"rattle_A = {rng.uniform(0.94, 100.0)!r}"),
             "training.rattle_A"),
            ("range", _sub(base, r"^cutoff_A = .*$", f"cutoff_A = {rng.uniform(15.1, 1e6)!r}"),
             "ace.cutoff_A"),
            ("range", _sub(base, r"^basis_size = .*$",
                           f"basis_size = [{rng.randint(20_001, 10 ** 8)}]"), "grid.basis_size[0]"),
            ("range", _sub(base, r"^size = .*$", f"size = {rng.randint(401, 10 ** 9)}"),
             "simulation.size"),
            ("range", _sub(base, r"^n_train = .*$", f"n_train = {rng.randint(100_001, 10 ** 9)}"),
             "training.n_train"),
        ]
    for name in ("../../etc/x", "a/b", ".hidden", "x y", "", "-x", "x" * 101):
        cases.append(("name", _sub(base, r'^name = ".*"$', f'name = "{name}"'), "name"))
    return cases


CASES = _cases()


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """A temporary working directory, so the default store runs/<name>.zarr lands in it."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _refused(capsys, argv, words):
    rc = main(argv)
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert len(err.splitlines()) == 1, err
    assert "Traceback" not in err
    for w in words:
        assert w in err, (w, err)
    return err


@pytest.mark.parametrize("kind, text, field", CASES,
                         ids=[f"{k}-{i}" for i, (k, _, _) in enumerate(CASES)])
def test_invalid_spec_refused_before_any_store(kind, text, field, workdir, capsys):
    with pytest.raises(SpecError) as e:  # refused by validation itself, so the CLI starts nothing
        parse_spec(text)
    assert e.value.field == field
    (workdir / "bad.toml").write_text(text)
    _refused(capsys, ["run", "bad.toml", "--no-progress"], [f"'{field}'"])
    assert sorted(p.name for p in workdir.iterdir()) == ["bad.toml"]  # no runs/, no store


def test_oversized_grid_refused_by_preflight(workdir, capsys):
    """Within every range, but the largest point's estimate exceeds a worker's memory."""
    text = tiny_spec_text(L=(200,), basis_sizes=(700,), size=400)  # design ~4.5 GB
    (workdir / "big.toml").write_text(text)
    with dask.config.set({"sweep.preflight.memory-bytes": 4e9}):
        err = _refused(capsys, ["run", "big.toml", "--no-progress"], ["GB", "basis_size"])
    assert "4 GB" in err
    assert sorted(p.name for p in workdir.iterdir()) == ["big.toml"]


def test_union_fit_memory_counts_every_stacked_cell(workdir, capsys):
    """The paper-scale P1-int fit stacks the whole rows of two training cells (measured: 8.6 GB
    peak per worker); a 4 GB worker is refused before any store, naming the fit."""
    with dask.config.set({"sweep.preflight.memory-bytes": 4e9}):
        err = _refused(capsys, ["run", "p1-interstitials", "--no-progress"], ["'fit'", "GB"])
    assert "4 GB" in err
    assert not (workdir / "runs").exists()


def test_basis_size_beyond_the_superset_refused(workdir, capsys):
    """pyace would silently return the whole superset for every larger size: refused by name,
    with what the superset realises, before any store."""
    text = tiny_spec_text(basis_sizes=(20, 5000))
    (workdir / "big-basis.toml").write_text(text)
    err = _refused(capsys, ["run", "big-basis.toml", "--no-progress"],
                   ["'grid.basis_size'", "[5000]", "724 functions"])
    assert "nradmax_by_orders" in err
    assert sorted(p.name for p in workdir.iterdir()) == ["big-basis.toml"]


def test_reference_model_without_its_optional_extra_refused(workdir, capsys, monkeypatch):
    """QUIP (the NRL tight-binding reference) is an optional extra: where it is not importable,
    a P1-Si spec is refused before any store, naming the field and the extra to install."""
    import sys

    from kernels.nrl_tb import quip_potential_class

    # None in sys.modules is how Python itself marks a module as not importable.
    for name in [m for m in sys.modules if m == "quippy" or m.startswith("quippy.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "quippy", None)
    with pytest.raises(ImportError, match=re.escape("mlip-sweep[tb]")):
        quip_potential_class()
    _refused(capsys, ["run", "p1-si-vacancies-quick", "--no-progress"],
             ["'reference.model'", "mlip-sweep[tb]", "quippy-ase"])
    assert not (workdir / "runs").exists()


def test_every_built_in_spec_realises_its_basis_sizes():
    from sweep.cluster import check_basis_sizes
    from sweep.spec import builtin_specs, load_spec

    checked = 0
    for name in builtin_specs():
        spec = load_spec(name)
        n = check_basis_sizes(spec)
        if n is not None:
            assert max(spec.grid["basis_size"]) <= n
            checked += 1
    assert checked == len(builtin_specs())  # every experiment declares its species


def test_unreadable_spec_files(workdir, capsys):
    (workdir / "binary.toml").write_bytes(bytes(range(256)) * 4)
    (workdir / "folder").mkdir()
    for argv in (["run", "binary.toml"], ["run", "folder"], ["run", "missing.toml"]):
        _refused(capsys, argv, ["<spec>", argv[1]])
    assert not (workdir / "runs").exists()


def test_status_of_a_non_store_and_of_a_store_missing_a_chunk(workdir, capsys):
    (workdir / "plain").mkdir()
    (workdir / "plain" / "notes.txt").write_text("not a store")
    err = _refused(capsys, ["status", "plain"], ["not a sweep store"])
    assert "damaged" not in err

    spec = tiny_spec()
    path = workdir / "s.zarr"
    create_store(path, spec)
    status = zarr.open(str(path / "status"), mode="r+")
    status[(0,) * status.ndim] = "done"  # one point recorded done, its chunks all there ...
    assert main(["status", str(path)]) == 0
    assert "done 1" in capsys.readouterr().out
    chunk = path / "rmse_energy" / ".".join(["0"] * status.ndim)
    assert chunk.is_file()
    chunk.unlink()  # ... until it loses one
    err = _refused(capsys, ["status", str(path)], ["damaged", "rmse_energy"])
    assert "missing" in err


def test_two_species_basis_sizes_are_counted_per_element():
    """basis_size counts functions per element: for the Ni–Al basis a size above the
    one-species superset but within each element's two-species block is accepted, one beyond
    that block refused by name."""
    from sweep.cluster import check_basis_sizes, superset_size
    from sweep.spec import builtin_specs

    text = builtin_specs()["p2-nial-screw-quick"]
    text = re.sub(r"nradmax_by_orders = \[[^]]*\]", "nradmax_by_orders = [6, 3]", text)
    text = re.sub(r"lmax_by_orders = \[[^]]*\]", "lmax_by_orders = [0, 2]", text)
    one = superset_size(("Ni",), 5.0, (6, 3), (0, 2), "SBessel")
    per_element = superset_size(("Ni", "Al"), 5.0, (6, 3), (0, 2), "SBessel")
    assert one < per_element
    ok = parse_spec(re.sub(r"basis_size = \[[^]]*\]", f"basis_size = [{one + 1}]", text))
    assert check_basis_sizes(ok) == per_element
    bad = parse_spec(re.sub(r"basis_size = \[[^]]*\]", f"basis_size = [{per_element + 1}]", text))
    with pytest.raises(SpecError, match=f"{per_element} functions per species") as e:
        check_basis_sizes(bad)
    assert e.value.field == "grid.basis_size"
