"""Every experiment runs end to end with --quick, and its reported numbers hold."""

import json

import numpy as np
import pytest
from experiment_checks import (
    _check_outputs,
    _controls_missed,
    _evidence_and_consequences,
    _run,
)

import experiments
from experiments import __main__ as cli, _common


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
    assert m["nd_generic_angular_momentum_rel_drift"] < 1e-8
    # the generic start has all three components of w0 × ẇ0 nonzero
    assert np.min(np.abs(m["generic_angular_momentum_initial"])) > 0.1
    # its orbit stays in the plane ⊥ w0 × ẇ0; without the symmetry it leaves it
    for dyn in ("nd", "nagf"):
        assert m[f"{dyn}_iso_generic_off_plane"] < 1e-8
        assert m[f"{dyn}_aniso_generic_off_plane"] > 1e-3
    assert m["control_nd_angular_momentum_rel_drift"] > 1e-2
    assert m["nd_hamiltonian_rel_drift"] < 1e-8
    assert m["nagf_t3_angular_momentum_rel_drift"] < 1e-8
    assert m["nagf_generic_t3_angular_momentum_rel_drift"] < 1e-8
    assert m["control_nagf_undamped_angular_momentum_rel_drift"] > 0.1
    assert m["gf_max_angular_momentum"] < 1e-12
    assert m["discrete_nd_angular_momentum_max_deviation"] < 1e-12
    assert m["control_discrete_nd_anisotropic_max_deviation"] > 1e-3
    # the discrete runs follow their flows (first-order accurate in the step)
    assert m["gd_vs_gf_max_gap"] < 1e-2 and m["discrete_nd_vs_nd_max_gap"] < 1e-2
    assert m["nagd_vs_nagf_max_gap"] < 0.1
    # the library's Noether charges are the textbook formulas
    assert m["nd_noether_charge_matches_w_cross_wdot"] < 1e-14
    assert m["nagf_t3_matches_t3_w_cross_wdot"] < 1e-14
    assert abs(m["gf_final_norm"] - 1) < 1e-3  # GF reaches the unit sphere
    _controls_missed(res)
    bases = {c["name"]: c["basis"] for c in res["claims"]}
    assert sum(b == "consequence" for b in bases.values()) == 1  # GF's identity
    assert not any("y = z" in name for name in bases)  # exact by the start's symmetry


def test_massless_limit(tmp_path):
    # the registry's runner, from Python (the module defines no `main` of its own)
    assert not hasattr(experiments.get("massless_limit"), "main")
    results = experiments.run("massless_limit", quick=True, out=tmp_path)
    res = _check_outputs(
        tmp_path / "massless_limit", ["deviation_vs_kappa", "trajectories"]
    )
    assert res == json.loads(json.dumps(results))
    for name in ("rotational", "asymmetric"):
        assert abs(res["metrics"][f"{name}_slope"] - 1.0) < 0.05
        devs = np.array(res["metrics"][f"{name}_max_deviation"])
        assert np.all(np.diff(devs) < 0)
        # against the wrong limit (GF of 1.1·L) the deviation does not shrink
        ctrl = np.array(res["metrics"][f"{name}_control_slopes_all_starts"])
        assert np.all(np.abs(ctrl) < 0.2)
    _controls_missed(res)
    assert {c["basis"] for c in res["claims"]} == {"fit"}


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


