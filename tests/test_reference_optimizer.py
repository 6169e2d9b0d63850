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


def test_precon_lbfgs_reference_reaches_a_minimum_where_lbfgs_stops_at_a_saddle():
    model = zhou2001_tungsten()
    lat = dk.lattice_reference(model)
    auto = dk.simulation_reference(model, lat.a0_A, 8,
                                   pdk.RelaxOptions(1e-6, 20000, "hessian-lbfgs"))
    precon = dk.simulation_reference(model, lat.a0_A, 8,
                                     pdk.RelaxOptions(1e-6, 20000, "hessian-lbfgs",
                                                      "precon-lbfgs"))
    for sim in (auto, precon):
        forces = model.evaluate(sim.positions_A, sim.cell_A, list(sim.symbols)).forces_eV_per_A
        assert np.linalg.norm(forces, axis=1).max() < 1e-6
    assert _lowest_nontranslation_eigenvalue(model, auto) < -1.0
    assert _lowest_nontranslation_eigenvalue(model, precon) > 0.01
    assert precon.energy_eV < auto.energy_eV - 0.4
