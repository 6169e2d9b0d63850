"""The functions Dask runs: thin adapters from spec parameters to the kernels' stages.

Each takes only picklable arguments (numbers, dicts, kernel dataclasses) and builds whatever
unpicklable objects it needs (pyace evaluators) inside the worker.
"""

from __future__ import annotations

import math
import os
import socket

from kernels import point_defects as pdk
from kernels.ace import ACEBasis, ace_potential_config
from kernels.diamond import DIAMOND
from kernels.eam import zhou2001_tungsten
from kernels.errors import STENCILS
from kernels.finnis_sinclair import wang2014_tungsten
from kernels.lattice import TRIANGULAR
from kernels.least_squares import DEFAULT_ENERGY_WEIGHTING, DEFAULT_WEIGHT_FORM
from kernels.nrl_tb import bernstein2000_si_sp, quip_potential_class
from kernels.planar_basis import DEFAULT_BASIS_COUNT, independent_truncation, n_planar_independent
from kernels.point_defect_slices import SliceFactors, fit_from_factors, slice_factors

__all__ = ["REFERENCE_MODELS", "lattice", "simulation", "training", "design", "fit", "point",
           "basis_for", "design_slice", "fit_slice", "fit_union", "point_union", "CRYSTALS",
           "reference_model", "check_reference_available", "relax_options", "fit_conventions", "stencil_reading",
           "superset_for", "planar_counts", "WHOLE_SUPERSET"]

#: Reference models by spec name → constructor (keyword options from the spec's [reference]).
REFERENCE_MODELS = {"fs-w-wang2014": wang2014_tungsten,
                    "eam-w-zhou2001": zhou2001_tungsten,
                    "nrl-tb-si-sp-bernstein2000": bernstein2000_si_sp}

#: Reference models that need an optional extra → the check that raises ImportError (naming the
#: extra) when it is missing.
REFERENCE_MODEL_EXTRAS = {"nrl-tb-si-sp-bernstein2000": quip_potential_class}


def check_reference_available(reference) -> None:
    """Raise ImportError naming the optional extra when the spec's reference model needs one
    that is not installed (``reference``: a model name or a ``[reference]`` table)."""
    name = reference["model"] if isinstance(reference, dict) else reference
    check = REFERENCE_MODEL_EXTRAS.get(name)
    if check is not None:
        check()


#: Lattices by spec name (``crystal`` arguments below; "triangular" when omitted).
CRYSTALS = {"triangular": TRIANGULAR, "diamond": DIAMOND}


def reference_model(reference):
    """The reference model of a spec: its name, or its ``[reference]`` table (``model`` plus
    the constructor's keyword options, e.g. ``kpoint_length_A``)."""
    if isinstance(reference, dict):
        opts = {k: v for k, v in reference.items() if k != "model"}
        return REFERENCE_MODELS[reference["model"]](**opts)
    return REFERENCE_MODELS[reference]()


def relax_options(relax: dict) -> pdk.RelaxOptions:
    """The kernels' relaxation settings from a spec's ``[relax]`` table."""
    return pdk.RelaxOptions(relax["fmax_eV_per_A"], relax["max_steps"], relax["optimizer"],
                            relax.get("reference_optimizer", "auto"),
                            relax.get("reference_minimum", "any"))


def _ace_basis(ace: dict, n_functions: int, symbols: list[str]) -> ACEBasis:
    return ACEBasis(ace_potential_config(symbols, n_functions, ace["cutoff_A"],
                                         ace["nradmax_by_orders"], ace["lmax_by_orders"],
                                         ace["radial_basis"]))


#: More functions than any superset of a spec realises (``grid.basis_size`` is at most 20000):
#: pyace then keeps the whole superset spanned by ``nradmax_by_orders``/``lmax_by_orders``.
WHOLE_SUPERSET = 10**6


