"""The P2 NiAl-screw experiment end to end: a tiny real spec through Dask into Zarr."""

import numpy as np
import pytest

from sweep.spec import SpecError, builtin_specs, parse_spec
from tests.test_p2_sweep import run_local, tiny_p2_text


def tiny_nial_text():
    return tiny_p2_text("p2-nial-screw-quick", "tiny-p2-nial")


def test_tiny_nial_sweep_into_zarr(tmp_path):
    spec = parse_spec(tiny_nial_text())
    assert spec.experiment == "p2-dislocations-nial-screw" and spec.n_points == 2
    ds = run_local(spec, tmp_path / "nial.zarr")
    assert np.all(ds["status"].values == "done")
    assert ds.attrs["a0_A"] == pytest.approx(2.8587, abs=1e-4)
    assert np.all(ds["n_basis"].values == 40)  # 20 functions per element, two elements
    el = ds["elastic_constant_error"].sel(observations=["E+F", "E+F+CLE"]).values.ravel()
    assert el[1] < el[0]  # fitting the elastic rows lowers the elastic-constant error
    for v in ("geometry_error", "energy_error", "rmse_forces", "rmse_virial"):
        assert np.all(np.isfinite(ds[v].values)), v
    assert np.all(ds["geometry_error"].values > 0)
    assert ds["geometry_error"].attrs["units"] == "Å"
    # along the fourfold [001] axis the screw's CLE field does not depend on a cubic C: the
    # fitted C, cubic like the crystal, predicts no far-field error, whatever its error
    assert np.all(ds["cle_far_field_error"].values < 1e-6)
    g, core, far = (ds[v].values for v in ("geometry_error", "geometry_error_core",
                                           "geometry_error_far"))
    np.testing.assert_allclose(core**2 + far**2, g**2, rtol=1e-12)


def test_nial_spec_rejects_the_w_reference():
    text = tiny_nial_text().replace('model = "eam-nial-mishin2002"', 'model = "eam-w-zhou2001"')
    with pytest.raises(SpecError, match="reference.model"):
        parse_spec(text)


@pytest.mark.slow
def test_quick_spec_runs(tmp_path):
    ds = run_local(parse_spec(builtin_specs()["p2-nial-screw-quick"]), tmp_path / "q.zarr", 2)
    assert np.all(ds["status"].values == "done")
    assert np.all(np.isfinite(ds["geometry_error"].values))
    assert np.all(np.isfinite(ds["energy_error"].values))
