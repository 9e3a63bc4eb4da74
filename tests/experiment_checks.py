"""What every quick run of an experiment must show: its files, and claims that hold
with controls that missed."""

import json

import numpy as np
import pytest

import experiments
from experiments import __main__ as cli, _common


def _check_outputs(folder, figures):
    assert (folder / "results.json").exists() and (folder / "arrays.npz").exists()
    for stem in figures:
        assert (folder / f"{stem}.png").stat().st_size > 10_000
        assert (folder / f"{stem}.pdf").exists()
    assert not list(folder.parent.glob(".*partial*"))
    return json.loads((folder / "results.json").read_text())


def _controls_missed(res):
    """Every claim holds, and every claim that is evidence (not a consequence or an
    identity) has a negative control that missed its bound by the recorded factor;
    consequences and identities have none."""
    for c in res["claims"]:
        assert c["holds"], c
        assert c["evidence"] is (c["basis"] not in _common.NOT_EVIDENCE), c
        if c["evidence"]:
            ctrl = c["control"]
            assert ctrl["missed"], c
            # (an unbounded factor is saved as the string "inf")
            assert float(ctrl["miss_factor"]) > ctrl["margin"], c
        else:
            assert "control" not in c, c


def _run(name, tmp_path, figures):
    assert cli.main(["run", name, "--quick", "--out", str(tmp_path)]) == 0
    res = _check_outputs(tmp_path / name, figures)
    assert all(c["holds"] for c in res["claims"]), res["claims"]
    return res["metrics"]


def _evidence_and_consequences(tmp_path, name, consequences, identities=()):
    """`name`'s quick run: its only consequences are `consequences` and its only
    identities `identities`; every other claim holds with a control that missed."""
    res = json.loads((tmp_path / name / "results.json").read_text())
    assert res["quick"] is True
    got = sorted(c["name"] for c in res["claims"] if c["basis"] == "consequence")
    assert got == sorted(consequences)
    got = sorted(c["name"] for c in res["claims"] if c["basis"] == "identity")
    assert got == sorted(identities)
    _controls_missed(res)


def check_arch_experiment(module, tmp_path):
    """`module` (`transformer_charges` or `convnet_charges`) run end to end with
    `quick=True`: its files, and every claim it reports holds, with its negative
    control (the same measurement with the symmetry broken) missing its bound by the
    recorded factor; along gradient flow the certified charges stay at their initial
    values, under SGD with momentum and weight decay each follows its exact per-step
    law to the rounding bound in float64 and in float32, and AdamW breaks the SGD
    bound."""
    res = experiments.run(module.NAME, quick=True, out=tmp_path)
    folder = tmp_path / module.NAME
    saved = _check_outputs(folder, ["charges"])
    assert saved["quick"] is True
    assert saved["claims"], "no claims reported"
    assert all(c["basis"] == "trajectory" for c in saved["claims"]), saved["claims"]
    _controls_missed(saved)
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
    return res
