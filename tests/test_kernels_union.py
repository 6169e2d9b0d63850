"""Union training sets (P1-int): per-component weights, per-component RMSEs, interstitials."""

import numpy as np
import pytest

from kernels import point_defects as pd
from kernels.ace import ACEBasis, ace_potential_config
from kernels.defects import point_defect_cell, site_occupancy
from kernels.finnis_sinclair import wang2014_tungsten
from kernels.lattice import site_index, triangular_sites
from kernels.relax import relax


@pytest.fixture(scope="module")
def setup():
    model = wang2014_tungsten()
    return model, pd.lattice_reference(model), pd.RelaxOptions(1e-6, 3000, "lbfgs")


@pytest.fixture(scope="module")
def union(setup):
    """Interstitial and vacancy training cells of size L = 4 and their rows in one basis."""
    model, lat, opts = setup
    basis = ACEBasis(ace_potential_config(["W"], 40, 4.5, [15, 6, 4, 3], [0, 4, 3, 2]))
    out = {}
    for k, kind in enumerate(("interstitial", "vacancy")):
        data = pd.training_data(model, lat.r0_A, 4, kind, 12, 4, 0.03, 10 + k, 20 + k, opts)
        out[kind] = (pd.design_rows(basis, data), data)
    return basis, out


def _components(union, w_int=(100.0, 10.0), w_vac=(10.0, 1.0)):
    _, parts = union
    return [pd.TrainingComponent("interstitial", *parts["interstitial"], *w_int),
            pd.TrainingComponent("vacancy", *parts["vacancy"], *w_vac)]


def test_changing_one_components_weight_changes_only_its_rows(union):
    # with the perfect-cell rows (weight: each component's W_E)
    a = pd.union_system(_components(union), weight_bulk_energy=None)
    b = pd.union_system(_components(union, w_vac=(40.0, 9.0)), weight_bulk_energy=None)
    assert np.array_equal(a.owner, b.owner)
    own_int, own_vac = a.owner == 0, a.owner == 1
    assert np.array_equal(a.A[own_int], b.A[own_int]) and np.array_equal(a.y[own_int],
                                                                         b.y[own_int])
    assert not np.allclose(a.A[own_vac], b.A[own_vac])
    # the vacancy rows are scaled by √(W'/W): energy (and bulk) rows by 2, force rows by 3
    _, parts = union
    rows_v, data_v = parts["vacancy"]
    S, n = data_v.train.energy_eV.shape[0], data_v.train.positions_A.shape[1]
    idx = np.flatnonzero(own_vac)
    energy_rows = np.r_[idx[:S], idx[-1]]                # S energy rows + its perfect-cell row
    force_rows = idx[S:S + S * n * 2]
    np.testing.assert_allclose(b.A[energy_rows], 2.0 * a.A[energy_rows], rtol=1e-14)
    np.testing.assert_allclose(b.A[force_rows], 3.0 * a.A[force_rows], rtol=1e-14)
    np.testing.assert_allclose(b.y[force_rows], 3.0 * a.y[force_rows], rtol=1e-14)
    # row count: each component's S (1 + 2 n) rows plus one perfect-cell row
    n_i = parts["interstitial"][1].train.positions_A.shape[1]
    assert n_i == 17 and n == 15
    assert len(a.y) == 12 * (1 + 2 * 17) + 12 * (1 + 2 * 15) + 2


def test_one_component_union_is_the_single_cell_fit(setup, union):
    _, lat, _ = setup
    basis, parts = union
    rows, data = parts["vacancy"]
    single = pd.fit(basis, rows, data, lat, 10.0, 1.0)
    one = pd.fit_union(basis, [pd.TrainingComponent("vacancy", rows, data, 10.0, 1.0)], lat)
    assert np.array_equal(single.coeffs, one.coeffs)
    assert one.rmse_forces_by_component_eV_per_A == (single.rmse_forces_eV_per_A,)


