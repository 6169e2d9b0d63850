"""The evidence of P2 points on where the geometry error sits: the core/far-field split of ‖Dw‖,
the fitted elastic constants, the anisotropic CLE field with a given C, and the report section."""

import numpy as np
import pytest

from kernels import dislocations as dk
from kernels.ace import ACEBasis, ACEModel, ace_potential_config
from kernels.edge_quadrupole import periodic_pair_displacement
from kernels.elasticity import cauchy_born_derivatives
from kernels.errors import (Stencil, core_bonds, distance_to_cores_A, geometry_error,
                            geometry_error_split, stencil_norm_split)
from kernels.point_defects import Observations
from kernels.screw_quadrupole import (anisotropic_screw_displacement, cell_repeats,
                                      screw_quadrupole_cell, screw_stroh_field)

A0 = 3.1648  # Å, the Zhou W lattice constant (any bcc a0 would do)


@pytest.fixture(scope="module")
def w_cell():
    """A small W screw quadrupole, its Voronoi stencil and the 2|b| core radius."""
    c = screw_quadrupole_cell(A0, cell_repeats(12))
    i, j = Stencil("voronoi").pairs(c.positions0_A, c.cell_A)
    return c, i, j, dk.CORE_RADIUS_BURGERS * c.burgers_A


def _cubic(c11, c12, c44):
    C = np.zeros((6, 6))
    C[:3, :3] = c12
    np.fill_diagonal(C[:3, :3], c11)
    C[3, 3] = C[4, 4] = C[5, 5] = c44
    return C


def test_split_adds_up_and_equals_the_total(w_cell):
    c, i, j, r = w_cell
    rng = np.random.default_rng(0)
    ml = c.positions_A + 0.05 * rng.standard_normal(c.positions_A.shape)
    st = Stencil("voronoi")
    split = geometry_error_split(c.positions0_A, c.positions_A, ml, c.cell_A, st, c.cores_A, r)
    assert split.total_A == pytest.approx(geometry_error(c.positions0_A, c.positions_A, ml,
                                                         c.cell_A, st), rel=1e-12)
    assert split.core_A**2 + split.far_A**2 == pytest.approx(split.total_A**2, rel=1e-12)
    assert 0 < split.core_bonds < split.bonds == len(i)
    assert split.core_A > 0 and split.far_A > 0


def test_one_displaced_site_gives_its_bonds_exactly_in_its_part(w_cell):
    """w = d on one site, 0 elsewhere: ‖Dw‖² = 2·n·|d|² over its n bonds to other atoms (each
    bond in both directions; in the cell of height |b| two of the 14 Voronoi neighbours are the
    site's own images ±b along the line, which w moves alike), all of it in the core part for a
    site at a core, all in the far part for a site further than 2|b| + its longest bond from
    every core."""
    c, i, j, r = w_cell
    dist = distance_to_cores_A(c.positions0_A, c.cell_A, c.cores_A)
    near, far = int(np.argmin(dist)), int(np.argmax(dist))
    assert dist[near] < r and dist[far] > r + A0  # bcc Voronoi bonds are at most a0 long
    d = np.array([0.01, -0.02, 0.03])
    for site, part in ((near, "core_A"), (far, "far_A")):
        w = np.zeros_like(c.positions0_A)
        w[site] = d
        assert int(np.sum(i == site)) == 14
        deg = int(np.sum((i == site) & (j != site)))
        assert deg == 12
        s = stencil_norm_split(w, i, j, core_bonds(c.positions0_A, c.cell_A, i, j, c.cores_A, r))
        exact = np.sqrt(2 * deg * d @ d)
        assert s.total_A == pytest.approx(exact, rel=1e-12)
        assert getattr(s, part) == pytest.approx(exact, rel=1e-12)
        other = "far_A" if part == "core_A" else "core_A"
        assert getattr(s, other) == 0.0


