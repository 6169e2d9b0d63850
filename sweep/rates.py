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

Regimes
    The rows of :data:`RATES` are the *design* columns (all matching errors the observation set
    fits taken as zero). Which column of Table 1 actually applies to a store depends on its own
    fit errors: :func:`p1_regime` and :func:`p2_regime` evaluate the bound's terms over the
    grid's L values and pick the dominant one (:data:`DOMINANCE`), or, at a crossover, the
    bound's effective slope. ``ds.sweep.regimes()`` and ``sweep report`` use them.

All slopes are dimensionless exponents p in ``error ∝ x^p`` (log–log slopes), with x = L in
units of r0 or x = the test-set force RMSE in eV/Å.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "PredictedRates",
    "RATES",
    "p1_rates",
    "predicted_rates",
    "predicted_slope",
    "quantity_of",
    "normalise_observations",
    "DOMINANCE",
    "Regime",
    "P1_TABLE1",
    "P2_TABLE1",
    "p1_regime",
    "p2_regime",
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


# --------------------------------------------------------------------------- regimes
#: A term of a bound *dominates* on a grid when, at every L of the grid, it is at least this many
#: times the sum of the other terms. With two terms t1 ≥ DOMINANCE · t2 the bound's local log–log
#: slope lies within (p2 − p1) / (1 + DOMINANCE) of t1's exponent p1, i.e. within a quarter of the
#: gap between the two limiting rates.
DOMINANCE = 3.0


@dataclass(frozen=True)
class Regime:
    """Which limiting case of Table 1 applies to a store, and why.

    Attributes
    ----------
    paper : str
        ``"P1"`` or ``"P2"``.
    column : str
        The Table 1 column (e.g. ``"ε_E,F = 0"``), or ``"crossover"`` when no term of the bound
        dominates across the grid (then the predicted slope is the bound's effective slope).
    geometry_vs_L, energy_vs_L : float
        Predicted log–log slopes against L (r0): the dominant term's exponent, or for a
        crossover the least-squares log–log slope of the bound itself over the grid's L values.
    geometry_column, energy_column : str
        The regime of each bound separately (they can differ: e.g. the energy bound's L^{-d}
        term can dominate while the geometry bound is at a crossover).
    terms : dict of str to tuple of float
        The bound's terms at each L of the grid (dimensionless, see :func:`p1_regime`), for the
        report.
    L : tuple of float
        The grid's L values (r0) the terms were evaluated at.
    reason : str
        One sentence saying which term dominates, by what factor, over which L range.
    """

    paper: str
    column: str
    geometry_vs_L: float
    energy_vs_L: float
    geometry_column: str
    energy_column: str
    terms: dict
    L: tuple
    reason: str


def _effective_slope(L: np.ndarray, total: np.ndarray) -> float:
    lx, ly = np.log(L), np.log(total)
    return float(np.polyfit(lx, ly, 1)[0]) if lx.size >= 2 and np.ptp(lx) > 0 else float("nan")


def _classify(L, terms: dict, exponents: dict, columns: dict) -> tuple[str, float, str]:
    """Pick the dominant term of a bound (sum of ``terms``) across the L grid.

    ``terms`` maps a term name to its values at each L; ``exponents`` maps it to the term's
    log–log slope in L; ``columns`` to the Table 1 column it stands for. Returns (column, slope,
    reason).
    """
    L = np.asarray(L, float)
    arr = {k: np.asarray(v, float) for k, v in terms.items()}
    total = sum(arr.values())
    span = f"L = {L.min():g}–{L.max():g} r0"
    for name, t in arr.items():
        others = total - t
        ratio = np.where(others > 0, t / np.where(others > 0, others, 1.0), np.inf)
        if np.all(ratio >= DOMINANCE):
            worst = float(np.min(ratio))
            how = ("the other terms are zero" if not np.isfinite(worst)
                   else f"it is ≥ {worst:.3g}× the sum of the other terms")
            return (columns[name], float(exponents[name]),
                    f"{name} dominates: {how} at every {span} (threshold {DOMINANCE:g}×)")
    share = {k: float(np.mean(v / total)) for k, v in arr.items()}
    top = ", ".join(f"{k} {100 * s:.0f} %" for k, s in sorted(share.items(), key=lambda kv: -kv[1]))
    return ("crossover", _effective_slope(L, total),
            f"no term dominates by {DOMINANCE:g}× at every {span} (mean shares of the bound: {top}); "
            "predicted slope = log–log slope of the bound over the grid")


