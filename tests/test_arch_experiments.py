"""The architecture experiments (`transformer_charges`, `convnet_charges`) run end to
end with `quick=True`, and every claim they report holds: along gradient flow the
certified charges stay at their initial values, under SGD with momentum and weight
decay each follows its exact per-step law to the rounding bound in float64 and in
float32, AdamW breaks the SGD bound, and each claim's negative control (the same
measurement with the symmetry broken) misses its bound by the recorded factor."""

import json

import numpy as np
import pytest

import experiments
from experiments import _common, convnet_charges, transformer_charges

# about a minute each on a 2-core CPU (compiling the catalogue, two gradient flows
# and six training scans): `python -m pytest -m slow`
pytestmark = pytest.mark.slow


def _check(module, folder):
    res = json.loads((folder / "results.json").read_text())
    assert (folder / "arrays.npz").exists()
    assert (folder / "charges.png").stat().st_size > 10_000
    assert (folder / "charges.pdf").exists()
    assert res["quick"] is True
    assert res["claims"], "no claims reported"
    for c in res["claims"]:
        assert c["holds"], c
        assert c["evidence"] and c["basis"] == "trajectory", c
        ctrl = c["control"]
        assert ctrl["missed"], c
        assert float(ctrl["miss_factor"]) > ctrl["margin"], c
    return res


@pytest.mark.parametrize("module", [transformer_charges, convnet_charges])
def test_arch_experiment_claims_hold(module, tmp_path):
    res = experiments.run(module.NAME, quick=True, out=tmp_path)
    saved = _check(module, tmp_path / module.NAME)
    assert saved["claims"] == _common._jsonable(res["claims"])
    m = res["metrics"]
    # the flows and the training really moved the parameters and the charges
    assert m["gf_relative_parameter_change"] > 1e-3
    assert m["sgd_f64_max_drift"] > 1e3 * m["sgd_f64_tolerance"]
    # each family the claims name was certified and measured, in both precisions
    names = {c["name"].split(":")[0] for c in res["claims"]}
    assert any(n.startswith("SGD, 64-bit") for n in names)
    assert any(n.startswith("SGD, 32-bit") for n in names)
    # the float32 law is bounded by float32's rounding, float64's by float64's
    eps32 = float(np.finfo(np.float32).eps)
    assert m["sgd_f32_tolerance"] == pytest.approx(
        100 * eps32 * np.sqrt(res["config"]["steps"])
    )
