r"""Kunin et al., "Neural Mechanics": the charges of SGD as people run it.

A digits classifier with one weight-normalised layer (`lnn.nn.NormalizedMLP`: softmax
output, ReLU hidden layers) has three symmetries on every mini-batch: translation of
the logits (a linear charge, the sum of the output weights and biases), scale of the
normalised layer ($\|W_1\|^2$) and rescaling of the second hidden layer
($\|W_2\|^2 + \|b_2\|^2 - \|W_3\|^2$). Trained with `lnn.optim.sgd_chain` on
mini-batches (a new batch every step):

- SGD with weight decay; heavy ball with decay, under- and over-damped; Nesterov with
  dampening and decoupled decay: the exact discrete law (`lnn.optim.charge_law`)
  predicts every charge to rounding; the plain-GD law, applied to the same runs, misses
  (control);
- at $\eta = 0.1$ the corrected continuous form of Nesterov's chain follows the
  measured charges to a fraction of a percent; on the same chain and batches with
  weight decay on the normalised layer only (an extra $L^2$ term, so the loss has no
  scale symmetry) the same comparison misses by more than the charge itself
  (control);
- Kunin et al.'s continuous forms (`lnn.optim.continuous_charge`) are within $O(\eta)$
  of the exact law: the gap at a fixed time, fitted over several $\eta$, has slope 1
  for heavy ball with coupled decay, and slope 2 for Nesterov with decoupled decay.
  There the corrected damping $1 - \beta + \beta\eta\lambda$ makes the slow decay
  rate of the form, $-\lambda - \eta\lambda^2/2 + O(\eta^2)$, agree with that of the
  exact recurrence, $\log(1 - \eta\lambda)/\eta$, to first order in $\eta$ (for the
  translation charge, $Q_k = (1 - \eta\lambda)^kQ_0$ exactly), so the gap is
  $O(\eta^2)$; under coupled decay the heavy-ball rate is off by $O(\eta)$. Each
  form against the exact law along the other chain's runs does not converge (control);
- Adam has no exact law (`lnn.optim.NoExactLaw`); its charges drift, measured with
  `lnn.optim.charge_tracker`; plain SGD conserves the translation charge (control).
"""

from pathlib import Path

import numpy as np

from . import _networks as N
from ._common import claim, control, enable_float64, figure

NAME = "neural_mechanics"
USES_DATA = True
CHARGES = ("translation", "scale", "rescale")
# Least fitted slopes of the continuous forms' gap against η: O(η) for heavy ball
# (measured 0.98 to 1.00), O(η²) for Nesterov with decoupled decay (measured 1.75 to
# 1.96; the quick sweep's rescale charge is the lowest).
HEAVY_BALL_SLOPE = 0.85
NESTEROV_SLOPE = 1.6
KINDS = {"translation": "linear", "scale": "quadratic", "rescale": "quadratic"}
# the runs' names in figures and claims
RUN_LABELS = {
    "sgd_decay": "SGD with weight decay",
    "underdamped": "heavy ball β = 0.95 with weight decay",
    "overdamped": "heavy ball β = 0.5 with weight decay",
    "nesterov_decoupled": "Nesterov with dampening and decoupled decay",
}
RUNS = {
    "sgd_decay": dict(weight_decay=0.02),
    "underdamped": dict(momentum=0.95, weight_decay=0.02),
    "overdamped": dict(momentum=0.5, weight_decay=0.02),
    "nesterov_decoupled": dict(
        momentum=0.9, nesterov=True, dampening=0.1, weight_decay=0.02, decay="decoupled"
    ),
}


def config_for(quick, seed, data="digits", data_dir=None):
    return {
        "seed": seed,
        **N.data_config(quick, data, data_dir, n=200 if quick else 1000),
        "hidden": [8, 8] if quick else [32, 32],
        "normalized_layer": 1,
        "batch": 32 if quick else 64,
        "lr": 0.1,
        "steps": 200 if quick else 2000,
        "runs": RUNS,
        "adam_lr": 1e-3,
        # the control of the η = 0.1 continuous form: weight decay on the normalised
        # layer only, as an L2 term (strength/2)‖W_layer‖² in the loss (no scale
        # symmetry); 0.02 doubles that layer's decay
        "control_penalty": {"layer": 1, "strength": 0.02},
        "slope_chain": dict(momentum=0.5, weight_decay=0.2, dampening=0.1),
        "slope_chain_nesterov": dict(
            momentum=0.5,
            nesterov=True,
            weight_decay=0.2,
            dampening=0.1,
            decay="decoupled",
        ),
        "slope_time": 2.0 if quick else 10.0,
        "slope_lrs": [0.04, 0.02, 0.01] if quick else [0.04, 0.02, 0.01, 0.005],
    }