def test_per_component_rmses_pool_to_the_union_rmse(setup, union):
    """Pooled test RMSE² = count-weighted mean of the components' RMSE² (independent route)."""
    _, lat, _ = setup
    basis, parts = union
    f = pd.fit_union(basis, _components(union), lat)
    e, fo = f.rmse_energy_by_component_meV_per_atom, f.rmse_forces_by_component_eV_per_A
    assert len(e) == len(fo) == 2 and all(x > 0 for x in e + fo)
    n_f = [d.test.positions_A.shape[1] * 2 * d.test.positions_A.shape[0]
           for _, d in (parts["interstitial"], parts["vacancy"])]
    pooled_f = np.sqrt((n_f[0] * fo[0] ** 2 + n_f[1] * fo[1] ** 2) / sum(n_f))
    assert f.rmse_forces_eV_per_A == pytest.approx(pooled_f, rel=1e-12)
    assert f.rmse_energy_meV_per_atom == pytest.approx(np.sqrt((e[0] ** 2 + e[1] ** 2) / 2),
                                                       rel=1e-12)  # 4 test configs each
    # the interstitial distorts the lattice more: it is the harder component to fit
    assert fo[0] > fo[1]
    # weighting a component up lowers (or keeps) its own training residual share: its test
    # force RMSE does not grow by more than round-off when its force weight goes 10 → 1000
    g = pd.fit_union(basis, _components(union, w_int=(100.0, 1000.0)), lat)
    assert g.rmse_forces_by_component_eV_per_A[0] <= fo[0] * 1.05


@pytest.mark.parametrize("kinds", [["interstitial", "vacancy"], ["interstitial"] + ["vacancy"] * 3])
def test_relaxed_interstitial_stays_an_interstitial(setup, kinds):
    """Wigner–Seitz analysis of the reference equilibrium: the vacancies stay empty, one site
    next to the inserted interstitial is doubly occupied, every other site singly."""
    model, lat, opts = setup
    n, L = 12, 6
    x0, cell, removed = point_defect_cell(n, lat.r0_A, kinds, L)
    r = relax(model, x0, cell, ["W"] * len(x0), 1e-6, 3000, "lbfgs")
    occ = site_occupancy(r.positions_A, triangular_sites(n, lat.r0_A), cell)
    assert sorted(np.flatnonzero(occ == 0)) == sorted(removed)
    double = np.flatnonzero(occ == 2)
    assert len(double) == 1 and occ.max() == 2
    # the doubly occupied site is a corner or neighbour of the triangle the interstitial sat in
    sites = triangular_sites(n, lat.r0_A)
    d = np.linalg.norm(sites[double[0]] - x0[-1])
    assert d < 1.2 * lat.r0_A
    # the unrelaxed configuration has the same occupancy pattern (the stencil is x₀'s)
    occ0 = site_occupancy(x0, sites, cell)
    assert sorted(np.flatnonzero(occ0 == 0)) == sorted(removed)
    assert site_index(0, 0, n) not in removed or kinds[0] != "interstitial"


def test_end_to_end_union_point(setup, union):
    """A union of two vacancy cells of different sizes (L = 4 and 5, the second weighted down)
    fits one model whose two-vacancy prediction is as good as a single-cell fit's."""
    model, lat, opts = setup
    basis, parts = union
    rows4, data4 = parts["vacancy"]
    data5 = pd.training_data(model, lat.r0_A, 5, "vacancy", 12, 4, 0.03, 30, 31, opts)
    rows5 = pd.design_rows(basis, data5)
    f = pd.fit_union(basis, [pd.TrainingComponent("L4", rows4, data4, 100.0, 1.0),
                             pd.TrainingComponent("L5", rows5, data5, 10.0, 0.1)], lat)
    assert len(f.rmse_forces_by_component_eV_per_A) == 2
    assert max(f.rmse_forces_by_component_eV_per_A) < 0.2
    sim = pd.simulation_reference(model, lat.r0_A, 10, ["vacancy", "vacancy"], 4, opts)
    p = pd.predict(basis, f.coeffs, sim, lat, opts)
    single = pd.predict(basis, pd.fit(basis, rows4, data4, lat, 100.0, 1.0).coeffs, sim, lat, opts)
    assert 0 < p.geometry_error_A < 0.2 and p.energy_error_eV < 0.05
    assert p.geometry_error_A < 2 * single.geometry_error_A
