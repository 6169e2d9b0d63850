"""P1-Si end to end: NRL-TB reference, diamond lattice, 3D ACE fit, real LocalCluster, Zarr."""

from __future__ import annotations

import re

import numpy as np
import pytest
import xarray as xr
from distributed import Client, LocalCluster

from sweep.runner import run_sweep
from sweep.spec import SpecError, builtin_specs, parse_spec


def _tiny_text(**subs) -> str:
    text = builtin_specs()["p1-si-vacancies-quick"]
    # one vacancy in the 63-atom cell (n_D = 1, size = L = 2): the smallest meaningful 3D point
    subs = {"name": '"tiny-si"', "n_defects": "[1]", "L": "[2]", "basis_size": "[20]",
            "size": "2", "n_train": "6", "n_test": "2", "fmax_eV_per_A": "1e-3", **subs}
    for key, value in subs.items():
        text = re.sub(rf"^{key} = .*$", f"{key} = {value}", text, flags=re.M)
    return text


def test_si_spec_fields():
    spec = parse_spec(_tiny_text())
    assert spec.definition.spatial_dimension == 3
    assert spec.params["cluster"]["memory_per_worker"] == "2GB"
    assert parse_spec(builtin_specs()["p1-si-vacancies"]).params["simulation"]["size"] == 10
    with pytest.raises(SpecError, match="memory_per_worker"):
        parse_spec(_tiny_text(memory_per_worker='"lots"'))
    with pytest.raises(SpecError, match="reference.model"):
        parse_spec(_tiny_text(model='"fs-w-wang2014"'))


@pytest.mark.slow
def test_tiny_si_sweep_into_zarr(tmp_path):
    spec = parse_spec(_tiny_text())
    path = tmp_path / "tiny-si.zarr"
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                      dashboard_address=":0") as cluster, Client(cluster) as client:
        summary = run_sweep(spec, path, client, progress=False)
    ds = xr.open_zarr(path)
    assert summary.done == 1, np.asarray(ds.error.values)
    assert 5.40 < ds.attrs["r0_A"] < 5.45  # the reference's cubic lattice constant, Å
    # 3D rows: 6 configurations × (1 energy + 3 × 63 force components) + 1 perfect-cell row
    assert int(ds.n_observations.values.ravel()[0]) == 6 * (1 + 3 * 63) + 1
    for name in ("geometry_error", "energy_error", "rmse_forces", "force_constant_error",
                 "rmse_forces_vacancy"):
        v = ds[name].values
        assert np.isfinite(v).all() and (v > 0).all(), name
