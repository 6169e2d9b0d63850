"""``[relax] reference_optimizer``: which optimiser relaxes the reference cells.

ase's L-BFGS can stop where the forces vanish but the energy is not a minimum: on the 8 a0 W
screw quadrupole it ends at a saddle. The papers' own code (JuLIP's ``minimise!`` at fixed cell)
preconditions L-BFGS with the Exp preconditioner, which ase's ``precon-lbfgs`` implements; that
option must reach a minimum there, and the option must be a spec field like any other.
"""

import re

import numpy as np
import pytest

from kernels import dislocations as dk
from kernels import point_defects as pdk
from kernels.eam import zhou2001_tungsten
from kernels.hessian_precon_relax import reference_hessian
from kernels.relax import relax
from kernels.stable_relax import relax_to_minimum
from sweep.spec import SpecError, load_spec, parse_spec
from sweep import tasks


def _quick_text(extra: str) -> str:
    from importlib import resources
    text = (resources.files("sweep") / "specs" / "p2-w-screw-quick.toml").read_text()
    new = re.sub(r"^\[relax\]$", "[relax]\n" + extra, text, count=1, flags=re.M)
    assert new != text
    return new


def test_auto_is_the_default_and_leaves_the_fingerprint_alone():
    quick = load_spec("p2-w-screw-quick")
    assert quick.params["relax"]["reference_optimizer"] == "auto"
    explicit = parse_spec(_quick_text('reference_optimizer = "auto"'))
    assert explicit.fingerprint() == quick.fingerprint()
    precon = parse_spec(_quick_text('reference_optimizer = "precon-lbfgs"'))
    assert precon.fingerprint() != quick.fingerprint()
    assert precon.fixed_parameters()["params"]["relax"]["reference_optimizer"] == "precon-lbfgs"
    opts = tasks.relax_options(precon.params["relax"])
    assert (opts.optimizer, opts.reference_optimizer) == ("hessian-lbfgs", "precon-lbfgs")


def test_unknown_reference_optimizer_is_refused_by_name():
    with pytest.raises(SpecError) as err:
        parse_spec(_quick_text('reference_optimizer = "newton"'))
    assert err.value.field == "relax.reference_optimizer"
    assert "'precon-lbfgs'" in str(err.value)


def test_reference_optimizer_resolution():
    hess = pdk.RelaxOptions(optimizer="hessian-lbfgs")
    assert pdk.reference_optimizer(hess) == "lbfgs"
    assert pdk.reference_optimizer(pdk.RelaxOptions(optimizer="fire")) == "fire"
    assert pdk.reference_optimizer(
        pdk.RelaxOptions(optimizer="hessian-lbfgs", reference_optimizer="precon-lbfgs")
    ) == "precon-lbfgs"


def _lowest_nontranslation_eigenvalue(model, sim) -> float:
    H = reference_hessian(model, sim.positions_A, sim.cell_A, list(sim.symbols), 3).toarray()
    w = np.linalg.eigvalsh(0.5 * (H + H.T))
    return float(w[3])          # w[0:3]: the three translations (zero)


def _sim(model, lat, size, *relax):
    return dk.simulation_reference(model, lat.a0_A, size,
                                   pdk.RelaxOptions(1e-6, 20000, "hessian-lbfgs", *relax))


def test_stable_reference_leaves_the_saddle_where_plain_relaxations_stop():
    """From the CLE predictor of the 8 a0 W screw quadrupole both L-BFGS variants keep its
    symmetry and stop at a saddle; ``reference_minimum = "stable"`` leaves it along the softest
    mode, and both then reach one minimum (or its mirror image)."""
    model = zhou2001_tungsten()
    lat = dk.lattice_reference(model)
    plain = {o: _sim(model, lat, 8, o) for o in ("auto", "precon-lbfgs")}
    stable = {o: _sim(model, lat, 8, o, "stable") for o in ("auto", "precon-lbfgs")}
    for sim in (*plain.values(), *stable.values()):
        forces = model.evaluate(sim.positions_A, sim.cell_A, list(sim.symbols)).forces_eV_per_A
        assert np.linalg.norm(forces, axis=1).max() < 1e-6
    for sim in plain.values():
        assert _lowest_nontranslation_eigenvalue(model, sim) < -1.0
    for sim in stable.values():
        assert _lowest_nontranslation_eigenvalue(model, sim) > 0.05
        assert sim.energy_eV < plain["auto"].energy_eV - 0.4
    assert stable["auto"].energy_eV == pytest.approx(stable["precon-lbfgs"].energy_eV, abs=1e-7)
    # the same minimum or a symmetry image of it (the softest mode's sign picks which)
    assert _lowest_nontranslation_eigenvalue(model, stable["auto"]) == pytest.approx(
        _lowest_nontranslation_eigenvalue(model, stable["precon-lbfgs"]), abs=1e-6)


def test_relax_to_minimum_keeps_a_minimum_and_counts_escapes():
    model = zhou2001_tungsten()
    lat = dk.lattice_reference(model)
    c = dk.W_SCREW.cell(lat.a0_A, 8, None)
    sym = ["W"] * len(c.positions_A)
    r = relax_to_minimum(model, c.positions_A, c.cell_A, sym, 1e-6, 20000, "lbfgs")
    assert r.escapes == 1 and r.lowest_eigenvalue_eV_per_A2 > 0.05
    again = relax_to_minimum(model, r.positions_A, c.cell_A, sym, 1e-6, 20000, "lbfgs")
    assert again.escapes == 0
    assert again.energy_eV == pytest.approx(r.energy_eV, abs=1e-8)


