"""The functions Dask runs: thin adapters from spec parameters to the kernels' stages.

Each takes only picklable arguments (numbers, dicts, kernel dataclasses) and builds whatever
unpicklable objects it needs (pyace evaluators) inside the worker.
"""

from __future__ import annotations

import os
import socket

from kernels import point_defects as pdk
from kernels.ace import ACEBasis, ace_potential_config
from kernels.finnis_sinclair import wang2014_tungsten
from kernels.point_defect_slices import SliceFactors, fit_from_factors, slice_factors

__all__ = ["REFERENCE_MODELS", "lattice", "simulation", "training", "design", "fit", "point",
           "basis_for", "design_slice", "fit_slice"]

#: Reference models by spec name → constructor.
REFERENCE_MODELS = {"fs-w-wang2014": wang2014_tungsten}


def _relax_options(relax: dict) -> pdk.RelaxOptions:
    return pdk.RelaxOptions(relax["fmax_eV_per_A"], relax["max_steps"], relax["optimizer"])


def basis_for(ace: dict, basis_size: int) -> ACEBasis:
    """The ACE basis of a spec's ``[ace]`` table at one requested size."""
    return ACEBasis(ace_potential_config([pdk.SYMBOL], basis_size, ace["cutoff_A"],
                                         ace["nradmax_by_orders"], ace["lmax_by_orders"],
                                         ace["radial_basis"]))


def lattice(reference: str) -> pdk.LatticeReference:
    """r0, bulk energy and force constants of the reference model."""
    return pdk.lattice_reference(REFERENCE_MODELS[reference]())


def simulation(reference: str, lat: pdk.LatticeReference, size: int, kinds: list[str],
               separation: int, relax: dict) -> pdk.SimulationReference:
    """The reference relaxation of one simulation cell (shared by every fit)."""
    return pdk.simulation_reference(REFERENCE_MODELS[reference](), lat.r0_A, size, kinds,
                                    separation, _relax_options(relax))


def training(reference: str, lat: pdk.LatticeReference, size: int, kind: str, params: dict,
             seed_train: int, seed_test: int, relax: dict) -> pdk.TrainingData:
    """Training and test sets of one training cell (shared by every basis and fit)."""
    return pdk.training_data(REFERENCE_MODELS[reference](), lat.r0_A, size, kind,
                             params["n_train"], params["n_test"], params["rattle_A"],
                             seed_train, seed_test, _relax_options(relax))


def design(ace: dict, basis_size: int, data: pdk.TrainingData) -> pdk.TrainingRows:
    """Design rows of one training set in one basis (shared by every weight set)."""
    return pdk.design_rows(basis_for(ace, basis_size), data)


def fit(ace: dict, basis_size: int, rows: pdk.TrainingRows, data: pdk.TrainingData,
        lat: pdk.LatticeReference, weights: dict, fit_params: dict
        ) -> tuple[pdk.FitResult, float]:
    """One weighted least-squares fit (shared by every simulation cell), and the rows' build time
    (s), so that points need not fetch the design rows themselves."""
    return pdk.fit(basis_for(ace, basis_size), rows, data, lat, weights["energy"],
                   weights["forces"], fit_params["rtol"]), rows.time_s


#: Default bound (MB) on one chunk of design rows in :func:`design_slice`; set another with the
#: Dask config key ``sweep.design.max_chunk_MB`` (env ``DASK_SWEEP__DESIGN__MAX_CHUNK_MB``).
#: Not a spec field: it changes no value beyond rounding, so it stays out of the fingerprint.
DESIGN_CHUNK_MB = 256.0


def design_slice(ace: dict, basis_sizes: list[int], data: pdk.TrainingData
                 ) -> SliceFactors:
    """One pass over a training cell's data for every basis size of a slice: R factors of the
    observation blocks in the largest basis (:func:`kernels.point_defect_slices.slice_factors`).
    """
    import dask.config  # noqa: PLC0415

    sizes = sorted(set(int(b) for b in basis_sizes))
    chunk_MB = float(dask.config.get("sweep.design.max_chunk_MB", DESIGN_CHUNK_MB))
    bases = [basis_for(ace, b) for b in sizes]
    for b in bases[:-1]:  # only their function keys are needed: free their pyace objects
        b.function_keys()
        b.release()
    return slice_factors(bases, data, chunk_MB * 1e6)


def fit_slice(ace: dict, basis_sizes: list[int], basis_size: int, factors: SliceFactors,
              lat: pdk.LatticeReference, weights: dict, fit_params: dict,
              observations: str = "E+F") -> tuple[pdk.FitResult, float]:
    """One fit of a slice from its factors (same result as :func:`fit` on the basis's own rows)
    and the pass's time (s)."""
    sizes = sorted(set(int(b) for b in basis_sizes))
    f = fit_from_factors(factors, sizes.index(int(basis_size)), basis_for(ace, basis_size), lat,
                         weights["energy"], weights["forces"], fit_params["rtol"],
                         observations=observations)
    return f, factors.time_s


def point(ace: dict, basis_size: int, fit_and_time: tuple[pdk.FitResult, float],
          sim: pdk.SimulationReference, lat: pdk.LatticeReference, relax: dict) -> dict:
    """Relax one simulation cell with one fitted model: every stored value of a grid point."""
    fitted, rows_time_s = fit_and_time
    p = pdk.predict(basis_for(ace, basis_size), fitted.coeffs, sim, lat, _relax_options(relax))
    return {
        "geometry_error": p.geometry_error_A,
        "energy_error": p.energy_error_eV,
        "formation_energy_error": p.formation_energy_error_eV,
        "rmse_energy": fitted.rmse_energy_meV_per_atom,
        "rmse_forces": fitted.rmse_forces_eV_per_A,
        "force_constant_error": fitted.force_constant_error_percent,
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