def superset_for(ace: dict, symbol: str = pdk.SYMBOL) -> ACEBasis:
    """The whole ACE superset of a spec's ``[ace]`` table (one species)."""
    return _ace_basis(ace, WHOLE_SUPERSET, [symbol])


def basis_for(ace: dict, basis_size: int, symbol: str = pdk.SYMBOL, *more_symbols: str
              ) -> ACEBasis:
    """The ACE basis of a spec's ``[ace]`` table at one requested size (functions per
    element) over the species ``symbol`` and ``more_symbols``, read as the table's
    ``basis_count`` says (:data:`kernels.planar_basis.BASIS_COUNTS`; absent: the papers'
    ``"functions"``). For ``"planar-independent"`` the basis is the shortest truncation holding
    ``basis_size`` functions that are linearly independent on planar configurations."""
    if ace.get("basis_count", DEFAULT_BASIS_COUNT) == "planar-independent":
        if more_symbols:
            raise ValueError('basis_count "planar-independent" handles one species only')
        basis_size, _ = independent_truncation(superset_for(ace, symbol), basis_size)
    return _ace_basis(ace, basis_size, [symbol, *more_symbols])


def planar_counts(ace: dict, basis_size: int, symbol: str = pdk.SYMBOL) -> dict:
    """The realised sizes of the basis of one requested size: ``n_planar_independent``, its
    number of functions linearly independent on planar configurations
    (:func:`kernels.planar_basis.n_planar_independent`)."""
    return {"n_planar_independent": n_planar_independent(basis_for(ace, basis_size, symbol),
                                                         superset_for(ace, symbol))}


def lattice(reference: str, crystal: str = "triangular") -> pdk.LatticeReference:
    """r0, bulk energy and force constants of the reference model."""
    return pdk.lattice_reference(reference_model(reference), CRYSTALS[crystal])


def simulation(reference: str, lat: pdk.LatticeReference, size: int, kinds: list[str],
               separation: int, relax: dict, crystal: str = "triangular"
               ) -> pdk.SimulationReference:
    """The reference relaxation of one simulation cell (shared by every fit)."""
    return pdk.simulation_reference(reference_model(reference), lat.r0_A, size, kinds,
                                    separation, relax_options(relax), CRYSTALS[crystal])


def training(reference: str, lat: pdk.LatticeReference, size: int, kind: str, params: dict,
             seed_train: int, seed_test: int, relax: dict, crystal: str = "triangular"
             ) -> pdk.TrainingData:
    """Training and test sets of one training cell (shared by every basis and fit)."""
    return pdk.training_data(reference_model(reference), lat.r0_A, size, kind,
                             params["n_train"], params["n_test"], params["rattle_A"],
                             seed_train, seed_test, relax_options(relax), CRYSTALS[crystal])


def design(ace: dict, basis_size: int, data: pdk.TrainingData,
           crystal: str = "triangular") -> pdk.TrainingRows:
    """Design rows of one training set in one basis (shared by every weight set)."""
    c = CRYSTALS[crystal]
    return pdk.design_rows(basis_for(ace, basis_size, c.symbol), data, c)


def fit_conventions(fit_params: dict) -> dict:
    """The loss conventions of a spec's ``[fit]`` table (:data:`sweep.spec.FIT_OPTIONAL`) as
    keyword arguments of :func:`kernels.dislocations.fit`: ``bulk_energy_row``,
    ``energy_weighting``, ``weight_form`` (a table without them: the defaults)."""
    return {"bulk_energy_row": bool(fit_params.get("bulk_energy_row", False)),
            "energy_weighting": fit_params.get("energy_weighting", DEFAULT_ENERGY_WEIGHTING),
            "weight_form": fit_params.get("weight_form", DEFAULT_WEIGHT_FORM)}


