"""Screw quadrupole geometry, Cauchy–Born elastic rows, virial rows, ARD and the P2 stages."""

import numpy as np
import pytest

from kernels import dislocations as dk
from kernels.ace import ACEBasis, ACEModel, ace_potential_config
from kernels.ard import solve_ard
from kernels.eam import zhou2001_tungsten
from kernels.elasticity import (deformation, elastic_rows, strain_derivatives, virial_rows)
from kernels.errors import neighbour_pairs
from kernels.relax import relax
from kernels.screw_quadrupole import (bcc_screw_unit_cell, periodic_screw_displacement,
                                      screw_quadrupole_cell)

A0 = 3.1648494  # Zhou W, measured in test_kernels_eam


def _burgers_circuit(x0, x, core, b, r_in, r_out):
    """Σ of wrapped u_z differences around a ring of columns about ``core`` (Å)."""
    d = x0[:, :2] - core
    r = np.linalg.norm(d, axis=1)
    ring = np.nonzero((r > r_in) & (r < r_out))[0]
    order = ring[np.argsort(np.arctan2(d[ring, 1], d[ring, 0]))]
    u = x[order, 2] - x0[order, 2]
    du = np.diff(np.append(u, u[0]))
    return float(np.sum(du - b * np.round(du / b)))


def test_quadrupole_has_zero_net_burgers_and_each_core_winds_by_b():
    c = screw_quadrupole_cell(A0, (6, 10))
    assert c.signs.sum() == 0
    for core, s in zip(c.cores_A, c.signs):
        assert _burgers_circuit(c.positions0_A, c.positions_A, core, c.burgers_A, 3.0, 6.0) \
            == pytest.approx(s * c.burgers_A, abs=1e-9)


def assert_cle_predictor_periodic(c):
    """The field of a ScrewCell's cores changes by whole Burgers vectors under cell shifts."""
    Lx, Ly, b = c.cell_A[0, 0], c.cell_A[1, 1], c.burgers_A
    xy = np.random.default_rng(0).uniform(0, 1, (50, 2)) * [Lx, Ly]
    u = periodic_screw_displacement(xy, c.cores_A, c.signs, b, Lx, Ly)
    for shift in ([Lx, 0], [0, Ly], [Lx, -Ly]):
        v = periodic_screw_displacement(xy + shift, c.cores_A, c.signs, b, Lx, Ly)
        jump = (v - u) / b
        np.testing.assert_allclose(jump, np.round(jump), atol=1e-10)


def test_cle_predictor_is_periodic():
    assert_cle_predictor_periodic(screw_quadrupole_cell(A0, (6, 10)))


def test_single_core_field_matches_matscipy_anisotropic_cle():
    """Near one core the periodic field minus its smooth image part is matscipy's Stroh field."""
    from matscipy.dislocation import BCCScrew111Dislocation

    C11, C12, C44 = 522.5 / 160.2177, 204.2 / 160.2177, 160.8 / 160.2177
    d = BCCScrew111Dislocation(A0, C11, C12, C44, symbol="W")
    core = np.array([0.0, 0.0, 0.0])
    ang = np.linspace(0, 2 * np.pi, 13)[:-1]
    pts = np.stack([3.0 * np.cos(ang), 3.0 * np.sin(ang), np.zeros_like(ang)], axis=1)
    u_ms = d.displacements(pts, core, method="atomman", self_consistent=False)
    b = A0 * np.sqrt(3) / 2
    theta = b * np.arctan2(pts[:, 1], pts[:, 0]) / (2 * np.pi)
    diff = (u_ms[:, 2] - theta) / b
    diff -= np.round(diff - diff[0])
    np.testing.assert_allclose(diff, diff[0], atol=1e-6)  # same up to a constant
    # The anisotropic solution has small in-plane components (W's Zener ratio is 1.01), which the
    # antiplane predictor leaves to the relaxation: below 2e-3 Å at 3 Å from the core.
    assert np.abs(u_ms[:, :2]).max() < 2e-3


