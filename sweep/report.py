"""``sweep report``: figures and tables in the style of the papers, from any sweep store.

:func:`write_report` reads a store (opened with plain :func:`xarray.open_zarr`) or a Dataset and
writes into ``out_dir``:

``figures/error-vs-rmse_*.png``
    Geometry error (Å) and energy error (eV) against the test-set force RMSE (eV/Å), one curve
    per training-cell size L, with the theory's RMSE¹ / RMSE² guide lines (P1 Figs. 3, 6, 8;
    P2 Figs. 4, 7, 10). One figure per combination of the other dimensions.
``figures/error-vs-L_*.png``
    The same errors against L (r0) at matched fit accuracy (for each L the basis size whose force
    RMSE is closest to a common target, as the papers' "RMSE ≈ 0.03"), one curve per observation
    set when there are several (P2 Figs. 5, 8, 11), else per n_D (P1 Figs. 4, 7, 9), with the
    predicted slopes of :mod:`sweep.rates` drawn as dashed guide lines.
``slopes.csv``
    Measured log–log slopes with 95 % t intervals next to the predicted ones: the prediction of
    the Table 1 regime the store's own fit errors put it in (:meth:`SweepAccessor.regimes`), the
    verdict (:func:`sweep.analysis.verdict`: agrees / inconclusive / faster / slower), the fitted
    points with their residuals, and for inconclusive slopes the grid change that would narrow
    the interval (:func:`sweep.analysis.grid_suggestion`). The report states each regime, why,
    and the bound's terms at every L.
``fit_quality.csv``
    The fit-quality table in the form of P1 Table 2: #B, #obs, ε_E (meV/atom), ε_F (eV/Å),
    ε_FC_hom (%), fit time (s) per L and basis size.
``failures.csv``
    Every failed point with its error message.
``figures/core-far_*.png``, ``core_far_slopes.csv``, ``core_far_points.csv``
    P2 stores only: the geometry error split into its core part (bonds within 2|b| of a core)
    and far field, their slopes vs L with verdicts, the far field against what linear
    elasticity with the fitted C predicts, and the fitted cubic C and Zener anisotropy against
    the reference's (:func:`core_far_slope_table`, :func:`plot_core_far`). Stores written
    before these variables existed get a note instead.
P1 Table 2 side by side
    For a P1 vacancy store with L = 8 r0, the paper's published Table 2 rows at L = 8 r0
    (:mod:`sweep.paper_values`) next to the store's fits.
``index.md``, ``index.html``
    Everything above, linked, with the number of finished, pending and failed points.

The report works on a partly finished store (e.g. while a sweep runs): only points whose status
is ``"done"`` are used, and the counts of the others are stated.
"""

from __future__ import annotations

import csv
import datetime as _dt
import html
import re
import sys
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
from matplotlib.figure import Figure

from . import analysis as _analysis  # noqa: F401  (registers ds.sweep)
from . import paper_values as _paper
from . import rates as _rates
from .analysis import MAX_HALF_WIDTH, MIN_POINTS, TARGET_HALF_WIDTH, fit_loglog, grid_suggestion, verdict

__all__ = [
    "write_report",
    "main_report",
    "default_out_dir",
    "axis_label",
    "plot_error_vs_rmse",
    "plot_error_vs_L",
    "curve_dimension",
    "slope_table",
    "fit_quality_table",
    "core_far_slope_table",
    "plot_core_far",
    "trend_verdict",
    "is_p2_store",
]

#: Variables whose rates the theorems predict, in plotting order.
ERROR_VARIABLES = ("geometry_error", "energy_error")

#: The second reading of the energy error (each model against its own perfect crystal), analysed
#: beside ``energy_error`` wherever the store has finite values of it (a fit with the bulk row).
FORMATION_ENERGY = "formation_energy_error"


def rate_variables(ds: xr.Dataset) -> tuple[str, ...]:
    """The error variables of ``ds`` to fit rates to and plot: :data:`ERROR_VARIABLES`, plus
    ``formation_energy_error`` when any point has a finite value of it (it is NaN for fits
    without the bulk-energy row, ``[fit] bulk_energy_row``)."""
    names = tuple(v for v in ERROR_VARIABLES if v in ds.data_vars)
    if FORMATION_ENERGY in ds.data_vars:
        values = np.asarray(ds[FORMATION_ENERGY].values, float)
        if np.isfinite(values).any():
            names += (FORMATION_ENERGY,)
    return names


def _has_interstitials(ds: xr.Dataset) -> bool:
    return "defect" in ds.coords and any("interstitial" in str(d) for d in ds["defect"].values)

#: Axis-label text per variable (the unit is appended from the variable's ``units`` attr).
LABELS = {
    "geometry_error": "geometry error ‖Dū − Dũ‖",
    "energy_error": "energy error |E(ū) − Ẽ(ũ)|",
    "formation_energy_error": "formation-energy error",
    "rmse_forces": "RMSE forces",
    "rmse_energy": "RMSE energy",
    "force_constant_error": "force-constant error ε_FC_hom",
    "fit_time": "fit time",
    "L": "L",
}
#: Units used when a variable carries no ``units`` attr.
DEFAULT_UNITS = {
    "geometry_error": "Å",
    "energy_error": "eV",
    "formation_energy_error": "eV",
    "rmse_forces": "eV/Å",
    "rmse_energy": "meV/atom",
    "force_constant_error": "%",
    "fit_time": "s",
    "L": "r0",
}
#: Short names for dimensions in legends, titles and file names.
SHORT = {"n_defects": "n_D", "basis_size": "basis", "observations": "obs"}


# --------------------------------------------------------------------------- helpers
def axis_label(ds: xr.Dataset, name: str) -> str:
    """Axis label with units, e.g. ``"geometry error ‖Dū − Dũ‖ (Å)"`` or ``"L (r0)"``."""
    attrs = ds[name].attrs if name in ds.variables else {}
    text = LABELS.get(name) or attrs.get("long_name") or name
    units = attrs.get("units") or DEFAULT_UNITS.get(name, "")
    return f"{text} ({units})" if units and units != "1" else str(text)


def _value(v: Any) -> Any:
    return _analysis._label(v)


def _fmt(v: Any, digits: int = 3) -> str:
    """Compact text for a table cell; NaN and missing values show as an em dash."""
    v = _value(v)
    if v is None:
        return "—"
    if isinstance(v, (bool, np.bool_)):
        return "yes" if v else "no"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        if not np.isfinite(v):
            return "—"
        if v == 0:
            return "0"
        if 1e3 <= abs(v) < 1e7:
            return f"{v:.0f}"
        if 1e-3 <= abs(v) < 1e3:
            return f"{v:.{digits}g}"
        return f"{v:.{max(digits - 1, 1)}e}"
    return str(v)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.+=-]+", "_", text).strip("_") or "all"


def _group_label(labels: Mapping[str, Any]) -> str:
    return ", ".join(f"{SHORT.get(k, k)} = {_value(v)}" for k, v in labels.items())


def _iter_groups(ds: xr.Dataset, dims: Sequence[str]) -> Iterator[tuple[dict[str, Any], xr.Dataset]]:
    """Yield ({dim: label}, ds.isel(...)) for every combination of ``dims``."""
    dims = [d for d in dims if d in ds.dims]
    if not dims:
        yield {}, ds
        return
    for index in np.ndindex(*(ds.sizes[d] for d in dims)):
        sel = dict(zip(dims, index))
        labels = {d: _value(ds[d].values[i]) if d in ds.coords else i for d, i in sel.items()}
        yield labels, ds.isel(sel)


def _squeeze_to(da: xr.DataArray, keep: Sequence[str], what: str) -> xr.DataArray:
    extra = [d for d in da.dims if d not in keep]
    big = [d for d in extra if da.sizes[d] > 1]
    if big:
        raise ValueError(f"{what}: select a single value of {big} first (dims {dict(da.sizes)})")
    return da.squeeze(extra, drop=True) if extra else da


def _usable(ds: xr.Dataset, x: str, y: str, keep: Sequence[str]) -> tuple[xr.DataArray, xr.DataArray]:
    """x and y over ``keep`` with points not done, non-finite or non-positive set to NaN."""
    done = ds.sweep.done
    yb, xb, db = xr.broadcast(ds[y], ds[x], done)
    yb, xb, db = (_squeeze_to(a, keep, f"{y} vs {x}").transpose(*[k for k in keep if k in a.dims])
                  for a in (yb, xb, db))
    xv = np.asarray(xb.values, float)
    yv = np.asarray(yb.values, float)
    ok = np.asarray(db.values, bool) & np.isfinite(xv) & np.isfinite(yv) & (xv > 0) & (yv > 0)
    return xb.copy(data=np.where(ok, xv, np.nan)), yb.copy(data=np.where(ok, yv, np.nan))


def _power_label(base: str, p: float) -> str:
    frac = Fraction(p).limit_denominator(4)
    if abs(float(frac) - p) > 1e-9:  # an effective (crossover) slope: print it as a decimal
        return rf"$\mathrm{{{base}}}^{{{p:.2f}}}$"
    exp = str(frac.numerator) if frac.denominator == 1 else f"{frac.numerator}/{frac.denominator}"
    return rf"$\mathrm{{{base}}}^{{{exp}}}$"


