"""Worker preload that lets a test hold a sweep mid-way, whatever the machine's speed.

distributed loads it through the ``distributed.worker.preload`` config key; a test sets it, with
``SWEEP_TEST_HOLD``, in the environment of the process that starts the workers (see
:func:`hold_env`): a LocalCluster's workers and dask-jobqueue's worker jobs inherit it.

While the file named by ``SWEEP_TEST_HOLD`` exists, a worker that starts a ``point`` task pauses
(distributed's own memory-pressure state): it finishes that point and starts no other task. It
then creates ``<hold>.paused-<pid>``, which the test can wait for. Once the test removes the hold
file, paused workers resume within a tenth of a second. So at most one point per worker is
computed while the hold is in place — the condition the fault tests need, built by construction
rather than by timing.
"""

from __future__ import annotations

import os
from pathlib import Path

from distributed import WorkerPlugin
from distributed.core import Status

PRELOAD = Path(__file__).resolve()


def hold_env(hold: Path) -> dict:
    """Environment entries that install this preload with hold file ``hold``."""
    return {"SWEEP_TEST_HOLD": str(hold),
            "DASK_DISTRIBUTED__WORKER__PRELOAD": repr([str(PRELOAD)])}


def paused_workers(hold: Path) -> list[Path]:
    """The markers of the workers paused by ``hold`` so far."""
    return sorted(hold.parent.glob(hold.name + ".paused-*"))


class HoldAtPoint(WorkerPlugin):
    name = "sweep-test-hold"

    def __init__(self, hold: str):
        self.hold = Path(hold)
        self.worker = None
        self.paused = False

    def setup(self, worker):
        self.worker = worker

    def transition(self, key, start, finish, **kwargs):
        if self.paused or finish != "executing" or "point" not in str(key):
            return
        if not self.hold.exists():
            return
        self.paused = True
        # the memory monitor would resume a paused worker whose memory is low
        self.worker.memory_manager.memory_pause_fraction = False
        # not from inside the state machine's own transition: pause on the next loop turn
        self.worker.loop.add_callback(self._pause)

    def _pause(self) -> None:
        self.worker.status = Status.paused
        Path(f"{self.hold}.paused-{os.getpid()}").touch()
        self.worker.loop.call_later(0.1, self._resume_when_released)

    def _resume_when_released(self) -> None:
        if self.hold.exists():
            self.worker.loop.call_later(0.1, self._resume_when_released)
            return
        self.paused = False
        self.worker.status = Status.running


async def dask_setup(worker):
    await worker.plugin_add(HoldAtPoint(os.environ["SWEEP_TEST_HOLD"]))