def test_bcc_stencil_has_eight_nearest_neighbours():
    c = screw_quadrupole_cell(A0, (2, 4))
    i, _ = neighbour_pairs(c.positions0_A, c.cell_A, dk.nearest_neighbour_cutoff(A0))
    assert np.all(np.bincount(i, minlength=len(c.positions0_A)) == 8)


def test_relaxed_cell_keeps_its_dislocations():
    model = zhou2001_tungsten()
    c = screw_quadrupole_cell(A0, (4, 6))
    sym = ["W"] * len(c.positions_A)
    r = relax(model, c.positions_A, c.cell_A, sym, 1e-4, 3000)
    e_bulk = model.evaluate(c.positions0_A, c.cell_A, sym).energy_eV
    assert r.energy_eV - e_bulk > 5.0  # four cores of ~1.5 eV/b plus their elastic fields
    for core, s in zip(c.cores_A, c.signs):
        assert _burgers_circuit(c.positions0_A, r.positions_A, core, c.burgers_A, 3.0, 6.0) \
            == pytest.approx(s * c.burgers_A, abs=1e-6)


def test_strain_derivatives_exact_for_polynomials():
    rng = np.random.default_rng(1)
    g, H, T, Q = (rng.standard_normal(s) for s in ((6,), (6, 6), (6, 6, 6), (6, 6, 6, 6)))
    H = H + H.T
    T = sum(T.transpose(p) for p in ((0, 1, 2), (0, 2, 1), (1, 0, 2), (1, 2, 0), (2, 0, 1),
                                     (2, 1, 0)))

    def f(e):
        return (g @ e + 0.5 * e @ H @ e + np.einsum("ijk,i,j,k", T, e, e, e) / 6
                + np.einsum("ijkl,i,j,k,l", Q, e, e, e, e))

    d = strain_derivatives(f, 1e-2)
    np.testing.assert_allclose(d.third, T, atol=1e-6)  # central third differences: O(h²) f⁽⁵⁾
    Q[:] = 0  # second central differences are exact up to cubics
    d = strain_derivatives(f, 1e-2)
    # the first central difference of a cubic carries exactly h²/6 ∂³_iii f
    np.testing.assert_allclose(d.first, g + 1e-4 / 6 * np.einsum("iii->i", T), atol=1e-8)
    np.testing.assert_allclose(d.second, H, atol=1e-8)


@pytest.fixture(scope="module", params=["W", "Si", "NiAl"])
def ace_crystal(request):
    """A basis on the perfect crystal of a P2 system and the strain step of the elastic-row
    check: bcc W (30 functions, chain-rule rows), diamond Si (30 functions, one cubic cell, a
    multilattice: its elastic rows are the clamped-ion ∂²W_cb) or B2 NiAl (15 functions per
    element, two species, pyace's rows).

    The random Ni–Al model is strongly anharmonic (C11 < 0): the O(h²) truncation of the
    second differences is 1.6e-5 relative at h = 1e-3, 3.6e-6 at 5e-4, 5.0e-7 at 2.5e-4
    (measured), so its rows are checked at h = 5e-4."""
    if request.param == "NiAl":
        from kernels.b2_screw import b2_cubic_cell

        basis = ACEBasis(ace_potential_config(["Ni", "Al"], 15, 5.0, [10, 4, 3], [0, 3, 2]))
        return (basis, *b2_cubic_cell(2.85867), 5e-4)
    if request.param == "Si":
        from kernels.si_edge import diamond_perfect_cell

        x, c, s = diamond_perfect_cell(5.429, 1)
    else:
        x, c, s = dk.bcc_cubic_cell(A0)
    basis = ACEBasis(ace_potential_config([s[0]], 30, 5.0, [10, 4, 3], [0, 3, 2]))
    return basis, x, c, s, 1e-3


def test_virial_rows_match_exact_virial(ace_crystal):
    basis, x, c, s, _ = ace_crystal
    coef = np.random.default_rng(2).standard_normal(basis.n_functions)
    xr = x + 0.1 * np.random.default_rng(3).standard_normal(x.shape)
    v = virial_rows(basis, xr, c, s) @ coef
    ex = ACEModel(basis, coef).evaluate(xr, c, s).virial_eV
    exact = np.array([ex[a, b] for a, b in ((0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1))])
    np.testing.assert_allclose(v, exact, rtol=1e-7, atol=1e-7 * np.abs(exact).max())