def _bound_regime(paper: str, L: np.ndarray, g_terms: dict, g_exp: dict, g_col: dict,
                  eE: np.ndarray, energy_rate: tuple[str, float, str], note: str = "") -> Regime:
    """Classify a paper's geometry bound (``g_*``: terms, their slopes vs L, their Table 1
    columns) and its energy bound — ε_E (eV/atom), the geometry bound squared and the paper's
    own rate term ``energy_rate`` = (name, slope vs L, column) — into a :class:`Regime`."""
    g_column, g_slope, g_reason = _classify(L, g_terms, g_exp, g_col)
    gsum = sum(g_terms.values())
    e_name, e_rate, e_rate_column = energy_rate
    e_terms = {"ε_E": eE, "(geometry bound)²": gsum**2, e_name: L**e_rate}
    e_exp = {"ε_E": 0.0, "(geometry bound)²": 2 * _effective_slope(L, gsum), e_name: e_rate}
    e_col = {"ε_E": "L sufficiently large", "(geometry bound)²": f"geometry² ({g_column})",
             e_name: e_rate_column}
    e_column, e_slope, e_reason = _classify(L, e_terms, e_exp, e_col)
    return Regime(
        paper=paper, column=g_column, geometry_vs_L=g_slope, energy_vs_L=e_slope,
        geometry_column=g_column, energy_column=e_column,
        terms={**{f"geometry: {k}": tuple(map(float, v)) for k, v in g_terms.items()},
               **{f"energy: {k}": tuple(map(float, v)) for k, v in e_terms.items()}},
        L=tuple(map(float, L)),
        reason=f"geometry: {g_reason}; energy: {e_reason}{note}",
    )


def p1_regime(
    L,
    d: int,
    rmse_forces_eV_per_A,
    rmse_energy_meV_per_atom,
    force_constant_error_percent,
) -> Regime:
    """The P1 Table 1 regime for a grid of training-cell sizes, from measured fit errors.

    The bounds of P1 Theorem 3.1 (eqs. 3.7–3.8) are evaluated term by term at every L of the
    grid, with unit prefactors and the measured errors at that L (at matched accuracy)::

        geometry:  t_F = ε_F,   t_FC = L^{-d/2} ε_FC_hom,   t_L = L^{-3d/2}
        energy:    t_E = ε_E,   t_G² = (t_F + t_FC + t_L)²,  t_d = L^{-d}

    with L in r0, ε_F the test-set force RMSE in eV/Å, ε_FC_hom the relative force-constant
    error as a fraction (``force_constant_error_percent / 100``) and ε_E the test-set energy RMSE
    in eV/atom. The theorem's constants are unknown; unit prefactors in these natural units are
    the assumption of this rule, which is why the report prints the terms next to the verdict.

    Decision rule (:data:`DOMINANCE`): a term that is ≥ 3× the sum of the others at every L of
    the grid decides the column of Table 1 —

    ========================  ============================  ==============
    dominant term             Table 1 column                slope vs L
    ========================  ============================  ==============
    t_FC (geometry)           ε_E,F = 0                     −d/2
    t_L (geometry)            ε_E,F = ε_FC_hom = 0          −3d/2
    t_F (geometry)            L sufficiently large          0
    t_d (energy)              ε_E,F = 0 (both columns)      −d
    t_G² (energy)             (geometry bound squared)      2 × geometry
    t_E (energy)              L sufficiently large          0
    ========================  ============================  ==============

    Otherwise the bound is at a crossover and the predicted slope is the least-squares log–log
    slope of the summed bound over the grid's L values.

    Parameters
    ----------
    L : sequence of float
        Training-cell sizes (r0).
    d : int
        Spatial dimension (2 or 3).
    rmse_forces_eV_per_A, rmse_energy_meV_per_atom, force_constant_error_percent : sequence of float
        Measured ε_F (eV/Å), ε_E (meV/atom) and ε_FC_hom (%) at each L (same length as ``L``).

    Returns
    -------
    Regime
    """
    L = np.asarray(L, float)
    eF = np.broadcast_to(np.asarray(rmse_forces_eV_per_A, float), L.shape)
    eE = np.broadcast_to(np.asarray(rmse_energy_meV_per_atom, float), L.shape) * 1e-3
    eFC = np.broadcast_to(np.asarray(force_constant_error_percent, float), L.shape) * 1e-2
    g_terms = {"ε_F": eF, "L^{-d/2} ε_FC_hom": L ** (-d / 2) * eFC, "L^{-3d/2}": L ** (-1.5 * d)}
    g_exp = {"ε_F": 0.0, "L^{-d/2} ε_FC_hom": -d / 2, "L^{-3d/2}": -1.5 * d}
    g_col = {"ε_F": "L sufficiently large", "L^{-d/2} ε_FC_hom": "ε_E,F = 0",
             "L^{-3d/2}": "ε_E,F = ε_FC_hom = 0"}
    return _bound_regime("P1", L, g_terms, g_exp, g_col, eE,
                         ("L^{-d}", -float(d), "ε_E,F = 0"))


