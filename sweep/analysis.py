"""Post-hoc analysis of a sweep store: the ``ds.sweep`` xarray accessor.

Importing this module (``import sweep.analysis``) registers the accessor on every
:class:`xarray.Dataset`::

    import xarray as xr
    import sweep.analysis  # noqa: F401  (registers ds.sweep)

    ds = xr.open_zarr("runs/p1-vacancies-quick.zarr")
    ds.sweep.counts()                       # {'pending': 0, 'done': 96, 'failed': 0}
    vs_L = ds.sweep.slope("geometry_error", against="L")
    vs_rmse = ds.sweep.slope("energy_error", against="rmse_forces")
    vs_rmse.slope.sel(L=8, n_defects=2)

Conventions
-----------
A slope is the exponent p of a power law ``y ≈ 10**intercept · x**p``, fitted by ordinary least
squares on ``log10 y`` against ``log10 x``. Only points whose ``status`` is ``"done"`` and whose
x and y are finite and strictly positive enter a fit. The 95 % confidence interval (by default)
comes from Student's t distribution with ``n − 2`` degrees of freedom (``scipy.stats.t``).

Refusal (fewer than three points)
---------------------------------
A straight line through two points has no uncertainty estimate, so a fit needs at least three
finite points. :meth:`SweepAccessor.slope` fits every group (every combination of the dimensions
that are not regressed over) at once:

* groups with fewer than three usable points (or with x values that do not vary) get NaN slope,
  intercept and interval, and their ``n_points`` tells how many points they had;
* if **no** group can be fitted, ``slope`` raises :class:`ValueError` explaining why (so a fit of
  one selected curve with too few points always refuses with a message);
* with ``strict=True`` it raises as soon as **any** group cannot be fitted, naming the groups.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence
from typing import Any

import numpy as np
import xarray as xr
from scipy import stats

from . import rates as _rates

__all__ = ["SweepAccessor", "MIN_POINTS", "STATUSES", "MAX_HALF_WIDTH", "TARGET_HALF_WIDTH",
           "fit_loglog", "verdict", "grid_suggestion"]

#: Fewest usable points for which a slope with a confidence interval is reported.
MIN_POINTS = 3
#: Status values written by the sweep engine, in reporting order.
STATUSES = ("pending", "done", "failed")
#: A slope whose 95 % interval is wider than ± this (dimensionless exponent) cannot agree with a
#: prediction: it is "inconclusive" (the interval would contain rates of different regimes).
MAX_HALF_WIDTH = 0.5
#: Half-width the grid-change suggestion aims at for an inconclusive slope.
TARGET_HALF_WIDTH = 0.3


def verdict(slope: float, ci_low: float, ci_high: float, predicted: float | None,
            against: str, n_points: int, *, max_half_width: float = MAX_HALF_WIDTH) -> str:
    """The verdict on one measured slope against its prediction.

    Rule, in order:

    1. no slope (fewer than :data:`MIN_POINTS` points, or x constant) → ``"too few points (n < 3)"``
       or ``"x does not vary"``;
    2. no prediction → ``"no prediction"``;
    3. the interval excludes the prediction → ``"faster than predicted"`` or
       ``"slower than predicted"`` (a disagreement, whatever the interval's width). Errors fall
       as L grows (negative slopes) and as the RMSE falls (positive slopes): "faster" means the
       error falls faster than predicted. The predictions against L are rates of an upper
       bound, so "faster" against L is consistent with the theorem, "slower" is not;
    4. the interval contains the prediction but its half-width exceeds ``max_half_width``
       → ``"inconclusive (CI ± h > 0.5)"``: it never counts as agreement;
    5. otherwise ``"agrees (within CI)"``.

    Parameters
    ----------
    slope, ci_low, ci_high : float
        Measured log–log slope and its 95 % interval (dimensionless).
    predicted : float or None
        Predicted slope; None or NaN when the theory has none.
    against : str
        ``"L"`` or a regressor variable (``"rmse_forces"``).
    n_points : int
        Points in the fit.
    max_half_width : float
        Widest half-width that can still agree (default :data:`MAX_HALF_WIDTH`).

    Returns
    -------
    str
    """
    if not np.isfinite(slope):
        return f"too few points ({n_points} < {MIN_POINTS})" if n_points < MIN_POINTS else "x does not vary"
    if predicted is None or not np.isfinite(predicted):
        return "no prediction"
    if not ci_low <= predicted <= ci_high:
        faster = slope < predicted if against == "L" else slope > predicted
        return "faster than predicted" if faster else "slower than predicted"
    half = 0.5 * (ci_high - ci_low)
    if half > max_half_width:
        return f"inconclusive (CI ± {half:.2g} > {max_half_width:g})"
    return "agrees (within CI)"


def _half_width(residual_sd: float, n: int, sxx: float, confidence: float) -> float:
    return float(stats.t.ppf(0.5 + confidence / 2.0, n - 2) * residual_sd / np.sqrt(sxx))


def _sxx_log_even(n: int, log_range: float) -> float:
    """Σ (u − ū)² for n values evenly spaced over an interval of length ``log_range``."""
    return log_range**2 * n * (n + 1) / (12.0 * (n - 1))


def grid_suggestion(
    residual_sd: float,
    n_points: int,
    x_min: float,
    x_max: float,
    *,
    sxx: float | None = None,
    against: str = "L",
    target: float = TARGET_HALF_WIDTH,
    confidence: float = 0.95,
    max_points: int = 200,
) -> dict[str, Any]:
    """Which grid change would narrow a slope's confidence interval to ``target``.

    The half-width of the interval is ``t_{n−2} · s / √Sxx`` with s the residual scatter of
    log10 y and Sxx = Σ (log10 x − mean)². For a grid of n values evenly spaced in log x over
    a range R = log10(x_max / x_min), Sxx = R² n (n + 1) / (12 (n − 1)): the half-width falls
    like 1 / (R √n). Assuming the scatter s stays what it is, this returns

    * ``n_same_range``: the fewest points, evenly spaced in log over the same [x_min, x_max],
      that reach ``target`` (None if more than ``max_points`` would be needed);
    * ``x_max_same_n``: the largest x that n evenly log-spaced points starting at x_min must
      reach;
    * ``scatter_needed``: the residual scatter s at which the present grid would reach it
      (more training / test configurations, or more cells, lower the noise part of s; a
      systematic curvature is not lowered by any of these).

    Parameters
    ----------
    residual_sd : float
        Residual standard deviation of log10 y (n − 2 dof).
    n_points : int
        Points in the present fit (≥ 3).
    x_min, x_max : float
        Present range of x (r0 for L, eV/Å for the force RMSE).
    sxx : float, optional
        The present fit's Σ (log10 x − mean)² (default: that of an even log spacing), used for
        the present half-width only.
    against : str
        ``"L"`` (the text speaks of L values) or a variable (basis sizes / RMSE range).
    target : float
        Half-width to reach (default :data:`TARGET_HALF_WIDTH`).
    confidence : float
        Confidence level of the interval (default 0.95).
    max_points : int
        Largest grid size considered for ``n_same_range``.

    Returns
    -------
    dict
        ``half_width`` (present), ``n_same_range``, ``x_max_same_n``, ``scatter_needed`` and
        ``text`` (one sentence for the report).
    """
    n = int(n_points)
    R = float(np.log10(x_max / x_min))
    sxx_now = float(sxx) if sxx is not None else (_sxx_log_even(n, R) if n >= 2 and R > 0 else np.nan)
    half_now = _half_width(residual_sd, n, sxx_now, confidence) if n >= 3 else np.nan
    n_need = None
    for m in range(max(n, 3), max_points + 1):
        if _half_width(residual_sd, m, _sxx_log_even(m, R), confidence) <= target:
            n_need = m
            break
    tn = stats.t.ppf(0.5 + confidence / 2.0, max(n - 2, 1))
    R_need = tn * residual_sd / target / np.sqrt(n * (n + 1) / (12.0 * (n - 1)))
    x_max_need = float(x_min * 10**R_need)
    s_need = float(target / tn * np.sqrt(sxx_now))
    if against == "L":
        what_n, what_x, unit = "L values", "L", " r0"
    else:
        what_n, what_x, unit = "basis sizes (RMSE values)", against, ""
    parts = []
    if n_need is None and x_max_need > 10 * x_max:
        # neither more points nor a plausible range reaches the target: the scatter must fall
        text = (f"to bring the 95 % half-width from {half_now:.2g} to ≤ {target:g}, no practical grid "
                f"change suffices at this scatter (more than {max_points} {'L values' if against == 'L' else 'basis sizes'} "
                f"over the present range, or a range up to {x_max_need:.3g}"
                f"{' r0' if against == 'L' else ''}); the residual scatter must fall from "
                f"{residual_sd:.2g} to ≤ {s_need:.2g} (log10): look for outlying points "
                "(non-converged relaxations, a different defect state), and use more training/test "
                "configurations to lower the noise part")
        return {"half_width": half_now, "n_same_range": None, "x_max_same_n": x_max_need,
                "scatter_needed": s_need, "text": text}
    if n_need is not None and n_need > n:
        parts.append(f"{n_need} {what_n} evenly spaced in log over {x_min:.3g}–{x_max:.3g}{unit}")
    elif n_need is None:
        parts.append(f"more than {max_points} {what_n} over the present range")
    if x_max_need > x_max:
        parts.append(f"{n} {what_n} from {x_min:.3g} to {x_max_need:.3g}{unit}"
                     + (" (a wider range: smaller errors need larger bases)" if against != "L" else ""))
    parts.append(f"a residual scatter ≤ {s_need:.2g} (now {residual_sd:.2g} in log10; more "
                 "training/test configurations lower its noise part)")
    text = (f"to bring the 95 % half-width from {half_now:.2g} to ≤ {target:g} (same scatter): "
            + "; or ".join(parts))
    return {"half_width": half_now, "n_same_range": n_need, "x_max_same_n": x_max_need,
            "scatter_needed": s_need, "text": text}


def fit_loglog(
    x: np.ndarray,
    y: np.ndarray,
    mask: np.ndarray | None = None,
    confidence: float = 0.95,
) -> dict[str, np.ndarray]:
    """Fit ``log10 y = intercept + slope · log10 x`` row by row.

    Parameters
    ----------
    x, y : ndarray, shape (G, S)
        Regressor and response for G independent groups of S candidate points each, in any
        (positive) units; the slope is unit-free, the intercept is ``log10`` of y's units when x
        is 1 in its own units.
    mask : ndarray of bool, shape (G, S), optional
        Points allowed into the fit (e.g. status == "done"). Points with non-finite or
        non-positive x or y are always left out.
    confidence : float
        Two-sided confidence level of the interval on the slope (0 < confidence < 1).

    Returns
    -------
    dict of ndarray, each shape (G,)
        ``slope``, ``intercept``, ``stderr`` (standard error of the slope), ``ci_low``,
        ``ci_high``, ``n_points`` (int64, usable points), ``x_varies`` (bool), ``residual_sd``
        (standard deviation of the log10 residuals, n − 2 degrees of freedom), ``sxx`` (sum of
        squared deviations of log10 x from its mean), ``x_min`` and ``x_max`` (range of the
        usable x, x's units) and ``residuals`` (shape (G, S): log10 y minus the fitted line, NaN
        for unused points). Groups with fewer than :data:`MIN_POINTS` usable points or constant x
        have NaN fit values.
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be between 0 and 1 (exclusive), got {confidence!r}")
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    if x.shape != y.shape or x.ndim != 2:
        raise ValueError(f"x and y must have the same 2-D shape, got {x.shape} and {y.shape}")
    ok = np.isfinite(x) & np.isfinite(y) & (x > 0) & (y > 0)
    if mask is not None:
        ok &= np.asarray(mask, dtype=bool)
    n = ok.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        lx = np.where(ok, np.log10(np.where(ok, x, 1.0)), 0.0)
        ly = np.where(ok, np.log10(np.where(ok, y, 1.0)), 0.0)
        xm = lx.sum(axis=1) / n
        ym = ly.sum(axis=1) / n
        dx = np.where(ok, lx - xm[:, None], 0.0)
        dy = np.where(ok, ly - ym[:, None], 0.0)
        sxx = (dx * dx).sum(axis=1)
        sxy = (dx * dy).sum(axis=1)
        x_varies = sxx > 1e-24 * np.maximum(n, 1)
        slope = sxy / sxx
        intercept = ym - slope * xm
        resid = np.where(ok, dy - slope[:, None] * dx, 0.0)
        dof = n - 2
        s2 = (resid * resid).sum(axis=1) / dof
        stderr = np.sqrt(s2 / sxx)
        tcrit = stats.t.ppf(0.5 + confidence / 2.0, np.where(dof >= 1, dof, 1))
    valid = (n >= MIN_POINTS) & x_varies
    nan = np.full(n.shape, np.nan)
    slope = np.where(valid, slope, nan)
    intercept = np.where(valid, intercept, nan)
    stderr = np.where(valid, stderr, nan)
    half = tcrit * stderr
    with np.errstate(invalid="ignore"):
        x_min = np.where(n > 0, np.min(np.where(ok, x, np.inf), axis=1), np.nan)
        x_max = np.where(n > 0, np.max(np.where(ok, x, -np.inf), axis=1), np.nan)
    return {
        "slope": slope,
        "intercept": intercept,
        "stderr": stderr,
        "ci_low": slope - half,
        "ci_high": slope + half,
        "n_points": n.astype(np.int64),
        "x_varies": x_varies,
        "residual_sd": np.where(valid, np.sqrt(s2), nan),
        "sxx": np.where(valid, sxx, nan),
        "x_min": x_min,
        "x_max": x_max,
        "residuals": np.where(ok & valid[:, None], resid, np.nan),
    }


def _as_tuple(dims: Hashable | Iterable[Hashable] | None) -> tuple[Hashable, ...] | None:
    if dims is None:
        return None
    if isinstance(dims, str) or not isinstance(dims, Iterable):
        return (dims,)
    return tuple(dims)


def _label(value: Any) -> Any:
    """Plain Python scalar for a coordinate value (StringDType/numpy scalars -> str/int/float)."""
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value[()]
    if isinstance(value, (str, np.str_)):
        return str(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if hasattr(value, "dtype") and value.dtype.kind == "T":
        return str(value)
    return value


@xr.register_dataset_accessor("sweep")
class SweepAccessor:
    """``ds.sweep``: status bookkeeping and log–log rate fits on a sweep Dataset.

    The Dataset is expected in the store schema written by :mod:`sweep.store` (dimensions
    ``defect``, ``n_defects``, ``L``, ``basis_size``, ``weights``, ``observations``; a string
    ``status`` variable; float error variables with NaN where not computed), but the methods
    only rely on the names they are given, so extra or missing dimensions are fine.
    """

    def __init__(self, ds: xr.Dataset):
        self._ds = ds

    # ------------------------------------------------------------------ provenance / theory
    @property
    def experiment(self) -> str | None:
        """The ``experiment`` attr (e.g. ``"p1-point-defects-2d"``), or None."""
        exp = self._ds.attrs.get("experiment")
        return None if exp is None else str(exp)

    @property
    def spatial_dimension(self) -> int | None:
        """Spatial dimension d from the attrs ``spatial_dimension`` or ``dimension``, or None."""
        for key in ("spatial_dimension", "dimension"):
            value = self._ds.attrs.get(key)
            try:
                return int(value)
            except (TypeError, ValueError):
                continue
        return None

    def predicted_slope(self, variable: str, against: str, observations: str = "E+F") -> float | None:
        """Predicted log–log slope from :mod:`sweep.rates` for this Dataset's experiment.

        Parameters
        ----------
        variable : str
            ``"geometry_error"`` (Å), ``"energy_error"`` or ``"formation_energy_error"`` (eV).
        against : str
            ``"L"`` (r0) or ``"rmse_forces"`` (eV/Å).
        observations : str
            Observation-set label.

        Returns
        -------
        float or None
            None when the theory has no prediction for this combination.
        """
        return _rates.predicted_slope(
            self.experiment, observations, variable, against,
            spatial_dimension=self.spatial_dimension,
        )

    @property
    def dislocation_separation(self) -> float | None:
        """P2's dislocation separation L_D (r0): the attr ``L_D`` if present, else half the
        simulation-cell size N recorded in ``fixed_parameters`` (the quadrupole has L_D = N/2)."""
        import json

        attrs = self._ds.attrs
        if "L_D" in attrs:
            return float(attrs["L_D"])
        try:
            return float(json.loads(attrs["fixed_parameters"])["params"]["simulation"]["size"]) / 2.0
        except (KeyError, TypeError, ValueError):
            return None

    def regimes(self, matched: xr.Dataset | None = None) -> list[dict[str, Any]]:
        """The Table 1 regime of every fit group, decided from the store's own fit errors.

        For every combination of the dimensions other than ``L``, ``n_defects`` and
        ``basis_size`` (P2: per observation set), the measured ε_F (``rmse_forces``, eV/Å), ε_E
        (``rmse_energy``, meV/atom) and ε_FC_hom (``force_constant_error``, %; P2:
        ``elastic_constant_error`` as ε_V1) at matched accuracy are taken at each L (median over
        the done points, i.e. over n_D, which share one fit) and handed to
        :func:`sweep.rates.p1_regime` or :func:`sweep.rates.p2_regime`.

        Parameters
        ----------
        matched : xarray.Dataset, optional
            Matched-accuracy selection (default: :meth:`matched_accuracy` when the Dataset has a
            ``basis_size`` dimension, else the Dataset itself).

        Returns
        -------
        list of dict
            ``{dim: label, ..., "regime": sweep.rates.Regime}``; empty when the experiment is
            neither P1 nor P2, a needed variable is missing, or fewer than two L values have all
            the measurements.
        """
        ds = self._ds
        exp = (self.experiment or "").lower()
        paper = "P1" if exp.startswith("p1") else "P2" if exp.startswith("p2") else None
        if paper is None or "L" not in ds.dims:
            return []
        third = "force_constant_error" if paper == "P1" else "elastic_constant_error"
        need = ("rmse_forces", "rmse_energy", third)
        if any(v not in ds.data_vars for v in need):
            return []
        d = self.spatial_dimension
        L_D = self.dislocation_separation
        if (paper == "P1" and not d) or (paper == "P2" and not (L_D and L_D > 1)):
            return []
        if matched is None:
            matched = self.matched_accuracy() if "basis_size" in ds.dims else ds
        done = matched.sweep.done
        group_dims = [g for g in matched.sweep.point_dims
                      if g in matched.dims and g not in ("L", "n_defects", "basis_size")]
        out = []
        for index in np.ndindex(*(matched.sizes[g] for g in group_dims)):
            sel = dict(zip(group_dims, index))
            labels = {g: _label(matched[g].values[i]) if g in matched.coords else i for g, i in sel.items()}
            sub = matched.isel(sel)
            ok = sub.sweep.done if group_dims else done
            med = {}
            for v in need:
                a = sub[v].where(ok.broadcast_like(sub[v]))
                other = [x for x in a.dims if x != "L"]
                med[v] = np.asarray((a.median(other, skipna=True) if other else a).values, float)
            Ls = np.asarray(sub["L"].values, float)
            good = np.all([np.isfinite(m) for m in med.values()], axis=0) & (Ls > 0)
            if good.sum() < 2:
                continue
            vals = [med[v][good] for v in need]
            if paper == "P1":
                reg = _rates.p1_regime(Ls[good], d, *vals)
            else:
                obs = labels.get("observations") or (
                    str(np.ravel(sub["observations"].values)[0]) if "observations" in sub.coords else "E+F")
                reg = _rates.p2_regime(Ls[good], L_D, str(obs), *vals)
            out.append({**labels, "regime": reg})
        return out

    # ------------------------------------------------------------------ status
    @property
    def point_dims(self) -> tuple[Hashable, ...]:
        """The dimensions that label a sweep point: those of ``status`` (else of
        ``geometry_error``, else all). Variables may carry extra dims (e.g. per stage)."""
        for name in ("status", "geometry_error"):
            if name in self._ds.variables:
                return tuple(self._ds[name].dims)
        return tuple(self._ds.dims)

    @property
    def done(self) -> xr.DataArray:
        """Boolean mask of finished points (``status == "done"``), with the status dims.

        Built with a numpy comparison (``.where`` does not work on StringDType). A Dataset
        without a ``status`` variable counts every point as done.
        """
        ds = self._ds
        if "status" not in ds.variables:
            shape = tuple(ds.sizes[d] for d in ds.dims)
            return xr.DataArray(np.ones(shape, dtype=bool), dims=tuple(ds.dims),
                                coords={d: ds[d] for d in ds.dims if d in ds.coords}, name="done")
        status = ds["status"]
        mask = np.asarray(status.values == "done", dtype=bool)
        return xr.DataArray(mask, dims=status.dims, coords=status.coords, name="done")

    def counts(self) -> dict[str, int]:
        """Number of points per status.

        Returns
        -------
        dict of str to int
            Always has the keys ``"pending"``, ``"done"`` and ``"failed"`` (in this order),
            followed by any other status value found. A Dataset without a ``status`` variable
            counts every point as done.
        """
        ds = self._ds
        result = {s: 0 for s in STATUSES}
        if "status" not in ds.variables:
            result["done"] = int(np.prod([ds.sizes[d] for d in ds.dims], dtype=np.int64))
            return result
        values = np.asarray(ds["status"].values).ravel()
        for s in STATUSES:
            result[s] = int(np.count_nonzero(values == s))
        known = np.zeros(values.shape, dtype=bool)
        for s in STATUSES:
            known |= values == s
        for other in sorted({str(v) for v in values[~known]}):
            result[other] = int(np.count_nonzero(values == other))
        return result

    def failures(self) -> list[dict[str, Any]]:
        """The failed points with their coordinates and error message.

        Returns
        -------
        list of dict
            One dict per failed point: ``{dim: coordinate value, ..., "error": message}``.
        """
        ds = self._ds
        if "status" not in ds.variables:
            return []
        status = ds["status"]
        values = np.asarray(status.values)
        errors = np.asarray(ds["error"].transpose(*status.dims).values) if "error" in ds.variables else None
        out = []
        for index in np.argwhere(values == "failed"):
            row: dict[str, Any] = {}
            for dim, i in zip(status.dims, index):
                row[dim] = _label(ds[dim].values[i]) if dim in ds.coords else int(i)
            row["error"] = "" if errors is None else str(errors[tuple(index)])
            out.append(row)
        return out

    # ------------------------------------------------------------------ fits
    def _regressor(self, against: str) -> xr.DataArray:
        ds = self._ds
        if against not in ds.variables:
            raise ValueError(
                f"cannot fit against {against!r}: no such dimension, coordinate or variable; "
                f"dimensions are {list(ds.dims)}, variables {list(ds.data_vars)}"
            )
        return ds[against]

    def _default_dims(self, against: str, x: xr.DataArray) -> tuple[Hashable, ...]:
        if against in self._ds.dims:
            return (against,)
        if "basis_size" in x.dims:
            return ("basis_size",)
        return tuple(x.dims)

    def slope(
        self,
        variable: str,
        against: str = "L",
        dims: Hashable | Sequence[Hashable] | None = None,
        *,
        confidence: float = 0.95,
        strict: bool = False,
        points: bool = False,
    ) -> xr.Dataset:
        """Fit log–log slopes of ``variable`` against ``against`` for every group.

        Parameters
        ----------
        variable : str
            Response, e.g. ``"geometry_error"`` (Å) or ``"energy_error"`` (eV).
        against : str
            Regressor: a dimension (``"L"``, r0; its coordinate values are x) or a variable
            (``"rmse_forces"`` in eV/Å, ``"rmse_energy"`` in meV/atom, …; its value at each point
            is x, so x can differ from point to point and group to group).
        dims : str or sequence of str, optional
            Dimensions regressed over; all their points are pooled into one fit. The remaining
            dimensions label the groups (one fit each). Default: ``(against,)`` when ``against``
            is a dimension; ``("basis_size",)`` when it is a variable with that dimension (the
            RMSE changes with the basis size, so a curve at fixed L is the points along
            ``basis_size``); otherwise the variable's own dims. Pass e.g.
            ``dims=("basis_size", "weights")`` to pool more.
        confidence : float
            Two-sided confidence level of ``ci_low``/``ci_high`` (default 0.95).
        strict : bool
            Raise if *any* group has fewer than three usable points (default: those groups get
            NaN and only an all-groups failure raises).
        points : bool
            Also return the fitted points and their residuals (the evidence behind a verdict).

        Returns
        -------
        xarray.Dataset
            Over the group dimensions (with their coordinates): ``slope`` (1), ``intercept``
            (log10 of the variable's units, at x = 1 in the regressor's units), ``stderr`` (1),
            ``ci_low``, ``ci_high`` (1), ``n_points`` (int64, points used), ``residual_sd``
            (log10 residual scatter), ``x_min``/``x_max`` (fitted range, regressor units),
            with ``points=True`` also ``x_points``/``y_points``/``residuals`` over an extra
            ``fit_point`` dimension (the points of each fit, NaN where unused), and ``predicted`` (theory slope from
            :mod:`sweep.rates`, NaN where the theory has none). The attrs
            record ``variable``, ``against``, ``dims``, ``confidence``, ``skipped_not_done``.

        Raises
        ------
        ValueError
            Unknown names; no group with at least three finite, positive, done points (or with
            varying x); with ``strict=True``, any such group.
        """
        ds = self._ds
        if variable not in ds.data_vars:
            raise ValueError(f"no data variable {variable!r}; variables are {list(ds.data_vars)}")
        y = ds[variable]
        x = self._regressor(against)
        dims_t = _as_tuple(dims) or self._default_dims(against, x)
        done = self.done
        y_b, x_b, done_b = xr.broadcast(y, x, done)
        for d in dims_t:
            if d not in y_b.dims:
                raise ValueError(
                    f"cannot regress over {d!r}: it is not a dimension of {variable!r} or "
                    f"{against!r} (dimensions: {list(y_b.dims)})"
                )
        group_dims = [d for d in y_b.dims if d not in dims_t]
        order = [*group_dims, *dims_t]
        G = int(np.prod([y_b.sizes[d] for d in group_dims], dtype=np.int64))
        S = int(np.prod([y_b.sizes[d] for d in dims_t], dtype=np.int64))
        yv = np.asarray(y_b.transpose(*order).values, dtype=float).reshape(G, S)
        xv = np.asarray(x_b.transpose(*order).values, dtype=float).reshape(G, S)
        mv = np.asarray(done_b.transpose(*order).values, dtype=bool).reshape(G, S)
        fit = fit_loglog(xv, yv, mv, confidence=confidence)

        refused = ~np.isfinite(fit["slope"])
        where = f"{variable!r} against {against!r} along {list(dims_t)}"
        n_not_done = int(np.count_nonzero(~mv))
        if refused.all():
            raise ValueError(
                f"cannot fit a log-log slope of {where}: fewer than {MIN_POINTS} finite points "
                f"remain in every group (most usable points in a group: {int(fit['n_points'].max(initial=0))} "
                f"of {S}; {n_not_done} points skipped as not 'done', and non-finite or non-positive "
                f"values are skipped too)"
                + ("" if fit["x_varies"][fit["n_points"] >= MIN_POINTS].all() else
                   f"; or {against!r} does not vary within the group")
            )

        # Template over the group dims, carrying their coordinates.
        tmpl = y_b.transpose(*order)
        drop = [c for c in tmpl.coords if set(tmpl[c].dims) & set(dims_t)]
        tmpl = tmpl.drop_vars(drop).isel({d: 0 for d in dims_t}, drop=True)
        shape = tuple(y_b.sizes[d] for d in group_dims)

        if strict and refused.any():
            bad = np.flatnonzero(refused)
            idx = np.unravel_index(bad, shape) if shape else [()] * len(bad)
            labels = []
            for k in range(min(len(bad), 5)):
                lab = {d: _label(tmpl[d].values[idx[j][k]]) if d in tmpl.coords else int(idx[j][k])
                       for j, d in enumerate(group_dims)}
                labels.append(f"{lab} ({int(fit['n_points'][bad[k]])} points)")
            more = "" if len(bad) <= 5 else f" and {len(bad) - 5} more"
            raise ValueError(
                f"cannot fit a log-log slope of {where} in {len(bad)} of {G} groups "
                f"(fewer than {MIN_POINTS} finite points, or constant x): "
                + "; ".join(labels) + more
            )

        units_y = str(y.attrs.get("units", ""))
        out = xr.Dataset(coords=tmpl.coords)
        spec = {
            "slope": ("1", f"log-log slope of {variable} vs {against}"),
            "intercept": (f"log10({units_y})" if units_y else "1",
                          f"log10 of {variable} at {against} = 1 on the fitted line"),
            "stderr": ("1", "standard error of the slope"),
            "ci_low": ("1", f"lower end of the {confidence:.0%} confidence interval of the slope"),
            "ci_high": ("1", f"upper end of the {confidence:.0%} confidence interval of the slope"),
            "n_points": ("1", "number of finite, positive, done points in the fit"),
            "residual_sd": ("1", "standard deviation of the log10 residuals (n − 2 dof)"),
            "x_min": (str(x.attrs.get("units", "")), f"smallest {against} in the fit"),
            "x_max": (str(x.attrs.get("units", "")), f"largest {against} in the fit"),
        }
        for name, (units, long_name) in spec.items():
            out[name] = xr.DataArray(fit[name].reshape(shape), dims=group_dims, coords=tmpl.coords,
                                     attrs={"units": units, "long_name": long_name})
        # the fitted points themselves (NaN where a candidate point was not used), so that a
        # verdict can be checked against the data it rests on
        used = np.isfinite(fit["residuals"])
        for name, values, units, long_name in () if not points else (
            ("x_points", xv, str(x.attrs.get("units", "")), f"{against} of the fitted points"),
            ("y_points", yv, units_y, f"{variable} of the fitted points"),
            ("residuals", fit["residuals"], "1", "log10 residuals of the fitted points"),
        ):
            out[name] = xr.DataArray(np.where(used, values, np.nan).reshape(*shape, S),
                                     dims=(*group_dims, "fit_point"), coords=tmpl.coords,
                                     attrs={"units": units, "long_name": long_name})
        out["predicted"] = self._predicted_over(out, variable, against)
        out.attrs = {
            "variable": variable,
            "against": against,
            "dims": ",".join(map(str, dims_t)),
            "confidence": confidence,
            "model": "log10(y) = intercept + slope * log10(x)",
            "min_points": MIN_POINTS,
            "skipped_not_done": n_not_done,
            "groups_refused": int(refused.sum()),
            "experiment": self.experiment or "",
        }
        return out.load()  # coordinates of a lazily opened store are dask-backed; results are small

    def _predicted_over(self, out: xr.Dataset, variable: str, against: str) -> xr.DataArray:
        attrs = {"units": "1", "long_name": f"predicted slope of {variable} vs {against} (sweep.rates)"}

        def one(obs: str) -> float:
            value = self.predicted_slope(variable, against, obs)
            return np.nan if value is None else float(value)

        if "observations" in out.dims:
            vals = [one(str(o)) for o in out["observations"].values]
            pred = xr.DataArray(vals, dims=("observations",), coords={"observations": out["observations"]})
            return pred.broadcast_like(out["slope"]).transpose(*out["slope"].dims).assign_attrs(attrs)
        if "observations" in self._ds.coords:
            labels = {str(o) for o in np.ravel(self._ds["observations"].values)}
            values = {one(o) for o in labels}
            value = values.pop() if len(values) == 1 else np.nan
        else:
            value = one("E+F")
        return xr.full_like(out["slope"], value).assign_attrs(attrs)

    def matched_accuracy(
        self,
        target: float | None = None,
        *,
        rmse: str = "rmse_forces",
        along: str = "basis_size",
        across: str = "L",
    ) -> xr.Dataset:
        """Pick, at every point of the other dimensions, the basis size closest to a target RMSE.

        This is how the papers plot error vs L "at RMSE ≈ 0.03 eV/Å" (P1 Fig. 4): for each L
        (and every other label), the fit along ``along`` whose ``rmse`` is nearest (in log) to
        the target is kept.

        Parameters
        ----------
        target : float, optional
            Target value of ``rmse`` (eV/Å for ``rmse_forces``). Default, per combination of
            the dimensions other than ``along`` and ``across``: the best accuracy every value of
            ``across`` reaches, i.e. ``max over L of (min over basis_size of rmse)``, using done
            points only.
        rmse : str
            Accuracy variable (default ``"rmse_forces"``, eV/Å).
        along : str
            Dimension to choose along (default ``"basis_size"``).
        across : str
            Dimension across which the accuracy should match (default ``"L"``).

        Returns
        -------
        xarray.Dataset
            The Dataset without the ``along`` dimension; ``along`` becomes a coordinate holding
            the chosen value at each point, and ``rmse_target`` (units of ``rmse``) is added.
            Where no done point with finite ``rmse`` exists, the first ``along`` index is kept
            (its status then is not ``"done"``, or its rmse is NaN).
        """
        ds = self._ds
        if along not in ds.dims:
            raise ValueError(f"no dimension {along!r} to choose along; dimensions are {list(ds.dims)}")
        r = ds[rmse]
        done = self.done
        r_b, done_b = xr.broadcast(r, done)
        usable = np.asarray(done_b.transpose(*r_b.dims).values) & np.isfinite(np.asarray(r_b.values, float))
        usable &= np.asarray(r_b.values, float) > 0
        r_ok = xr.DataArray(np.where(usable, np.asarray(r_b.values, float), np.nan),
                            dims=r_b.dims, coords=r_b.coords)
        if target is None:
            best = r_ok.min(along, skipna=True)
            tgt = best.max(across, skipna=True) if across in best.dims else best
        else:
            tgt = xr.DataArray(float(target))
        dist = np.abs(np.log10(r_ok) - np.log10(tgt))
        filled = dist.fillna(np.inf)
        idx = filled.argmin(along)
        chosen = ds.isel({along: idx})
        chosen["rmse_target"] = tgt.broadcast_like(idx).assign_attrs(
            units=str(r.attrs.get("units", "")), long_name=f"target {rmse} of the matched-accuracy selection")
        chosen.attrs = dict(ds.attrs)
        return chosen
