"""A tiny but real spec for tests: the quick preset shrunk to 4 points that run in seconds."""

from __future__ import annotations

import re

from sweep.spec import builtin_specs, parse_spec


def tiny_spec_text(name: str = "tiny", L=(4, 5), basis_sizes=(20, 30), size: int = 12,
                   n_train: int = 10, n_test: int = 4, extra_grid: dict | None = None) -> str:
    """TOML of the built-in quick spec with a smaller grid and cells."""
    text = builtin_specs()["p1-vacancies-quick"]
    text = re.sub(r'^name = ".*"$', f'name = "{name}"', text, flags=re.M)
    text = re.sub(r"^L = \[.*\]$", f"L = {list(L)}", text, flags=re.M)
    text = re.sub(r"^basis_size = \[.*\]$", f"basis_size = {list(basis_sizes)}", text, flags=re.M)
    text = re.sub(r"^size = \d+$", f"size = {size}", text, flags=re.M)
    text = re.sub(r"^n_train = \d+$", f"n_train = {n_train}", text, flags=re.M)
    text = re.sub(r"^n_test = \d+$", f"n_test = {n_test}", text, flags=re.M)
    for dim, values in (extra_grid or {}).items():
        text = re.sub(rf"^{dim} = \[.*\]$", f"{dim} = {values!r}".replace("'", '"'), text,
                      flags=re.M)
    parse_spec(text)  # fail here, not in the test, if the substitutions broke it
    return text


def tiny_spec(**kw):
    """The parsed tiny spec."""
    return parse_spec(tiny_spec_text(**kw))


#: Stored variables that differ between two runs of the same point (timings, where it ran):
#: left out when two stores are compared value for value.
TIMINGS = ("fit_time", "design_time", "predict_time", "worker_host", "slurm_job_id")