def _point_defect_conventions(fit_params: dict) -> dict:
    """:func:`fit_conventions` as keyword arguments of :func:`kernels.point_defects.fit`: the
    bulk-energy row is ``weight_bulk_energy`` there (None: W_E; 0: no row); ``scale_columns``
    from the table's ``scale_columns`` (absent: true, see
    :data:`sweep.experiments.p1_point_defects.FIT_SCALE_COLUMNS`)."""
    c = fit_conventions(fit_params)
    return {"weight_bulk_energy": None if c.pop("bulk_energy_row") else 0.0,
            "scale_columns": bool(fit_params.get("scale_columns", True)), **c}


def fit(ace: dict, basis_size: int, rows: pdk.TrainingRows, data: pdk.TrainingData,
        lat: pdk.LatticeReference, weights: dict, fit_params: dict
        ) -> tuple[pdk.FitResult, float]:
    """One weighted least-squares fit (shared by every simulation cell), and the rows' build time
    (s), so that points need not fetch the design rows themselves."""
    return pdk.fit(basis_for(ace, basis_size), rows, data, lat, weights["energy"],
                   weights["forces"], fit_params["rtol"],
                   **_point_defect_conventions(fit_params)), rows.time_s


#: Default bound (MB) on one chunk of design rows in :func:`design_slice`; a spec sets another
#: with ``[resources] max_design_chunk_MB``, else the Dask config key
#: ``sweep.design.max_chunk_MB`` (env ``DASK_SWEEP__DESIGN__MAX_CHUNK_MB``) does. It changes no
#: value beyond rounding, so it stays out of the spec's fingerprint.
DESIGN_CHUNK_MB = 256.0


def design_chunk_MB(max_chunk_MB: float | None = None) -> float:
    """The chunk bound of the design stage, MB: the spec's value if it gives one, else the Dask
    config key ``sweep.design.max_chunk_MB``, else :data:`DESIGN_CHUNK_MB`."""
    if max_chunk_MB is not None:
        return float(max_chunk_MB)
    import dask.config  # noqa: PLC0415

    return float(dask.config.get("sweep.design.max_chunk_MB", DESIGN_CHUNK_MB))


def design_slice(ace: dict, basis_sizes: list[int], data: pdk.TrainingData,
                 max_chunk_MB: float | None = None,
                 energy_weighting: str = DEFAULT_ENERGY_WEIGHTING) -> SliceFactors:
    """One pass over a training cell's data for every basis size of a slice: R factors of the
    observation blocks in the largest basis (:func:`kernels.point_defect_slices.slice_factors`),
    holding at most ``max_chunk_MB`` MB of design rows at once (None: see
    :func:`design_chunk_MB`), the energy rows scaled as the spec's ``fit.energy_weighting``
    says.
    """
    sizes = sorted(set(int(b) for b in basis_sizes))
    chunk_MB = design_chunk_MB(max_chunk_MB)
    bases = [basis_for(ace, b) for b in sizes]
    for b in bases[:-1]:  # only their function keys are needed: free their pyace objects
        b.function_keys()
        b.release()
    return slice_factors(bases, data, chunk_MB * 1e6, energy_weighting=energy_weighting)


def fit_slice(ace: dict, basis_sizes: list[int], basis_size: int, factors: SliceFactors,
              lat: pdk.LatticeReference, weights: dict, fit_params: dict,
              observations: str = "E+F") -> tuple[pdk.FitResult, float]:
    """One fit of a slice from its factors (same result as :func:`fit` on the basis's own rows)
    and the pass's time (s)."""
    sizes = sorted(set(int(b) for b in basis_sizes))
    f = fit_from_factors(factors, sizes.index(int(basis_size)), basis_for(ace, basis_size), lat,
                         weights["energy"], weights["forces"], fit_params["rtol"],
                         observations=observations, **_point_defect_conventions(fit_params))
    return f, factors.time_s


