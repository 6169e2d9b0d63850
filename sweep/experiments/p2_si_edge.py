"""P2-Si: quadrupoles of edge dislocations in diamond Si with elastic observations (P2 §4.2.2).

The stages, task graph, spec tables, weight fields, extra dimension (``rattle_A``) and stored
variables are those of :mod:`sweep.experiments.p2_dislocations`, run with the system
:data:`SI_EDGE_SYSTEM`: the ½[1-10](111) shuffle-set edge of :mod:`kernels.edge_quadrupole` in
diamond Si (:data:`kernels.si_edge.SI_EDGE`), the Kumagai et al. (2007) reference
(:mod:`kernels.kumagai`, spec name ``kumagai-si-2007``), grid ``defect = ["edge"]``,
``n_defects = [4]``. ``L`` and ``simulation.size`` count cubic lattice constants a0 = 5.429 Å:
a cell of side ≈ s a0 is ``kernels.edge_quadrupole.edge_cell_repeats(s)`` unit cells of
a/√2 × a√3 × a√6/2 (12 atoms each; s = 100 → 142 × 58 cells, 98,832 atoms).

Stored variables: those of P2, except that ``elastic_constant_error`` is the error of the fitted
model's internally relaxed C = C⁰ − M_sΦ_s⁺M_sᵀ/Ω (the constants of the far field; the CLE sets
fit C⁰, M_s and Φ_s, :func:`kernels.dislocations.fit`), and ``clamped_elastic_constant_error``
that of the clamped-ion C⁰ = ∂²W_cb.
"""

from __future__ import annotations

from functools import partial

import numpy as np

from kernels.kumagai import kumagai2007_silicon
from kernels.si_edge import SI_EDGE

from ..experiment import Experiment, register
from . import p2_dislocations as p2

__all__ = ["EXPERIMENT", "REFERENCE_MODELS", "SI_EDGE_SYSTEM"]

#: Reference models by spec name → constructor.
REFERENCE_MODELS = {"kumagai-si-2007": kumagai2007_silicon}

#: The Si edge with its reference models, as every task of this experiment receives it.
SI_EDGE_SYSTEM = p2.P2System(SI_EDGE, REFERENCE_MODELS, "edge")

ALLOWED = {**p2.ALLOWED, "defect": ("edge",), "reference.model": tuple(REFERENCE_MODELS)}

VARIABLES = {
    **p2.VARIABLES,
    **p2.EVIDENCE_VARIABLES,
    "elastic_constant_error": ("f8", "%", "relative (Frobenius) error of the 6×6 internally "
                               "relaxed elastic constants C⁰ − MΦ⁺Mᵀ/V of the perfect crystal "
                               "(those of the far field)", np.nan),
    "clamped_elastic_constant_error": ("f8", "%", "relative (Frobenius) error of the 6×6 "
                                       "clamped-ion elastic constants ∂²W_cb of the perfect "
                                       "crystal", np.nan),
}

EXPERIMENT = register(Experiment(
    name="p2-dislocations-si-edge",
    description="½[1-10](111) edge quadrupole in diamond Si, Kumagai (2007) reference, elastic "
                "observations (P2 §4.2.2)",
    fixed=p2.FIXED, allowed=ALLOWED, build=partial(p2.build, system=SI_EDGE_SYSTEM),
    check=partial(p2.check, system=SI_EDGE_SYSTEM), spatial_dimension=2,
    optional=dict(p2.EXPERIMENT.optional), slice_design=True, force_components=3,
    optional_weight_fields=p2.EXPERIMENT.optional_weight_fields,
    weight_attrs=p2.EXPERIMENT.weight_attrs, extra_dims=p2.EXPERIMENT.extra_dims,
    variables=VARIABLES, species=("Si",)))
