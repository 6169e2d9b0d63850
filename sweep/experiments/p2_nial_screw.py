"""P2's multilattice experiment: a[001] screw quadrupoles in B2 NiAl (P2 §4.2.3, Figs. 9–11).

The same stages, tables and stored values as the W screw (:mod:`sweep.experiments.p2_dislocations`,
whose adapters and ``build`` this experiment runs with ``system =`` :data:`NIAL_SCREW`); what
differs is in :mod:`kernels.b2_screw` (why a⟨100⟩ and not a⟨111⟩, why the Mishin 2002 EAM):

- the crystal: B2 NiAl (Ni corners, Al body centres), a0 from the reference;
- the cells: four a[001] screws in a square a√2-multiple cell (``b2_cell_repeats``), from the
  periodic CLE predictor u_z = (b/2π)θ (exact for a screw along a cubic fourfold axis);
- the ACE basis: two species, Ni and Al; ``basis_size`` is the number of functions *per
  element* (pyace's ``number_of_functions_per_element``), so the fit has about twice as many
  coefficients. Its rows are pyace's (the fast chain-rule rows are single-species);
- the reference: ``eam-nial-mishin2002`` (:func:`kernels.eam.mishin2002_nial`);
- the force-constant error is that of the column of a Ni site of the perfect crystal.

The grid's ``defect`` is ``"screw"``, ``n_defects`` 4, ``L`` the training-cell size in a0,
``observations`` one of ``E+F``, ``E+F+CLE``, ``E+F+CLE+NL``, and ``rattle_A`` the rattle
amplitude α (Å).
"""

from __future__ import annotations

import functools

from kernels.b2_screw import NIAL_SCREW as KERNEL_SYSTEM
from kernels.eam import mishin2002_nial

from ..experiment import Experiment, register
from . import p2_dislocations as p2

__all__ = ["EXPERIMENT", "REFERENCE_MODELS", "NIAL_SCREW"]

#: Reference models by spec name → constructor.
REFERENCE_MODELS = {"eam-nial-mishin2002": mishin2002_nial}

#: The a[001] screw in B2 NiAl with the Mishin 2002 EAM, for the P2 adapters.
NIAL_SCREW = p2.P2System(KERNEL_SYSTEM, REFERENCE_MODELS, "screw")

ALLOWED = {**p2.ALLOWED, "reference.model": tuple(REFERENCE_MODELS)}

EXPERIMENT = register(Experiment(
    name="p2-dislocations-nial-screw",
    description="a[001] screw quadrupole in B2 NiAl, Mishin 2002 EAM reference, Ni–Al ACE, "
                "elastic observations (P2 §4.2.3)",
    fixed=p2.FIXED, allowed=ALLOWED, build=functools.partial(p2.build, system=NIAL_SCREW),
    check=p2.check, spatial_dimension=2,
    optional=dict(p2.EXPERIMENT.optional), slice_design=True, force_components=3,
    optional_weight_fields=dict(p2.EXPERIMENT.optional_weight_fields),
    weight_attrs=dict(p2.EXPERIMENT.weight_attrs), extra_dims=p2.EXPERIMENT.extra_dims,
    variables={**p2.VARIABLES, **p2.EVIDENCE_VARIABLES}, species=("Ni", "Al")))