def _guide(ax, xs: np.ndarray, ys: np.ndarray, p: float, label: str, color: str = "k") -> None:
    """Dashed line of slope ``p`` through the data's median offset, shifted down by ×0.6."""
    ok = np.isfinite(xs) & np.isfinite(ys) & (xs > 0) & (ys > 0)
    if ok.sum() < 1:
        return
    lx, ly = np.log10(xs[ok]), np.log10(ys[ok])
    c = np.median(ly - p * lx) + np.log10(0.6)
    xg = np.array([xs[ok].min(), xs[ok].max()])
    if xg[0] == xg[1]:
        xg = xg * np.array([0.8, 1.25])
    ax.plot(xg, 10 ** (c + p * np.log10(xg)), ls="--", color=color, lw=1.3, label=label)


def _style(ax) -> None:
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.grid(True, which="both", alpha=0.3)


def _new_figure(n_panels: int) -> tuple[Figure, np.ndarray]:
    """A paper-style row of ``n_panels`` log–log panels (fixed margins: faster than a layout
    engine, which matters for reports with many figures)."""
    width = 5.0 * n_panels
    fig = Figure(figsize=(width, 4.2), dpi=100)
    fig.subplots_adjust(left=1.0 / width, right=1 - 0.15 / width, bottom=0.13, top=0.9,
                        wspace=1.45 * n_panels / (width - 1.15))
    axes = fig.subplots(1, n_panels, squeeze=False)[0]
    return fig, axes


def _integer_ticks(ax, values: np.ndarray | None) -> None:
    """Label a log axis of L with its plain values (4, 6, 8 r0) instead of 4×10⁰."""
    if values is None or not np.isfinite(values).any():
        return
    from matplotlib.ticker import FixedLocator, NullFormatter, NullLocator, ScalarFormatter

    ticks = np.unique(values[np.isfinite(values) & (values > 0)])
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_minor_formatter(NullFormatter())


def _curve_slope(x: np.ndarray, y: np.ndarray) -> float:
    fit = fit_loglog(x[None, :], y[None, :])
    return float(fit["slope"][0])


def _legend_name(dim: str, value: Any) -> str:
    if dim == "L":
        return f"L = {value} r0"
    if dim == "observations":
        return str(value)
    return f"{SHORT.get(dim, dim)} = {value}"


def _observations_of(ds: xr.Dataset) -> str:
    if "observations" in ds.coords and ds["observations"].size == 1:
        return str(np.ravel(ds["observations"].values)[0])
    return "E+F"


# --------------------------------------------------------------------------- figures
def curve_dimension(ds: xr.Dataset) -> str | None:
    """Dimension drawn as separate curves in the error-vs-L figures: ``"observations"`` when there
    are several observation sets (P2 Figs. 5, 8, 11), else ``"n_defects"`` (P1 Figs. 4, 7, 9)."""
    if "observations" in ds.dims and ds.sizes["observations"] > 1:
        return "observations"
    return "n_defects" if "n_defects" in ds.dims else None


def plot_error_vs_rmse(
    ds: xr.Dataset,
    *,
    rmse: str = "rmse_forces",
    variables: Sequence[str] = ERROR_VARIABLES,
    title: str | None = None,
) -> Figure:
    """Error against the test-set RMSE, one curve per L (P1 Figs. 3, 6, 8).

    Parameters
    ----------
    ds : xarray.Dataset
        Sweep Dataset reduced to the dimensions ``L`` and ``basis_size`` (other dimensions must
        have size 1). Only done points with finite, positive values are drawn.
    rmse : str
        Regressor variable (default ``"rmse_forces"``, eV/Å).
    variables : sequence of str
        One panel per variable (default geometry error in Å and energy error in eV).
    title : str, optional
        Figure title.

    Returns
    -------
    matplotlib.figure.Figure
        With one log–log axes per variable, x label e.g. ``"RMSE forces (eV/Å)"``; the dashed
        line is the predicted slope (RMSE¹ for geometry, RMSE² for energy).
    """
    fig, axes = _new_figure(len(variables))
    keep = [d for d in ("L", "basis_size") if d in ds.dims]
    obs = _observations_of(ds)
    for ax, var in zip(axes, variables):
        x, y = _usable(ds, rmse, var, keep)
        if "L" not in x.dims:
            x, y = x.expand_dims("L"), y.expand_dims("L")
        if "basis_size" not in x.dims:
            x, y = x.expand_dims("basis_size", -1), y.expand_dims("basis_size", -1)
        x, y = x.transpose("L", "basis_size"), y.transpose("L", "basis_size")
        drawn = 0
        for i in range(x.sizes["L"]):
            xs, ys = np.asarray(x.values[i], float), np.asarray(y.values[i], float)
            ok = np.isfinite(xs) & np.isfinite(ys)
            if not ok.any():
                continue
            order = np.argsort(xs[ok])
            Lval = _value(x["L"].values[i]) if "L" in x.coords else "?"
            s = _curve_slope(xs, ys)
            label = _legend_name("L", Lval) + (f" (slope {s:.2f})" if np.isfinite(s) else "")
            ax.plot(xs[ok][order], ys[ok][order], "o-", ms=4, label=label)
            drawn += 1
        p = ds.sweep.predicted_slope(var, rmse, obs)
        if drawn and p is not None:
            _guide(ax, np.asarray(x.values, float).ravel(), np.asarray(y.values, float).ravel(), p,
                   _power_label("RMSE", p) + " (theory)")
        if not drawn:
            ax.text(0.5, 0.5, "no finished points", transform=ax.transAxes, ha="center", va="center")
        else:
            _style(ax)
            ax.legend(fontsize=8)
        ax.set_xlabel(axis_label(ds, rmse))
        ax.set_ylabel(axis_label(ds, var))
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def plot_error_vs_L(
    ds: xr.Dataset,
    *,
    curves: str | None = None,
    variables: Sequence[str] = ERROR_VARIABLES,
    title: str | None = None,
    regimes: Sequence[Mapping[str, Any]] = (),
) -> Figure:
    """Error against the training-cell size L, one curve per ``curves`` value (P1 Figs. 4, 7, 9;
    P2 Figs. 5, 8, 11), with the predicted slopes as dashed guide lines.

    Parameters
    ----------
    ds : xarray.Dataset
        Sweep Dataset reduced to the dimensions ``L`` and ``curves`` (others of size 1), e.g. a
        slice of :meth:`sweep.analysis.SweepAccessor.matched_accuracy`.
    curves : str, optional
        Dimension drawn as separate curves (``"observations"`` or ``"n_defects"``); None for one
        curve.
    variables : sequence of str
        One panel per variable (default geometry error in Å and energy error in eV).
    title : str, optional
        Figure title.
    regimes : sequence of dict, optional
        Output of :meth:`sweep.analysis.SweepAccessor.regimes`: a curve whose labels match one
        gets that regime's slope as its guide line; other curves get the design column of
        :mod:`sweep.rates`.

    Returns
    -------
    matplotlib.figure.Figure
        One log–log axes per variable with x label ``"L (r0)"``. Each distinct predicted slope
        (per observation set) is drawn once, dashed, labelled e.g. ``L^-1 (theory)``.
    """
    fig, axes = _new_figure(len(variables))
    if curves is not None and curves not in ds.dims:
        curves = None
    keep = ["L"] + ([curves] if curves else [])
    for ax, var in zip(axes, variables):
        x, y = _usable(ds, "L", var, [k for k in keep if k in ds.dims])
        if "L" not in x.dims:
            x, y = x.expand_dims("L"), y.expand_dims("L")
        cdim = curves or "_curve"
        if cdim not in x.dims:
            x, y = x.expand_dims(cdim, -1), y.expand_dims(cdim, -1)
        x, y = x.transpose("L", cdim), y.transpose("L", cdim)
        guides: dict[float, list[tuple[np.ndarray, np.ndarray]]] = {}
        colors: dict[float, str] = {}
        who: dict[float, list[str]] = {}
        drawn = 0
        for j in range(x.sizes[cdim]):
            xs, ys = np.asarray(x.values[:, j], float), np.asarray(y.values[:, j], float)
            ok = np.isfinite(xs) & np.isfinite(ys)
            cval = _value(ds[curves].values[j]) if curves else None
            obs = str(cval) if curves == "observations" else _observations_of(ds)
            if not ok.any():
                continue
            s = _curve_slope(xs, ys)
            name = _legend_name(curves, cval) if curves else var
            line, = ax.plot(xs[ok], ys[ok], "o-", ms=4,
                            label=name + (f" (slope {s:.2f})" if np.isfinite(s) else ""))
            drawn += 1
            p = ds.sweep.predicted_slope(var, "L", obs)
            here = {str(c): _value(ds[c].values) for c in ds.coords if ds[c].ndim == 0}
            if curves:
                here[curves] = cval
            hit = next((r for r in regimes if _matches(here, r)), None) if p is not None else None
            if hit is not None:
                p = float(getattr(hit["regime"], ("geometry" if var == "geometry_error" else "energy")
                                  + "_vs_L"))
            if p is not None:
                guides.setdefault(p, []).append((xs, ys))
                colors.setdefault(p, line.get_color() if curves == "observations" else "k")
                who.setdefault(p, []).append(obs)
        for p, pts in guides.items():
            xs = np.concatenate([a for a, _ in pts])
            ys = np.concatenate([b for _, b in pts])
            label = _power_label("L", p) + " (theory" + (": stalls" if p == 0 else "")
            if curves == "observations" and len(guides) > 1:
                label += ", " + " & ".join(who[p])
            _guide(ax, xs, ys, p, label + ")", colors[p])
        if not drawn:
            ax.text(0.5, 0.5, "no finished points", transform=ax.transAxes, ha="center", va="center")
        else:
            _style(ax)
            _integer_ticks(ax, np.asarray(x["L"].values, float) if "L" in x.coords else None)
            ax.legend(fontsize=8)
        ax.set_xlabel(axis_label(ds, "L"))
        ax.set_ylabel(axis_label(ds, var))
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


