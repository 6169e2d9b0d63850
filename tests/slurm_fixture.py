"""Fixtures for the SLURM and fault tests (imported by tests/conftest.py).

* ``slurm`` (session): a real single-node SLURM — munged, slurmctld and slurmd from Debian's
  packages, as root on 127.0.0.1, started by ``tests/slurm/start-slurm.sh`` in a temporary
  directory on free ports and stopped at the end of the session. Skipped, with the reason, when the
  binaries are missing (``.ci/install-slurm.sh`` installs them) or the tests do not run as root;
  a SLURM that is installed but fails to start is an error, not a skip.
* ``tiny_spec_path`` (session): a TOML spec derived from the built-in ``p1-vacancies-quick`` on a
  2 × 2 grid small enough for tests (four points, ~15 s on 2 cores).
* ``local_client`` (session): a 2-worker LocalCluster shared by the fault tests.
* ``clean_store`` (session): the tiny spec computed once, undisturbed, on ``local_client``: the
  reference every faulted or SLURM run must reproduce.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
SLURM_SCRIPTS = HERE / "slurm"
REPO = HERE.parent
#: The variables that describe the run (times, where it ran), not physics: excluded when runs
#: are compared.
TIMING_VARIABLES = ("fit_time", "design_time", "predict_time", "worker_host", "slurm_job_id")
SLURM_BINARIES = ("slurmctld", "slurmd", "sbatch", "squeue", "scancel", "sinfo", "munge",
                  "munged")


def _which(name: str) -> str | None:
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")


def slurm_unavailable_reason() -> str | None:
    """Why the SLURM tests cannot run here, or None."""
    missing = [b for b in SLURM_BINARIES if _which(b) is None]
    if missing:
        return (f"SLURM is not installed (missing {', '.join(missing)}); .ci/install-slurm.sh "
                "installs slurmctld, slurmd, slurm-client and munge from Debian's packages")
    if os.geteuid() != 0:
        return "starting a test SLURM (slurmd, munged) needs root; these tests run as non-root"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Slurm:
    """A running test SLURM: its directory, config file and partition."""

    dir: Path
    conf: Path
    partition: str = "debug"

    def env(self) -> dict:
        return {**os.environ, "SLURM_CONF": str(self.conf)}

    def run(self, *cmd: str) -> str:
        return subprocess.run(list(cmd), env=self.env(), check=True, capture_output=True,
                              text=True, timeout=30).stdout

    def jobs(self) -> dict[str, str]:
        """Job id → state of the jobs SLURM still knows about (running, pending, completing)."""
        out = self.run("squeue", "-h", "-o", "%i %T")
        return dict(line.split() for line in out.splitlines() if line.strip())

    def log_tail(self, n: int = 30) -> str:
        out = []
        for name in ("slurmctld.log", "slurmd.log"):
            p = self.dir / "log" / name
            if p.exists():
                out.append(f"--- {name}\n" + "\n".join(p.read_text().splitlines()[-n:]))
        return "\n".join(out)


@pytest.fixture(scope="session")
def slurm(tmp_path_factory):
    """A real single-node SLURM for the session (see the module docstring)."""
    reason = slurm_unavailable_reason()
    if reason and os.environ.get("CI") == "true" and os.geteuid() == 0:
        # CI installs what it needs (a developer's laptop is never changed behind their back).
        subprocess.run(["bash", str(REPO / ".ci" / "install-slurm.sh")], check=False, timeout=600)
        reason = slurm_unavailable_reason()
    if reason:
        pytest.skip(reason)
    d = tmp_path_factory.mktemp("slurm")
    ports = [str(_free_port()), str(_free_port())]
    r = subprocess.run([str(SLURM_SCRIPTS / "start-slurm.sh"), str(d), *ports],
                       capture_output=True, text=True, timeout=120)
    s = Slurm(d, d / "slurm.conf")
    if r.returncode != 0:
        subprocess.run([str(SLURM_SCRIPTS / "stop-slurm.sh"), str(d)], capture_output=True,
                       timeout=60)
        pytest.fail(f"SLURM is installed but did not start:\n{r.stdout}\n{r.stderr}\n"
                    f"{s.log_tail()}")
    old = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = str(s.conf)  # sbatch/squeue/scancel of SLURMCluster use it
    try:
        yield s
    finally:
        if old is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = old
        subprocess.run([str(SLURM_SCRIPTS / "stop-slurm.sh"), str(d)], capture_output=True,
                       timeout=60)


# --------------------------------------------------------------------------- the tiny sweep

def tiny_spec_text(name: str = "tiny", **overrides) -> str:
    """The built-in p1-vacancies-quick reduced to L = [4, 5], basis_size = [20, 30], N = 12 r0,
    10 training and 4 test structures; ``overrides`` replace whole TOML lines by key
    (e.g. ``max_steps="max_steps = 70"``) — validated by :func:`sweep.spec.parse_spec`."""
    from sweep.spec import builtin_specs, parse_spec  # noqa: PLC0415

    text = builtin_specs()["p1-vacancies-quick"]
    lines = {"name": f'name = "{name}"', "L": "L = [4, 5]", "basis_size": "basis_size = [20, 30]",
             "size": "size = 12", "n_train": "n_train = 10", "n_test": "n_test = 4",
             "description": 'description = "test sweep: 2 x 2 points on a 12 r0 cell"'}
    lines.update(overrides)
    out = []
    for line in text.splitlines():
        m = re.match(r"^([A-Za-z_]+)\s*=", line)
        out.append(lines.pop(m.group(1)) if m and m.group(1) in lines else line)
    extra = [v for k, v in lines.items() if k.startswith("+")]  # appended tables
    text = "\n".join(out + extra) + "\n"
    parse_spec(text, name)
    return text


@pytest.fixture(scope="session")
def tiny_spec_path(tmp_path_factory) -> Path:
    p = tmp_path_factory.mktemp("spec") / "tiny.toml"
    p.write_text(tiny_spec_text())
    return p


@pytest.fixture(scope="session")
def local_client():
    """A LocalCluster of 2 one-thread worker processes, shared by the session."""
    from sweep.cluster import connect  # noqa: PLC0415

    client = connect(2, dashboard_address=":0")
    try:
        yield client
    finally:
        client.close()


@pytest.fixture(scope="session")
def clean_store(tmp_path_factory, tiny_spec_path, local_client) -> Path:
    """The tiny sweep, run once without any fault: the reference."""
    from sweep.runner import run_sweep  # noqa: PLC0415
    from sweep.spec import load_spec  # noqa: PLC0415

    path = tmp_path_factory.mktemp("clean") / "clean.zarr"
    summary = run_sweep(load_spec(str(tiny_spec_path)), path, local_client, progress=False)
    assert summary.done == 4 and summary.failed == 0, summary
    return path


def physics(path):
    """A store's Dataset without the timing variables (what must be identical between runs)."""
    import xarray as xr  # noqa: PLC0415

    ds = xr.open_zarr(path, chunks=None).load()
    return ds.drop_vars([v for v in TIMING_VARIABLES if v in ds])


def assert_same_values(path, reference) -> None:
    """Every data variable but the timing ones equal (bit for bit) to the reference store's."""
    import xarray.testing  # noqa: PLC0415

    xarray.testing.assert_equal(physics(path), physics(reference))


def sweep_cmd(*args: str) -> list[str]:
    """The ``sweep`` command line of this interpreter (subprocess tests)."""
    return [sys.executable, "-m", "sweep.cli", *args]


def parse_tasks(stdout: str) -> dict:
    """The per-stage task counts a ``sweep run`` printed (its RunSummary.stages)."""
    import ast  # noqa: PLC0415

    m = re.search(r"tasks (\{.*\})", stdout)
    assert m, f"no task counts in the output:\n{stdout}"
    return ast.literal_eval(m.group(1))


def parse_summary(stdout: str) -> dict:
    m = re.search(r"done (\d+), failed (\d+), already done (\d+), not yet run (\d+)", stdout)
    assert m, f"no summary in the output:\n{stdout}"
    return dict(zip(("done", "failed", "skipped", "remaining"), map(int, m.groups())))
