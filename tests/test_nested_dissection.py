"""The nested-dissection Cholesky preconditioner (kernels.nested_dissection, the default
factorisation of kernels.hessian_precon_relax.HessianPreconditioner): the separator tree is a
valid dissection of the Hessian's atom graph, its solves equal SuperLU's, a Hessian that is not
positive definite falls back to an LU in the same order, and the preconditioned relaxation of
small W, Si (Kumagai) and NiAl (Mishin) cells reaches the minimum the COLAMD LU reaches."""

from dataclasses import replace

import numpy as np
import pytest

from kernels import dislocations as dk
from kernels.b2_screw import NIAL_SCREW
from kernels.eam import mishin2002_nial, zhou2001_tungsten
from kernels.hessian_precon_relax import HessianPreconditioner, relax_preconditioned
from kernels.kumagai import kumagai2007_silicon
from kernels.nested_dissection import (MultifrontalCholesky, NotPositiveDefinite, atom_graph,
                                       separator_tree)
from kernels.si_edge import SI_EDGE

HESS = dk.RelaxOptions(1e-6, 5000, "hessian-lbfgs")


@pytest.fixture(scope="module")
def w12():
    """The 12 a0 W screw quadrupole relaxed by the reference (a minimum: H(ȳ) ≥ 0)."""
    model = zhou2001_tungsten()
    lat = dk.lattice_reference(model)
    return model, lat, dk.simulation_reference(model, lat.a0_A, 12, HESS)


def _ancestors(parent, v):
    out = {v}
    while parent[v] >= 0:
        v = parent[v]
        out.add(v)
    return out


def test_separator_tree_is_a_dissection_of_the_atom_graph(w12):
    """Every atom once; atoms coupled by the Hessian lie on one root path of the tree (so the
    subtrees of two siblings share no entry and are eliminated independently)."""
    _, _, sim = w12
    H = sim.precon.hessian
    G = atom_graph(H, 3)
    tree = separator_tree(G, sim.positions_A, sim.cell_A, leaf_atoms=16)
    n = len(sim.positions_A)
    assert np.array_equal(np.sort(tree.order), np.arange(n))
    assert len(tree.parent) > 3 and (tree.parent == -1).sum() == 1
    assert np.all(tree.parent[tree.parent >= 0] > np.nonzero(tree.parent >= 0)[0])  # postorder
    node = np.empty(n, int)
    for v in range(len(tree.parent)):
        node[tree.order[tree.starts[v]:tree.starts[v + 1]]] = v
    anc = [_ancestors(tree.parent, v) for v in range(len(tree.parent))]
    G = G.tocoo()
    for a, b in zip(G.row, G.col):
        assert node[b] in anc[node[a]] or node[a] in anc[node[b]]


def test_cholesky_solve_equals_lu(w12):
    _, _, sim = w12
    assert sim.precon.method == "cholesky"
    v = np.random.default_rng(1).standard_normal(3 * len(sim.positions_A))
    x = sim.precon.solve(v)
    assert sim.precon.factorisation == "cholesky-nd"
    lu = HessianPreconditioner(sim.precon.hessian, method="lu")
    exact = lu.solve(v)
    assert lu.factorisation == "lu-colamd"
    assert np.linalg.norm(x - exact) < 1e-10 * np.linalg.norm(exact)
    # the pickled preconditioner rebuilds the same factor
    import pickle

    again = pickle.loads(pickle.dumps(sim.precon))
    assert again._solve is None and again.factorisation is None
    np.testing.assert_array_equal(again.solve(v), x)


def test_in_plane_components():
    """Two coordinates per atom (the planar lattices of P1) are kept together."""
    model = zhou2001_tungsten()
    x, cell, sym = dk.bcc_cubic_cell(3.1648, 4)
    H = model.hessian_eV_per_A2(x, cell, sym).tocsr()
    keep = (3 * np.arange(len(x))[:, None] + np.arange(2)).ravel()
    H2 = H[keep][:, keep]
    v = np.random.default_rng(2).standard_normal(H2.shape[0])
    nd = HessianPreconditioner(H2, positions_A=x, cell_A=cell)
    x_nd = nd.solve(v)
    assert nd.factorisation == "cholesky-nd"
    exact = HessianPreconditioner(H2, method="lu").solve(v)
    assert np.linalg.norm(x_nd - exact) < 1e-10 * np.linalg.norm(exact)


def test_indefinite_hessian_falls_back_to_lu_in_the_same_order():
    """The 8 a0 W quadrupole's reference ȳ is a saddle (the Hessian has negative eigenvalues,
    below −μ): the Cholesky refuses it and an LU of the same matrix solves instead."""
    model = zhou2001_tungsten()
    lat = dk.lattice_reference(model)
    sim = dk.simulation_reference(model, lat.a0_A, 8, HESS)
    A = sim.precon.shifted()
    assert np.linalg.eigvalsh(A.toarray())[0] < 0
    tree = separator_tree(atom_graph(A, 3), sim.positions_A, sim.cell_A)
    with pytest.raises(NotPositiveDefinite):
        MultifrontalCholesky(A, tree, 3)
    v = np.random.default_rng(3).standard_normal(A.shape[0])
    x = sim.precon.solve(v)
    assert sim.precon.factorisation == "lu-nd"
    exact = HessianPreconditioner(sim.precon.hessian, method="lu").solve(v)
    assert np.linalg.norm(x - exact) < 1e-9 * np.linalg.norm(exact)


def _perturbed_eam(model):
    """The same EAM with its pair term 20 % stronger and its density 10 % weaker: a different
    model whose minimum is near, not at, the reference's."""
    return replace(model, r_pair_eVA=1.2 * model.r_pair_eVA, density=0.9 * model.density,
                   name=model.name + "-perturbed", _cache={})


@pytest.mark.parametrize("name", ["W", "NiAl", "Si"])
def test_relaxation_reaches_the_lu_minimum(name):
    """From the reference ȳ, a model other than the reference relaxes with the Cholesky
    preconditioner to the configuration the COLAMD LU reaches, in as many steps."""
    if name == "W":
        ref, system, size = zhou2001_tungsten(), dk.W_SCREW, 12
    elif name == "NiAl":
        ref, system, size = mishin2002_nial(), NIAL_SCREW, 8
    else:
        ref, system, size = kumagai2007_silicon(), SI_EDGE, 6
    lat = dk.lattice_reference(ref, system)
    sim = dk.simulation_reference(ref, lat.a0_A, size, HESS, system, lat)
    sym = list(sim.symbols) or [system.symbol] * len(sim.positions_A)
    if name == "Si":  # no parameters to perturb: the reference itself from a rattled ȳ
        model = ref
        start = sim.positions_A + 0.05 * np.random.default_rng(4).standard_normal(
            sim.positions_A.shape)
    else:
        model, start = _perturbed_eam(ref), sim.positions_A
    fast = relax_preconditioned(model, start, sim.cell_A, sym, sim.precon, 3, 1e-6, 2000)
    lu = HessianPreconditioner(sim.precon.hessian, method="lu")
    slow = relax_preconditioned(model, start, sim.cell_A, sym, lu, 3, 1e-6, 2000)
    assert sim.precon.factorisation in ("cholesky-nd", "lu-nd")
    assert fast.max_force_eV_per_A < 1e-6
    assert np.abs(fast.positions_A - start).max() > 1e-3  # it moved
    assert np.abs(fast.positions_A - slow.positions_A).max() < 1e-6
    assert fast.energy_eV == pytest.approx(slow.energy_eV, abs=1e-9 * abs(slow.energy_eV))
    assert abs(fast.n_steps - slow.n_steps) <= 1