# --------------------------------------------------------------------------- tables
def _points_text(xs: np.ndarray, ys: np.ndarray, res: np.ndarray, against: str) -> str:
    """``"L=4: 0.0176 (+0.03), …"``: the fitted points with their log10 residuals."""
    ok = np.isfinite(xs) & np.isfinite(ys)
    order = np.argsort(xs[ok])
    xname = "L" if against == "L" else "ε_F"
    return ", ".join(f"{xname}={_fmt(float(x))}: {_fmt(float(y))} ({float(r):+.2f})"
                     for x, y, r in zip(xs[ok][order], ys[ok][order], res[ok][order]))


def _matches(row: Mapping[str, Any], labels: Mapping[str, Any]) -> bool:
    return all(row[k] == v for k, v in labels.items() if k in row and k != "regime")


def _slope_rows(res: xr.Dataset, variable: str, against: str, extra: Mapping[str, Any],
                regimes: Sequence[Mapping[str, Any]] = ()) -> list[dict]:
    """One row per fitted group, with the prediction of the regime that applies to it.

    Against L, the prediction is the slope of the Table 1 regime chosen from the store's own
    fit errors (:meth:`sweep.analysis.SweepAccessor.regimes`) when one could be chosen, else
    the observation set's design column (``res["predicted"]``, the ε_E,F = 0 column of the
    observation set). Against the force RMSE it is always the "L sufficiently large" column
    (slope 1 for geometry, 2 for energy).
    """
    rows = []
    dims = list(res["slope"].dims)
    shape = tuple(res.sizes[d] for d in dims)
    quantity = "geometry" if variable == "geometry_error" else "energy"
    for index in np.ndindex(*shape) if shape else [()]:
        sel = dict(zip(dims, index))
        one = res.isel(sel)
        row: dict[str, Any] = {"variable": variable, "against": against}
        for d in dims:
            row[d] = _value(res[d].values[sel[d]]) if d in res.coords else sel[d]
        row.update(extra)
        n = int(one["n_points"])
        slope = float(one["slope"])
        lo, hi = float(one["ci_low"]), float(one["ci_high"])
        design = float(one["predicted"])
        pred, regime, why = design, "", ""
        if against == "L":
            hit = next((r for r in regimes if _matches(row, r)), None)
            if hit is not None and np.isfinite(design):
                reg = hit["regime"]
                pred = float(getattr(reg, f"{quantity}_vs_L"))
                regime = getattr(reg, f"{quantity}_column")
                why = reg.reason
            elif np.isfinite(design):
                regime = "design column (not decided: the store lacks the measured errors)"
        elif np.isfinite(design):
            regime = "L sufficiently large"
        row.update(slope=slope, ci_low=lo, ci_high=hi, n_points=n, predicted=pred,
                   design_predicted=design, regime=regime, regime_reason=why,
                   x_min=float(one["x_min"]), x_max=float(one["x_max"]),
                   residual_sd=float(one["residual_sd"]))
        row["verdict"] = verdict(slope, lo, hi, pred, against, n)
        row["points"] = (_points_text(np.asarray(one["x_points"].values, float),
                                      np.asarray(one["y_points"].values, float),
                                      np.asarray(one["residuals"].values, float), against)
                         if "x_points" in one and np.isfinite(slope) else "")
        row["suggestion"] = ""
        if row["verdict"].startswith("inconclusive"):
            row["suggestion"] = grid_suggestion(
                row["residual_sd"], n, row["x_min"], row["x_max"], against=against,
                sxx=(row["residual_sd"] / float(one["stderr"])) ** 2
                if float(one["stderr"]) > 0 else None)["text"]
        rows.append(row)
    return rows


def slope_table(ds: xr.Dataset, matched: xr.Dataset | None = None) -> tuple[list[dict], list[str]]:
    """Measured vs predicted slopes for geometry and energy error, vs L and vs the force RMSE.

    Parameters
    ----------
    ds : xarray.Dataset
        Sweep Dataset.
    matched : xarray.Dataset, optional
        Matched-accuracy selection used for the fits against L (default:
        ``ds.sweep.matched_accuracy()`` when ``ds`` has a ``basis_size`` dimension).

    Returns
    -------
    rows : list of dict
        One row per fitted group: ``variable``, ``against``, the group's coordinates, ``slope``,
        ``ci_low``, ``ci_high`` (95 % t interval), ``n_points``, ``predicted`` (the regime's
        slope), ``design_predicted`` (the observation set's design column of Table 1),
        ``regime`` and ``regime_reason``, ``x_min``/``x_max`` (fitted range), ``residual_sd``
        (log10), ``points`` (the fitted points with their residuals), ``verdict``
        (:func:`sweep.analysis.verdict`) and, for inconclusive rows, ``suggestion``
        (:func:`sweep.analysis.grid_suggestion`).
    notes : list of str
        Why some fits could not be made at all (e.g. a single L value).
    """
    rows: list[dict] = []
    notes: list[str] = []
    if matched is None:
        matched = ds.sweep.matched_accuracy() if "basis_size" in ds.dims and "rmse_forces" in ds else ds
    regimes = ds.sweep.regimes(matched) if "L" in ds.dims else []
    for var in rate_variables(ds):
        if "L" in ds.dims:
            try:
                res = matched.sweep.slope(var, against="L", points=True)
                rows += _slope_rows(res, var, "L", {}, regimes)
            except ValueError as exc:
                notes.append(f"{var} vs L: {exc}")
        if "rmse_forces" in ds.data_vars:
            try:
                res = ds.sweep.slope(var, against="rmse_forces", points=True)
                rows += _slope_rows(res, var, "rmse_forces", {})
            except ValueError as exc:
                notes.append(f"{var} vs rmse_forces: {exc}")
    return rows, notes


def _group_slopes(res: xr.Dataset, extra: dict, skip: Sequence[str] = ()) -> list[dict]:
    """One row per group of a :meth:`sweep.analysis.SweepAccessor.slope` result: ``extra``,
    the group's labels (dims in ``skip`` left out; they must have size 1), ``slope``,
    ``ci_low``, ``ci_high``, ``n_points``, ``x_min`` and ``x_max``."""
    res = res.isel({d: 0 for d in skip if d in res["slope"].dims})
    dims = list(res["slope"].dims)
    rows = []
    for index in np.ndindex(*(res.sizes[d] for d in dims)) if dims else [()]:
        sel = dict(zip(dims, index))
        one = res.isel(sel)
        row: dict[str, Any] = dict(extra)
        for d in dims:
            row[d] = _value(res[d].values[sel[d]]) if d in res.coords else sel[d]
        row.update(slope=float(one["slope"]), ci_low=float(one["ci_low"]),
                   ci_high=float(one["ci_high"]), n_points=int(one["n_points"]),
                   x_min=float(one["x_min"]), x_max=float(one["x_max"]))
        rows.append(row)
    return rows


def fixed_basis_slope_table(ds: xr.Dataset) -> list[dict]:
    """Slopes against L of the geometry and energy errors at each fixed basis size.

    The papers plot errors against L without saying whether the basis is held fixed or the
    accuracy matched; :func:`slope_table` takes the matched-accuracy reading, this the other:
    one fit per basis size (and per group of the other dimensions) over every L. The prediction
    is the observation set's Table 1 rate (:meth:`sweep.analysis.SweepAccessor.predicted_slope`),
    the verdict :func:`sweep.analysis.verdict`. Empty without a ``basis_size`` dimension of
    more than one value or an ``L`` dimension."""
    if "L" not in ds.dims or ds.sizes.get("basis_size", 1) < 2:
        return []
    rows: list[dict] = []
    for B in ds["basis_size"].values:
        sub = ds.sel(basis_size=[B])
        for var in rate_variables(ds):
            try:
                res = sub.sweep.slope(var, against="L")
            except ValueError:
                continue
            for row in _group_slopes(res, {"variable": var, "basis_size": int(B)},
                                     skip=("basis_size",)):
                obs = str(row.get("observations", _observations_of(ds)))
                p = ds.sweep.predicted_slope(var, "L", obs)
                pred = float("nan") if p is None else float(p)
                row.update(predicted=pred, verdict=verdict(row["slope"], row["ci_low"],
                                                           row["ci_high"], pred, "L",
                                                           row["n_points"]))
                rows.append(row)
    return rows


_FIT_COLUMNS = [
    ("n_basis", "#B", "1"),
    ("n_observations", "#obs", "1"),
    ("rmse_energy", "ε_E", "meV/atom"),
    ("rmse_forces", "ε_F", "eV/Å"),
    ("force_constant_error", "ε_FC_hom", "%"),
    ("fit_time", "T fit", "s"),
]


