"""The sweep's fit stage through the slice path (tasks.design_slice / tasks.fit_slice) gives the
values of the per-basis path (tasks.design / tasks.fit, now with chain-rule rows, and with
pyace's rows) on the tiny spec's training cells."""

import numpy as np
import pytest

from kernels import point_defects as pdk
from sweep import tasks
from sweep.experiments.p1_point_defects import training_seeds
from tests.tiny import tiny_spec


@pytest.mark.parametrize("L", [4, 5])
def test_slice_fits_equal_per_basis_fits(L):
    spec = tiny_spec()
    p = spec.params
    ref = p["reference"]["model"]
    lat = tasks.lattice(ref)
    data = tasks.training(ref, lat, L, "vacancy", p["training"], *training_seeds(spec, "vacancy", L),
                          p["relax"])
    sizes = sorted(spec.grid["basis_size"])
    factors = tasks.design_slice(p["ace"], sizes, data)
    w = next(iter(spec.weights.values()))
    e_meV = 1e3 * abs(lat.bulk_energy_eV_per_atom)
    for B in sizes:
        fast, t_pass = tasks.fit_slice(p["ace"], sizes, B, factors, lat, w, p["fit"])
        old, _ = tasks.fit(p["ace"], B, tasks.design(p["ace"], B, data), data, lat, w, p["fit"])
        assert t_pass == factors.time_s > 0
        assert (fast.rank, fast.n_basis, fast.n_observations) == \
            (old.rank, old.n_basis, old.n_observations)
        np.testing.assert_allclose(fast.coeffs, old.coeffs, rtol=0,
                                   atol=1e-8 * np.abs(old.coeffs).max())
        assert fast.rmse_forces_eV_per_A == pytest.approx(old.rmse_forces_eV_per_A, rel=1e-8)
        assert fast.force_constant_error_percent == pytest.approx(
            old.force_constant_error_percent, rel=1e-8)
        for name in ("rmse_energy_meV_per_atom", "bulk_energy_error_meV_per_atom"):
            assert getattr(fast, name) == pytest.approx(getattr(old, name), abs=1e-9 * e_meV)
    # the per-basis rows themselves: chain rule (default) against pyace's compute_b_grad
    basis = tasks.basis_for(p["ace"], sizes[-1])
    sym = [pdk.SYMBOL] * data.train.positions_A.shape[1]
    a = basis.design_rows(data.train.positions_A[:2], data.cell_A, sym, 2)
    b = basis.design_rows(data.train.positions_A[:2], data.cell_A, sym, 2, method="pyace")
    np.testing.assert_allclose(a.forces, b.forces, rtol=0, atol=1e-10 * np.abs(b.forces).max())


def test_small_memory_limit_gives_the_same_fits(monkeypatch):
    """A design stage bounded to one configuration's rows per chunk (the spec's
    ``[resources] max_design_chunk_MB``) streams the rows in many chunks and gives the fits of
    an unbounded one (to rounding: the factors are folded in another order)."""
    from kernels import tsqr

    spec = tiny_spec()
    p = spec.params
    ref = p["reference"]["model"]
    lat = tasks.lattice(ref)
    data = tasks.training(ref, lat, 5, "vacancy", p["training"],
                          *training_seeds(spec, "vacancy", 5), p["relax"])
    sizes = sorted(spec.grid["basis_size"])
    w = next(iter(spec.weights.values()))
    adds = []
    add = tsqr.StreamingR.add
    monkeypatch.setattr(tsqr.StreamingR, "add", lambda self, rows: (adds.append(len(rows)),
                                                                     add(self, rows))[1])
    big = tasks.design_slice(p["ace"], sizes, data, 1000.0)
    n_big = len(adds)
    n = data.train.positions_A.shape[1]
    one_config_MB = n * 2 * (sizes[-1] + 1) * 8 / 1e6
    small = tasks.design_slice(p["ace"], sizes, data, 1.5 * one_config_MB)
    assert len(adds) - n_big == 2 * (p["training"]["n_train"] + p["training"]["n_test"])
    assert max(adds[n_big:]) <= n * 2
    for B in sizes:
        a, _ = tasks.fit_slice(p["ace"], sizes, B, big, lat, w, p["fit"])
        b, _ = tasks.fit_slice(p["ace"], sizes, B, small, lat, w, p["fit"])
        assert a.rank == b.rank
        np.testing.assert_allclose(b.coeffs, a.coeffs, rtol=0, atol=1e-8 * np.abs(a.coeffs).max())
        assert b.rmse_forces_eV_per_A == pytest.approx(a.rmse_forces_eV_per_A, rel=1e-8)
