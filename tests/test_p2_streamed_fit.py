"""P2's streamed fit stage: the design rows folded into R factors configuration by configuration
(kernels.dislocations.design_factors) give today's whole-matrix fits, and ARD on the sufficient
statistics (kernels.ard.solve_ard_reduced) gives scikit-learn's ARDRegression."""

import numpy as np
import pytest
import scipy.linalg
from sklearn.linear_model import ARDRegression

from kernels import dislocations as dk
from kernels.ard import _posterior_covariance, solve_ard, solve_ard_reduced
from kernels.eam import zhou2001_tungsten
from kernels.least_squares import weighted_system
from sweep import cluster, tasks
from sweep.spec import builtin_specs, parse_spec

ACE = {"cutoff_A": 5.0, "radial_basis": "SBessel", "nradmax_by_orders": [15, 8, 6, 4],
       "lmax_by_orders": [0, 4, 4, 3]}
SIZES = (20, 60)


@pytest.fixture(scope="module")
def small():
    """A real P2-W training set: the one-dipole cell at L = 5 a0 (192 atoms), 6 + 3
    configurations rattled by 0.1 Å, Zhou EAM reference."""
    model = zhou2001_tungsten()
    lat = dk.lattice_reference(model)
    data = dk.training_data(model, lat.a0_A, 5, 6, 3, 0.1, 1, 2,
                            dk.RelaxOptions(1e-4, 3000, "lbfgs"))
    bases = [tasks.basis_for(ACE, b, "W") for b in SIZES]
    return lat, data, bases


def _assert_same_fit(new, ref):
    assert new.rank == ref.rank
    assert new.n_basis == ref.n_basis
    assert new.n_observations == ref.n_observations
    np.testing.assert_allclose(new.coeffs, ref.coeffs, rtol=0,
                               atol=1e-8 * np.abs(ref.coeffs).max())
    for name in ("rmse_energy_meV_per_atom", "rmse_forces_eV_per_A", "rmse_virial_eV",
                 "elastic_constant_error_percent", "clamped_elastic_constant_error_percent"):
        assert getattr(new, name) == pytest.approx(getattr(ref, name), rel=1e-7), name


@pytest.mark.parametrize("chunk_bytes", [1e9, 2e5])
def test_streamed_rrqr_fit_equals_whole_matrix_fit(small, chunk_bytes):
    """Every basis of the nested pass, observation set and a non-default convention: the same
    truncation, coefficients (to 1e-8 of the largest, as P1's slice factors) and RMSEs as the
    fit on that basis's own whole rows. The small chunk bound factors the test forces too (and
    folds one configuration at a time); the large one keeps the test rows."""
    lat, data, bases = small
    f = dk.design_factors(bases, data, lat.a0_A, max_chunk_bytes=chunk_bytes)
    assert f.train_forces_factored
    assert f.test_forces_factored == (chunk_bytes < 1e6)
    assert f.nested.sizes == tuple(b.n_functions for b in bases)
    w = dk.Weights(50, 10, 10, 1)
    for basis in bases:
        rows = dk.design_rows(basis, data, lat.a0_A)
        for obs in dk.OBSERVATION_SETS:
            _assert_same_fit(dk.fit(basis, f, data, lat, w.for_observations(obs)),
                             dk.fit(basis, rows, data, lat, w.for_observations(obs)))
        kw = {"bulk_energy_row": True, "energy_weighting": "sqrt-n", "weight_form": "residual"}
        _assert_same_fit(dk.fit(basis, f, data, lat, w, **kw),
                         dk.fit(basis, rows, data, lat, w, **kw))


def test_factors_hold_no_design_matrix(small):
    """The factors' size does not grow with the number of force rows: two (n + 1)² factors and
    the few energy, perfect-crystal and elastic rows."""
    lat, data, bases = small
    f = dk.design_factors(bases, data, lat.a0_A, max_chunk_bytes=2e5)
    ncol = bases[-1].n_functions + 1
    assert f.train_forces.shape == f.test_forces.shape == (ncol, ncol)
    assert f.train_force_rows == data.train.forces_eV_per_A.size > 10 * ncol
    assert f.test_force_rows == data.test.forces_eV_per_A.size
    assert f.train_energy.shape == (len(data.train.energy_eV), ncol)


def _weighted(basis, data, lat):
    """The weighted E+F+CLE system of one basis, as dk.fit stacks it (total energies)."""
    rows = dk.design_rows(basis, data, lat.a0_A)
    B = rows.n_basis
    omega = dk.volume_per_atom_A3(lat.a0_A, dk.W_SCREW)
    return weighted_system([
        (rows.train.energy, data.train.energy_eV, 50.0),
        (rows.train.forces.reshape(-1, B), data.train.forces_eV_per_A.reshape(-1), 10.0),
        (omega * rows.elastic.reshape(-1, B), omega * lat.elastic_eV_per_A3.reshape(-1), 10.0)])