#: P2 Table 1's columns: the observation set decides which elastic matching errors are zero by
#: construction (ε_V1 = 0 when linear elasticity is fitted, ε_V2 = 0 when nonlinear elasticity is).
P2_TABLE1 = {
    "ε_E,F = 0": {"geometry_vs_L": 0.0, "energy_vs_L": 0.0,
                  "note": "log^{1/2}(L_D) ε_V1: no decay in L at fixed L_D"},
    "ε_E,F = ε_V1 = 0": {"geometry_vs_L": -1.0, "energy_vs_L": -2.0, "note": "L^{-1} ε_V2"},
    "ε_E,F = ε_V1 = ε_V2 = 0": {"geometry_vs_L": -2.0, "energy_vs_L": -2.0, "note": "L^{-2}"},
    "L sufficiently large": {"geometry_vs_L": 0.0, "energy_vs_L": 0.0,
                             "note": "ε_F + log^{1/2}(L_D) ε_V1"},
}

#: P1 Table 1's columns (exponents of L for dimension d).
P1_TABLE1 = {
    "ε_E,F = 0": {"geometry_vs_L": "-d/2", "energy_vs_L": "-d"},
    "ε_E,F = ε_FC_hom = 0": {"geometry_vs_L": "-3d/2", "energy_vs_L": "-d"},
    "L sufficiently large": {"geometry_vs_L": "0 (ε_F)", "energy_vs_L": "0 (ε_E + ε_F²)"},
}


def p2_regime(
    L,
    L_D: float,
    observations: str,
    rmse_forces_eV_per_A,
    rmse_energy_meV_per_atom,
    elastic_constant_error_percent,
) -> Regime:
    """The P2 Table 1 regime for a grid of training-cell sizes, from measured fit errors.

    The bounds of P2 Theorem 3.1 (eqs. 3.13–3.14) are evaluated term by term at every L, with unit
    prefactors (the assumption of this rule, as in :func:`p1_regime`)::

        geometry:  t_F = ε_F,  t_V1 = log^{1/2}(L_D) ε_V1,  t_V2 = L^{-1} ε_V2,  t_L = L^{-2}
        energy:    t_E = ε_E,  t_G² = (sum of the geometry terms)²,  t_2 = L^{-2}

    ε_F is the force RMSE (eV/Å), ε_E the energy RMSE (eV/atom), ε_V1 the measured relative
    elastic-constant error (``elastic_constant_error_percent / 100``). The store does not measure
    ε_V2: it is 0 when the observation set fits nonlinear elasticity (``NL``) and taken as 1
    (an unfitted third derivative has an O(1) relative error) otherwise. L_D is the fixed
    dislocation separation (r0), so t_F and t_V1 do not decay with L.

    Dominant geometry term → Table 1 column (slope vs L): t_V1 → "ε_E,F = 0" (0, stalls);
    t_V2 → "ε_E,F = ε_V1 = 0" (−1); t_L → "ε_E,F = ε_V1 = ε_V2 = 0" (−2); t_F → "L sufficiently
    large" (0). Energy: t_2 → −2; t_G² → twice the geometry bound's slope; t_E → 0. No dominant
    term (:data:`DOMINANCE`) → crossover, with the bound's own log–log slope over the grid.

    Parameters
    ----------
    L : sequence of float
        Training-cell sizes (r0).
    L_D : float
        Dislocation separation in the simulation cell (r0), > 1.
    observations : str
        Observation-set label (``"E+F"``, ``"E+F+CLE"``, ``"E+F+CLE+NL"``).
    rmse_forces_eV_per_A, rmse_energy_meV_per_atom, elastic_constant_error_percent : sequence of float
        Measured ε_F (eV/Å), ε_E (meV/atom), ε_V1 (%) at each L.

    Returns
    -------
    Regime
    """
    L = np.asarray(L, float)
    obs = normalise_observations(observations).split("+")
    eF = np.broadcast_to(np.asarray(rmse_forces_eV_per_A, float), L.shape)
    eE = np.broadcast_to(np.asarray(rmse_energy_meV_per_atom, float), L.shape) * 1e-3
    eV1 = np.broadcast_to(np.asarray(elastic_constant_error_percent, float), L.shape) * 1e-2
    eV2 = 0.0 if "NL" in obs else 1.0
    g_terms = {"ε_F": eF, "log^{1/2}(L_D) ε_V1": np.sqrt(np.log(float(L_D))) * eV1,
               "L^{-1} ε_V2": L**-1.0 * eV2, "L^{-2}": L**-2.0}
    g_terms = {k: v for k, v in g_terms.items() if np.any(v > 0)}
    g_exp = {"ε_F": 0.0, "log^{1/2}(L_D) ε_V1": 0.0, "L^{-1} ε_V2": -1.0, "L^{-2}": -2.0}
    g_col = {"ε_F": "L sufficiently large", "log^{1/2}(L_D) ε_V1": "ε_E,F = 0",
             "L^{-1} ε_V2": "ε_E,F = ε_V1 = 0", "L^{-2}": "ε_E,F = ε_V1 = ε_V2 = 0"}
    return _bound_regime("P2", L, g_terms, g_exp, g_col, eE,
                         ("L^{-2}", -2.0, "ε_E,F = ε_V1 = 0"),
                         "" if "NL" in obs else "; ε_V2 is not measured and taken as 1 (NL not fitted)")