def test_elastic_rows_equal_model_constants_from_its_stress(ace_crystal):
    """rows·c = ∂²W̃_cb; independently: differentiate the model's analytic virial in strain."""
    basis, x, c, s, h = ace_crystal
    coef = np.random.default_rng(4).standard_normal(basis.n_functions)
    model = ACEModel(basis, coef)
    rows = elastic_rows(basis, x, c, s, h, third=False)
    V0 = abs(np.linalg.det(c))

    def dw(e):  # ∂w/∂e_j = −(1/V0) virial(F) : (∂F/∂e_j) F⁻¹
        F = deformation(e)
        vir = model.evaluate(x @ F.T, c @ F.T, s).virial_eV
        out = []
        for j in range(6):
            ej = np.zeros(6)
            ej[j] = 1.0
            dF = deformation(ej) - np.eye(3)
            out.append(-np.sum(vir * (dF @ np.linalg.inv(F))) / V0)
        return np.array(out)

    C_indep = strain_derivatives(dw, 1e-4, third=False).first
    C_rows = rows.second @ coef
    np.testing.assert_allclose(C_rows, C_indep, atol=1e-5 * np.abs(C_indep).max())


def test_internal_strain_rows_equal_model_sublattice_constants_and_relaxed_c():
    """Diamond Si (8-atom cubic cell, 30 functions): rows·c of M_s and Φ_s equal the same
    central differences of the ACE model's own forces (ACEModel.evaluate, pyace's evaluator;
    measured 7e-12 and 5e-12 eV/Å, eV/Å² of 62 and 16), and C⁰ − M_sΦ_s⁺M_sᵀ/Ω from the rows
    equals the relaxed C of :func:`relaxed_elastic_constants_eV_per_A3` with the model's full
    single-atom Φ (a different stencil: 5e-6 of 19 eV/Å³, O(h²) truncation; measured). The
    rows are linear in c, so any coefficients test them; these give a Φ_s with three zero
    (translation) and three positive (31.4 eV/Å²) eigenvalues."""
    from kernels.relaxed_elasticity import (internal_strain_and_force_constants,
                                            relaxed_elastic_constants_eV_per_A3,
                                            relaxed_from_sublattices, sublattice_constants,
                                            sublattice_labels)
    from kernels.si_edge import diamond_perfect_cell

    x, c, s = diamond_perfect_cell(5.429, 1)
    basis = ACEBasis(ace_potential_config(["Si"], 30, 5.0, [10, 4, 3], [0, 3, 2]))
    coef = np.random.default_rng(4).standard_normal(basis.n_functions)
    model = ACEModel(basis, coef)
    labels = sublattice_labels(x, c, s)
    assert list(labels) == [0, 0, 0, 0, 1, 1, 1, 1]
    rows = sublattice_constants(lambda y, cell: basis.design_rows(y[None], cell, s).forces[0],
                                x, c, s, dk.STRAIN_STEP, dk.DISPLACEMENT_STEP_A)
    ml = sublattice_constants(lambda y, cell: model.evaluate(y, cell, s).forces_eV_per_A,
                              x, c, s, dk.STRAIN_STEP, dk.DISPLACEMENT_STEP_A)
    assert rows.internal_strain.shape == (6, 6, basis.n_functions)
    assert rows.force_constants.shape == (6, 6, basis.n_functions)
    assert rows.volume_A3 == pytest.approx(5.429**3 / 4, rel=1e-12)
    M, Phi = rows.internal_strain @ coef, rows.force_constants @ coef
    np.testing.assert_allclose(M, ml.internal_strain, atol=1e-9 * np.abs(M).max())
    np.testing.assert_allclose(Phi, ml.force_constants, atol=1e-9 * np.abs(Phi).max())
    # the full single-atom M and Φ of the cell reduce to the sublattice ones
    M_full, Phi_full = internal_strain_and_force_constants(model, x, c, s)
    P = np.zeros((x.size, 6))  # sublattice-uniform unit displacements
    for a, sub in enumerate(labels):
        P[3 * a:3 * a + 3, 3 * sub:3 * sub + 3] = np.eye(3)
    np.testing.assert_allclose(M_full.reshape(6, -1, 3), M.reshape(6, 2, 3)[:, labels],
                               atol=1e-9 * np.abs(M).max())
    np.testing.assert_allclose(P.T @ Phi_full @ P / 4, Phi, atol=1e-5 * np.abs(Phi).max())
    C0 = elastic_rows(basis, x, c, s, dk.STRAIN_STEP, third=False).second @ coef
    C, C0_model = relaxed_elastic_constants_eV_per_A3(model, x, c, s)
    np.testing.assert_allclose(C0, C0_model, atol=1e-8 * np.abs(C0).max())
    C_rows = relaxed_from_sublattices(C0, M, Phi, rows.volume_A3)
    np.testing.assert_allclose(C_rows, C, atol=1e-6 * np.abs(C).max())
    assert np.abs(C - C0).max() > 0.1 * np.abs(C).max()  # the internal relaxation matters