def test_core_bonds_are_those_near_the_cores(w_cell):
    """A displacement that vanishes beyond 2|b| of every core has no far part; the mask holds
    exactly the bonds with an end within 2|b| (periodic images of the cores included)."""
    c, i, j, r = w_cell
    dist = distance_to_cores_A(c.positions0_A, c.cell_A, c.cores_A)
    rng = np.random.default_rng(1)
    w = np.where((dist < r)[:, None], rng.standard_normal(c.positions0_A.shape), 0.0)
    mask = core_bonds(c.positions0_A, c.cell_A, i, j, c.cores_A, r)
    s = stencil_norm_split(w, i, j, mask)
    assert s.far_A == 0.0 and s.core_A == pytest.approx(s.total_A) and s.total_A > 0
    np.testing.assert_array_equal(mask, np.minimum(dist[i], dist[j]) < r)
    # periodic: a core moved by a whole cell vector is the same core
    shifted = c.cores_A + c.cell_A[0, :2]
    np.testing.assert_allclose(distance_to_cores_A(c.positions0_A, c.cell_A, shifted), dist,
                               atol=1e-12)
    # every core has the sites of its three nearest ⟨111⟩ columns (2 atoms each, |b| high cell)
    # within 2|b|, and no site is further than half the cell diagonal from every core
    assert np.sum(dist < r) >= 4 * 6
    assert dist.max() < 0.5 * np.hypot(c.cell_A[0, 0], c.cell_A[1, 1])


def test_anisotropic_screw_field_has_the_predictors_antiplane_part(w_cell):
    """With W's (reference-like) C the Stroh field's u_z is the θ₁ predictor's up to a constant
    (mod b); its in-plane part is nonzero and ∝ A − 1; an isotropic C gives none; the field is
    periodic; and for B2 NiAl's [001] screw it does not depend on a cubic C at all."""
    c, *_ = w_cell
    b = c.burgers_A
    uz = c.positions_A[:, 2] - c.positions0_A[:, 2]
    inplane = {}
    for A in (1.01, 1.02):
        u = anisotropic_screw_displacement(c, screw_stroh_field(A0, _cubic(520, 200, A * 160)))
        d = np.mod(u[:, 2] - uz + b / 2, b) - b / 2
        assert d.max() - d.min() < 1e-3 * b
        inplane[A] = np.abs(u[:, :2]).max()
    assert inplane[1.01] > 0
    assert inplane[1.02] / inplane[1.01] == pytest.approx(2.0, rel=0.05)
    assert screw_stroh_field(A0, _cubic(520, 200, 160)) is None  # isotropic: degenerate
    u_iso = anisotropic_screw_displacement(c, None)
    assert np.all(u_iso[:, :2] == 0)
    np.testing.assert_allclose(np.mod(u_iso[:, 2] - uz + b / 2, b) - b / 2, 0, atol=1e-12)
    # periodic: the field at x + Lx equals that at x, modulo whole Burgers vectors
    field = screw_stroh_field(A0, _cubic(520, 200, 1.2 * 160))
    Lx, Ly = c.cell_A[0, 0], c.cell_A[1, 1]
    rng = np.random.default_rng(3)
    xy = rng.uniform([0, 0], [Lx, Ly], (50, 2))
    pairs = ((c.cores_A[0], 1.0), (c.cores_A[2], -1.0))
    u0 = periodic_pair_displacement(xy, pairs, field, Lx, Ly)
    u1 = periodic_pair_displacement(xy + [Lx, 0], pairs, field, Lx, Ly)
    jump = np.mod(u1[:, 2] - u0[:, 2] + b / 2, b) - b / 2
    np.testing.assert_allclose(u1[:, :2], u0[:, :2], atol=1e-9)
    np.testing.assert_allclose(jump, 0, atol=1e-9)
    from kernels.b2_screw import b2_screw_cle_displacement

    u_a = b2_screw_cle_displacement(2.8587, 8, _cubic(200, 140, 120))
    u_b = b2_screw_cle_displacement(2.8587, 8, _cubic(240, 120, 90))
    np.testing.assert_allclose(u_a, u_b, atol=1e-10)


def test_fitted_elastic_constants_of_a_model_equal_to_the_reference_are_its_own():
    """The reference is an ACE model in the fitting basis: the E+F fit recovers it, and the fit's
    C (rows·c) is the reference's C from its own energy (Cauchy–Born differences)."""
    basis = ACEBasis(ace_potential_config(["W"], 30, 5.0, [10, 4, 3], [0, 3, 2]))
    ref = ACEModel(basis, np.random.default_rng(5).standard_normal(basis.n_functions))
    x, cell, s = dk.bcc_cubic_cell(A0)
    cb = cauchy_born_derivatives(ref, x, cell, s, dk.STRAIN_STEP, third=True)
    perfect = ref.evaluate(x, cell, s)
    lat = dk.LatticeReference(A0, perfect.energy_eV / len(x), cb.second, cb.third)
    train, vtrain = dk._rattled(ref, x, cell, 6, 0.2, 1, s)
    test, vtest = dk._rattled(ref, x, cell, 3, 0.2, 2, s)
    data = dk.TrainingData(cell, x, train, test, vtrain, vtest,
                           Observations(x[None], np.array([perfect.energy_eV]),
                                        perfect.forces_eV_per_A[None]), tuple(s))
    rows = dk.design_rows(basis, data, A0)
    fitted = dk.fit(basis, rows, data, lat, dk.Weights(1.0, 1.0), "rrqr", 1e-12)
    assert fitted.rmse_forces_eV_per_A < 1e-8
    C = fitted.elastic_eV_per_A3
    assert C.shape == (6, 6)
    np.testing.assert_allclose(C, lat.elastic_eV_per_A3, atol=1e-7 * np.abs(C).max())
    assert fitted.elastic_constant_error_percent < 1e-4
    ref_constants = dk.cubic_constants_and_anisotropy(dk.reference_elastic_constants(lat))
    np.testing.assert_allclose(dk.cubic_constants_and_anisotropy(C), ref_constants, rtol=1e-6)


