"""Where a sweep runs: a LocalCluster (default), any running Dask scheduler, or SLURM.

* **local** — a LocalCluster of processes with one thread each (pyace holds the GIL), one per
  core by default, with BLAS pinned to one thread so that n workers use n cores.
* **scheduler address** (``--scheduler tcp://host:8786``) — any existing Dask cluster.
* **slurm** (``--cluster slurm``) — a :class:`dask_jobqueue.SLURMCluster` configured through
  Dask's own config system: the ``jobqueue.slurm.*`` keys (queue, account, cores, memory,
  walltime, interface, job directives, ...; see ``deploy/slurm/jobqueue.yaml``) and this
  project's ``sweep.slurm.*`` keys (minimum/maximum jobs, lifetime margin and stagger);
  command-line flags override both. Workers are adaptive between the minimum and maximum number
  of jobs; each worker is started with ``--lifetime`` below the job's walltime and a
  ``--lifetime-stagger`` so that workers retire gracefully (their results move to other
  workers) before SLURM kills the job, and adaptivity submits replacements. The scheduler
  tolerates worker loss: ``distributed.scheduler.allowed-failures`` is raised so that a task
  whose workers die (walltime, node failure, ``scancel``) is rescheduled instead of failing with
  ``KilledWorker``.

Because a task that outlives every worker's lifetime would be rescheduled for ever, a sweep whose
most expensive task is expected to take longer than the worker lifetime is refused before any job
is submitted: :func:`check_point_duration` (estimate: :func:`estimate_task_seconds`).
"""

from __future__ import annotations

import functools
import json
import os
import re
import sys

__all__ = ["connect", "SINGLE_THREAD_ENV", "add_arguments", "connect_from_args",
           "slurm_cluster", "SlurmSettings", "slurm_settings", "parse_walltime",
           "format_seconds", "worker_lifetime", "estimate_task_seconds", "check_point_duration",
           "estimate_task_bytes", "preflight",
           "PointTooLong", "cluster_provenance", "ALLOWED_FAILURES"]

#: Environment of every worker process: one BLAS/OpenMP thread.
SINGLE_THREAD_ENV = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1",
                     "MKL_NUM_THREADS": "1", "VECLIB_MAXIMUM_THREADS": "1"}

#: ``distributed.scheduler.allowed-failures`` used when the config does not raise it further:
#: how many workers may die while running one task before that task fails with KilledWorker.
#: Deaths from walltime/lifetime, ``scancel`` or lost nodes are not the task's fault; the
#: kernels are deterministic, so a task that really kills its worker fails the same way anyway.
ALLOWED_FAILURES = 10


class PointTooLong(RuntimeError):
    """A task of the sweep is expected to outlive the workers' lifetime."""


# --------------------------------------------------------------------------- client helpers

def _client_class():
    from distributed import Client  # noqa: PLC0415

    class _OwningClient(Client):
        """A Client that also closes the cluster it was made for (jobs are cancelled)."""

        _owned_cluster = None

        def close(self, *args, **kwargs):
            try:
                return super().close(*args, **kwargs)
            finally:
                cluster, self._owned_cluster = self._owned_cluster, None
                if cluster is not None:
                    try:
                        cluster.close()
                    except Exception:  # noqa: BLE001 -- closing is best effort at exit
                        pass

    return _OwningClient


def _own(cluster, info: dict):
    client = _client_class()(cluster)
    client._owned_cluster = cluster
    client.sweep_cluster = info
    return client


def _raise_allowed_failures() -> None:
    import dask  # noqa: PLC0415

    if int(dask.config.get("distributed.scheduler.allowed-failures", 3)) < ALLOWED_FAILURES:
        dask.config.set({"distributed.scheduler.allowed-failures": ALLOWED_FAILURES})


def connect(workers: int | None = None, scheduler: str | None = None,
            dashboard_address: str = ":8787"):
    """A ``distributed.Client`` on a new LocalCluster or on the scheduler at ``scheduler``.

    Parameters
    ----------
    workers : int, optional
        Number of local worker processes (default: the number of cores).
    scheduler : str, optional
        Address of a running scheduler, e.g. ``tcp://host:8786``; then ``workers`` is ignored.
    dashboard_address : str
        Where the local cluster serves its dashboard (":0" picks a free port).

    Closing the returned client also closes the LocalCluster it started.
    """
    from distributed import Client, LocalCluster  # noqa: PLC0415

    if scheduler:
        client = Client(scheduler)
        client.sweep_cluster = {"kind": "scheduler", "address": scheduler}
        return client
    _raise_allowed_failures()
    n = workers or os.cpu_count() or 1
    cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                           dashboard_address=dashboard_address, env=dict(SINGLE_THREAD_ENV))
    return _own(cluster, {"kind": "local", "workers": n, "threads_per_worker": 1})