def _statistics(A, y):
    """R, z, the part of ‖y‖² outside range(A), m and Σy from the R factor of [A | y]."""
    B = A.shape[1]
    T = scipy.linalg.qr(np.column_stack([A, y]), mode="r")[0][:B + 1]
    return T[:B, :B], T[:B, B], T[B, B] ** 2, len(y), float(np.sum(y))


def test_ard_on_statistics_equals_scikit_learn(small):
    """A real weighted system of 5 functions (column-scaled condition number ~1e4), on which
    scikit-learn's evidence iteration converges well inside max_iter: the coefficients agree to
    1e-6 of the largest. Justification: the two compute the same iterates from the same matrix
    up to an orthogonal factor, so they differ by rounding carried through the solves,
    ≲ κ² ε ≈ 1e-8 relative (κ² from the Gram matrix; measured 1e-8, the same as scikit-learn
    against itself on the rows permuted); 1e-6 leaves that margin and is far below any
    difference a different update, prior or scaling would make."""
    lat, data, _ = small
    basis = tasks.basis_for(ACE, 5, "W")
    A, y = _weighted(basis, data, lat)
    norms = np.linalg.norm(A, axis=0)
    reg = ARDRegression(fit_intercept=False).fit(A / norms, y / np.sqrt(np.mean(y * y)))
    assert reg.n_iter_ < 100  # converged: the iteration is well posed here
    ref = solve_ard(A, y)
    new = solve_ard_reduced(*_statistics(A, y))
    assert new.rank == ref.rank
    np.testing.assert_allclose(new.coeffs, ref.coeffs, rtol=0,
                               atol=1e-6 * np.abs(ref.coeffs).max())


def test_ard_first_iteration_equals_scikit_learn_at_60_functions(small):
    """At 60 functions the first evidence update (a ridge solve with precision I + αG, the
    re-weighting and the final solve at the new precisions) agrees with scikit-learn's to 1e-6
    of the largest coefficient. Later iterations amplify rounding: from the second on the two
    differ as scikit-learn differs from itself on the rows permuted (docs/p2-dislocations.md,
    "Streamed fits")."""
    lat, data, bases = small
    A, y = _weighted(bases[1], data, lat)
    ref = solve_ard(A, y, max_iter=1)
    new = solve_ard_reduced(*_statistics(A, y), max_iter=1)
    assert new.rank == ref.rank
    np.testing.assert_allclose(new.coeffs, ref.coeffs, rtol=0,
                               atol=1e-6 * np.abs(ref.coeffs).max())


def test_posterior_covariance_is_the_pseudo_inverse():
    """Cholesky where pinvh would keep every eigenvalue; pinvh's truncation where it would not."""
    rng = np.random.default_rng(3)
    X = rng.standard_normal((80, 30))
    S = X.T @ X + np.eye(30)
    np.testing.assert_allclose(_posterior_covariance(S), scipy.linalg.pinvh(S), rtol=0,
                               atol=1e-12 * np.abs(scipy.linalg.pinvh(S)).max())
    U = np.linalg.qr(rng.standard_normal((30, 30)))[0]
    singular = (U * np.r_[np.logspace(0, 3, 25), np.full(5, 1e-15)]) @ U.T
    np.testing.assert_allclose(_posterior_covariance(singular), scipy.linalg.pinvh(singular),
                               rtol=0, atol=1e-9)


def test_paper_spec_passes_preflight_on_a_4_GB_worker():
    """p2-w-screw-paper: realisable basis sizes up to ≥ 1000, three per (L, α), and every
    stage within 4 GB — the design pass by its chunk, not the 14.5 GB of its whole matrix."""
    spec = parse_spec(builtin_specs()["p2-w-screw-paper"])
    sizes = spec.grid["basis_size"]
    assert len(sizes) >= 3 and max(sizes) >= 1000
    assert cluster.check_basis_sizes(spec) >= max(sizes)
    assert spec.params["fit"]["solver"] == "ard"
    assert spec.params["relax"]["optimizer"] == "hessian-lbfgs"
    est = cluster.preflight(spec, memory_limit_bytes=4e9)["bytes"]
    atoms = spec.definition.cell_atoms(spec, "training", max(spec.grid["L"]))
    assert atoms == 6048  # the L = 30 a0 dipole cell, side 60 a0
    whole = 8.0 * spec.params["training"]["n_train"] * 3 * atoms * max(sizes)
    assert whole > 4e9 > est["design"]
