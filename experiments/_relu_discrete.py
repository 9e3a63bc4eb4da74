"""The discrete runs of `relu_balance` (Figure 1's top row): GD with its exact
correction, ND's discretisation (eq. 21) and NAGD (eq. 20), each at η = `lr` until the
training loss stalls."""

import numpy as np

from . import _networks as N
from ._homogeneous import corrected_charge, gd_laws, saved_steps, train_until_stall


def discrete_runs(cfg, loss, model, norms, L0):
    """GD, eq. 21 and NAGD from `model` on `loss`, at `cfg["lr"]` until the training
    loss stalls (`cfg["stall"]`), tracking `norms(t, q, v)` (the squared norms of the
    two layers). Returns `(metrics, arrays)`: where each run stopped, its saved steps,
    norms and losses; eq. 21's discrete energy against `L0` = L(w0); GD's raw and
    corrected layer quantity."""
    import jax
    import jax.numpy as jnp

    from lagrangian_nn import nn, optim

    h, lr = cfg["layer"], cfg["lr"]
    metrics, arrays = {}, {}
    # discrete: GD (with the exact correction), ND (eq. 21), NAGD (eq. 20), each at
    # η = lr until the training loss stalls (`_homogeneous.STALL_RULE`); the arrays keep
    # every step up to 4,000 saved points (evenly strided, the last step included)
    gd_opt, laws = gd_laws(lr, {"acc": nn.rescale(model, h)})
    track = {"norms": lambda s: norms(0, s.q, None)}
    n0 = np.array([[np.sum(np.asarray(w) ** 2) for w in model.weights[h - 1 : h + 1]]])

    # eq. 21's kinetic energy ½‖(w_k − w_k−1)/√η‖², for its energy along the run
    def kinetic(s):
        d = jax.tree.map(jnp.subtract, s.q, s.q_prev)
        return 0.5 * N.tree_dot(d, d) / lr

    discrete = (
        ("gd", "GD", gd_opt, laws),
        ("dnd", "eq. 21", optim.newtonian(lr), {"kin": kinetic}),
        ("dnagd", "NAGD", optim.nesterov(lr), {}),
    )
    for name, label, opt, extra in discrete:
        _, info, ps = train_until_stall(
            opt, loss, model, **cfg["stall"], track={**track, **extra}, label=label
        )
        metrics[f"{name}_training"] = info
        keep = saved_steps(info["steps"])
        arrays[f"{name}_k"] = keep
        arrays[f"{name}_ts"] = np.concatenate([[0.0], ps["ts"]])[keep]
        arrays[f"{name}_norms"] = np.concatenate([n0, ps["norms"]])[keep]
        arrays[f"{name}_loss"] = np.concatenate([ps["loss"], [info["final_loss"]]])[
            keep
        ]
        if name == "dnd":
            # E_k = ½‖(w_k − w_k−1)/√η‖² + L(w_k), k ≥ 1, against E_0 = L(w0) (rest)
            Ek = ps["kin"] + np.append(ps["loss"][1:], info["final_loss"])
            dev = np.abs(Ek - L0) / L0
            metrics["dnd_energy_max_change_over_L0"] = float(np.max(dev))
            off = np.flatnonzero(dev > 0.1)
            # the first step whose energy is off by more than 10 % of L(w0)
            metrics["dnd_energy_kept_until_step"] = (
                int(off[0]) + 1 if off.size else None
            )
            arrays["dnd_energy"] = np.concatenate([[L0], Ek])[keep]
        if name == "gd":
            raw, corrected, _ = corrected_charge(laws["acc"], ps["acc"], model)
            metrics["gd_difference_drift"] = float(np.max(np.abs(raw - raw[0])))
            metrics["gd_corrected_drift"] = float(
                np.max(np.abs(corrected - corrected[0]))
            )
            nrm = np.concatenate([n0, ps["norms"]])
            metrics["gd_norm_change"] = float(np.max(np.abs(nrm[:, 0] - nrm[0, 0])))
            arrays["gd_corrected"] = corrected[keep]
    return metrics, arrays