# --------------------------------------------------------------------------- time helpers

def parse_walltime(text: str | int | float) -> float:
    """Seconds of a SLURM time: ``MM``, ``MM:SS``, ``HH:MM:SS``, ``D-HH``, ``D-HH:MM[:SS]``;
    also Dask-style durations (``"55m"``, ``"2h"``, ``"90s"``) and plain numbers (seconds)."""
    if isinstance(text, (int, float)):
        return float(text)
    s = str(text).strip()
    m = re.fullmatch(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?", s)
    if m:
        days, a, b, c = m.groups()
        parts = [int(x) for x in (a, b, c) if x is not None]
        if days is not None:  # D-HH[:MM[:SS]]
            parts += [0] * (3 - len(parts))
            h, mi, se = parts
            return float(int(days) * 86400 + h * 3600 + mi * 60 + se)
        if len(parts) == 1:
            return float(parts[0] * 60)  # SLURM: a bare number is minutes
        if len(parts) == 2:
            return float(parts[0] * 60 + parts[1])
        return float(parts[0] * 3600 + parts[1] * 60 + parts[2])
    from dask.utils import parse_timedelta  # noqa: PLC0415

    try:
        return float(parse_timedelta(s))
    except (ValueError, KeyError):
        raise ValueError(f"cannot read {text!r} as a time (use HH:MM:SS, D-HH:MM:SS or e.g. "
                         "'55m')") from None


def format_seconds(seconds: float) -> str:
    """``HH:MM:SS`` (what SLURM and dask-worker both accept)."""
    s = max(0, int(round(seconds)))
    return f"{s // 3600:02d}:{s % 3600 // 60:02d}:{s % 60:02d}"


def worker_lifetime(walltime_s: float, margin_s: float | None = None,
                    stagger_s: float | None = None) -> tuple[float, float]:
    """``(lifetime, stagger)`` in seconds for workers of jobs with ``walltime_s``.

    A worker stops somewhere in ``lifetime ± stagger``; ``lifetime + stagger + margin`` equals the
    walltime, so even the last worker has ``margin`` seconds to hand its results over before
    SLURM kills the job. Defaults: stagger 5 % of the walltime (at most 5 min), margin 10 % (at
    least 1 min, at most 15 min, at most a third of the walltime).
    """
    if walltime_s <= 0:
        raise ValueError(f"walltime must be positive, got {walltime_s} s")
    if stagger_s is None:
        stagger_s = min(0.05 * walltime_s, 300.0)
    if margin_s is None:
        margin_s = min(max(0.10 * walltime_s, 60.0), 900.0, walltime_s / 3)
    lifetime = walltime_s - margin_s - stagger_s
    if lifetime <= stagger_s or lifetime <= 0:
        raise ValueError(f"walltime {format_seconds(walltime_s)} leaves no worker lifetime after "
                         f"a margin of {margin_s:.0f} s and a stagger of {stagger_s:.0f} s")
    return lifetime, stagger_s


# --------------------------------------------------------------------------- SLURM

class SlurmSettings(dict):
    """Resolved SLURM settings (the SLURMCluster keyword arguments plus adaptivity/lifetime)."""


def _cfg(key: str, default=None):
    import dask  # noqa: PLC0415

    return dask.config.get(key, default=default)


def slurm_settings(*, cores=None, memory=None, processes=None, walltime=None, queue=None,
                   account=None, interface=None, min_jobs=None, max_jobs=None,
                   job_directives=(), lifetime=None, lifetime_stagger=None,
                   lifetime_margin=None, log_directory=None, local_directory=None,
                   python=None) -> SlurmSettings:
    """Dask config (``jobqueue.slurm.*``, ``sweep.slurm.*``) overridden by the given values.

    Returns the keyword arguments for :class:`dask_jobqueue.SLURMCluster` under ``"cluster"``,
    and ``minimum_jobs``, ``maximum_jobs``, ``walltime_s``, ``lifetime_s``, ``stagger_s``.
    """
    def pick(value, key, default=None):
        if value is not None:
            return value
        got = _cfg(key, None)  # dask-jobqueue's defaults hold explicit nulls
        return default if got is None else got

    if processes is None and cores is not None:
        processes = cores  # --cores alone: one single-threaded worker per core
    cores = pick(cores, "jobqueue.slurm.cores", 1)
    processes = pick(processes, "jobqueue.slurm.processes", None) or cores
    if not 1 <= int(processes) <= int(cores):
        raise ValueError(f"need 1 <= processes <= cores per job, got processes {processes}, "
                         f"cores {cores}")
    memory = pick(memory, "jobqueue.slurm.memory", None)
    if memory is None:
        memory = "2GB"
    walltime = pick(walltime, "jobqueue.slurm.walltime", "00:30:00")
    walltime_s = parse_walltime(walltime)
    margin = pick(lifetime_margin, "sweep.slurm.lifetime-margin", None)
    stagger = pick(lifetime_stagger, "sweep.slurm.lifetime-stagger", None)
    life, stag = worker_lifetime(walltime_s, None if margin is None else parse_walltime(margin),
                                 None if stagger is None else parse_walltime(stagger))
    life_override = pick(lifetime, "sweep.slurm.lifetime", None)
    if life_override is not None:
        life = parse_walltime(life_override)
        if life + stag >= walltime_s:
            raise ValueError(f"worker lifetime {format_seconds(life)} + stagger "
                             f"{format_seconds(stag)} must stay below the walltime "
                             f"{format_seconds(walltime_s)}")
    min_jobs = int(pick(min_jobs, "sweep.slurm.minimum-jobs", 0))
    max_jobs = int(pick(max_jobs, "sweep.slurm.maximum-jobs", 4))
    if min_jobs < 0 or max_jobs < 1 or min_jobs > max_jobs:
        raise ValueError(f"need 0 <= min-jobs <= max-jobs and max-jobs >= 1, got min-jobs "
                         f"{min_jobs}, max-jobs {max_jobs}")

    extra_args = list(_cfg("jobqueue.slurm.worker-extra-args", []) or [])
    if not any(str(a) == "--lifetime" or str(a).startswith("--lifetime=") for a in extra_args):
        extra_args += ["--lifetime", f"{int(life)}s", "--lifetime-stagger", f"{int(stag)}s"]
    else:  # the config sets its own lifetime: believe it for the duration check
        flat = [x for a in map(str, extra_args) for x in a.split("=", 1)]
        for a, b in zip(flat, flat[1:]):
            if a == "--lifetime":
                life = parse_walltime(b)
            elif a == "--lifetime-stagger":
                stag = parse_walltime(b)
    prologue = list(_cfg("jobqueue.slurm.job-script-prologue", []) or [])
    for k, v in SINGLE_THREAD_ENV.items():
        if not any(f"{k}=" in line for line in prologue):
            prologue.append(f"export {k}={v}")
    directives = list(_cfg("jobqueue.slurm.job-extra-directives", []) or [])
    directives += [d for d in job_directives if d not in directives]

    kwargs = {"cores": int(cores), "processes": int(processes), "memory": memory,
              "walltime": format_seconds(walltime_s), "worker_extra_args": extra_args,
              "job_script_prologue": prologue, "job_extra_directives": directives}
    for name, value in (("queue", queue), ("account", account), ("interface", interface),
                        ("log_directory", log_directory), ("local_directory", local_directory),
                        ("python", python)):
        if value is not None:  # otherwise SLURMCluster reads jobqueue.slurm.* itself
            kwargs[name] = value
    return SlurmSettings(cluster=kwargs, minimum_jobs=min_jobs, maximum_jobs=max_jobs,
                         walltime_s=walltime_s, lifetime_s=life, stagger_s=stag)


def slurm_cluster(settings: SlurmSettings):
    """Start a SLURMCluster from :func:`slurm_settings` and make it adaptive.

    Returns a Client that cancels the jobs when it is closed.
    """
    from dask_jobqueue import SLURMCluster  # noqa: PLC0415

    _raise_allowed_failures()
    cluster = SLURMCluster(**settings["cluster"])
    # wait_count: a worker must be idle for this many adapt intervals before it is retired, which
    # keeps adaptivity from cycling jobs between the stages of the graph.
    cluster.adapt(minimum_jobs=settings["minimum_jobs"], maximum_jobs=settings["maximum_jobs"],
                  interval=_cfg("sweep.slurm.adapt-interval", "2s"),
                  wait_count=int(_cfg("sweep.slurm.adapt-wait-count", 10)))
    info = {"kind": "slurm", "minimum_jobs": settings["minimum_jobs"],
            "maximum_jobs": settings["maximum_jobs"], "walltime_s": settings["walltime_s"],
            "lifetime_s": settings["lifetime_s"], "stagger_s": settings["stagger_s"],
            "allowed_failures": int(_cfg("distributed.scheduler.allowed-failures")),
            "job_script": cluster.job_script()}
    info.update({k: v for k, v in settings["cluster"].items()
                 if k not in ("job_script_prologue",)})
    return _own(cluster, info)


# --------------------------------------------------------------------------- duration check

#: Rough cost model (seconds per unit of work) of each stage, measured on a 2-core x86 machine
#: and rounded up; override with the ``sweep.cost.<stage>`` config keys. Units: simulation —
#: atom × relaxation step with the reference model; training — atom of the training cell ×
#: (structures + relaxation steps); design — atom × structure × basis function; fit —
#: observation × basis² (QR), plus 10⁷ × basis for the force constants; point — atom × step ×
#: basis function. The quick spec's tasks took ≤ 8 s each; its estimates are ≤ 12 s.
#: Experiments whose design stage is one pass per (defect, L) slice
#: (:attr:`sweep.experiment.Experiment.slice_design`) use instead: design_slice — atom ×
#: structure × basis function of the slice's largest basis (chain-rule rows: 0.3–0.6 ms per
#: atom at 2,000–2,849 functions on one loaded core, ≈ 2e-7 s per unit), plus flop — one flop
#: of the dense factorisations on one core (LAPACK: 15–25 GFLOP/s measured, loaded to idle;
#: 1e-10 s rounded up) for the streamed R factor of the training rows (2 m B² for m rows) in
#: the design stage, and for folding the blocks (2 (n_train + 1) B²) and the pivoted QR of the
#: B × B factor (4B³/3) in a fit.
COST_PER_UNIT = {"simulation": 5e-5, "training": 1e-4, "design": 2e-5, "fit": 1e-9,
                 "point": 1e-6, "design_slice": 3e-7, "flop": 1e-10}
#: The config keys the slice model reads for its design and fit estimates.
SLICE_COST_KEYS = {"design": "sweep.cost.design_slice / sweep.cost.flop",
                   "fit": "sweep.cost.fit / sweep.cost.flop"}
#: Fixed overhead per task (imports, pyace basis construction), seconds.
COST_OVERHEAD = {"simulation": 1.0, "training": 1.0, "design": 2.0, "fit": 1.0, "point": 1.0}


def _atoms_and_components(spec) -> tuple[float, float, float]:
    """(atoms of the simulation cell, atoms of one training configuration at the largest L,
    force components per atom in the rows) as the experiment declares them
    (:attr:`sweep.experiment.Experiment.cell_atoms`, ``force_components``), else N^d, L^d, d."""
    exp = spec.definition
    dim = int(getattr(exp, "spatial_dimension", 2))
    N, L = spec.params["simulation"]["size"], max(spec.grid["L"])
    atoms = getattr(exp, "cell_atoms", None)
    k = getattr(exp, "force_components", None) or dim
    if atoms is None:
        return float(N) ** dim, float(L) ** dim, float(k)
    return float(atoms(spec, "simulation", N)), float(atoms(spec, "training", L)), float(k)


#: Evidence iterations an ARD fit is costed at (scikit-learn's default ``max_iter``; the
#: iteration usually runs to it), each ≈ 2 B³ flops (Cholesky, inverse and products of
#: :func:`kernels.ard.solve_ard_reduced`).
ARD_ITERATIONS = 300


def estimate_task_seconds(spec, point=None) -> dict:
    """Expected duration (s) of each stage's task for the most expensive grid point of ``spec``
    (or for ``point``, a dict of grid labels). A rough model: relaxation steps scale with the
    linear cell size, work with atoms × basis size, factorisations with their flops; good to a
    factor of a few, which is what the lifetime check needs. For slice experiments the design
    task is one pass in the slice's largest basis that factors the training rows (and the test
    rows, when the experiment's cells declare their atoms: the dislocation cells), and a fit
    solves from those factors (ARD: :data:`ARD_ITERATIONS` iterations of 2 B³ flops)."""
    p = spec.params
    N = p["simulation"]["size"]
    Ls = [point["L"]] if point else list(spec.grid["L"])
    Bs = [point["basis_size"]] if point else list(spec.grid["basis_size"])
    L, B = max(Ls), max(Bs)
    n_train = p["training"]["n_train"]
    n_struct = n_train + p["training"]["n_test"]
    steps_sim = min(p["relax"]["max_steps"], 5 * N + 10)
    steps_train = min(p["relax"]["max_steps"], 3 * L + 10)
    atoms_sim, atoms_train = N * N, L * L
    declared = getattr(spec.definition, "cell_atoms", None) is not None
    if declared:
        atoms_sim, _, k = _atoms_and_components(spec)
        atoms_train = float(spec.definition.cell_atoms(spec, "training", L))
    else:
        k = 2.0

    def cost(stage):
        return float(_cfg(f"sweep.cost.{stage}", COST_PER_UNIT[stage]))

    work = {"simulation": atoms_sim * steps_sim,
            "training": atoms_train * (n_struct + steps_train),
            "design": atoms_train * n_struct * B,
            "fit": (n_train * (1 + 2 * atoms_train)) * B * B + 1e7 * B,
            "point": atoms_sim * steps_sim * B}
    est = {s: COST_OVERHEAD[s] + cost(s) * w for s, w in work.items()}
    if getattr(spec.definition, "slice_design", False):
        B_slice = max(spec.grid["basis_size"])  # the pass is in the slice's largest basis
        factored = n_struct if declared else n_train
        rows = factored * (1 + k * atoms_train)
        est["design"] = (COST_OVERHEAD["design"]
                         + cost("design_slice") * atoms_train * n_struct * B_slice
                         + cost("flop") * 2.0 * rows * B_slice ** 2)
        est["fit"] = (COST_OVERHEAD["fit"] + cost("fit") * 1e7 * B
                      + cost("flop") * (2.0 * (n_train + 1) * B ** 2 + 4.0 * B ** 3 / 3))
        if p.get("fit", {}).get("solver") == "ard":
            est["fit"] += cost("flop") * ARD_ITERATIONS * 2.0 * B ** 3
        if declared:  # the test virials: one evaluation of the fitted model per test config
            est["fit"] += cost("point") * atoms_train * p["training"]["n_test"] * B
    return est


#: Rough bytes per atom a relaxation holds (positions, forces, neighbour lists, optimizer
#: history); bytes per design-matrix or factor entry (float64).
BYTES_PER_ATOM = 4096
BYTES_PER_ENTRY = 8


def estimate_task_bytes(spec) -> dict:
    """Expected peak memory (bytes) of each stage's task for the largest grid point of
    ``spec``, as rough as :func:`estimate_task_seconds`: relaxations by their atoms; with slice
    factors (:attr:`sweep.experiment.Experiment.slice_design`) the design pass by its chunk bound
    (``resources.max_design_chunk_MB`` when the spec has it, else the whole matrix; at least one
    configuration's rows) plus its (B + 1)² factors and the training data it reads, and a fit by
    its factors, the data and, for ARD, the six B × B work arrays of
    :func:`kernels.ard.solve_ard_reduced`; otherwise the design task by one cell's whole rows
    (training and test) and a fit by four copies of the rows of every cell it stacks
    (:attr:`sweep.experiment.Experiment.cells_per_fit`): the rows themselves, the weighted
    stack, and the column scaling's and the pivoted QR's copies of it. Atoms per cell and force
    components per atom as the experiment declares them (``cell_atoms``, ``force_components``;
    else N^d, L^d and d)."""
    p = spec.params
    exp = spec.definition
    B = max(spec.grid["basis_size"])
    atoms_sim, atoms_train, k = _atoms_and_components(spec)
    n_train, n_test = p["training"]["n_train"], p["training"]["n_test"]
    rows_per_config = 1 + k * atoms_train
    factors = BYTES_PER_ENTRY * 2.0 * B * B
    declared = getattr(exp, "cell_atoms", None) is not None
    # the training stage: by its relaxations, or (declared cells) one relaxation plus the sets
    # it returns, which the design and fit stages then read: positions and forces, 6 floats
    # per atom and configuration
    sets = BYTES_PER_ENTRY * 6.0 * atoms_train * (n_train + n_test)
    data = (BYTES_PER_ATOM * atoms_train + sets if declared
            else BYTES_PER_ATOM * atoms_train * (n_train + n_test))
    if getattr(exp, "slice_design", False):
        whole = BYTES_PER_ENTRY * n_train * rows_per_config * B
        chunk_MB = p.get("resources", {}).get("max_design_chunk_MB")
        if chunk_MB is None and declared:  # the dislocation pass always streams
            from .tasks import design_chunk_MB  # noqa: PLC0415

            chunk_MB = design_chunk_MB()
        one_config = BYTES_PER_ENTRY * rows_per_config * (B + 1)
        chunk = max(min(whole, chunk_MB * 1e6) if chunk_MB else whole, one_config)
        design = chunk + factors
        fit = factors + BYTES_PER_ENTRY * (n_train + 1) * B
        if declared:  # the pass and the fit (test virials) read the training sets
            # a chunk's rows are held twice: as built and in the nested column order
            design += chunk + sets
            fit += sets
        if p.get("fit", {}).get("solver") == "ard":
            fit += BYTES_PER_ENTRY * 6.0 * B * B
    else:
        per_cell = BYTES_PER_ENTRY * (n_train + n_test) * rows_per_config * B
        cells = int(exp.cells_per_fit(spec)) if getattr(exp, "cells_per_fit", None) else 1
        design = per_cell
        fit = 4.0 * cells * per_cell
    return {"simulation": BYTES_PER_ATOM * atoms_sim,
            "training": data,
            "design": design,
            "fit": fit,
            "point": BYTES_PER_ATOM * atoms_sim + BYTES_PER_ENTRY * B * atoms_sim}


def _total_memory() -> float:
    import psutil  # noqa: PLC0415 - a dependency of distributed

    return float(psutil.virtual_memory().total)


@functools.lru_cache(maxsize=32)
def superset_size(species: tuple, cutoff_A: float, nradmax_by_orders: tuple,
                  lmax_by_orders: tuple, radial_basis: str) -> int:
    """Functions per species of the whole ACE superset of an ``[ace]`` table: the largest
    ``basis_size`` it realises (pyace truncates the superset to a requested size and silently
    returns the whole superset when asked for more)."""
    from kernels.ace import ACEBasis, ace_potential_config  # noqa: PLC0415

    # far above any superset: pyace then keeps every function of it
    config = ace_potential_config(list(species), 10**7, cutoff_A, list(nradmax_by_orders),
                                  list(lmax_by_orders), radial_basis)
    # pyace's n_functions counts every element's block; the blocks of a multi-species basis
    # built from one nradmax/lmax table are the same size, and basis_size counts one of them
    return int(ACEBasis(config).n_functions) // len(species)


def check_basis_sizes(spec) -> int | None:
    """Refuse a ``basis_size`` that the spec's ``[ace]`` superset cannot realise.

    Returns the functions per species that the superset is known to realise (for several
    species the one-species count when that already covers the grid), or None for an experiment
    that does not declare its species. Raises :class:`sweep.spec.SpecError` naming the sizes, what the
    superset realises and what to change; without this, the fits of every larger size would all
    be the superset's, stored under different labels.
    """
    from .experiment import EXPERIMENTS  # noqa: PLC0415
    from .spec import SpecError  # noqa: PLC0415

    species = getattr(EXPERIMENTS.get(spec.experiment), "species", None)
    ace = spec.params.get("ace")
    if not species or not ace:
        return None
    table = (float(ace["cutoff_A"]), tuple(ace["nradmax_by_orders"]),
             tuple(ace["lmax_by_orders"]), str(ace.get("radial_basis", "SBessel")))
    # Each element's block of a several-species superset holds at least that element's
    # one-species functions; the one-species count is a bound that is cheap to build (the
    # two-species superset of the P2 NiAl specs takes ~15 s), so the whole count is only
    # computed when the bound does not suffice.
    n = superset_size(tuple(species[:1]), *table)
    if len(species) > 1 and max(spec.grid["basis_size"]) > n:
        n = superset_size(tuple(species), *table)
    too_big = [b for b in spec.grid["basis_size"] if b > n]
    if too_big:
        raise SpecError(
            "grid.basis_size", f"{too_big} exceed the {n} functions per species that "
            f"the [ace] superset realises (nradmax_by_orders = {list(ace['nradmax_by_orders'])}, "
            f"lmax_by_orders = {list(ace['lmax_by_orders'])}, cutoff_A = {ace['cutoff_A']}); "
            "raise nradmax_by_orders / lmax_by_orders or drop those sizes")
    return n


def check_reference(spec) -> None:
    """Refuse a reference model whose optional extra is not installed (QUIP for NRL-TB), with
    :class:`sweep.spec.SpecError` on ``reference.model`` naming the extra."""
    from .spec import SpecError  # noqa: PLC0415
    from .tasks import check_reference_available  # noqa: PLC0415

    reference = spec.params.get("reference")
    if reference is None:
        return
    try:
        check_reference_available(reference)
    except ImportError as err:
        raise SpecError("reference.model", str(err)) from None


def preflight(spec, memory_limit_bytes: float | None = None,
              max_task_seconds: float | None = None) -> dict:
    """Refuse, before any store exists, a spec whose largest task cannot fit one worker.

    The estimates are :func:`estimate_task_bytes` and :func:`estimate_task_seconds`. Limits:
    ``memory_limit_bytes`` (default: config ``sweep.preflight.memory-bytes``, else this
    machine's memory) and ``max_task_seconds`` (default: config
    ``sweep.preflight.max-task-seconds``, else 7 days). Returns ``{"bytes": ..., "seconds":
    ...}`` per stage; raises :class:`PointTooLong` naming the stage, the estimate, the limit
    and what to change.
    """
    check_basis_sizes(spec)
    check_reference(spec)
    mem = estimate_task_bytes(spec)
    sec = estimate_task_seconds(spec)
    limit_b = float(memory_limit_bytes or _cfg("sweep.preflight.memory-bytes", 0)
                    or _total_memory())
    limit_s = float(max_task_seconds or _cfg("sweep.preflight.max-task-seconds", 7 * 86400))
    L, B, N = max(spec.grid["L"]), max(spec.grid["basis_size"]), spec.params["simulation"]["size"]
    change = (f"make the grid smaller (largest L = {L}, basis_size = {B}) or "
              f"simulation.size (= {N}) / training.n_train "
              f"(= {spec.params['training']['n_train']}) smaller")
    stage = max(mem, key=mem.get)
    if mem[stage] > limit_b:
        raise PointTooLong(
            f"spec {spec.name!r}: the '{stage}' task is expected to need ~{mem[stage] / 1e9:.3g} GB,"
            f" more than a worker's {limit_b / 1e9:.3g} GB; {change} (or set "
            "sweep.preflight.memory-bytes if the workers have more)")
    stage = max(sec, key=sec.get)
    if sec[stage] > limit_s:
        raise PointTooLong(
            f"spec {spec.name!r}: the '{stage}' task is expected to take "
            f"~{format_seconds(sec[stage])}, more than {format_seconds(limit_s)}; {change} "
            "(or set sweep.preflight.max-task-seconds)")
    return {"bytes": mem, "seconds": sec}


def _lifetime_of(client_or_seconds) -> float | None:
    if client_or_seconds is None:
        return None
    if isinstance(client_or_seconds, (int, float)):
        return float(client_or_seconds)
    info = getattr(client_or_seconds, "sweep_cluster", None) or {}
    if info.get("lifetime_s"):
        return float(info["lifetime_s"])
    try:  # any scheduler: ask the workers that are up (none known → no check)
        lifetimes = client_or_seconds.run(lambda dask_worker: dask_worker.lifetime)
    except Exception:  # noqa: BLE001
        return None
    known = [v for v in lifetimes.values() if v]
    return float(min(known)) if known else None


def check_point_duration(spec, client_or_lifetime, safety: float | None = None) -> dict:
    """Refuse a sweep whose longest task is expected to outlive the workers.

    Parameters
    ----------
    spec : Spec
    client_or_lifetime : distributed.Client or float or None
        The client from :func:`connect_from_args` (its SLURM worker lifetime is known), a client
        of any cluster (the lifetimes of the workers that are up are asked), or a lifetime in
        seconds. No lifetime (local cluster) → no check.
    safety : float
        Factor applied to the estimate (default: config ``sweep.duration-safety``, 2).

    Returns the estimate per stage (s). Raises :class:`PointTooLong` with what to change.
    """
    est = estimate_task_seconds(spec)
    lifetime = _lifetime_of(client_or_lifetime)
    if lifetime is None:
        return est
    safety = float(safety if safety is not None else _cfg("sweep.duration-safety", 2.0))
    stage = max(est, key=est.get)
    need = safety * est[stage]
    if need > lifetime:
        # which grid point makes it: the largest L and basis size
        L, B = max(spec.grid["L"]), max(spec.grid["basis_size"])
        keys = f"sweep.cost.{stage}"
        if getattr(spec.definition, "slice_design", False):  # the keys the slice model reads
            keys = SLICE_COST_KEYS.get(stage, keys)
        raise PointTooLong(
            f"spec {spec.name!r}: the point L={L}, basis_size={B} is expected to need "
            f"~{format_seconds(est[stage])} in its longest task ('{stage}'; "
            f"{safety:g}× safety → {format_seconds(need)}), more than the worker lifetime of "
            f"{format_seconds(lifetime)}; such a task would be restarted on every new worker "
            f"and never finish. Raise --walltime (the lifetime is the walltime minus a margin "
            f"and a stagger), or make the grid smaller; set {keys} in the Dask "
            f"config if the estimate is wrong for this machine")
    return est


# --------------------------------------------------------------------------- provenance

def cluster_provenance(client) -> dict:
    """Dataset attrs describing where a sweep ran: ``cluster_kind`` and ``cluster_config``."""
    info = dict(getattr(client, "sweep_cluster", None) or {"kind": "scheduler"})
    kind = info.pop("kind", "scheduler")
    info.pop("job_script", None)
    return {"cluster_kind": kind, "cluster_config": json.dumps(info, sort_keys=True, default=str)}


# --------------------------------------------------------------------------- CLI

def add_arguments(parser) -> None:
    """Add the options that choose where a sweep runs to an argparse (sub)parser."""
    parser.add_argument("--cluster", choices=("local", "slurm"), default=None,
                        help="local: a LocalCluster on this machine (default); slurm: workers "
                        "as SLURM jobs through dask-jobqueue (config: jobqueue.slurm.* and "
                        "sweep.slurm.* in ~/.config/dask/ or $DASK_CONFIG)")
    parser.add_argument("--workers", type=int, help="local worker processes (default: all cores)")
    parser.add_argument("--scheduler", help="address of a running Dask scheduler, "
                        "e.g. tcp://host:8786")
    g = parser.add_argument_group("SLURM (--cluster slurm; flags override the Dask config)")
    g.add_argument("--min-jobs", type=int, help="adaptive minimum of worker jobs (default 0)")
    g.add_argument("--max-jobs", type=int, help="adaptive maximum of worker jobs (default 4)")
    g.add_argument("--walltime", help="walltime of each worker job, HH:MM:SS or D-HH:MM:SS")
    g.add_argument("--queue", help="partition (sbatch -p)")
    g.add_argument("--account", help="account to charge (sbatch -A)")
    g.add_argument("--memory", help="memory of each job, e.g. 4GB")
    g.add_argument("--cores", type=int, help="cores of each job")
    g.add_argument("--processes", type=int, help="worker processes per job (default: one per "
                   "core, each with one thread; pyace holds the GIL)")
    g.add_argument("--interface", help="network interface of scheduler and workers, e.g. ib0")
    g.add_argument("--lifetime", help="worker lifetime (default: walltime minus margin and "
                   "stagger)")
    g.add_argument("--lifetime-stagger", help="spread of worker lifetimes (default 5%% of the "
                   "walltime, at most 5 min)")
    g.add_argument("--job-directive", action="append", default=[], metavar="DIRECTIVE",
                   help="extra #SBATCH directive, e.g. --job-directive=--constraint=cpu "
                   "(repeatable)")
    g.add_argument("--log-directory", help="where worker jobs write their output")


def _cluster_kind(args) -> str:
    kind = getattr(args, "cluster", None)
    if kind is None:
        kind = _cfg("sweep.cluster", "local")
    return kind


def _exit_on_sigterm() -> None:
    """Turn SIGTERM (scancel, walltime of a client job, kill) into SystemExit in the main thread,
    so that ``with`` blocks unwind: the runner cancels its futures and releases the lock, and the
    client cancels its worker jobs. A point interrupted between its value and status writes stays
    ``pending`` (status is the commit marker) and is recomputed by the next run."""
    import signal  # noqa: PLC0415
    import threading  # noqa: PLC0415

    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        def _handler(signum, frame):
            raise SystemExit(128 + signum)

        signal.signal(signal.SIGTERM, _handler)


def _spec_memory(spec_name: str):
    """A spec's ``[cluster] memory_per_worker`` (experiments that declare it), else None."""
    from .spec import SpecError, load_spec  # noqa: PLC0415

    try:
        return load_spec(spec_name).params.get("cluster", {}).get("memory_per_worker")
    except SpecError:
        return None


def connect_from_args(args):
    """The client the parsed command-line options ask for.

    For ``--cluster slurm`` the duration check runs before any job is submitted: a spec whose
    longest task would outlive the workers exits with status 2 and the reason. SIGTERM makes the
    process exit cleanly (worker jobs cancelled) instead of dying on the spot.
    """
    _exit_on_sigterm()
    kind = _cluster_kind(args)
    if getattr(args, "scheduler", None):
        return connect(scheduler=args.scheduler)
    if kind == "local":
        return connect(args.workers, None)
    if kind != "slurm":
        raise SystemExit(f"sweep: unknown cluster kind {kind!r} (local, slurm)")
    memory = args.memory
    if memory is None and getattr(args, "spec", None):
        memory = _spec_memory(args.spec)
    try:
        settings = slurm_settings(
            cores=args.cores, memory=memory, processes=args.processes,
            walltime=args.walltime, queue=args.queue, account=args.account,
            interface=args.interface, min_jobs=args.min_jobs, max_jobs=args.max_jobs,
            job_directives=args.job_directive, lifetime=args.lifetime,
            lifetime_stagger=args.lifetime_stagger, log_directory=args.log_directory)
    except ValueError as e:
        print(f"sweep: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    spec_name = getattr(args, "spec", None)
    if spec_name:
        from .spec import SpecError, load_spec  # noqa: PLC0415

        try:
            check_point_duration(load_spec(spec_name), settings["lifetime_s"])
        except SpecError:
            pass  # the CLI reports invalid specs itself
        except PointTooLong as e:
            print(f"sweep: refused: {e}", file=sys.stderr)
            raise SystemExit(2) from None
    print(f"slurm: {settings['minimum_jobs']}–{settings['maximum_jobs']} jobs, walltime "
          f"{format_seconds(settings['walltime_s'])}, worker lifetime "
          f"{format_seconds(settings['lifetime_s'])} ± {format_seconds(settings['stagger_s'])}",
          file=sys.stderr)
    return slurm_cluster(settings)
