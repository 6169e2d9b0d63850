"""The union-training-set experiment (P1-int) end to end: spec, real LocalCluster, pyace, Zarr."""

from __future__ import annotations

import re

import numpy as np
import pytest
import xarray as xr
from distributed import Client, LocalCluster

from sweep.experiments.p1_union import component_sizes, component_weights, simulation_kinds
from sweep.runner import run_sweep
from sweep.spec import SpecError, builtin_specs, parse_spec


def _tiny_text(**subs) -> str:
    text = builtin_specs()["p1-interstitials-quick"]
    subs = {"name": '"tiny-int"', "L": "[4]", "basis_size": "[20]", "size": "10",
            "n_train": "6", "n_test": "2", **subs}
    for key, value in subs.items():
        text = re.sub(rf"^{key} = .*$", f"{key} = {value}", text, flags=re.M)
    return text


def test_spec_expresses_per_cell_weights_and_sizes():
    spec = parse_spec(_tiny_text() + "\n")
    w = spec.weights["P1-int"]
    assert component_weights(w, "interstitial") == (100.0, 10.0)
    assert component_weights(w, "vacancy") == (10.0, 1.0)
    assert simulation_kinds("interstitial+vacancy", 2) == ["interstitial", "vacancy"]
    assert simulation_kinds("interstitial+vacancy", 4) == ["interstitial"] + ["vacancy"] * 3
    text = _tiny_text().replace("n_test = 2", "n_test = 2\ninterstitial_n_train = 9")
    spec = parse_spec(text)
    assert component_sizes(spec.params["training"], "interstitial")["n_train"] == 9
    assert component_sizes(spec.params["training"], "vacancy")["n_train"] == 6
    with pytest.raises(SpecError, match="grid.defect"):
        parse_spec(_tiny_text(defect='["interstitial+divacancy"]'))
    with pytest.raises(SpecError, match="interstitial_energy"):
        parse_spec(_tiny_text().replace("interstitial_energy = 100.0", "interstitial_energy = -1"))


def test_tiny_union_sweep_into_zarr(tmp_path):
    spec = parse_spec(_tiny_text())
    path = tmp_path / "tiny-int.zarr"
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=":0") as cluster, Client(cluster) as client:
        summary = run_sweep(spec, path, client, progress=False)
    # with the Zhou W EAM reference every point finishes (docs/p1-point-defects.md, P1-int)
    assert (summary.done, summary.failed) == (2, 0)
    # one training cell per kind, shared by both simulation cells; one fit shared too
    assert summary.stages == {"lattice": 1, "simulation": 2, "training": 2, "design": 2,
                              "fit": 1, "point": 2}
    ds = xr.open_zarr(path)
    assert list(ds.n_defects.values) == [2, 4]
    assert ds.weight_interstitial_forces.values.tolist() == [10.0] and ds.weight_forces.values.tolist() == [1.0]
    assert np.isnan(ds.weight_vacancy_energy.values).all()
    for kind in ("interstitial", "vacancy"):
        assert ds[f"rmse_forces_{kind}"].attrs["units"] == "eV/Å"
        v = ds[f"rmse_forces_{kind}"].values
        assert np.isfinite(v).all() and (v > 0).all()
    # rows: 6 × (1 + 2 × 17) interstitial + 6 × (1 + 2 × 15) vacancy (no perfect-cell rows:
    # the papers' loss, fit.bulk_energy_row = false)
    assert (ds.n_observations.values == 6 * 35 + 6 * 31).all()
    # the pooled force RMSE lies between the components'
    lo = np.minimum(ds.rmse_forces_interstitial, ds.rmse_forces_vacancy).values
    hi = np.maximum(ds.rmse_forces_interstitial, ds.rmse_forces_vacancy).values
    assert (lo <= ds.rmse_forces.values).all() and (ds.rmse_forces.values <= hi).all()
    assert (np.asarray(ds.status.values) == "done").all(), np.asarray(ds.error.values)
    assert (ds.geometry_error.values > 0).all() and np.isfinite(ds.geometry_error.values).all()
