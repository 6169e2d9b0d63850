"""Built-in experiments, one module each; importing this package registers them all.

==========================  ==========================================================
module                      experiment
==========================  ==========================================================
``p1_point_defects``        ``p1-point-defects-2d``: vacancies in the 2D triangular
                            lattice (P1 §4.1)
``p1_union``                ``p1-point-defects-union-2d``: one fit on a union of defect
                            training cells with per-cell weights (P1 §4.2.1, P1-int)
``p1_si``                   ``p1-point-defects-si``: vacancies in diamond Si, NRL
                            tight-binding reference (P1 §4.2.2, P1-Si)
``p2_dislocations``         ``p2-dislocations-w-screw``: screw quadrupole in W, elastic
                            observations (P2 §4.2.1)
``p2_si_edge``              ``p2-dislocations-si-edge``: edge quadrupole in Si, Kumagai
                            reference, elastic observations (P2 §4.2.2)
``p2_nial_screw``           ``p2-dislocations-nial-screw``: a[001] screw quadrupole in
                            B2 NiAl, Mishin EAM reference (P2 §4.2.3, P2-NiAl)
``p2_w_loop``               ``p2-dislocations-w-loop``: a ½<111> loop in W, one fit on a
                            screw and an edge training cell (P2 §4.3, P2-loop)
==========================  ==========================================================
"""

from . import p1_point_defects  # noqa: F401
from . import p2_dislocations  # noqa: F401,E402
from . import p1_union  # noqa: F401
from . import p1_si  # noqa: F401
from . import p2_si_edge  # noqa: F401
from . import p2_nial_screw  # noqa: F401,E402
from . import p2_w_loop  # noqa: F401,E402
