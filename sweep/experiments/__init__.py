"""Built-in experiments, one module each; importing this package registers them all.

==========================  ==========================================================
module                      experiment
==========================  ==========================================================
``p1_point_defects``        ``p1-point-defects-2d``: vacancies in the 2D triangular
                            lattice (P1 §4.1)
==========================  ==========================================================
"""

from . import p1_point_defects  # noqa: F401