def test_runner_runs_a_module_by_its_parts(tmp_path):
    import types

    mod = types.ModuleType("experiments.demo")
    mod.NAME = "demo"
    mod.config_for = lambda quick, seed, scale=1.0: {
        "seed": seed,
        "n": 2 if quick else 5,
        "scale": scale,
    }
    mod.compute = lambda cfg: (
        {"sum": cfg["n"] * cfg["scale"]},
        {"a": np.arange(cfg["n"])},
        [],
    )
    drawn, reported = [], []
    mod.draw = lambda folder: drawn.append(_common.load(folder)[1]["a"].size)
    mod.report = lambda results: reported.append(results["metrics"]["sum"])
    res = _common.run_module(mod, seed=3, quick=True, out=tmp_path, scale=2.0)
    assert res["config"] == {"seed": 3, "n": 2, "scale": 2.0} and res["quick"] is True
    assert drawn == [2] and reported == [4.0]
    assert _common.load(tmp_path / "demo")[0] == json.loads(json.dumps(res))
    # a module's own `main` is called instead, with the same arguments
    mod.main = lambda **kwargs: kwargs
    got = _common.run_module(mod, seed=1, out=tmp_path, data="digits")
    assert got == {"seed": 1, "quick": False, "out": tmp_path, "data": "digits"}
    bare = types.ModuleType("experiments.bare")
    bare.NAME = "bare"
    with pytest.raises(TypeError, match="neither `main` nor `config_for`"):
        _common.run_module(bare, out=tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["demo"]


def test_unknown_experiment():
    with pytest.raises(ValueError, match="Unknown experiment"):
        experiments.get("nope")


def test_integrated_balances_closed_forms():
    from experiments import _networks as N

    # ND: C = t⁴ from rest has C̈ = 12t² = 2f with f = 6t²
    ts = np.linspace(0.0, 2.0, 201)
    assert N.balance_error(ts**4, N.nd_balance(ts, 0.0, 6 * ts**2)) < 1e-8
    assert N.balance_error(ts**4, N.nd_balance(ts, 0.0, 6 * ts**2, 1.0)) > 0.4
    # NAGF: C = t² has d/dt(t³Ċ) = 8t³ = 2t³f with f = 4, and Ċ(t0) = 2t0
    t0 = 0.1
    ts = np.linspace(t0, 2.0, 201)
    f = np.full_like(ts, 4.0)
    assert N.balance_error(ts**2 - t0**2, N.nagf_balance(ts, 2 * t0, f)) < 1e-6
    assert N.balance_error(ts**2 - t0**2, N.nd_balance(ts, 2 * t0, f)) > 0.4
    # matrix-valued, entrywise: C = [t², sin t] with Ċ(t0) = [2t0, cos t0]
    C = np.stack([ts**2, np.sin(ts)], axis=1)[:, :, None] * np.ones(3)
    f = np.stack([np.ones_like(ts), -np.sin(ts) / 2], axis=1)[:, :, None] * np.ones(3)
    Cd0 = np.array([2 * t0, np.cos(t0)])[:, None] * np.ones(3)
    assert N.balance_error(C - C[0], N.nd_balance(ts, Cd0, f)) < 1e-8


def _quadratic(a):
    import jax.numpy as jnp

    return lambda w: 0.5 * a * jnp.sum(w**2)


def test_train_until_stall_closed_form():
    """GD on L = a‖w‖²/2 has L_k = L0 (1 − ηa)^{2k}. Window j records the losses
    before its steps, L_{W(j−1)} … L_{Wj−1}, so the run stops after the first window
    j ≥ 2 with L_{W(j−1)−1} − L_{Wj−1} ≤ rtol·L0."""
    import jax.numpy as jnp

    from experiments._homogeneous import train_until_stall
    from lagrangian_nn import optim

    a, lr, window, rtol = 2.0, 0.05, 5, 1e-3
    r = (1 - lr * a) ** 2
    j = next(
        j
        for j in range(2, 100)
        if r ** (window * (j - 1) - 1) * (1 - r**window) <= rtol
    )
    w0 = jnp.array([1.0, -2.0])
    L0 = float(_quadratic(a)(w0))
    _, info, ps = train_until_stall(
        optim.gd(lr), _quadratic(a), w0, window=window, rtol=rtol, max_steps=500
    )
    assert info["stopped_by"] == "stall" and info["steps"] == window * j
    k = np.arange(window * j)
    np.testing.assert_allclose(ps["loss"], L0 * r**k, rtol=1e-12)
    np.testing.assert_allclose(info["final_loss"], L0 * r ** (window * j), rtol=1e-12)
    assert info["time"] == pytest.approx(window * j * lr)
    # a cap below the stall is hit and reported as such
    _, info, _ = train_until_stall(
        optim.gd(lr), _quadratic(a), w0, window=window, rtol=rtol, max_steps=window
    )
    assert info["stopped_by"] == "cap" and info["steps"] == window
    # rtol = 0 is floored at 64·eps of the dtype, so the float32 run still stops
    _, info, _ = train_until_stall(
        optim.gd(lr),
        _quadratic(a),
        w0.astype(jnp.float32),
        window=window,
        rtol=0.0,
        max_steps=5000,
    )
    assert info["tolerance"] == pytest.approx(64 * np.finfo(np.float32).eps)
    assert info["stopped_by"] == "stall" and info["steps"] < 5000


def test_train_until_stall_carries_momentum_and_stops_on_nan():
    """Window by window, NAGD is the same run as one `optim.run` (its state carries
    over); a loss that turns NaN stops the run and says so."""
    import jax.numpy as jnp

    from experiments._homogeneous import train_until_stall
    from lagrangian_nn import optim

    loss, w0 = _quadratic(3.0), jnp.array([1.0, 0.5, -0.3])
    _, info, ps = train_until_stall(
        optim.nesterov(0.01), loss, w0, window=4, rtol=0.0, max_steps=40
    )
    n = info["steps"]
    assert n >= 12  # three windows at least: two hand-overs of the state
    ref = optim.run(optim.nesterov(0.01), loss, w0, n)
    np.testing.assert_allclose(ps["loss"], np.asarray(ref.loss), rtol=1e-13)
    np.testing.assert_allclose(ps["ts"], np.asarray(ref.ts), rtol=1e-13)
    # log(w) is NaN once GD (η = 1 on L = −log w + w²) steps w below 0
    bad = lambda w: jnp.sum(-jnp.log(w) + w**2)
    _, info, _ = train_until_stall(
        optim.gd(1.0), bad, jnp.array([3.0]), window=2, rtol=0.0, max_steps=100
    )
    assert info["stopped_by"] == "non-finite loss" and info["steps"] < 100


def test_relu_balance(tmp_path):
    m = _run("relu_balance", tmp_path, ["figure1", "bounds"])
    _evidence_and_consequences(
        tmp_path,
        "relu_balance",
        ["ND: growth of Σ|‖W_h‖²−‖W_h+1‖²| / (4 L(w0) t²)"],
        ["GD: corrected quantity drift / |Δ‖W2‖²|"],
    )
    assert m["gf_relative_drift"] < 1e-4 and m["gf_norm_change"] > 1e-2
    assert m["gd_corrected_drift"] < 1e-12 < m["gd_difference_drift"]
    for flow in ("nd", "nagf"):
        # the integrated Table-2 balance holds on the grid and on the half grid (the
        # quadrature is not what makes it hold), and the balance is not trivially 0
        assert m[f"{flow}_balance_rel_error"] < 1e-4
        assert m[f"{flow}_balance_rel_error_half_grid"] < 1e-4
        assert m[f"{flow}_balance_size"] > 1e-3 * m[f"{flow}_norm_change"]
    # the controls break by O(1): softplus for the ReLU between the layers (GF, ND),
    # the undamped ND run for the NAGF balance, GF for the energy laws
    assert m["control_gf_relative_drift"] > 0.1
    assert m["control_nd_balance_rel_error"] > 0.1
    assert m["control_nagf_balance_rel_error"] > 0.1
    assert m["control_nd_energy_along_gf_drift_over_L0"] > 1e-2
    assert m["control_nagf_energy_balance_along_nd_rel_error"] > 0.5
    assert 0 < m["nd_bound_max_ratio"] <= 1
    assert m["nagf_energy_balance_rel_error"] < 1e-3 and m["nagf_energy_monotone"]
    # the discrete runs train at η until the loss stalls (or the quick cap); the flows
    # keep their own horizon, and both are recorded
    for name, dt in (("gd", 0.01), ("dnd", 0.1), ("dnagd", 0.1)):
        tr = m[f"{name}_training"]
        assert tr["stopped_by"] in ("stall", "cap") and 0 < tr["steps"] <= 300
        assert tr["time"] == pytest.approx(tr["steps"] * dt)
        assert tr["final_loss"] < m["initial_loss"]
    assert m["flow_horizon"] == 2.0
    # eq. 21 keeps its discrete energy ½‖Δw/√η‖² + L near L(w0) while it is stable
    assert (
        m["dnd_energy_kept_until_step"] is None or m["dnd_energy_kept_until_step"] > 50
    )


def test_ntk_width(tmp_path):
    m = _run("ntk_width", tmp_path, ["ntk_width"])
    _evidence_and_consequences(
        tmp_path,
        "ntk_width",
        [
            "mean |ẇ_i| / √(2L(w0)/m), worst width",
            "mean |w_i(T) − w_i(0)| / (T √(2L(w0)/m)), worst width",
        ],
    )
    # at every width ND's kinetic energy stays within the budget L(w0) it starts
    # with, and comes close to it (the check could fail)
    assert 0.5 < max(m["kinetic_ratio"]) <= 1
    # the control, GF from the same starts (speed ‖∇L‖, bounded by no energy): the same
    # ratio grows with the width and misses the bound by > 100x at the widest
    assert np.all(np.diff(m["gf_kinetic_ratio"]) > 0)
    assert m["gf_kinetic_ratio"][-1] > 100
    assert m["gf_mean_speed"][-1] > m["mean_speed"][-1]
    assert m["control_gf_energy_drift_smallest_width"] > 1e-2
    assert m["max_speed_over_bound"] <= 1 and m["max_mean_disp_over_bound"] <= 1
    # reported, not claimed: the fitted slopes (eq. 49's m^-1/2 for the mean speed;
    # GF's mean speed falls more slowly)
    assert abs(m["mean_speed_slope"] + 0.5) <= 0.05
    assert m["control_gf_mean_speed_slope"] > m["mean_speed_slope"] + 0.2
    assert m["max_disp_slope"] < 0


def test_kmnist_option(tmp_path, capsys):
    with pytest.raises(SystemExit):
        cli.main(
            [
                "run",
                "relu_balance",
                "--data",
                "kmnist",
                "--quick",
                "--out",
                str(tmp_path),
            ]
        )
    assert "--data-dir" in capsys.readouterr().err
    # the network experiments read KMNIST through lnn.data when given a folder
    from test_data import _write_kmnist

    from experiments import _networks

    _write_kmnist(tmp_path, n_train=300)
    cfg = {"seed": 0, **_networks.data_config(True, "kmnist", tmp_path)}
    x, y = _networks.load_data(cfg)
    assert x.shape == (200, 784) and y.shape == (200,)


def test_claims_table(tmp_path, capsys):
    def compute(cfg):
        return (
            {},
            {"a": np.zeros(1)},
            [
                _common.claim(
                    "c",
                    "eq. 1",
                    0.5,
                    1.0,
                    basis="trajectory",
                    control=_common.control("broken symmetry", 300.0),
                ),
                _common.claim("d", "eq. 2", 2e-3, 1e-2, basis="consequence"),
                _common.claim("e", "eq. 3", 1e-15, 1e-12, basis="identity"),
            ],
        )

    _common.run_experiment(
        "relu_balance",
        config={},
        compute=compute,
        draw=lambda f: None,
        out=tmp_path,
        quick=True,
    )
    assert cli.main(["table", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert (
        "| `relu_balance` (quick) | eq. 1 | c | trajectory | 0.5 | ≤ 1 | broken "
        "symmetry | 300 (misses by 300x) | yes |" in out
    )
    assert (
        "| d | consequence | 0.002 | ≤ 0.01 | none (a consequence; not evidence) |  | "
        "yes |" in out
    )
    assert (
        "| e | identity | 1e-15 | ≤ 1e-12 | none (an identity; not evidence) |  | "
        "yes |" in out
    )
    assert "Quick runs (small settings, not the paper's): `relu_balance`." in out
    # the run's own printout names the factor by which each control misses
    cli._print_claims(json.loads((tmp_path / "relu_balance/results.json").read_text()))
    out = capsys.readouterr().out
    assert "control (broken symmetry): 300, misses by 300x (needs 100x)" in out
    assert "[identity] (not counted as evidence)" in out


@pytest.mark.parametrize(
    "measured, bound, kind, ctrl, holds, missed",
    [
        (1e-9, 1e-6, "<=", 1e-3, True, True),  # control 1000x above the bound
        (1e-9, 1e-6, "<=", 5e-5, False, False),  # control only 50x above: no evidence
        (2e-6, 1e-6, "<=", 1e-3, False, True),  # the law itself fails
        (float("nan"), 1e-6, "<=", 1e-3, False, True),  # NaN never holds
        (0.5, 0.1, ">=", 1e-4, True, True),
        (0.5, 0.1, ">=", 0.01, False, False),
        (0.0, 0.0, "<=", 3.0, True, True),  # counts: bound 0, control any miss
        (0.0, 0.0, "<=", 0.0, False, False),
    ],
)
def test_claim_needs_a_control_that_misses(measured, bound, kind, ctrl, holds, missed):
    c = _common.claim(
        "x",
        "p",
        measured,
        bound,
        kind=kind,
        basis="trajectory",
        control=_common.control("broken", ctrl),
    )
    assert c["holds"] is holds
    assert c["control"]["missed"] is missed
    assert c["evidence"] is True
    # the factor by which the control misses: above the margin exactly when it misses
    factor = c["control"]["miss_factor"]
    assert (factor > c["control"]["margin"]) is missed


def test_claim_rejects_missing_control_and_bad_basis():
    with pytest.raises(TypeError, match="basis"):
        _common.claim("x", "p", 0.0, 1.0)  # the basis is required
    with pytest.raises(ValueError, match="needs a negative control"):
        _common.claim("x", "p", 0.0, 1.0, basis="trajectory")
    with pytest.raises(ValueError, match="`basis` must be one of"):
        _common.claim("x", "p", 0.0, 1.0, basis="algebra")
    for basis in _common.NOT_EVIDENCE:  # reported, not evidence: no control
        with pytest.raises(ValueError, match="takes no control"):
            _common.claim(
                "x", "p", 0.0, 1.0, basis=basis, control=_common.control("c", 1e3)
            )
        c = _common.claim("x", "p", 0.5, 1.0, basis=basis)
        assert c["holds"] is True and c["evidence"] is False
        assert _common.claim("x", "p", 2.0, 1.0, basis=basis)["holds"] is False
    with pytest.raises(ValueError, match="`margin` must be > 1"):
        _common.control("c", 1.0, margin=1.0)


def test_symmetry_discovery(tmp_path):
    m = _run("symmetry_discovery", tmp_path, [])
    assert abs(m["figure2_W2_to_W4_factor"] - 4) < 1e-6
    assert (
        m["relu_all_counts_match"]
        and m["linear_all_counts_match"]
        and m["tanh_count"] == 0
    )
    assert any("beta1" in law for law in m["swish_laws"])
    assert (tmp_path / "symmetry_discovery" / "laws.md").exists()
    # the controls: RePU(3) gives 3² = 9; tanh neurons have no law, ReLU ones do
    assert abs(m["control_repu3_W2_to_W4_factor"] - 9) < 1e-6
    res = json.loads((tmp_path / "symmetry_discovery" / "results.json").read_text())
    cfg = res["config"]
    hidden = cfg["fig2_hidden"]
    assert m["control_tanh_first_per_neuron_count"] == sum(hidden) - hidden[0]
    assert m["control_relu_count"] == 5
    assert m["control_relu_tanh_first_mismatches"] == cfg["n_control_relu"]
    assert m["control_linear_tanh_mismatches"] == cfg["n_control_linear"]
    assert all(n == 0 for n in m["control_linear_tanh_found"])
    _controls_missed(res)