def test_precon_lbfgs_is_deterministic():
    """ase's PreconLBFGS with PyAMG starts its solves from unseeded random vectors; the
    reference relaxations use the direct solve, so two runs agree to the bit."""
    model = zhou2001_tungsten()
    lat = dk.lattice_reference(model)
    c = dk.W_SCREW.cell(lat.a0_A, 8, None)
    sym = ["W"] * len(c.positions_A)
    a, b = (relax(model, c.positions_A, c.cell_A, sym, 1e-6, 20000, "precon-lbfgs")
            for _ in range(2))
    assert a.n_steps == b.n_steps
    np.testing.assert_array_equal(a.positions_A, b.positions_A)


@pytest.mark.parametrize("n", [30, 700])
def test_lowest_eigenpairs_dense_and_lanczos_agree(n):
    """The shift-invert Lanczos path (large cells) against dense eigh on a small cell."""
    model = zhou2001_tungsten()
    lat = dk.lattice_reference(model)
    c = dk.W_SCREW.cell(lat.a0_A, 8, None)
    sym = ["W"] * len(c.positions_A)
    H = reference_hessian(model, c.positions_A, c.cell_A, sym, 3)
    dense = np.linalg.eigvalsh(H.toarray())[:5]
    import kernels.stable_relax as sr
    old = sr.DENSE_MAX
    sr.DENSE_MAX = n
    try:
        w, v = sr.lowest_eigenpairs(H, c.positions_A, c.cell_A, 3, 5)
    finally:
        sr.DENSE_MAX = old
    np.testing.assert_allclose(w, dense, atol=1e-7)
    np.testing.assert_allclose(np.linalg.norm(H @ v - v * w, axis=0), 0, atol=1e-5)


def test_softest_mode_by_factorisation_matches_dense():
    """Above DENSE_MAX the saddle is detected by a failing Cholesky of H + ε I and its mode
    found by Lanczos; at a minimum only the factorisation runs (eigenvalue NaN)."""
    import kernels.stable_relax as sr
    model = zhou2001_tungsten()
    lat = dk.lattice_reference(model)
    c = dk.W_SCREW.cell(lat.a0_A, 8, None)
    sym = ["W"] * len(c.positions_A)
    saddle = relax(model, c.positions_A, c.cell_A, sym, 1e-6, 20000, "lbfgs")
    minimum = relax_to_minimum(model, c.positions_A, c.cell_A, sym, 1e-6, 20000, "lbfgs")
    Hs = reference_hessian(model, saddle.positions_A, c.cell_A, sym, 3)
    Hm = reference_hessian(model, minimum.positions_A, c.cell_A, sym, 3)
    dense_s, vec_s = sr.softest_mode(Hs, saddle.positions_A, c.cell_A, 3)
    dense_m, vec_m = sr.softest_mode(Hm, minimum.positions_A, c.cell_A, 3)
    assert dense_s < -1.0 and vec_s is not None
    assert dense_m > 0.05 and vec_m is None
    old = sr.DENSE_MAX
    sr.DENSE_MAX = 30
    try:
        big_s, big_vec = sr.softest_mode(Hs, saddle.positions_A, c.cell_A, 3)
        big_m, none = sr.softest_mode(Hm, minimum.positions_A, c.cell_A, 3)
    finally:
        sr.DENSE_MAX = old
    assert big_s == pytest.approx(dense_s, abs=1e-7)
    np.testing.assert_allclose(np.linalg.norm(Hs @ big_vec - big_s * big_vec), 0, atol=1e-5)
    assert np.isnan(big_m) and none is None


def test_precon_lbfgs_reaches_a_tolerance_below_the_armijo_line_searchs_round_off():
    """A rattled 249-atom W vacancy cell: at 1e-6 eV/Å ase's PreconLBFGS converges by itself;
    at 1e-8 eV/Å its Armijo line search gives up on energy round-off (ase raises), and
    ``"precon-lbfgs"`` finishes with force-only L-BFGS to the same minimum."""
    from ase import Atoms
    from ase.optimize.precon import PreconLBFGS

    from kernels.relax import ModelCalculator, _factored_exp

    model = zhou2001_tungsten()
    x, cell, symbols = dk.bcc_cubic_cell(3.165, 5)
    x, symbols = np.delete(x, 0, axis=0), symbols[1:]
    x = x + 0.05 * np.random.default_rng(0).standard_normal(x.shape)

    atoms = Atoms(symbols=symbols, positions=x, cell=cell, pbc=True)
    atoms.calc = ModelCalculator(model)
    with pytest.raises(RuntimeError, match="Armijo"), pytest.warns(UserWarning):
        PreconLBFGS(atoms, precon=_factored_exp(), use_armijo=True,
                    logfile=None).run(fmax=1e-8, steps=5000)

    loose = relax(model, x, cell, symbols, 1e-6, 5000, "precon-lbfgs")
    with pytest.warns(UserWarning, match="Armijo"):
        tight = relax(model, x, cell, symbols, 1e-8, 5000, "precon-lbfgs")
    assert tight.max_force_eV_per_A <= 1e-8
    assert tight.n_steps > loose.n_steps
    # the same minimum, closer to it: positions move by no more than the looser tolerance allows
    assert np.abs(tight.positions_A - loose.positions_A).max() < 1e-4
    assert tight.energy_eV <= loose.energy_eV + 1e-9
