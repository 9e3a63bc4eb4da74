"""Every experiment runs end to end with --quick, and its reported numbers hold."""

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


def test_cli_list(capsys):
    assert cli.main(["list"]) == 0
    out = capsys.readouterr().out
    for name in experiments.EXPERIMENTS:
        assert name in out


def test_rotational_orbits(tmp_path):
    assert (
        cli.main(["run", "rotational_orbits", "--quick", "--out", str(tmp_path)]) == 0
    )
    res = _check_outputs(
        tmp_path / "rotational_orbits", ["trajectories", "loss", "angular_momentum"]
    )
    m = res["metrics"]
    assert res["config"]["nd_v0"] == [-2.0, 1.0, 1.0]
    assert np.allclose(m["nd_angular_momentum_initial"], [0.0, -1.5, 1.5], atol=1e-14)
    assert m["nd_angular_momentum_rel_drift"] < 1e-8
    assert m["nd_max_abs_y_minus_z"] < 1e-8 and m["nagf_max_abs_y_minus_z"] < 1e-8
    assert m["nd_hamiltonian_rel_drift"] < 1e-8
    assert m["nagf_t3_angular_momentum_rel_drift"] < 1e-8
    assert m["gf_max_angular_momentum"] < 1e-12
    assert m["discrete_nd_angular_momentum_max_deviation"] < 1e-12
    # the discrete runs follow their flows (first-order accurate in the step)
    assert m["gd_vs_gf_max_gap"] < 1e-2 and m["discrete_nd_vs_nd_max_gap"] < 1e-2
    assert m["nagd_vs_nagf_max_gap"] < 0.1
    # the library's Noether charges are the textbook formulas
    assert m["nd_noether_charge_matches_w_cross_wdot"] < 1e-14
    assert m["nagf_t3_matches_t3_w_cross_wdot"] < 1e-14
    assert abs(m["gf_final_norm"] - 1) < 1e-3  # GF reaches the unit sphere
    assert all(c["holds"] for c in res["claims"])


def test_massless_limit(tmp_path):
    results = experiments.get("massless_limit").main(quick=True, out=tmp_path)
    res = _check_outputs(
        tmp_path / "massless_limit", ["deviation_vs_kappa", "trajectories"]
    )
    assert res == json.loads(json.dumps(results))
    for name in ("rotational", "asymmetric"):
        assert abs(res["metrics"][f"{name}_slope"] - 1.0) < 0.05
        devs = np.array(res["metrics"][f"{name}_max_deviation"])
        assert np.all(np.diff(devs) < 0)


def test_interrupted_run_leaves_nothing_that_looks_complete(tmp_path):
    def compute(cfg):
        return {"x": 1.0}, {"a": np.zeros(3)}, []

    def draw(folder):
        raise KeyboardInterrupt  # interrupted while drawing

    with pytest.raises(KeyboardInterrupt):
        _common.run_experiment(
            "demo", config={}, compute=compute, draw=draw, out=tmp_path
        )
    assert list(tmp_path.iterdir()) == []
    # a completed run replaces an earlier one atomically
    _common.run_experiment(
        "demo", config={"v": 1}, compute=compute, draw=lambda f: None, out=tmp_path
    )
    _common.run_experiment(
        "demo", config={"v": 2}, compute=compute, draw=lambda f: None, out=tmp_path
    )
    assert [p.name for p in tmp_path.iterdir()] == ["demo"]
    assert json.loads((tmp_path / "demo" / "results.json").read_text())["config"] == {
        "v": 2
    }


def test_unknown_experiment():
    with pytest.raises(ValueError, match="Unknown experiment"):
        experiments.get("nope")
