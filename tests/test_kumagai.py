"""The Kumagai (2007) Si reference: derivatives, virial, and the values published with it."""

import numpy as np
import pytest
from scipy.optimize import minimize_scalar

from kernels.diamond import diamond_cell, diamond_sites
from kernels.elasticity import cubic_constants_GPa
from kernels.kumagai import kumagai2007_silicon
from kernels.relaxed_elasticity import relaxed_elastic_constants_eV_per_A3
from tests.finite_differences import minus_gradient_eV_per_A, strain_derivatives_eV

# Published with the potential (Kumagai, Izumi, Hara, Sakai, Comput. Mater. Sci. 39 (2007) 457),
# as quoted to these digits in the task brief for issue #4 (the paper's table itself was not
# available here): a (Å), E_c (eV/atom), relaxed-ion C11, C12, C44 (GPa).
PUBLISHED = (5.429, 4.630, 166.4, 65.3, 77.1)


@pytest.fixture(scope="module")
def model():
    return kumagai2007_silicon()


def _rattled(a, n, amplitude, seed):
    x = diamond_sites(n, a)
    return x + amplitude * np.random.default_rng(seed).standard_normal(x.shape), \
        diamond_cell(n, a), ["Si"] * len(x)


def test_forces_are_minus_energy_gradient(model):
    x, cell, s = _rattled(5.43, 1, 0.1, 1)
    f = model.evaluate(x, cell, s).forces_eV_per_A
    assert np.abs(f).max() > 0.5
    fd = minus_gradient_eV_per_A(lambda y: model.evaluate(y, cell, s).energy_eV, x, (0, 3, 6))
    for (i, a), value in fd.items():
        assert f[i, a] == pytest.approx(value, abs=2e-6)


def test_virial_is_strain_derivative(model):
    x, cell, s = _rattled(5.35, 1, 0.08, 2)
    v = model.evaluate(x, cell, s).virial_eV
    assert np.abs(v).max() > 1.0
    derivatives = strain_derivatives_eV(lambda y, c: model.evaluate(y, c, s).energy_eV, x, cell)
    for (a, b), dE in derivatives.items():
        assert -dE == pytest.approx(v[a, b], abs=2e-5)


def test_published_lattice_constant_cohesive_energy_and_elastic_constants(model):
    a_pub, ec_pub, c11, c12, c44 = PUBLISHED

    def e(a):
        return model.evaluate(diamond_sites(1, a), diamond_cell(1, a)).energy_eV / 8

    r = minimize_scalar(e, bounds=(5.2, 5.7), method="bounded", options={"xatol": 1e-9})
    assert r.x == pytest.approx(a_pub, abs=5e-4)
    assert -r.fun == pytest.approx(ec_pub, abs=5e-4)
    x = diamond_sites(1, r.x)
    C, C0 = relaxed_elastic_constants_eV_per_A3(model, x, diamond_cell(1, r.x), ["Si"] * 8)
    relaxed = cubic_constants_GPa(C)
    assert relaxed == pytest.approx((c11, c12, c44), abs=0.05)
    # the clamped-ion C44 (no sublattice relaxation) is much stiffer; C11 and C12 have none
    clamped = cubic_constants_GPa(C0)
    assert clamped[:2] == pytest.approx(relaxed[:2], abs=1e-6)
    assert clamped[2] > relaxed[2] + 30.0
