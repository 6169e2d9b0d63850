"""Where a sweep runs: a LocalCluster by default, or any running Dask scheduler by address.

Local workers are processes with one thread each (pyace holds the GIL), one per core by
default, with BLAS pinned to one thread so that n workers use n cores.
"""

from __future__ import annotations

import os

__all__ = ["connect", "SINGLE_THREAD_ENV", "add_arguments", "connect_from_args"]

#: Environment of every worker process: one BLAS/OpenMP thread.
SINGLE_THREAD_ENV = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1",
                     "MKL_NUM_THREADS": "1", "VECLIB_MAXIMUM_THREADS": "1"}


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
    """
    from distributed import Client, LocalCluster  # noqa: PLC0415

    if scheduler:
        return Client(scheduler)
    n = workers or os.cpu_count() or 1
    cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                           dashboard_address=dashboard_address, env=dict(SINGLE_THREAD_ENV))
    return Client(cluster)


def add_arguments(parser) -> None:
    """Add the options that choose where a sweep runs to an argparse (sub)parser."""
    parser.add_argument("--workers", type=int, help="local worker processes (default: all cores)")
    parser.add_argument("--scheduler", help="address of a running Dask scheduler, "
                        "e.g. tcp://host:8786")


def connect_from_args(args):
    """The client the parsed command-line options ask for."""
    return connect(args.workers, args.scheduler)