def fit_quality_table(ds: xr.Dataset, pooled: Sequence[str] = ("n_defects",)) -> list[dict]:
    """Fit quality in the form of P1 Table 2, one row per fit.

    A fit is labelled by every dimension except ``pooled`` (the fit does not depend on the number
    of defects in the simulation cell); values are medians over the done points of the pooled
    dimensions (they repeat the same fit's numbers).

    Parameters
    ----------
    ds : xarray.Dataset
        Sweep Dataset.
    pooled : sequence of str
        Dimensions the fit does not depend on (default ``("n_defects",)``).

    Returns
    -------
    list of dict
        Keys: the fit's labels (e.g. ``defect``, ``weights``, ``observations``, ``L``,
        ``basis_size``), ``n_basis`` (#B), ``n_observations`` (#obs), ``rmse_energy`` (ε_E,
        meV/atom), ``rmse_forces`` (ε_F, eV/Å), ``force_constant_error`` (ε_FC_hom, %),
        ``fit_time`` (s), ``points_done`` and ``points``. Fits without any done point are left
        out.
    """
    pdims = ds.sweep.point_dims
    order = [d for d in ("defect", "weights", "observations") if d in pdims]
    order += [d for d in pdims if d not in order and d not in ("L", "basis_size") and d not in pooled]
    order += [d for d in ("L", "basis_size") if d in pdims]
    pooled = [d for d in pooled if d in pdims]
    done_da = ds.sweep.done
    done = np.asarray(done_da.transpose(*order, *pooled).values, bool)
    cols = {}
    for var, _, _ in _FIT_COLUMNS:
        if var not in ds.data_vars:
            continue
        if not set(ds[var].dims) <= set(pdims):
            continue
        a = np.asarray(ds[var].broadcast_like(done_da).transpose(*order, *pooled).values, float)
        if var in ("n_basis", "n_observations"):
            a = np.where(a < 0, np.nan, a)
        cols[var] = a
    rows = []
    for index in np.ndindex(*(ds.sizes[d] for d in order)):
        d_here = done[index].ravel()
        if not d_here.any():
            continue
        row: dict[str, Any] = {d: _value(ds[d].values[i]) for d, i in zip(order, index)}
        for var, _, _ in _FIT_COLUMNS:
            if var in cols:
                vals = cols[var][index].ravel()[d_here]
                vals = vals[np.isfinite(vals)]
                med = float(np.median(vals)) if vals.size else np.nan
                if var in ("n_basis", "n_observations") and np.isfinite(med):
                    med = int(round(med))
                row[var] = med
        row["points_done"] = int(d_here.sum())
        row["points"] = int(d_here.size)
        rows.append(row)
    return rows


#: The column of P1 Table 2 the report compares against.
PAPER_L_R0 = 8


def _paper_table2_rows(ds: xr.Dataset, L_r0: int = PAPER_L_R0) -> list[list[Any]]:
    """Rows "paper" / "this store" for P1 Table 2 at L = ``L_r0``, for a P1 vacancy store.

    Empty unless the experiment is a P1 one, the store's defect is ``vacancy`` (the only case the
    paper tabulates) and it has done fits at that L.
    """
    exp = (ds.sweep.experiment or "").lower()
    if not exp.startswith("p1") or "L" not in ds.dims or L_r0 not in [int(v) for v in ds["L"].values]:
        return []
    if "defect" in ds.coords and {str(v) for v in np.ravel(ds["defect"].values)} != {"vacancy"}:
        return []
    rows: list[list[Any]] = []
    for r in _paper.p1_table2(L_r0):
        rows.append(["paper", r.n_basis, _paper.P1_TABLE2_OBSERVATIONS[L_r0], r.rmse_energy_meV,
                     r.rmse_forces_eV_per_A, r.force_constant_error_percent, r.fit_time_s])
    for f in fit_quality_table(ds):
        if int(f.get("L", -1)) != L_r0:
            continue
        label = "this store" + "".join(f", {SHORT.get(k, k)} {f[k]}" for k in ("weights", "observations")
                                       if k in f and ds.sizes.get(k, 1) > 1)
        rows.append([label, f.get("n_basis", np.nan), f.get("n_observations", np.nan),
                     f.get("rmse_energy", np.nan), f.get("rmse_forces", np.nan),
                     f.get("force_constant_error", np.nan), f.get("fit_time", np.nan)])
    return rows if len(rows) > len(_paper.p1_table2(L_r0)) else []


# --------------------------------------------------------------------------- P2: core vs far field
#: The stored evidence of P2 stores on where the geometry error sits
#: (:data:`sweep.experiments.p2_dislocations.EVIDENCE_VARIABLES`).
CORE_FAR_VARIABLES = ("geometry_error_core", "geometry_error_far", "cle_far_field_error")
LINE_VARIABLES = ("geometry_error_far_line", "cle_far_field_error_line")
ELASTIC_VARIABLES = ("elastic_c11", "elastic_c12", "elastic_c44", "zener_anisotropy")
REFERENCE_ELASTIC_VARIABLES = ("reference_c11", "reference_c12", "reference_c44",
                               "reference_zener_anisotropy")
EVIDENCE_VARIABLES = (CORE_FAR_VARIABLES + LINE_VARIABLES + ELASTIC_VARIABLES
                      + REFERENCE_ELASTIC_VARIABLES)
_EVIDENCE_LABELS = {"geometry_error_core": "core", "geometry_error_far": "far field",
                    "cle_far_field_error": "CLE prediction (far field)"}
#: Where the error comes from (stored by P2 points since the residual forces were added): the
#: fitted model's forces at ȳ_L and at ȳ and their first-order response.
RESIDUAL_VARIABLES = ("training_force_residual", "training_force_residual_core",
                      "force_residual_core", "force_residual_far", "linear_response_error",
                      "linear_response_error_core_forces", "linear_response_error_far_forces")
_RESIDUAL_LABELS = {
    "training_force_residual": "ε_F at ȳ_L (training cell, all atoms)",
    "training_force_residual_core": "ε_F at ȳ_L (training cell, core atoms)",
    "linear_response_error_core_forces": "response to the core forces at ȳ",
    "linear_response_error_far_forces": "response to the far-field forces at ȳ"}


def is_p2_store(ds: xr.Dataset) -> bool:
    """Whether a store is one of P2's dislocation experiments."""
    return str(ds.sweep.experiment or "").startswith("p2-")


def trend_verdict(slope: float, ci_low: float, ci_high: float, n_points: int, *,
                  max_half_width: float = MAX_HALF_WIDTH) -> str:
    """The verdict on a slope the theory does not predict (the core part of the geometry
    error): ``"inconclusive (CI ± h > 0.5)"`` when the 95 % interval is wider than
    ``max_half_width``, else ``"falls with L"`` / ``"grows with L"`` when the interval excludes
    0 and ``"stalls (CI contains 0)"`` when it does not; too few points as
    :func:`sweep.analysis.verdict`."""
    if not np.isfinite(slope):
        return f"too few points ({n_points} < {MIN_POINTS})" if n_points < MIN_POINTS else "x does not vary"
    half = 0.5 * (ci_high - ci_low)
    if half > max_half_width:
        return f"inconclusive (CI ± {half:.2g} > {max_half_width:g})"
    if ci_high < 0:
        return "falls with L"
    if ci_low > 0:
        return "grows with L"
    return "stalls (CI contains 0)"


def core_far_slope_table(matched: xr.Dataset) -> tuple[list[dict], list[str]]:
    """Slopes vs L of the core and far-field geometry errors and of the CLE prediction.

    Parameters
    ----------
    matched : xarray.Dataset
        A P2 store at matched accuracy (:meth:`sweep.analysis.SweepAccessor.matched_accuracy`),
        holding :data:`CORE_FAR_VARIABLES`.

    Returns
    -------
    rows : list of dict
        One row per variable and group (the store's other dimensions, observation set among
        them): ``slope``, ``ci_low``, ``ci_high`` (95 % t interval), ``n_points``,
        ``predicted`` and ``verdict``. The far field (and its CLE prediction) is held to the
        observation set's design rate of the geometry error (P2 Table 1: stalls for E+F, L⁻¹
        with the CLE rows, L⁻² with the nonlinear ones: the rates are the far-field terms of
        the bound) with :func:`sweep.analysis.verdict`; the core part, which the theory
        bounds by the L-independent ε_F, gets :func:`trend_verdict`.
    notes : list of str
        Fits that could not be made.
    """
    rows: list[dict] = []
    notes: list[str] = []
    for var in CORE_FAR_VARIABLES:
        if var not in matched.data_vars:
            continue
        try:
            res = matched.sweep.slope(var, against="L")
        except ValueError as exc:
            notes.append(f"{var} vs L: {exc}")
            continue
        for row in _group_slopes(res, {"variable": var, "part": _EVIDENCE_LABELS[var]}):
            obs = str(row.get("observations", _observations_of(matched)))
            slope, lo, hi, n = row["slope"], row["ci_low"], row["ci_high"], row["n_points"]
            if var == "geometry_error_core":
                pred = float("nan")
                v = trend_verdict(slope, lo, hi, n)
            else:
                p = matched.sweep.predicted_slope("geometry_error", "L", obs)
                pred = float("nan") if p is None else float(p)
                v = verdict(slope, lo, hi, pred, "L", n)
            row.update(predicted=pred, verdict=v)
            rows.append(row)
    return rows, notes


def _done_points(ds: xr.Dataset, names: Sequence[str]) -> list[dict]:
    """One dict per finished point: its labels and the values of ``names`` present."""
    dims = [d for d in ds.sweep.point_dims if d in ds.dims]
    done = np.asarray(ds.sweep.done.transpose(*dims).values, bool)
    vals = {n: np.asarray(ds[n].transpose(*dims).values, float) for n in names if n in ds}
    out = []
    for index in zip(*np.nonzero(done)):
        row = {d: _value(ds[d].values[i]) if d in ds.coords else int(i) for d, i in zip(dims, index)}
        row.update({n: float(v[index]) for n, v in vals.items()})
        out.append(row)
    return out


