"""Worker preload for the client-resubmission test: the first worker to finish a ``point`` task
pauses for good, so the sweep cannot end before the test has signalled its client job.

distributed loads it through the ``distributed.worker.preload`` config key, which the test sets
in the client job's environment; worker jobs inherit that environment from the client's
``sbatch``. Only one worker ever pauses: it claims ``$PAUSE_MARKER`` by exclusive creation, and
every later worker (those of the resubmitted client) finds the claim taken and runs normally.
Once paused, the worker writes ``paused`` into the marker: the test waits for that word.
"""

from __future__ import annotations

import os

from distributed import WorkerPlugin
from distributed.core import Status


class PauseAfterFirstPoint(WorkerPlugin):
    name = "pause-after-first-point"

    def __init__(self, marker: str):
        self.marker = marker
        self.worker = None
        self.claimed = False

    def setup(self, worker):
        self.worker = worker

    def transition(self, key, start, finish, **kwargs):
        if self.claimed or finish != "memory" or "point" not in str(key):
            return
        try:
            fd = os.open(self.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            self.claimed = True  # another worker paused already: this one runs on
            return
        self.claimed = True
        # the memory monitor would resume a paused worker whose memory is low
        self.worker.memory_manager.memory_pause_fraction = False
        # not from inside the state machine's own transition: pause on the next loop turn
        self.worker.loop.add_callback(self._pause, fd)

    def _pause(self, fd: int) -> None:
        self.worker.status = Status.paused
        os.write(fd, b"paused\n")
        os.close(fd)


async def dask_setup(worker):
    await worker.plugin_add(PauseAfterFirstPoint(os.environ["PAUSE_MARKER"]))
