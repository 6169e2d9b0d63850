"""The convergence rates the theory predicts, in one place.

Every predicted log–log slope used anywhere in the project (the ``ds.sweep`` accessor, the
report's slope table and its guide lines) comes from :data:`RATES` through
:func:`predicted_rates` / :func:`predicted_slope`.

Sources
-------
P1
    *Generalisation analysis of MLIPs for point defects* (``papers/point-defects-generalisation.txt``),
    Theorem 3.1, eqs. (3.7)–(3.8) and Table 1. For ``n_D`` point defects in dimension ``d``::

        geometry ≲ √n_D (ε_F + L^{-d/2} ε_FC_hom + L^{-3d/2})
        energy   ≲ n_D ((ε_F + L^{-d/2} ε_FC_hom + L^{-3d/2})² + L^{-d} + ε_E)

    Versus the training-cell size L (at matched, small fit errors; Table 1, column
    "ε_E,F = 0"): geometry ~ L^{-d/2}, energy ~ L^{-d}. Versus the force RMSE at fixed L
    (Table 1, column "L sufficiently large", with the balance ε_E ≈ ε_F²): geometry ∝ ε_F
    (slope 1), energy ∝ ε_F² (slope 2). P1 §4.2 notes the energy was observed to fall *faster*
    than L^{-d} for symmetric vacancy configurations: the prediction is an upper bound on the
    error, so a steeper measured energy slope is consistent with the theorem.
P2
    *Generalisation analysis of MLIPs for dislocations* (``papers/dislocations-generalisation.txt``),
    Theorem 3.1, eqs. (3.13)–(3.14) and Table 1 (screw dislocations, d = 2 cross-section)::

        geometry ≲ √n_D (ε_F + log^{1/2}(L_D) ε_V1 + L^{-1} ε_V2 + L^{-2})
        energy   ≲ n_D ((…)² + L^{-2} + ε_E)

    Versus L, by observation set: ``E+F`` (no elastic rows, ε_V1, ε_V2 ≠ 0): the error does not
    decay with L — it stalls (slope 0; with L_D growing it even grows like log^{1/2} L_D);
    ``E+F+CLE`` (ε_V1 = 0): geometry ~ L^{-1}, energy ~ L^{-2}; ``E+F+CLE+NL``
    (ε_V1 = ε_V2 = 0): geometry ~ L^{-2}, energy ~ L^{-2}. Versus the force RMSE at fixed L:
    slopes 1 (geometry) and 2 (energy), as in P1 (P2 Fig. 4).

All slopes are dimensionless exponents p in ``error ∝ x^p`` (log–log slopes), with x = L in
units of r0 or x = the test-set force RMSE in eV/Å.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "PredictedRates",
    "RATES",
    "p1_rates",
    "predicted_rates",
    "predicted_slope",
    "quantity_of",
    "normalise_observations",
]


@dataclass(frozen=True)
class PredictedRates:
    """Predicted log–log slopes for one (experiment, observation set).

    Attributes
    ----------
    experiment : str
        Experiment id as stored in the Dataset attr ``experiment`` (e.g. ``"p1-point-defects-2d"``).
    observations : str
        Observation-set label as in the ``observations`` coordinate (e.g. ``"E+F"``).
    geometry_vs_L, energy_vs_L : float
        Exponents p of ``geometry_error ∝ L^p`` (Å vs r0) and ``energy_error ∝ L^p`` (eV vs r0)
        at matched, small fit errors.
    geometry_vs_rmse, energy_vs_rmse : float
        Exponents p of ``error ∝ ε_F^p`` with ε_F the test-set force RMSE (eV/Å), at fixed L.
    source : str
        The theorem / table the numbers come from.
    note : str
        Caveats (e.g. "stalls", "bound: faster observed").
    """

    experiment: str
    observations: str
    geometry_vs_L: float
    energy_vs_L: float
    geometry_vs_rmse: float
    energy_vs_rmse: float
    source: str
    note: str = ""

    def slope(self, quantity: str, against: str) -> float:
        """Return the predicted slope of ``quantity`` ("geometry" | "energy") vs ``against``
        ("L" | "rmse")."""
        return float(getattr(self, f"{quantity}_vs_{against}"))


def p1_rates(experiment: str, d: int, observations: str = "E+F") -> PredictedRates:
    """P1 Theorem 3.1 / Table 1 rates for point defects in spatial dimension ``d``.

    Parameters
    ----------
    experiment : str
        Experiment id the rates are filed under.
    d : int
        Spatial dimension (2 for the triangular lattice, 3 for Si).
    observations : str
        Observation-set label (P1 fits energies and forces only: ``"E+F"``).

    Returns
    -------
    PredictedRates
        geometry vs L: −d/2; energy vs L: −d; geometry vs ε_F: 1; energy vs ε_F: 2.
    """
    return PredictedRates(
        experiment=experiment,
        observations=observations,
        geometry_vs_L=-d / 2.0,
        energy_vs_L=-float(d),
        geometry_vs_rmse=1.0,
        energy_vs_rmse=2.0,
        source=f"P1 Theorem 3.1, Table 1 (d = {d})",
        note="energy rate is an upper bound; P1 observed faster energy decay for symmetric vacancies",
    )


_P2 = "P2 Theorem 3.1, Table 1"

#: The table: (experiment, observation set) -> predicted slopes.
RATES: dict[tuple[str, str], PredictedRates] = {
    ("p1-point-defects-2d", "E+F"): p1_rates("p1-point-defects-2d", 2),
    ("p1-si", "E+F"): p1_rates("p1-si", 3),
    ("p2-dislocations", "E+F"): PredictedRates(
        "p2-dislocations", "E+F", 0.0, 0.0, 1.0, 2.0, _P2,
        note="no elastic observations: the error stalls in L (grows like log^1/2 L_D)",
    ),
    ("p2-dislocations", "E+F+CLE"): PredictedRates(
        "p2-dislocations", "E+F+CLE", -1.0, -2.0, 1.0, 2.0, _P2,
        note="linear elasticity fitted (eps_V1 = 0)",
    ),
    ("p2-dislocations", "E+F+CLE+NL"): PredictedRates(
        "p2-dislocations", "E+F+CLE+NL", -2.0, -2.0, 1.0, 2.0, _P2,
        note="linear and nonlinear elasticity fitted (eps_V1 = eps_V2 = 0)",
    ),
}

_OBS_ALIASES = {"NONLINEAR": "NL", "NONLIN": "NL", "CB": "CLE", "ELASTIC": "CLE"}


def normalise_observations(label: str) -> str:
    """Canonical observation-set label: ``"e+f+cle+nonlinear"`` → ``"E+F+CLE+NL"``."""
    parts = [p.strip().upper() for p in str(label).replace(" ", "").split("+") if p.strip()]
    return "+".join(_OBS_ALIASES.get(p, p) for p in parts)


def _family_key(experiment: str) -> str | None:
    e = str(experiment).lower()
    if e in {k[0] for k in RATES}:
        return e
    if e.startswith("p2"):
        return "p2-dislocations"
    return None


def predicted_rates(
    experiment: str | None,
    observations: str = "E+F",
    *,
    spatial_dimension: int | None = None,
) -> PredictedRates | None:
    """Look up the predicted rates of an experiment and observation set.

    Parameters
    ----------
    experiment : str or None
        Experiment id (Dataset attr ``experiment``). Exact keys of :data:`RATES` are used first;
        other ids starting with ``"p2"`` use the ``"p2-dislocations"`` rows, and other ids
        starting with ``"p1"`` use P1's rates for ``spatial_dimension`` when it is given.
    observations : str
        Observation-set label; case and the alias ``nonlinear`` → ``NL`` are normalised.
    spatial_dimension : int, optional
        Spatial dimension d, used only for ``p1*`` experiments not in the table.

    Returns
    -------
    PredictedRates or None
        None when the theory gives no prediction for this combination.
    """
    if experiment is None:
        return None
    obs = normalise_observations(observations)
    key = _family_key(experiment)
    if key is not None:
        return RATES.get((key, obs))
    if str(experiment).lower().startswith("p1") and spatial_dimension and obs == "E+F":
        return p1_rates(str(experiment), int(spatial_dimension), obs)
    return None


def quantity_of(variable: str) -> str | None:
    """Map a store variable to the theorem's quantity: ``"geometry"``, ``"energy"`` or None."""
    if variable == "geometry_error":
        return "geometry"
    if variable in ("energy_error", "formation_energy_error"):
        return "energy"
    return None


def predicted_slope(
    experiment: str | None,
    observations: str,
    variable: str,
    against: str,
    *,
    spatial_dimension: int | None = None,
) -> float | None:
    """Predicted log–log slope of a store variable against ``"L"`` or ``"rmse_forces"``.

    Parameters
    ----------
    experiment, observations, spatial_dimension
        See :func:`predicted_rates`.
    variable : str
        ``"geometry_error"`` (Å), ``"energy_error"`` or ``"formation_energy_error"`` (eV).
    against : str
        ``"L"`` (r0) or ``"rmse_forces"`` (eV/Å). The theorems say nothing direct about other
        regressors, so they give None.

    Returns
    -------
    float or None
    """
    quantity = quantity_of(variable)
    axis = {"L": "L", "rmse_forces": "rmse"}.get(against)
    if quantity is None or axis is None:
        return None
    rates = predicted_rates(experiment, observations, spatial_dimension=spatial_dimension)
    return None if rates is None else rates.slope(quantity, axis)
