"""P2's training domain (one dipole in a tilted cell of side 2L) and its spec option."""

import re

import numpy as np
import pytest

from kernels import dislocations as dk
from kernels.dipole_cells import (enclosed_burgers, locate_cores, mean_elastic_distortion,
                                  screw_dipole_displacement)
from kernels.eam import zhou2001_tungsten
from kernels.relax import relax
from sweep.spec import SpecError, builtin_specs, parse_spec

A0 = 3.1648494  # Zhou W


def _w_cell(L):
    return dk.W_SCREW.training_cell(A0, L, None, "dipole")


def test_dipole_has_zero_net_burgers_and_its_two_cores():
    c = _w_cell(4)
    assert c.signs.sum() == 0 and len(c.signs) == 2
    cores, signs = locate_cores(c.positions0_A, c.positions_A, [0, 0, c.burgers_A])
    np.testing.assert_array_equal(np.sort(signs), [-1, 1])
    np.testing.assert_allclose(cores[np.argsort(-signs)], c.cores_A, atol=1.5)


def test_predictor_is_periodic_in_the_tilted_cell_with_no_mean_elastic_strain():
    c = _w_cell(4)
    Lx, Ly, b = c.cell_A[0, 0], c.cell_A[1, 1], c.burgers_A
    xy = np.random.default_rng(0).uniform(0, 1, (50, 2)) * [Lx, Ly]
    u = screw_dipole_displacement(xy, c.cores_A, b, Lx, Ly)
    for shift, tilt in (([Lx, 0], 0.0), ([0, Ly], c.cell_A[1, 2])):
        v = screw_dipole_displacement(xy + shift, c.cores_A, b, Lx, Ly)
        jump = (v - u - tilt) / b  # continuous across the boundary up to whole b
        np.testing.assert_allclose(jump, np.round(jump), atol=1e-10)
    assert abs(c.cell_A[1, 2]) == pytest.approx(b / 2)

    def field(p):
        return np.column_stack([0 * p[:, 0], 0 * p[:, 0],
                                screw_dipole_displacement(p, c.cores_A, b, Lx, Ly)])
    # the tilt's strain b/(2 Ly) is what a wrong linear term would leave behind
    mean = mean_elastic_distortion(field, c.cell_A, np.array([0, 0, b]))
    assert np.abs(mean).max() < 1e-3 * b / (2 * Ly)


def test_relaxed_dipole_keeps_its_cores_apart():
    c = _w_cell(3)
    sym = ["W"] * len(c.positions_A)
    model = zhou2001_tungsten()
    r = relax(model, c.positions_A, c.cell_A, sym, 1e-4, 3000)
    cores, signs = locate_cores(c.positions0_A, r.positions_A, [0, 0, c.burgers_A])
    np.testing.assert_array_equal(np.sort(signs), [-1, 1])
    d0 = np.linalg.norm(c.cores_A[1] - c.cores_A[0])
    assert np.linalg.norm(cores[1] - cores[0]) > 0.5 * d0
    # the tilt removes the dipole's homogeneous shear: lower energy than the untilted cell
    flat = c.cell_A.copy()
    flat[1, 2] = 0.0
    assert model.evaluate(c.positions_A, c.cell_A, sym).energy_eV < \
        model.evaluate(c.positions_A, flat, sym).energy_eV


def test_spec_refuses_L_beyond_L_D_and_unknown_domains():
    t = builtin_specs()["p2-w-screw-quick"]
    assert parse_spec(t).params["training"]["domain"] == "dipole"
    with pytest.raises(SpecError) as e:
        parse_spec(re.sub(r"^L = \[.*\]$", "L = [3, 16]", t, flags=re.M))
    assert e.value.field == "grid.L[1]" and "L_D" in str(e.value)
    with pytest.raises(SpecError) as e:
        parse_spec(t.replace('domain = "dipole"', 'domain = "square"'))
    assert e.value.field == "training.domain"
    cb = parse_spec(t.replace('domain = "dipole"', 'domain = "checkerboard"'))
    assert cb.params["training"]["domain"] == "checkerboard"


def test_ring_counts_each_core_once_and_nothing_elsewhere():
    """The ring circuit gives the cell's signs at its cores at every radius short of the other
    core, 0 midway between the cores' rows, and crosses the tilted boundary consistently."""
    c = _w_cell(4)
    b = [0, 0, c.burgers_A]
    for core, sign in zip(c.cores_A, c.signs):
        for radius in (3.0, 4.5, 6.0):
            assert enclosed_burgers(c.positions0_A, c.positions_A, c.cell_A, core, b,
                                    radius) == pytest.approx(sign, abs=1e-9)
    quiet = c.cores_A.mean(axis=0) + [0, c.cell_A[1, 1] / 2]  # the boundary row, between images
    assert enclosed_burgers(c.positions0_A, c.positions_A, c.cell_A, quiet, b,
                            3.0) == pytest.approx(0, abs=1e-9)


@pytest.fixture(scope="module")
def si_lattice():
    from kernels.kumagai import kumagai2007_silicon
    from kernels.si_edge import SI_EDGE

    model = kumagai2007_silicon()
    return model, dk.lattice_reference(model, SI_EDGE)


@pytest.mark.parametrize("L, kept", [(3, False), (4, True)])
def test_si_edge_dipole_keeps_its_cores_from_L_4(si_lattice, L, kept):
    """Kumagai Si: the edge dipole of side 2L = 6 a0 annihilates on relaxation (no core left
    in either ring); from L = 4 both cores stay where they were put."""
    from kernels.si_edge import SI_EDGE

    model, lat = si_lattice
    c = SI_EDGE.training_cell(lat.a0_A, L, lat, "dipole")
    sym = dk._symbols(c, len(c.positions_A), SI_EDGE)
    assert [enclosed_burgers(c.positions0_A, c.positions_A, c.cell_A, core, c.burgers_A,
                             1.2 * lat.a0_A) for core in c.cores_A] == pytest.approx(c.signs)
    r = relax(model, c.positions_A, c.cell_A, sym, 1e-4, 3000, "precon-lbfgs")
    rings = [enclosed_burgers(c.positions0_A, r.positions_A, c.cell_A, core, c.burgers_A,
                              1.2 * lat.a0_A) for core in c.cores_A]
    assert rings == pytest.approx(c.signs if kept else [0, 0], abs=1e-9)