def _rel(a, b):
    return float(np.max(np.abs(np.asarray(a) - np.asarray(b))) / np.max(np.abs(b)))


def compute(cfg):
    enable_float64()
    import jax
    import jax.numpy as jnp
    import optax

    from lagrangian_nn import nn, optim

    from ._common import progress

    x, y = N.load_data(cfg)
    model = nn.NormalizedMLP(
        [x.shape[1], *cfg["hidden"], 10],
        normalized=cfg["normalized_layer"],
        key=jax.random.key(cfg["seed"]),
        dtype=jnp.float64,
    )
    gens = {
        "translation": nn.translate_logits(model),
        "scale": nn.scale_invariance(model),
        "rescale": nn.normalized_rescale(model, 2),
    }
    Q0 = {c: optim.charge(gens[c], KINDS[c], model) for c in CHARGES}

    def loss(m, batch):
        return nn.nll(m(batch[0]), batch[1])

    def penalised_loss(m, batch):
        """The loss with weight decay on one layer only: no scale symmetry."""
        pen = cfg["control_penalty"]
        w = m.weights[pen["layer"] - 1]
        return loss(m, batch) + 0.5 * pen["strength"] * jnp.sum(w**2)

    def batches(steps, salt):
        key = jax.random.fold_in(jax.random.key(cfg["seed"] + 1), salt)
        idx = jax.random.randint(key, (steps, cfg["batch"]), 0, x.shape[0])
        return x[idx], y[idx]

    def run_chain(chain, steps, salt=0, loss=loss):
        laws = {
            c: optim.charge_law(chain, gens[c], KINDS[c], continuous=True)
            for c in CHARGES
        }
        out = optim.run(
            chain.optimizer,
            loss,
            model,
            steps,
            track=laws,
            batches=batches(steps, salt),
        )
        res = {}
        for c in CHARGES:
            tracked = out.tracked[c]
            measured, exact = laws[c].predict(tracked, Q0[c])
            cont = optim.continuous_charge(chain, KINDS[c], Q0[c], steps, tracked)
            kunin = optim.continuous_charge(
                chain, KINDS[c], Q0[c], steps, tracked, corrections=False
            )
            gd = optim.charge_law(optim.sgd_chain(float(chain.lr)), gens[c], KINDS[c])
            res[c] = {
                "measured": np.asarray(measured),
                "exact": np.asarray(exact),
                "continuous": np.asarray(cont),
                "kunin": np.asarray(kunin),
                "gd_law": np.asarray(gd.predict(tracked, Q0[c])[1]),
                "tracked": tracked,
            }
        return res, np.asarray(out.loss)

    metrics, arrays, claims = {}, {}, []
    steps, lr = cfg["steps"], cfg["lr"]
    arrays["t"] = lr * np.arange(steps + 1)
    for name in progress(list(RUNS), "runs"):
        chain = optim.sgd_chain(lr, **cfg["runs"][name])
        for c in CHARGES:
            k = optim.kunin_constants(chain, KINDS[c])
            metrics[f"{name}_{c}_regime"] = k.get("regime", "first order")
        res, losses = run_chain(chain, steps)
        arrays[f"{name}_loss"] = losses
        errs, ctrls = [], []
        for c in CHARGES:
            r = res[c]
            for key in ("measured", "exact", "continuous", "kunin"):
                arrays[f"{name}_{c}_{key}"] = r[key]
            errs.append(_rel(r["exact"], r["measured"]))
            ctrls.append(_rel(r["gd_law"], r["measured"]))
            metrics[f"{name}_{c}_exact_rel_error"] = errs[-1]
            metrics[f"{name}_{c}_gd_law_rel_error"] = ctrls[-1]
            metrics[f"{name}_{c}_continuous_rel_gap"] = _rel(
                r["continuous"], r["exact"]
            )
            metrics[f"{name}_{c}_continuous_measured_rel_gap"] = _rel(
                r["continuous"], r["measured"]
            )
            metrics[f"{name}_{c}_kunin_rel_gap"] = _rel(r["kunin"], r["exact"])
            metrics[f"{name}_{c}_relative_change"] = _rel(
                r["measured"][-1:], r["measured"][:1]
            )
        claims.append(
            claim(
                f"{RUN_LABELS[name]} on mini-batches: exact law of the translation, "
                "scale and rescale charges, max relative error",
                "Kunin et al., exact discrete form",
                max(errs),
                1e-10,
                # the exact per-step law of the update (given the symmetry of every
                # mini-batch loss): an identity to rounding, reported, not evidence
                basis="identity",
            )
        )
    # Nesterov at η = 0.1: the corrected continuous form follows the measured charges.
    # Control: the same chain, start and batches on the loss with weight decay on the
    # normalised layer only (no scale symmetry): the same comparison
    name = "nesterov_decoupled"
    chain = optim.sgd_chain(lr, **cfg["runs"][name])
    res_c, losses_c = run_chain(chain, steps, loss=penalised_loss)
    arrays["control_penalty_loss"] = losses_c
    for c in CHARGES:
        for key in ("measured", "continuous"):
            arrays[f"control_penalty_{c}_{key}"] = res_c[c][key]
        metrics[f"control_penalty_{c}_continuous_measured_rel_gap"] = _rel(
            res_c[c]["continuous"], res_c[c]["measured"]
        )
    gap = lambda tag: max(
        metrics[f"{tag}_{c}_continuous_measured_rel_gap"] for c in CHARGES
    )
    pen = cfg["control_penalty"]
    claims.append(
        claim(
            f"{RUN_LABELS[name]} at η = {lr}: corrected continuous forms (Nesterov "
            "drive, O(ηλ) damping, rest at t = -η/2) against the measured charges, "
            "max relative gap",
            "Kunin et al., modified equation with Nesterov's terms",
            gap(name),
            0.01,
            basis="trajectory",
            control=control(
                "the same chain, start and batches with weight decay on the "
                f"normalised layer only (an L2 term {pen['strength'] / 2:g}·"
                f"‖W{pen['layer']}‖² in the loss, so no scale symmetry)",
                gap("control_penalty"),
            ),
        )
    )
    # O(η): the continuous forms against the exact law at a fixed time, for heavy
    # ball (coupled decay) and for Nesterov (decoupled decay), both with dampening
    lrs = cfg["slope_lrs"]
    arrays["slope_lrs"] = np.asarray(lrs)
    # every η runs the same number of steps (the most any η needs), so each sweep
    # compiles once (with the runs above); the gap is read at the fixed time, after
    # n = T/η steps (the laws are causal: the first n + 1 entries are an n-step run's)
    n_max = max(int(round(cfg["slope_time"] / eta)) for eta in lrs)
    sweeps = {"": cfg["slope_chain"], "nesterov_": cfg["slope_chain_nesterov"]}
    runs = {}
    for sweep, chain_kw in sweeps.items():
        for i, eta in enumerate(progress(lrs, f"η sweep {sweep or 'heavy_ball_'}")):
            runs[sweep, i] = run_chain(
                optim.sgd_chain(eta, **chain_kw), n_max, salt=100 + i
            )[0]
    for sweep, chain_kw in sweeps.items():
        # control, the wrong dynamics: this chain's form against the exact law along
        # the other sweep's runs (same η, same batches), which it does not model
        other = "nesterov_" if sweep == "" else ""
        gaps = {(c, v): [] for c in CHARGES for v in ("form", "kunin", "control")}
        for i, eta in enumerate(lrs):
            n = int(round(cfg["slope_time"] / eta))
            chain = optim.sgd_chain(eta, **chain_kw)
            res, res_other = runs[sweep, i], runs[other, i]
            for c in CHARGES:
                exact = res[c]["exact"][: n + 1]
                gaps[c, "form"].append(_rel(res[c]["continuous"][: n + 1], exact))
                gaps[c, "kunin"].append(_rel(res[c]["kunin"][: n + 1], exact))
                drive = {k: v[:n] for k, v in res_other[c]["tracked"].items()}
                cont = optim.continuous_charge(chain, KINDS[c], Q0[c], n, drive)
                gaps[c, "control"].append(_rel(cont, res_other[c]["exact"][: n + 1]))
        which = "Nesterov, decoupled decay" if sweep else "heavy ball"
        # heavy ball with coupled decay (Kunin's case): the form's slow decay rate is
        # off by O(η) per unit time, so the gap at a fixed time is O(η); with decoupled
        # decay the βηλ damping term makes the slow rate −λ − ηλ²/2 + O(η²), that of
        # the exact recurrence (log(1 − ηλ)/η), so the gap is O(η²) (see the docstring)
        order, least = (2, NESTEROV_SLOPE) if sweep else (1, HEAVY_BALL_SLOPE)
        for c in CHARGES:
            arrays[f"gap_{sweep}{c}"] = np.asarray(gaps[c, "form"])
            arrays[f"gap_{sweep}{c}_kunin"] = np.asarray(gaps[c, "kunin"])
            arrays[f"gap_{sweep}{c}_control"] = np.asarray(gaps[c, "control"])
            fit = lambda v: float(np.polyfit(np.log(lrs), np.log(v), 1)[0])
            slope, slope_ctrl = fit(gaps[c, "form"]), fit(gaps[c, "control"])
            metrics[f"gap_{sweep}{c}_slope"] = slope
            metrics[f"gap_{sweep}{c}_control_slope"] = slope_ctrl
            metrics[f"gap_{sweep}{c}_kunin_slope"] = fit(gaps[c, "kunin"])
            claims.append(
                claim(
                    f"{c} ({which}): gap between the continuous form and the exact "
                    f"law shrinks as O(η{'²' if order == 2 else ''}) (fitted slope)",
                    "Kunin et al., modified equation",
                    slope,
                    least,
                    kind=">=",
                    basis="fit",
                    control=control(
                        "the wrong dynamics: the same form against the exact law "
                        "along the other sweep's runs ("
                        + (
                            "heavy ball, coupled decay"
                            if sweep
                            else "Nesterov, decoupled"
                        )
                        + ")",
                        slope_ctrl,
                        margin=4.0,
                    ),
                )
            )
    # Adam: no exact law, and its charges drift
    try:
        optim.charge_law(optax.adam(cfg["adam_lr"]), gens["scale"], "quadratic")
        metrics["adam_no_exact_law"] = "missing"
    except optim.NoExactLaw as e:
        metrics["adam_no_exact_law"] = str(e)
    trackers = {c: optim.charge_tracker(gens[c], KINDS[c]) for c in CHARGES}
    b = batches(steps, 0)
    adam = optim.run(
        optax.adam(cfg["adam_lr"]), loss, model, steps, track=trackers, batches=b, dt=lr
    )
    # plain SGD (the control) with the charge laws as trackers: the same compiled run
    # as SGD with weight decay
    sgd = optim.sgd_chain(lr)
    laws = {c: optim.charge_law(sgd, gens[c], KINDS[c]) for c in CHARGES}
    plain = optim.run(sgd.optimizer, loss, model, steps, track=laws, batches=b)
    for c in CHARGES:
        plain.tracked[c] = plain.tracked[c]["charge"]
        for tag, out in (("adam", adam), ("sgd", plain)):
            q = np.concatenate([[float(Q0[c])], np.asarray(out.tracked[c])])
            arrays[f"{tag}_{c}"] = q
            metrics[f"{tag}_{c}_drift"] = float(optim.charge_drift(q, Q0[c]))
    arrays["adam_loss"], arrays["sgd_loss"] = (
        np.asarray(adam.loss),
        np.asarray(plain.loss),
    )
    claims.append(
        claim(
            "Adam (no exact law): relative drift of the translation charge",
            "no exact law: reported, not hidden",
            metrics["adam_translation_drift"],
            1e-3,
            kind=">=",
            basis="trajectory",
            control=control(
                "plain SGD on the same batches (the charge is conserved)",
                metrics["sgd_translation_drift"],
            ),
        )
    )
    return metrics, arrays, claims


def draw(folder: Path):
    from . import _nm_figures as figures

    st, plt, res, a = figure(folder)
    figures.draw_charges(st, plt, a, folder, CHARGES, RUNS)
    figures.draw_momentum(st, plt, res, a, folder, CHARGES)
    figures.draw_gap(st, plt, res, a, folder, CHARGES)
    figures.draw_adam(st, plt, a, folder, CHARGES)
