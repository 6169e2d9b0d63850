"""P1-Si: vacancies in diamond Si with the NRL tight-binding reference (P1 §4.2.2, Figs. 8, 9).

The same stages, kernels and stored variables as the 2D experiments — the lattice is
:data:`kernels.diamond.DIAMOND` instead of the triangular lattice, so rattling, force rows, force
constants and the geometry error use all three Cartesian components and the diamond
nearest-neighbour stencil (4 neighbours at √3/4 a). Units of the grid: ``L`` and
``simulation.size`` count cubic cells (a ≈ 5.43 Å; the training cell L holds 8 L³ − 1 atoms, the
paper's simulation cell 10 × 10 × 10 cells = 8000 sites); the defect separation is L_D = L cubic
cells along [100].

The graph is that of :mod:`sweep.experiments.p1_union` (one training cell per defect kind; a
plain ``"vacancy"`` is a one-cell training set) built on the diamond lattice.

Spec tables beyond the 2D experiment's: ``[reference]`` takes ``kpoint_length_A`` (Å, the
Monkhorst–Pack density of :class:`kernels.nrl_tb.NRLTightBinding`; 0 → Γ only), and
``[cluster] memory_per_worker`` (e.g. "48GB": dense diagonalisation of 8000 atoms × 4 orbitals
needs several 32,000² matrices) is the memory of each SLURM job when ``--memory`` is not given.
"""

from __future__ import annotations

from ..experiment import Experiment, register
from ..spec import NONNEG_FLOAT, STR, SpecError
from . import p1_union

__all__ = ["EXPERIMENT"]

FIXED = {**p1_union.FIXED,
         "reference": {"model": STR, "kpoint_length_A": NONNEG_FLOAT},
         "cluster": {"memory_per_worker": STR}}
OPTIONAL = {**p1_union.OPTIONAL, "reference.kpoint_length_A": 20.0,
            "cluster": {}, "cluster.memory_per_worker": "2GB"}
ALLOWED = {**p1_union.ALLOWED, "reference.model": ("nrl-tb-si-sp-bernstein2000",),
           "relax.optimizer": ("precon-lbfgs", "lbfgs", "fire")}


def check(spec) -> None:
    """As the 2D union experiment (kinds, L_D ≤ size / 2, ACE table); memory like "48GB"."""
    p1_union.check(spec)
    mem = spec.params["cluster"]["memory_per_worker"]
    digits = mem.rstrip("KMGTBkmgtib")
    if not digits or not digits.replace(".", "", 1).isdigit():
        raise SpecError("cluster.memory_per_worker", f"must be a size like '48GB', got {mem!r}")


EXPERIMENT = register(Experiment(
    name="p1-point-defects-si",
    description="point defects in diamond Si, NRL tight-binding reference (QUIP), "
                "3D ACE fits (P1 §4.2.2)",
    fixed=FIXED, allowed=ALLOWED, build=p1_union.build_on("diamond"), check=check,
    optional=OPTIONAL,
    optional_weight_fields=p1_union.EXPERIMENT.optional_weight_fields,
    weight_attrs=p1_union.EXPERIMENT.weight_attrs,
    variables=p1_union.VARIABLES, spatial_dimension=3, species=("Si",)))