def test_ard_recovers_sparse_coefficients():
    rng = np.random.default_rng(5)
    A = rng.standard_normal((400, 20)) * np.logspace(-3, 3, 20)  # wildly scaled columns
    c = np.zeros(20)
    c[[2, 7, 15]] = [1.0, -2.0, 0.5] / np.logspace(-3, 3, 20)[[2, 7, 15]]
    y = A @ c + 1e-6 * rng.standard_normal(400)
    sol = solve_ard(A, y)
    np.testing.assert_allclose(A @ sol.coeffs, A @ c, atol=1e-4)
    assert sol.rank <= 6


def test_rattle_is_julips_bounded_cube():
    """P2's α is JuLIP's rattle!: every component uniform on ±α/√3, so |u| ≤ α, std α/3 (Å)."""
    alpha = 0.5
    u = dk.rattle_displacements_A(np.random.default_rng(7), (40, 500), alpha)
    assert u.shape == (40, 500, 3)
    assert np.abs(u).max() <= alpha / np.sqrt(3.0)
    assert np.linalg.norm(u, axis=-1).max() <= alpha
    assert u.std() == pytest.approx(alpha / 3.0, rel=0.01)  # 60,000 samples: ~0.3 % noise
    assert abs(u.mean()) < 0.01 * alpha
    again = dk.rattle_displacements_A(np.random.default_rng(7), (40, 500), alpha)
    assert np.array_equal(u, again)


@pytest.mark.slow
def test_stages_end_to_end_and_elastic_observations_help():
    """Tiny real pipeline: the CLE rows cut the elastic-constant error of the fit.

    Slow (~70 s on a busy core): the default suite covers the same stages through
    tests/test_p2_sweep.py's tiny sweep."""
    model = zhou2001_tungsten()
    opts = dk.RelaxOptions(1e-4, 3000, "lbfgs")
    lat = dk.lattice_reference(model)
    assert lat.a0_A == pytest.approx(3.1648, abs=1e-4)
    data = dk.training_data(model, lat.a0_A, 5, 8, 3, 0.1, 1, 2, opts)
    basis = ACEBasis(ace_potential_config(["W"], 30, 5.0, [10, 4, 3], [0, 3, 2]))
    rows = dk.design_rows(basis, data, lat.a0_A)
    w = dk.Weights(50, 10, 10, 1)
    ef = dk.fit(basis, rows, data, lat, w.for_observations("E+F"), "rrqr")
    nl = dk.fit(basis, rows, data, lat, w.for_observations("E+F+CLE+NL"), "ard")
    assert nl.elastic_constant_error_percent < ef.elastic_constant_error_percent
    assert nl.n_observations == ef.n_observations + 6 + 36 + 216
    sim = dk.simulation_reference(model, lat.a0_A, 8, opts)
    p = dk.predict(basis, nl.coeffs, sim, lat, opts)
    assert 0 < p.geometry_error_A < 5.0