def point(ace: dict, basis_size: int, fit_and_time: tuple[pdk.FitResult, float],
          sim: pdk.SimulationReference, lat: pdk.LatticeReference, relax: dict,
          crystal: str = "triangular", geometry: dict | None = None) -> dict:
    """Relax one simulation cell with one fitted model: every stored value of a grid point.
    ``geometry`` is the spec's ``[geometry]`` table (the geometry error's stencil)."""
    fitted, rows_time_s = fit_and_time
    c = CRYSTALS[crystal]
    p = pdk.predict(basis_for(ace, basis_size, c.symbol), fitted.coeffs, sim, lat,
                    relax_options(relax), c, stencil_reading(geometry))
    return point_values(fitted, p, rows_time_s)


def stencil_reading(geometry: dict | None) -> str:
    """The stencil reading of a spec's ``[geometry]`` table (default: the papers' eq. 6.3)."""
    return (geometry or {}).get("stencil", STENCILS[0])


def point_values(fitted, p, rows_time_s: float, force_constant_error_percent=None) -> dict:
    """The common stored values of a grid point (:data:`sweep.store.VARIABLES`) from a fit and
    a prediction of any experiment, plus where it ran. The formation-energy error is NaN when the
    fit did not observe the bulk energy (:data:`sweep.store.FORMATION_ENERGY_NOT_OBSERVED`)."""
    fc = (fitted.force_constant_error_percent if force_constant_error_percent is None
          else force_constant_error_percent)
    return {
        "geometry_error": p.geometry_error_A,
        "energy_error": p.energy_error_eV,
        "formation_energy_error": (p.formation_energy_error_eV if fitted.bulk_energy_observed
                                   else math.nan),
        "rmse_energy": fitted.rmse_energy_meV_per_atom,
        "rmse_forces": fitted.rmse_forces_eV_per_A,
        "force_constant_error": fc,
        "n_basis": fitted.n_basis,
        "rank": fitted.rank,
        "n_observations": fitted.n_observations,
        "fit_time": fitted.fit_time_s,
        "design_time": rows_time_s,
        "predict_time": p.time_s,
        "relax_steps": p.relax_steps,
        "worker_host": socket.gethostname(),
        "slurm_job_id": os.environ.get("SLURM_JOB_ID", ""),
    }


def fit_union(ace: dict, basis_size: int, components: list, lat: pdk.LatticeReference,
              fit_params: dict, crystal: str = "triangular") -> tuple[pdk.FitResult, float, tuple]:
    """One fit on the union of several training cells.

    ``components`` lists ``(name, rows, data, (W_E, W_F))`` per cell. Returns the fit, the
    summed build time (s) of the cells' design rows, and the component names (the order of the
    fit's per-component RMSEs).
    """
    comps = [pdk.TrainingComponent(name, rows, data, float(w[0]), float(w[1]))
             for name, rows, data, w in components]
    c = CRYSTALS[crystal]
    fitted = pdk.fit_union(basis_for(ace, basis_size, c.symbol), comps, lat, fit_params["rtol"],
                           crystal=c, **_point_defect_conventions(fit_params))
    return fitted, sum(c.rows.time_s for c in comps), tuple(c.name for c in comps)


def point_union(ace: dict, basis_size: int, fit_time_names: tuple, sim: pdk.SimulationReference,
                lat: pdk.LatticeReference, relax: dict, crystal: str = "triangular",
                geometry: dict | None = None) -> dict:
    """:func:`point` for a union fit, plus each component's test RMSEs
    (``rmse_energy_<name>`` in meV/atom, ``rmse_forces_<name>`` in eV/Å)."""
    fitted, rows_time_s, names = fit_time_names
    values = point(ace, basis_size, (fitted, rows_time_s), sim, lat, relax, crystal, geometry)
    for name, e, f in zip(names, fitted.rmse_energy_by_component_meV_per_atom,
                          fitted.rmse_forces_by_component_eV_per_A):
        values[f"rmse_energy_{name}"] = e
        values[f"rmse_forces_{name}"] = f
    return values
