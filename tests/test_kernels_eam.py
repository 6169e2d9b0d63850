"""The setfl EAM evaluator: derivatives, virial, published lattice facts, matscipy cross-check."""

import numpy as np
import pytest
from scipy.optimize import minimize_scalar

from kernels.eam import mishin2002_nial, zhou2001_tungsten
from kernels.elasticity import cubic_constants_GPa, elastic_constants_eV_per_A3
from tests.finite_differences import minus_gradient_eV_per_A, strain_derivatives_eV

B2 = [[0, 0, 0], [0.5, 0.5, 0.5]]


def _cubic(a, symbols, n=3):
    g = np.array([[i, j, k] for i in range(n) for j in range(n) for k in range(n)])
    x = (g[:, None, :] + np.array(B2)[None]).reshape(-1, 3) * a
    return x, np.eye(3) * a * n, list(symbols) * len(g)


MODELS = {"W": (zhou2001_tungsten, ("W", "W")), "NiAl": (mishin2002_nial, ("Ni", "Al"))}


@pytest.fixture(scope="module", params=sorted(MODELS))
def system(request):
    make, syms = MODELS[request.param]
    return request.param, make(), syms


def test_forces_are_minus_energy_gradient(system):
    _, model, syms = system
    x, cell, s = _cubic(3.0, syms, 2)
    x = x + 0.08 * np.random.default_rng(1).standard_normal(x.shape)
    f = model.evaluate(x, cell, s).forces_eV_per_A
    fd = minus_gradient_eV_per_A(lambda y: model.evaluate(y, cell, s).energy_eV, x, (0, 3, 7, 12))
    for (i, a), value in fd.items():
        assert f[i, a] == pytest.approx(value, abs=2e-6)


def test_virial_is_strain_derivative(system):
    _, model, syms = system
    x, cell, s = _cubic(2.9, syms, 2)
    x = x + 0.05 * np.random.default_rng(2).standard_normal(x.shape)
    v = model.evaluate(x, cell, s).virial_eV
    assert np.abs(v).max() > 1.0
    derivatives = strain_derivatives_eV(lambda y, c: model.evaluate(y, c, s).energy_eV, x, cell)
    for (a, b), dE in derivatives.items():
        assert -dE == pytest.approx(v[a, b], abs=2e-5)


# LAMMPS-measured (data/README.md): a (Å), C11, C12, C44 (GPa), quoted to 0.1 GPa / 1e-4 Å.
PUBLISHED = {"W": (3.1648, 522.5, 204.2, 160.8), "NiAl": (2.8587, 199.9, 139.6, 120.0)}


def test_lattice_and_elastic_constants(system):
    name, model, syms = system
    f = lambda a: model.evaluate(*_cubic(a, syms)).energy_eV  # noqa: E731
    a0 = minimize_scalar(f, bounds=(2.7, 3.3), method="bounded", options={"xatol": 1e-8}).x
    a_ref, *c_ref = PUBLISHED[name]
    assert a0 == pytest.approx(a_ref, abs=1e-4)
    C = cubic_constants_GPa(elastic_constants_eV_per_A3(model, *_cubic(a0, syms)))
    np.testing.assert_allclose(C, c_ref, atol=0.1)


def test_agrees_with_matscipy_eam(system, tmp_path):
    """matscipy's independent EAM reader/evaluator (it needs the atomic number in the header)."""
    from ase import Atoms
    from importlib import resources
    from matscipy.calculators.eam import EAM

    name, model, syms = system
    fname = {"W": "W_zhou.eam.alloy", "NiAl": "NiAl_Mishin_2002.eam.alloy"}[name]
    text = (resources.files("kernels") / "data" / fname).read_text().splitlines()
    if name == "W":  # the LAMMPS file names atomic number 1 for W
        text[5] = text[5].replace("1 183.84", "74 183.84", 1)
    p = tmp_path / fname
    p.write_text("\n".join(text) + "\n")
    x, cell, s = _cubic(3.0, syms, 2)
    x = x + 0.08 * np.random.default_rng(3).standard_normal(x.shape)
    atoms = Atoms(s, positions=x, cell=cell, pbc=True)
    atoms.calc = EAM(str(p))
    r = model.evaluate(x, cell, s)
    assert r.energy_eV == pytest.approx(atoms.get_potential_energy(), abs=1e-4 * len(x))
    np.testing.assert_allclose(r.forces_eV_per_A, atoms.get_forces(), atol=2e-3)