def test_cubic_constants_and_zener_anisotropy():
    from kernels.elasticity import EV_PER_A3_IN_GPA

    C = _cubic(522.5, 204.2, 160.8) / EV_PER_A3_IN_GPA
    c11, c12, c44, A = dk.cubic_constants_and_anisotropy(C)
    assert (c11, c12, c44) == pytest.approx((522.5, 204.2, 160.8), rel=1e-12)
    assert A == pytest.approx(2 * 160.8 / (522.5 - 204.2), rel=1e-12)


def _with_evidence(ds, p_far, p_core=-1.0, seed=0):
    """Add the evidence variables to a synthetic P2 store (tests/test_report.py's schema):
    far ∝ L^p_far (per observation set), core ∝ L^p_core, the total their root sum of squares,
    the CLE prediction half the far field, and constant elastic constants."""
    rng = np.random.default_rng(seed)
    L = ds["L"].astype(float)
    shape = ds["geometry_error"].shape
    noise = lambda: np.exp(0.02 * rng.standard_normal(shape))  # noqa: E731
    p = ds["observations"].copy(data=np.asarray(p_far, float))
    far = (0.05 * L**p).broadcast_like(ds["geometry_error"]).transpose(*ds["geometry_error"].dims)
    core = (0.2 * L**p_core).broadcast_like(far).transpose(*far.dims)
    far, core = far * noise(), core * noise()
    ds = ds.assign(geometry_error_far=far.assign_attrs(units="Å"),
                   geometry_error_core=core.assign_attrs(units="Å"),
                   geometry_error=np.sqrt(far**2 + core**2).assign_attrs(units="Å"),
                   cle_far_field_error=(0.5 * far).assign_attrs(units="Å"),
                   geometry_error_far_line=(0.9 * far).assign_attrs(units="Å"),
                   cle_far_field_error_line=(0.01 * far).assign_attrs(units="Å"))
    for name, v in (("elastic_c11", 500.0), ("elastic_c12", 200.0), ("elastic_c44", 160.0),
                    ("zener_anisotropy", 320 / 300), ("reference_c11", 522.5),
                    ("reference_c12", 204.2), ("reference_c44", 160.8),
                    ("reference_zener_anisotropy", 2 * 160.8 / 318.3)):
        ds[name] = far.copy(data=np.full(shape, v)).assign_attrs(units="GPa")
    return ds


def test_core_far_report_section_verdicts_and_old_stores(tmp_path):
    """Far field at the predicted rates agrees and a far field that does not stall under E+F is
    'faster than predicted'; a core falling like L⁻¹ 'falls'; a store without the variables
    gets a note instead of the section."""
    from sweep.report import core_far_slope_table, write_report
    from tests.test_report import make_store

    obs = ("E+F", "E+F+CLE", "E+F+CLE+NL")
    base = make_store(tmp_path / "p2.zarr", n_defects=(4,), observations=obs,
                      experiment="p2-dislocations", Ls=(4, 6, 8, 10, 14)).load()
    good = _with_evidence(base, (0.0, -1.0, -2.0))
    rows, notes = core_far_slope_table(good.sweep.matched_accuracy())
    assert not notes
    far = {r["observations"]: r for r in rows if r["variable"] == "geometry_error_far"}
    assert {k: r["predicted"] for k, r in far.items()} == {"E+F": 0.0, "E+F+CLE": -1.0,
                                                           "E+F+CLE+NL": -2.0}
    assert all(r["verdict"] == "agrees (within CI)" for r in far.values())
    core = [r for r in rows if r["variable"] == "geometry_error_core"]
    assert len(core) == 3 and all(r["verdict"] == "falls with L" for r in core)
    bad = _with_evidence(base, (-1.0, -1.0, -1.0))
    rows, _ = core_far_slope_table(bad.sweep.matched_accuracy())
    far = {r["observations"]: r["verdict"] for r in rows if r["variable"] == "geometry_error_far"}
    assert far["E+F"] == "faster than predicted" and far["E+F+CLE+NL"] == "slower than predicted"
    index = write_report(good, tmp_path / "rep")
    text = index.read_text()
    assert "## Core vs far field" in text and "Skipped" not in text
    assert list((tmp_path / "rep" / "figures").glob("core-far_*.png"))
    assert (tmp_path / "rep" / "core_far_slopes.csv").read_text().count("\n") == 1 + 9
    old = write_report(base, tmp_path / "old").read_text()
    assert "## Core vs far field" in old and "Skipped: this store does not hold" in old
    assert not list((tmp_path / "old" / "figures").glob("core-far_*.png"))
    assert "Where the error comes from" not in text  # a store without the residual variables


