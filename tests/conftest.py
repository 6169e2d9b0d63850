"""Shared pytest fixtures. The SLURM/fault fixtures live in slurm_fixture.py (see its docstring)."""

from slurm_fixture import clean_store, local_client, slurm, tiny_spec_path  # noqa: F401