def plot_core_far(ds: xr.Dataset, *, title: str | None = None) -> Figure:
    """Three panels against L (one curve per observation set): the core (solid) and far-field
    (dashed) geometry errors, Å, with their slopes in the legend; the measured far-field error
    (solid) and what the CLE field with the fitted C predicts (dotted), Å; the fitted Zener
    anisotropy 2C44/(C11 − C12) against the reference's (grey line).

    ``ds``: a P2 store reduced to ``L`` and ``observations`` (e.g. a slice of the matched-accuracy
    selection), holding :data:`EVIDENCE_VARIABLES`."""
    fig, axes = _new_figure(3)
    curves = "observations" if "observations" in ds.dims else None
    keep = ["L"] + ([curves] if curves else [])
    obs_values = [str(v) for v in ds["observations"].values] if curves else [_observations_of(ds)]
    colors = {}

    def series(var):
        x, y = _usable(ds, "L", var, keep)
        if curves is None:
            x, y = x.expand_dims("observations", -1), y.expand_dims("observations", -1)
        x, y = x.transpose("L", ...), y.transpose("L", ...)
        return np.asarray(x.values, float), np.asarray(y.values, float)

    panels = ((axes[0], (("geometry_error_core", "-", "core"), ("geometry_error_far", "--", "far"))),
              (axes[1], (("geometry_error_far", "-", "far"), ("cle_far_field_error", ":", "CLE"))))
    for ax, spec in panels:
        drawn = 0
        for var, ls, short in spec:
            if var not in ds:
                continue
            xs, ys = series(var)
            for j, obs in enumerate(obs_values):
                ok = np.isfinite(xs[:, j]) & np.isfinite(ys[:, j])
                if not ok.any():
                    continue
                s = _curve_slope(xs[:, j], ys[:, j])
                line, = ax.plot(xs[ok, j], ys[ok, j], ls=ls, marker="o", ms=4,
                                color=colors.get(obs),
                                label=f"{obs} {short}" + (f" (slope {s:.2f})" if np.isfinite(s) else ""))
                colors.setdefault(obs, line.get_color())
                drawn += 1
        ax.set_xlabel(axis_label(ds, "L"))
        ax.set_ylabel("geometry error part (Å)")
        if drawn:
            _style(ax)
            _integer_ticks(ax, np.asarray(ds["L"].values, float))
            ax.legend(fontsize=7)
        else:
            ax.text(0.5, 0.5, "no finished points", transform=ax.transAxes, ha="center", va="center")
    axes[0].set_title("core (< 2|b|) and far field", fontsize=9)
    axes[1].set_title("far field: measured vs CLE with fitted C", fontsize=9)
    ax = axes[2]
    if "zener_anisotropy" in ds:
        xs, ys = series("zener_anisotropy")
        for j, obs in enumerate(obs_values):
            ok = np.isfinite(xs[:, j]) & np.isfinite(ys[:, j])
            if ok.any():
                ax.plot(xs[ok, j], ys[ok, j], "o-", ms=4, color=colors.get(obs), label=obs)
        ref = np.asarray(ds["reference_zener_anisotropy"].values, float) if "reference_zener_anisotropy" in ds else []
        ref = np.asarray(ref).ravel()
        ref = ref[np.isfinite(ref)]
        if ref.size:
            ax.axhline(float(np.median(ref)), color="0.5", lw=1.5, label=f"reference A = {float(np.median(ref)):.3f}")
        ax.set_xscale("log")
        _integer_ticks(ax, np.asarray(ds["L"].values, float))
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    ax.set_xlabel(axis_label(ds, "L"))
    ax.set_ylabel("Zener anisotropy 2C44/(C11 − C12)")
    ax.set_title("fitted vs reference anisotropy", fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def _core_far_section(doc: "_Doc", ds: xr.Dataset, matched: xr.Dataset | None, out: Path,
                      figdir: Path, experiment: str) -> None:
    """The report's "Core vs far field" section of a P2 store (skipped, with a note, for stores
    written before the evidence variables were stored)."""
    doc.h(2, "Core vs far field (P2: where the geometry error sits)")
    missing = [v for v in EVIDENCE_VARIABLES if v not in ds.data_vars]
    if missing:
        doc.p("Skipped: this store does not hold " + ", ".join(missing) + " (it was written "
              "before P2 points stored the core/far-field split, the fitted elastic constants and "
              "the CLE prediction, or its experiment does not store them). Run the spec into a new "
              "store to get this section.")
        return
    src = matched if matched is not None else ds
    doc.p("‖Dw‖² (P2 eq. A.2, the stencil of the geometry error) is split over its bonds: the "
          "core part holds the bonds with a site closer than 2|b| to a dislocation core of the "
          "simulation cell (in the cross-section of x₀), the far field the others "
          "(core² + far² = total²). 'CLE prediction' is the far-field norm of "
          "u_CLE(C̃) − u_CLE(C), the simulation cell's anisotropic CLE fields with the fitted and "
          "the reference elastic constants: the far-field error linear elasticity attributes "
          "to the fitted C. Slopes vs L at matched accuracy, 95 % t intervals; the far field is "
          "held to the observation set's rate (P2 Table 1: 0 / −1 / −2 for E+F / +CLE / +NL), the "
          "core part (bounded by the L-independent ε_F) only to whether it falls, stalls or grows. "
          f"Verdicts are 'inconclusive' when the interval is wider than ± {MAX_HALF_WIDTH:g}.")
    rows, notes = core_far_slope_table(src)
    gdims = [d for d in ds.sweep.point_dims if d not in ("L", "basis_size") and any(d in r for r in rows)
             and ds.sizes.get(d, 1) > 1]
    _write_csv(out / "core_far_slopes.csv", rows,
               ["variable", "part", *gdims, "slope", "ci_low", "ci_high", "n_points", "predicted",
                "verdict", "x_min", "x_max"])
    doc.links([("core_far_slopes.csv", "core_far_slopes.csv"), ("core_far_points.csv", "core_far_points.csv")])
    if rows:
        doc.table(["part", *[SHORT.get(d, d) for d in gdims], "slope", "95 % CI", "n", "predicted", "verdict"],
                  [[r["part"], *[r.get(d, "") for d in gdims], r["slope"],
                    f"[{_fmt(r['ci_low'])}, {_fmt(r['ci_high'])}]" if np.isfinite(r["slope"]) else "—",
                    r["n_points"], r["predicted"], r["verdict"]] for r in rows])
    if notes:
        doc.ul(notes)
    names = ["geometry_error", *EVIDENCE_VARIABLES, "elastic_constant_error", "rmse_forces"]
    pts = _done_points(src, names)
    pdims = [d for d in ds.sweep.point_dims if pts and d in pts[0] and ds.sizes.get(d, 1) > 1]
    for r in pts:
        tot = r.get("geometry_error", np.nan)
        r["core_share"] = (r["geometry_error_core"] / tot) ** 2 if tot > 0 else np.nan
        far, cle = r["geometry_error_far"], r["cle_far_field_error"]
        r["cle_over_far"] = cle / far if far > 0 else np.nan
    _write_csv(out / "core_far_points.csv", pts, [*pdims, *names, "core_share", "cle_over_far"])
    if pts:
        doc.p("Per point (matched accuracy): the geometry error and its parts (Å), the core's "
              "share of ‖Dw‖², the far field against its CLE prediction (Å), both also for the "
              "displacement component along the dislocation line alone (the antiplane part of a "
              "screw), and the fitted cubic elastic constants (GPa) and Zener anisotropy "
              "A = 2C44/(C11 − C12).")
        doc.table([*[SHORT.get(d, d) for d in pdims], "g (Å)", "core (Å)", "far (Å)", "core share",
                   "far, line comp. (Å)", "far, CLE prediction (Å)", "CLE, line comp. (Å)",
                   "CLE / far", "C11", "C12", "C44", "A", "eC (%)"],
                  [[*[r[d] for d in pdims], r["geometry_error"], r["geometry_error_core"],
                    r["geometry_error_far"], r["core_share"], r["geometry_error_far_line"],
                    r["cle_far_field_error"], r["cle_far_field_error_line"], r["cle_over_far"], *(f"{r[k]:.1f}" for k in ELASTIC_VARIABLES[:3]),
                    f"{r['zener_anisotropy']:.4f}", r.get("elastic_constant_error", np.nan)]
                   for r in pts])
        ref = pts[0]
        doc.p(f"Reference: C11 = {ref['reference_c11']:.1f}, C12 = {ref['reference_c12']:.1f}, "
              f"C44 = {ref['reference_c44']:.1f} GPa, A = {ref['reference_zener_anisotropy']:.4f}. "
              "Cubic constants are the means of their three cubic copies of the 6 × 6 C (cube "
              "axes; internally relaxed for multilattices); eC is elastic_constant_error, the "
              "Frobenius error of the whole 6 × 6 C.")
    fig_dims = [d for d in ds.sweep.point_dims if d in src.dims and d not in ("L", "observations", "basis_size")]
    for labels, sub in _iter_groups(src, fig_dims):
        if not np.asarray(sub.sweep.done.values).any():
            continue
        name = f"core-far_{_slug('_'.join(f'{SHORT.get(k, k)}{v}' for k, v in labels.items()))}.png"
        _save(plot_core_far(sub, title=f"{experiment}: {_group_label(labels)}"), figdir / name)
        doc.img(f"figures/{name}", f"Core vs far field, {_group_label(labels) or 'all points'}: core "
                "(solid) and far-field (dashed) geometry error; measured far field (solid) and its "
                "CLE prediction with the fitted C (dotted); fitted vs reference Zener anisotropy")
    _residual_section(doc, ds, src, out)


def residual_slope_tables(matched: xr.Dataset, ds: xr.Dataset) -> tuple[list[dict], list[dict],
                                                                         list[str]]:
    """Slopes of the residual-force evidence (:data:`RESIDUAL_VARIABLES`).

    Returns (vs_L, vs_eps, notes): ``vs_L`` the slopes against L at matched accuracy of the
    force matching condition at ȳ_L and of the responses to the core and far-field forces at ȳ
    (:func:`trend_verdict`: the theory bounds them by the L-independent ε_F, so no rate);
    ``vs_eps`` the slope of the geometry error against the core part of the force matching
    condition over every finished point of an observation set (L and basis size pooled; the
    bound g ≲ ε_F + … has slope 1 where ε_F dominates, :func:`sweep.analysis.verdict`)."""
    vs_L: list[dict] = []
    vs_eps: list[dict] = []
    notes: list[str] = []

    for var in ("training_force_residual", "training_force_residual_core",
                "linear_response_error_core_forces", "linear_response_error_far_forces"):
        try:
            res = matched.sweep.slope(var, against="L")
        except ValueError as exc:
            notes.append(f"{var} vs L: {exc}")
            continue
        for r in _group_slopes(res, {"variable": var, "quantity": _RESIDUAL_LABELS[var]}):
            r["verdict"] = trend_verdict(r["slope"], r["ci_low"], r["ci_high"], r["n_points"])
            vs_L.append(r)
    pooled = tuple(d for d in ("L", "basis_size") if d in ds.dims)
    try:
        res = ds.sweep.slope("geometry_error", against="training_force_residual_core", dims=pooled)
    except ValueError as exc:
        notes.append(f"geometry_error vs training_force_residual_core: {exc}")
    else:
        for r in _group_slopes(res, {"variable": "geometry_error",
                                     "against": "training_force_residual_core"}):
            r["predicted"] = 1.0
            r["verdict"] = verdict(r["slope"], r["ci_low"], r["ci_high"], 1.0,
                                   "training_force_residual_core", r["n_points"])
            vs_eps.append(r)
    return vs_L, vs_eps, notes


def _residual_section(doc: "_Doc", ds: xr.Dataset, src: xr.Dataset, out: Path) -> None:
    """The "Where the error comes from" subsection of a P2 store holding
    :data:`RESIDUAL_VARIABLES` (nothing for older stores)."""
    if any(v not in ds.data_vars for v in RESIDUAL_VARIABLES):
        return
    doc.h(3, "Where the error comes from: the fitted model's forces at the reference equilibria")
    doc.p("ε_F at ȳ_L is ‖F_ML(ȳ_L) − F_ref(ȳ_L)‖ over the relaxed training cell (ℓ², eV/Å): "
          "P2's force matching condition (eq. 3.10, a maximum over a ball about ȳ_L in a dual "
          "norm) at the ball's centre, in the ℓ² norm, and its part on the atoms within 2|b| of "
          "the training cell's cores. Unlike the test RMSE it is a norm over the whole cell, as "
          "in the theorem. At the simulation cell's ȳ (where the reference forces vanish) the "
          "fitted model's forces F_ML(ȳ) are split the same way, and 'linear response' is "
          "‖D H_ref⁻¹ F‖ on the geometry error's stencil: the geometry error to first order in "
          "those forces, for all of them and for the core and far-field atoms' forces alone "
          "(the two add as vectors). Slopes against L at matched accuracy; the geometry error "
          "against the core ε_F pooled over L and basis size per observation set (slope 1 where "
          "ε_F dominates the bound).")
    vs_L, vs_eps, notes = residual_slope_tables(src, ds)
    gdims = [d for d in ds.sweep.point_dims if d not in ("L", "basis_size")
             and any(d in r for r in vs_L + vs_eps) and ds.sizes.get(d, 1) > 1]
    _write_csv(out / "residual_slopes.csv", vs_L + vs_eps,
               ["variable", "quantity", "against", *gdims, "slope", "ci_low", "ci_high",
                "n_points", "predicted", "verdict"])
    rows = [[r["quantity"], *[r.get(d, "") for d in gdims], "L", r["slope"],
             f"[{_fmt(r['ci_low'])}, {_fmt(r['ci_high'])}]" if np.isfinite(r["slope"]) else "—",
             r["n_points"], "—", r["verdict"]] for r in vs_L]
    rows += [["geometry error", *[r.get(d, "") for d in gdims], "core ε_F at ȳ_L", r["slope"],
              f"[{_fmt(r['ci_low'])}, {_fmt(r['ci_high'])}]" if np.isfinite(r["slope"]) else "—",
              r["n_points"], r["predicted"], r["verdict"]] for r in vs_eps]
    doc.links([("residual_slopes.csv", "residual_slopes.csv"),
               ("residual_points.csv", "residual_points.csv")])
    if rows:
        doc.table(["quantity", *[SHORT.get(d, d) for d in gdims], "against", "slope", "95 % CI",
                   "n", "predicted", "verdict"], rows)
    if notes:
        doc.ul(notes)
    pts = _done_points(src, ["geometry_error", *RESIDUAL_VARIABLES])
    pdims = [d for d in ds.sweep.point_dims if pts and d in pts[0] and ds.sizes.get(d, 1) > 1]
    for r in pts:
        g = r["geometry_error"]
        r["response_over_g"] = r["linear_response_error"] / g if g > 0 else np.nan
    _write_csv(out / "residual_points.csv", pts,
               [*pdims, "geometry_error", *RESIDUAL_VARIABLES, "response_over_g"])
    if pts:
        doc.p("Per point (matched accuracy): geometry error g and its linear response (Å), the "
              "responses to the core and to the far-field forces at ȳ (Å), the forces at ȳ on "
              "the core and far-field atoms and ε_F at ȳ_L, all and core atoms (eV/Å).")
        doc.table([*[SHORT.get(d, d) for d in pdims], "g (Å)", "linear response (Å)",
                   "response / g", "from core forces (Å)", "from far forces (Å)",
                   "‖F(ȳ)‖ core", "‖F(ȳ)‖ far", "ε_F(ȳ_L)", "ε_F(ȳ_L) core"],
                  [[*[r[d] for d in pdims], r["geometry_error"], r["linear_response_error"],
                    r["response_over_g"], r["linear_response_error_core_forces"],
                    r["linear_response_error_far_forces"], r["force_residual_core"],
                    r["force_residual_far"], r["training_force_residual"],
                    r["training_force_residual_core"]] for r in pts])


# --------------------------------------------------------------------------- document
class _Doc:
    """A tiny document model rendered both as Markdown and as HTML."""

    def __init__(self) -> None:
        self.blocks: list[tuple] = []

    def h(self, level: int, text: str) -> None:
        self.blocks.append(("h", level, text))

    def p(self, text: str) -> None:
        self.blocks.append(("p", text))

    def links(self, items: Sequence[tuple[str, str]]) -> None:
        self.blocks.append(("links", list(items)))

    def ul(self, items: Sequence[str]) -> None:
        self.blocks.append(("ul", list(items)))

    def table(self, headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        self.blocks.append(("table", list(headers), [[_fmt(c) for c in r] for r in rows]))

    def img(self, src: str, caption: str) -> None:
        self.blocks.append(("img", src, caption))

    def markdown(self) -> str:
        out = []
        for b in self.blocks:
            kind = b[0]
            if kind == "h":
                out.append("#" * b[1] + " " + b[2])
            elif kind == "p":
                out.append(b[1])
            elif kind == "links":
                out.append(" · ".join(f"[{t}]({href})" for t, href in b[1]))
            elif kind == "ul":
                out.append("\n".join(f"- {i}" for i in b[1]))
            elif kind == "table":
                cell = lambda s: str(s).replace("|", "\\|").replace("\n", " ")  # noqa: E731
                lines = ["| " + " | ".join(cell(c) for c in b[1]) + " |",
                         "|" + "|".join("---" for _ in b[1]) + "|"]
                lines += ["| " + " | ".join(cell(c) for c in r) + " |" for r in b[2]]
                out.append("\n".join(lines))
            elif kind == "img":
                out.append(f"![{b[2]}]({b[1]})\n\n*{b[2]}*")
        return "\n\n".join(out) + "\n"

    def html(self, title: str) -> str:
        e = html.escape
        body = []
        for b in self.blocks:
            kind = b[0]
            if kind == "h":
                body.append(f"<h{b[1]}>{e(b[2])}</h{b[1]}>")
            elif kind == "p":
                body.append(f"<p>{e(b[1])}</p>")
            elif kind == "links":
                body.append("<p>" + " · ".join(f'<a href="{e(h)}">{e(t)}</a>' for t, h in b[1]) + "</p>")
            elif kind == "ul":
                body.append("<ul>" + "".join(f"<li>{e(i)}</li>" for i in b[1]) + "</ul>")
            elif kind == "table":
                head = "".join(f"<th>{e(str(c))}</th>" for c in b[1])
                rows = "".join("<tr>" + "".join(f"<td>{e(str(c))}</td>" for c in r) + "</tr>" for r in b[2])
                body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
            elif kind == "img":
                body.append(f'<figure><a href="{e(b[1])}"><img src="{e(b[1])}" alt="{e(b[2])}"></a>'
                            f"<figcaption>{e(b[2])}</figcaption></figure>")
        css = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
               "table{border-collapse:collapse;font-size:0.9em}td,th{border:1px solid #ccc;padding:2px 6px}"
               "th{background:#eee}img{max-width:100%}figure{margin:1em 0}")
        return (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{e(title)}</title>"
                f"<style>{css}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")


def _write_csv(path: Path, rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(columns)
        for r in rows:
            w.writerow(["" if (isinstance(r.get(c), float) and not np.isfinite(r.get(c)))
                        else _value(r.get(c, "")) for c in columns])


def _save(fig: Figure, path: Path) -> None:
    fig.savefig(path, format="png")


# --------------------------------------------------------------------------- report
def _bench_record(source: str) -> dict | None:
    """The timing record ``benchmarks/sweep_wall_time.py`` leaves next to a store, if any."""
    import json  # noqa: PLC0415

    path = Path(str(source))
    record = path.with_suffix(".bench.json")
    if path.suffix != ".zarr" or not record.exists():
        return None
    try:
        return json.loads(record.read_text())
    except (OSError, ValueError):
        return None


def write_report(
    store_or_dataset: str | Path | xr.Dataset,
    out_dir: str | Path,
    *,
    source: str | None = None,
) -> Path:
    """Write the analysis report of a sweep store.

    Parameters
    ----------
    store_or_dataset : str, pathlib.Path or xarray.Dataset
        Path of a Zarr store (opened with ``xarray.open_zarr``) or an already opened Dataset.
    out_dir : str or pathlib.Path
        Output directory (created; existing report files are overwritten).
    source : str, optional
        How to name the data in the report (default: the store path, or "Dataset").

    Returns
    -------
    pathlib.Path
        Path of the written ``index.md`` (``index.html`` sits next to it).
    """
    if isinstance(store_or_dataset, xr.Dataset):
        ds = store_or_dataset
        source = source or "Dataset"
    else:
        source = source or str(store_or_dataset)
        ds = xr.open_zarr(str(store_or_dataset))
    ds = ds.load()  # one consistent snapshot, even while a sweep writes into the store
    out = Path(out_dir)
    figdir = out / "figures"
    figdir.mkdir(parents=True, exist_ok=True)
    for old in figdir.glob("*.png"):
        old.unlink()

    experiment = ds.sweep.experiment or "unknown experiment"
    counts = ds.sweep.counts()
    total = sum(counts.values())
    failures = ds.sweep.failures()

    doc = _Doc()
    title = f"Sweep report: {ds.attrs.get('spec_name', experiment)}"
    doc.h(1, title)
    doc.p(f"Store: {source}. Experiment: {experiment}. Generated "
          f"{_dt.datetime.now().astimezone().strftime('%Y-%m-%d %H:%M %Z')}.")
    doc.p("Dimensions: " + ", ".join(f"{d} ({ds.sizes[d]})" for d in ds.dims) + ".")
    doc.p(f"Store created {ds.attrs.get('created_at', '?')} by commit "
          f"{ds.attrs.get('git_commit', '?')}; spec fingerprint "
          f"{ds.attrs.get('spec_fingerprint', '?')}.")
    bench = _bench_record(source)
    if bench:
        doc.p(f"Timed run ({bench.get('date', '?')}, commit {bench.get('commit', '?')}, "
              f"{bench.get('workers', '?')} workers on {bench.get('cpus', '?')} CPUs): wall "
              f"{bench['wall_s'] / 60:.1f} min, CPU {bench['cpu_s'] / 3600:.2f} h (CPU/wall "
              f"{bench.get('cpu_per_wall', '?')}), peak RSS client "
              f"{bench.get('peak_rss_client_MB', '?')} MB, workers "
              f"{bench.get('peak_rss_workers_MB', '?')} MB; load average (1, 5, 15 min) "
              f"{bench.get('load_before', '?')} before, {bench.get('load_after', '?')} after "
              "(benchmarks/sweep_wall_time.py).")

    # ---- status
    doc.h(2, "Status")
    doc.p(f"{counts['done']} of {total} points done, {counts['pending']} pending, "
          f"{counts['failed']} failed"
          + "".join(f", {v} {k}" for k, v in counts.items() if k not in ("pending", "done", "failed"))
          + ".")
    if counts["done"] < total:
        doc.p(f"This store is partly finished: {total - counts['done']} points are missing from "
              "every figure and table below (only points with status 'done' are used).")
    if failures:
        doc.h(3, f"Failures ({len(failures)})")
        by_msg = Counter(f["error"] or "(no message)" for f in failures)
        doc.table(["points", "error message"], [[n, m] for m, n in by_msg.most_common()])
        shown = failures[:50]
        dims = [d for d in failures[0] if d != "error"]
        doc.table(dims + ["error"], [[f[d] for d in dims] + [f["error"]] for f in shown])
        if len(failures) > len(shown):
            doc.p(f"… and {len(failures) - len(shown)} more; all are in failures.csv.")
        _write_csv(out / "failures.csv", failures, dims + ["error"])

    # ---- slopes
    matched = None
    if "basis_size" in ds.dims and "rmse_forces" in ds.data_vars and counts["done"]:
        matched = ds.sweep.matched_accuracy()
    rows, notes = slope_table(ds, matched if matched is not None else ds) if counts["done"] else ([], [])
    pdims = ds.sweep.point_dims
    group_cols = [d for d in pdims if d != "basis_size" and any(d in r for r in rows)]
    slope_cols = ["variable", "against", *group_cols, "slope", "ci_low", "ci_high", "n_points",
                  "predicted", "regime", "design_predicted", "verdict", "x_min", "x_max",
                  "residual_sd", "points", "suggestion", "regime_reason"]
    _write_csv(out / "slopes.csv", rows, slope_cols)
    doc.h(2, "Convergence rates: measured vs predicted")
    doc.p("Log–log least-squares slopes with 95 % confidence intervals (Student t, n − 2 degrees of "
          "freedom); 'predicted' is the rate of the P1/P2 Table 1 regime that applies to this store "
          "(sweep/rates.py; see 'Regime' below). "
          "Slopes against L use, for each L, the basis size whose force RMSE is closest to a common "
          "target (matched accuracy); slopes against the force RMSE are per L, over the basis sizes."
          f" A fit needs at least {MIN_POINTS} finished points.")
    doc.p(f"Verdicts: 'agrees' when the interval contains the prediction and its half-width is at "
          f"most {MAX_HALF_WIDTH:g}; 'inconclusive' when it contains the prediction but is wider; "
          "'faster' / 'slower than predicted' when the interval excludes the prediction (the error "
          "falls faster / slower than predicted). The rates against L are those of an upper bound: "
          "'faster' against L is consistent with the theorem, 'slower' is not.")
    if matched is not None and "rmse_target" in matched:
        tg = np.unique(np.round(np.asarray(matched["rmse_target"].values, float), 6))
        tg = tg[np.isfinite(tg)]
        if tg.size:
            doc.p("Matched-accuracy target RMSE forces (eV/Å): " + ", ".join(_fmt(t) for t in tg) + ".")
    if FORMATION_ENERGY in rate_variables(ds):
        doc.p("Two readings of the energy error are analysed: energy_error measures each model's "
              "energy from its own value at the unrelaxed x₀ (P1 §2, V_ℓ(0) = 0); "
              "formation_energy_error measures it from its own perfect crystal (E_tot − n·e_bulk), "
              "which this store's fits can do because they observed the bulk energy "
              "([fit] bulk_energy_row = true).")
    if _has_interstitials(ds):
        doc.p("This store holds interstitials: at the unrelaxed x₀ the interstitial sits far inside "
              "its neighbours' repulsive range, outside every training set, so the fitted model's "
              "Ẽ(x₀) is an extrapolation and energy_error measures it rather than the fit. "
              + ("Read formation_energy_error for the energy rates."
                 if FORMATION_ENERGY in rate_variables(ds) else
                 "A fit with [fit] bulk_energy_row = true stores formation_energy_error, the "
                 "reading to use for the energy rates of interstitials."))
    doc.links([("slopes.csv", "slopes.csv")])
    regimes = ds.sweep.regimes(matched) if counts["done"] and "L" in ds.dims else []
    if regimes:
        doc.h(3, "Regime (which column of Table 1 applies)")
        doc.p("Each term of the Theorem 3.1 bound is evaluated at every L of the grid from this "
              "store's own fit errors at matched accuracy (unit prefactors; ε_F in eV/Å, ε_E in eV/atom, "
              "ε_FC_hom and ε_V1 as fractions, L in r0). A term that is at least "
              f"{_rates.DOMINANCE:g}× the sum of the others at every L decides the column; otherwise "
              "the bound is at a crossover and the prediction is the bound's own log–log slope over "
              "the grid.")
        rlabels = [k for k in regimes[0] if k != "regime"]
        doc.table([*[SHORT.get(k, k) for k in rlabels], "geometry regime", "predicted vs L",
                   "energy regime", "predicted vs L", "why"],
                  [[*[r[k] for k in rlabels], r["regime"].geometry_column, r["regime"].geometry_vs_L,
                    r["regime"].energy_column, r["regime"].energy_vs_L, r["regime"].reason]
                   for r in regimes])
        for r in regimes:
            reg = r["regime"]
            doc.p("Bound terms at each L, " + (_group_label({k: r[k] for k in rlabels}) or "all") + ":")
            doc.table(["term", *[f"L = {_fmt(x)} r0" for x in reg.L]],
                      [[name, *vals] for name, vals in reg.terms.items()])
    for against, heading, skip in (("L", "Against L (r0), at matched accuracy", ("L",)),
                                   ("rmse_forces", "Against the force RMSE (eV/Å), per L", ())):
        part = [r for r in rows if r["against"] == against]
        if not part:
            continue
        cols = [c for c in group_cols if c not in skip]
        doc.h(3, heading)
        doc.table(
            ["variable", *[SHORT.get(c, c) for c in cols], "slope", "95 % CI", "n", "fitted range",
             "predicted", "regime", "verdict"],
            [[r["variable"], *[r.get(c, "") for c in cols], r["slope"],
              f"[{_fmt(r['ci_low'])}, {_fmt(r['ci_high'])}]" if np.isfinite(r["slope"]) else "—",
              r["n_points"],
              f"{_fmt(r['x_min'])}–{_fmt(r['x_max'])}" if np.isfinite(r["slope"]) else "—",
              r["predicted"], r["regime"], r["verdict"]] for r in part],
        )
        flagged = [r for r in part if r["verdict"].startswith(("faster", "slower", "inconclusive"))]
        if flagged:
            doc.p("Evidence for every slope that does not agree: the fitted points "
                  "(x: error, with the log10 residual from the fitted line), the residual scatter, "
                  "and for inconclusive slopes the grid change that would narrow the interval.")
            items = []
            for r in flagged:
                head = (f"{r['variable']}, {_group_label({c: r.get(c, '') for c in cols})}: "
                        f"slope {_fmt(r['slope'])} [{_fmt(r['ci_low'])}, {_fmt(r['ci_high'])}], "
                        f"n = {r['n_points']}, range {_fmt(r['x_min'])}–{_fmt(r['x_max'])}, predicted "
                        f"{_fmt(r['predicted'])} ({r['regime']}) → {r['verdict']}. "
                        f"Points: {r['points']}; residual sd {_fmt(r['residual_sd'])} (log10).")
                items.append(head + (f" Grid: {r['suggestion']}." if r["suggestion"] else ""))
            doc.ul(items)
    if notes or not rows:
        doc.ul(notes or ["No finished points: nothing to fit yet."])
    fixed = fixed_basis_slope_table(ds) if counts["done"] else []
    if fixed:
        cols = [c for c in group_cols if c not in ("L", "basis_size")]
        doc.h(3, "Against L (r0), at each fixed basis size")
        doc.p("The other reading of 'error against L': the basis held fixed while L grows (the "
              "force RMSE then falls with L, as larger cells give more data), one fit per basis "
              "size over every L, against the observation set's Table 1 rate. The papers do not "
              "say which reading their figures use.")
        _write_csv(out / "slopes_fixed_basis.csv", fixed,
                   ["variable", "basis_size", *cols, "slope", "ci_low", "ci_high", "n_points",
                    "predicted", "verdict"])
        doc.links([("slopes_fixed_basis.csv", "slopes_fixed_basis.csv")])
        doc.table(["variable", "basis", *[SHORT.get(c, c) for c in cols], "slope", "95 % CI", "n",
                   "predicted", "verdict"],
                  [[r["variable"], r["basis_size"], *[r.get(c, "") for c in cols], r["slope"],
                    f"[{_fmt(r['ci_low'])}, {_fmt(r['ci_high'])}]" if np.isfinite(r["slope"]) else "—",
                    r["n_points"], r["predicted"], r["verdict"]] for r in fixed])

    # ---- paper side by side
    paper_rows = _paper_table2_rows(ds) if counts["done"] else []
    if paper_rows:
        doc.h(2, f"P1 Table 2 side by side (L = {PAPER_L_R0} r0)")
        doc.p(f"The paper's published numbers ({_paper.P1_TABLE2_SOURCE}; typed in sweep/paper_values.py) "
              "next to this store's fits at the same L. The paper's ε_E is given in meV (read as "
              "meV/atom); its T is the fit time of Julia ACE1 on the authors' machine, this store's T "
              "the least-squares solve time (fit_time) on this one.")
        doc.table(["source", "#B", "#O", "ε_E (meV/atom)", "ε_F (eV/Å)", "ε_FC_hom (%)", "T (s)"],
                  paper_rows)

    # ---- fit quality
    doc.h(2, "Fit quality (as P1 Table 2)")
    fq = fit_quality_table(ds) if counts["done"] else []
    fq_labels = [k for k in (fq[0] if fq else {}) if k in pdims]
    fq_cols = fq_labels + [c for c, _, _ in _FIT_COLUMNS if c in ds.data_vars] + ["points_done", "points"]
    _write_csv(out / "fit_quality.csv", fq, fq_cols)
    doc.p("#B: realised number of ACE basis functions; #obs: number of observations (rows of the "
          "least-squares system); ε_E, ε_F: test-set RMSE of energy and forces; ε_FC_hom: relative "
          "force-constant error on the homogeneous lattice; T fit: fit time. Medians over the "
          "simulation cells (n_D) sharing the fit.")
    doc.links([("fit_quality.csv", "fit_quality.csv")])
    if fq:
        heads = [SHORT.get(d, d) if d != "L" else "L (r0)" for d in fq_labels]
        heads += [f"{h} ({u})" if u != "1" else h for c, h, u in _FIT_COLUMNS if c in ds.data_vars]
        heads += ["done"]
        doc.table(heads, [[r.get(d, "") for d in fq_labels]
                          + [r.get(c, np.nan) for c, _, _ in _FIT_COLUMNS if c in ds.data_vars]
                          + [f"{r['points_done']}/{r['points']}"] for r in fq])
    else:
        doc.p("No finished fits yet.")

    # ---- figures
    doc.h(2, "Figures")
    n_fig = 0
    if counts["done"] and "L" in ds.dims and "rmse_forces" in ds.data_vars:
        doc.h(3, "Error vs RMSE per L (P1 Figs. 3, 6, 8)")
        fig_dims = [d for d in pdims if d not in ("L", "basis_size")]
        for labels, sub in _iter_groups(ds, fig_dims):
            if not np.asarray(sub.sweep.done.values).any():
                continue
            name = f"error-vs-rmse_{_slug('_'.join(f'{SHORT.get(k, k)}{v}' for k, v in labels.items()))}.png"
            fig = plot_error_vs_rmse(sub, variables=rate_variables(sub),
                                     title=f"{experiment}: {_group_label(labels)}")
            _save(fig, figdir / name)
            n_fig += 1
            doc.img(f"figures/{name}", f"Geometry and energy error vs RMSE forces, {_group_label(labels)}")
    if counts["done"] and "L" in ds.dims:
        src = matched if matched is not None else ds
        curves = curve_dimension(src)
        doc.h(3, "Error vs L per " + ("observation set (P2 Figs. 5, 8, 11)" if curves == "observations"
                                      else "n_D (P1 Figs. 4, 7, 9)"))
        fig_dims = [d for d in pdims if d in src.dims and d not in ("L", curves, "basis_size")]
        for labels, sub in _iter_groups(src, fig_dims):
            if not np.asarray(sub.sweep.done.values).any():
                continue
            acc = ""
            if "rmse_target" in sub:
                t = np.asarray(sub["rmse_target"].values, float)
                t = t[np.isfinite(t)]
                acc = f", RMSE ≈ {_fmt(float(np.median(t)), 2)} eV/Å" if t.size else ""
            name = f"error-vs-L_{_slug('_'.join(f'{SHORT.get(k, k)}{v}' for k, v in labels.items()))}.png"
            fig = plot_error_vs_L(sub, curves=curves, variables=rate_variables(sub),
                                  title=f"{experiment}: {_group_label(labels)}{acc}", regimes=regimes)
            _save(fig, figdir / name)
            n_fig += 1
            doc.img(f"figures/{name}", f"Geometry and energy error vs L, {_group_label(labels)}{acc}; "
                                       "dashed: predicted rate of the store's regime")
    if not n_fig:
        doc.p("No figures: no finished points yet.")

    # ---- P2: core vs far field
    if is_p2_store(ds) and counts["done"] and "L" in ds.dims:
        _core_far_section(doc, ds, matched, out, figdir, experiment)

    doc.h(2, "Files")
    files = [("index.html", "index.html"), ("slopes.csv", "slopes.csv"), ("fit_quality.csv", "fit_quality.csv")]
    if (out / "core_far_slopes.csv").exists() and is_p2_store(ds):
        files += [("core_far_slopes.csv", "core_far_slopes.csv"),
                  ("core_far_points.csv", "core_far_points.csv")]
    if failures:
        files.append(("failures.csv", "failures.csv"))
    doc.links(files)

    index_md = out / "index.md"
    index_md.write_text(doc.markdown(), encoding="utf-8")
    (out / "index.html").write_text(doc.html(title), encoding="utf-8")
    return index_md


def default_out_dir(store: str | Path) -> Path:
    """``runs/x.zarr`` → ``runs/x-report``: the store path without ``.zarr``, plus ``-report``."""
    p = Path(str(store).rstrip("/"))
    stem = p.name[: -len(".zarr")] if p.name.endswith(".zarr") else p.name
    return p.with_name(stem + "-report")


def main_report(store: str, out: str | None = None) -> int:
    """Entry point of ``sweep report STORE [--out DIR]``.

    Parameters
    ----------
    store : str
        Path of the Zarr store.
    out : str, optional
        Output directory (default: :func:`default_out_dir` of ``store``).

    Returns
    -------
    int
        Exit status: 0 on success, 2 when the store cannot be opened.
    """
    if not Path(store).exists():
        print(f"sweep report: no store at {store!r}", file=sys.stderr)
        return 2
    out_dir = Path(out) if out else default_out_dir(store)
    try:
        ds = xr.open_zarr(store)
    except Exception as exc:  # noqa: BLE001 - any failure to read is reported to the user
        print(f"sweep report: cannot open {store!r} as a Zarr store: {exc}", file=sys.stderr)
        return 2
    index = write_report(ds, out_dir, source=str(store))
    c = ds.sweep.counts()
    print(f"report written to {index} ({c['done']} done, {c['pending']} pending, {c['failed']} failed)")
    return 0