def test_residual_section_slopes_and_verdicts(tmp_path):
    """A geometry error proportional to the core ε_F at ȳ_L agrees with slope 1 against it; one
    that does not follow it (constant) is 'slower than predicted'; ε_F growing like L 'grows'."""
    from sweep.report import residual_slope_tables, write_report
    from tests.test_report import make_store

    obs = ("E+F", "E+F+CLE")
    base = make_store(tmp_path / "p2.zarr", n_defects=(4,), observations=obs,
                      experiment="p2-dislocations", Ls=(4, 6, 8, 10, 14)).load()
    ds = _with_evidence(base, (0.0, -1.0))
    rng = np.random.default_rng(4)
    g = ds["geometry_error"]
    L = ds["L"].astype(float).broadcast_like(g).transpose(*g.dims)
    eps_core = 0.02 * L**-0.7
    # log-residuals orthogonal to (1, log ε) within each observation set: the least-squares
    # slope is exactly 1 and its interval has a finite width
    x = np.log10(eps_core.values)
    r = 0.01 * rng.standard_normal(g.shape)
    k = g.dims.index("observations")
    for o in range(g.shape[k]):
        xs, rs = np.take(x, o, axis=k).ravel(), np.take(r, o, axis=k).ravel()
        X = np.column_stack([np.ones_like(xs), xs])
        rs = rs - X @ np.linalg.lstsq(X, rs, rcond=None)[0]
        idx = [slice(None)] * r.ndim
        idx[k] = o
        r[tuple(idx)] = rs.reshape(np.take(r, o, axis=k).shape)
    g = 2.0 * eps_core * 10**r
    unit = lambda da, u: da.assign_attrs(units=u)  # noqa: E731
    ds = ds.assign(geometry_error=unit(g, "Å"),
                   training_force_residual_core=unit(eps_core, "eV/Å"),
                   training_force_residual=unit(0.01 * L, "eV/Å"),
                   force_residual_core=unit(0.1 + 0 * g, "eV/Å"),
                   force_residual_far=unit(0.01 + 0 * g, "eV/Å"),
                   linear_response_error=unit(0.9 * g, "Å"),
                   linear_response_error_core_forces=unit(0.8 * g, "Å"),
                   linear_response_error_far_forces=unit(0.2 * g, "Å"))
    vs_L, vs_eps, notes = residual_slope_tables(ds.sweep.matched_accuracy(), ds)
    assert not notes
    assert {r["observations"]: r["verdict"] for r in vs_eps} == {
        "E+F": "agrees (within CI)", "E+F+CLE": "agrees (within CI)"}
    assert all(abs(r["slope"] - 1) < 1e-9 and r["ci_high"] - r["ci_low"] > 1e-3 for r in vs_eps)
    total = [r for r in vs_L if r["variable"] == "training_force_residual"]
    assert len(total) == 2 and all(r["verdict"] == "grows with L" for r in total)
    flat = ds.assign(geometry_error=unit(0.05 + 0 * g * np.exp(0.01 * rng.standard_normal(g.shape)), "Å"))
    _, vs_eps, _ = residual_slope_tables(flat.sweep.matched_accuracy(), flat)
    assert {r["verdict"] for r in vs_eps} == {"slower than predicted"}
    text = write_report(ds, tmp_path / "rep").read_text()
    assert "### Where the error comes from" in text
    assert (tmp_path / "rep" / "residual_points.csv").exists()
