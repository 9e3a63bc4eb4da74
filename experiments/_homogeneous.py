"""Shared driver for the homogeneity experiments (Figure 2, Swish, biases): run GF and
GD on a network and record the per-layer Table-2/3 quantities and weight norms."""

import numpy as np

from . import _networks as N
from ._common import log


def gf_gd_config(quick, seed, data, data_dir, *, hidden, lr):
    """The configuration of a comparison of GF and GD at `lr` (`run_gf_and_gd`) on a
    network with the hidden widths `hidden`."""
    return {
        "seed": seed,
        **N.data_config(quick, data, data_dir),
        "hidden": hidden,
        "lr": lr,
        "gd_steps": 150 if quick else 1000,
        "n_save": 25 if quick else 60,
        "rtol": 1e-6,
        "atol": 1e-9,
    }


def gf_flow(loss, model, cfg, t_gf, label=""):
    """Gradient flow of `loss` from `model` to `t_gf`, at the tolerances and number of
    saved points of `cfg` (in a log, one line `{label}GF: ...` when it ends)."""
    return N.flows(
        loss,
        model,
        t_gf=t_gf,
        t_nd=1.0,
        nagf_t0=1.0,
        n_save=cfg["n_save"],
        rtol=cfg["rtol"],
        atol=cfg["atol"],
        which=("gf",),
        label=label,
    )["gf"]


def run_gf_and_gd(
    cfg, activations, *, bias, layers, extra=None, gd=True, p=None, label=""
):
    """Returns (model, loss, arrays, metrics) with, for each hidden `layer` in `layers`,
    the GF quantity along GF, and its raw/corrected values along GD.

    GF runs to `cfg["t_flow"]` where given, else to `cfg["gd_steps"]·lr`. GD runs
    `cfg["gd_steps"]` steps, or, where `cfg["stall"]` is given (`stall_config`), at `lr`
    until the training loss stalls (`train_until_stall`; `metrics["gd_training"]` says
    where it stopped, and the GD arrays keep the states `arrays["gd_k"]`).

    `gd=False` runs GF only (for a negative control); `p` is passed to
    `nn.rescale_quantity` (needed where an activation has no degree, such as the
    controls' softplus: the same quantity is then measured on a network without the
    symmetry). `label` prefixes the names of the runs' lines in a log ("control: ")."""
    import jax.numpy as jnp

    from lagrangian_nn import nn, optim

    x, y = N.load_data(cfg)
    sizes = [x.shape[1], *cfg["hidden"], 10]
    model = N.build(sizes, activations, bias=bias, seed=cfg["seed"])
    loss = nn.make_loss(x, y)
    lr = cfg["lr"]
    t_gf = cfg.get("t_flow", cfg.get("gd_steps", 0) * lr)
    gf = gf_flow(loss, model, cfg, t_gf, label=label)
    fns = {
        "W": lambda q: jnp.stack([jnp.sum(w**2) for w in q.weights]),
        "b": (lambda q: jnp.stack([jnp.sum(b**2) for b in q.biases])) if bias else None,
        "beta": lambda q: jnp.stack(
            [jnp.sum(b**2) if b is not None else jnp.zeros(()) for b in q.betas]
        ),
    }
    if extra:
        fns.update(extra)
    fns = {k: v for k, v in fns.items() if v is not None}
    for layer in layers:
        fns[f"C{layer}"] = lambda q, layer=layer: nn.rescale_quantity(q, layer, p=p)
    # every quantity, and the loss, at the start and at GF's saved states: one
    # compiled evaluation (a function per quantity would compile once each)
    start, along_gf = _start_and_along(gf, model, {**fns, "loss": loss})
    arrays = {"gf_ts": np.asarray(gf.ts)}
    metrics = {
        "n_params": int(sum(int(w.size) for w in __import__("jax").tree.leaves(model))),
        "initial_loss": float(start["loss"]),
    }
    for k in fns:
        arrays[f"gf_{k}"] = along_gf[k]
    if not gd:
        for layer in layers:
            C, Wn = arrays[f"gf_C{layer}"], arrays["gf_W"][:, layer - 1]
            change = float(np.max(np.abs(Wn - Wn[0])))
            metrics[f"gf_C{layer}_drift"] = float(np.max(np.abs(C - C[0])))
            metrics[f"gf_C{layer}_relative_drift"] = (
                metrics[f"gf_C{layer}_drift"] / change
            )
            metrics[f"gf_W{layer}_norm_change"] = change
        return model, loss, arrays, metrics
    track = {k: (lambda s, fn=fn: fn(s.q)) for k, fn in fns.items()}
    optimizer, laws = gd_laws(lr, {layer: nn.rescale(model, layer) for layer in layers})
    track.update({f"acc{layer}": law for layer, law in laws.items()})
    if cfg.get("stall") is None:
        gd = optim.run(optimizer, loss, model, cfg["gd_steps"], track=track)
        ts, tracked = np.asarray(gd.ts), gd.tracked
        keep = np.arange(cfg["gd_steps"] + 1)
    else:
        _, info, tracked = train_until_stall(
            optimizer, loss, model, **cfg["stall"], track=track, label=label + "GD"
        )
        metrics["gd_training"] = info
        ts, keep = tracked["ts"], saved_steps(info["steps"])
        arrays["gd_loss"] = np.concatenate([tracked["loss"], [info["final_loss"]]])[
            keep
        ]
    arrays["gd_k"] = keep
    arrays["gd_ts"] = np.concatenate([[0.0], ts])[keep]
    gd_full = {}
    for k in fns:
        gd_full[k] = np.concatenate([start[k][None], tracked[k]])
        arrays[f"gd_{k}"] = gd_full[k][keep]
    charges = corrected_charges(
        laws, {layer: tracked[f"acc{layer}"] for layer in laws}, model
    )
    for layer, (raw, corrected, step) in charges.items():
        arrays[f"gd_C{layer}_corrected"] = corrected[keep]
        # the second-order term of each GD step, |ΔC| / η² = |C(g)| (exactly)
        arrays[f"gd_C{layer}_step"] = np.abs(step)[keep[1:] - 1]
        C = arrays[f"gf_C{layer}"]
        Wn = arrays["gf_W"][:, layer - 1]
        change = float(np.max(np.abs(Wn - Wn[0])))
        metrics[f"gf_C{layer}_drift"] = float(np.max(np.abs(C - C[0])))
        metrics[f"gf_C{layer}_relative_drift"] = metrics[f"gf_C{layer}_drift"] / change
        metrics[f"gf_W{layer}_norm_change"] = change
        metrics[f"gd_C{layer}_raw_drift"] = float(np.max(np.abs(raw - raw[0])))
        metrics[f"gd_C{layer}_corrected_drift"] = float(
            np.max(np.abs(corrected - corrected[0]))
        )
    for layer in layers:
        Wn = gd_full["W"][:, layer - 1]
        metrics[f"gd_W{layer}_norm_change"] = float(np.max(np.abs(Wn - Wn[0])))
    metrics["flow_horizon"] = float(gf.ts[-1])
    metrics["final_loss_gf"] = float(along_gf["loss"][-1])
    return model, loss, arrays, metrics


def _start_and_along(traj, q0, fns: dict):
    """`{name: fn(q)}` for the functions `fns` at `q0` and at every saved state of
    `traj`, in one compiled evaluation: `(at_q0, along)`, dicts of NumPy arrays (the
    second with a leading time axis)."""
    global _start_and_along_jit
    if _start_and_along_jit is None:
        import equinox as eqx

        _start_and_along_jit = eqx.filter_jit(_start_and_along_impl)
    values = _start_and_along_jit(fns, q0, traj.q)
    values = {k: np.asarray(v) for k, v in values.items()}
    return {k: v[0] for k, v in values.items()}, {k: v[1:] for k, v in values.items()}


def _start_and_along_impl(fns, q0, q):
    import jax
    import jax.numpy as jnp

    both = jax.tree.map(lambda a, b: jnp.concatenate([a[None], b]), q0, q)
    return jax.vmap(lambda x: {k: fn(x) for k, fn in fns.items()})(both)


_start_and_along_jit = None


def gd_laws(lr, generators: dict):
    r"""GD at `lr` as an SGD chain (`optim.sgd_chain(lr)`: the steps of `optim.gd(lr)`)
    and, for each quadratic charge $C(w) = \langle w, \xi(w)\rangle$ of
    `generators`, its exact law under those steps, $C(w_{k+1}) = C(w_k) +
    \eta^2 C(g_k)$ (`optim.charge_law`). Returns `(optimizer, laws)`: run the optimizer
    with the laws among the trackers, then read each with `corrected_charge`."""
    from lagrangian_nn import optim

    chain = optim.sgd_chain(lr)
    laws = {k: optim.charge_law(chain, g, "quadratic") for k, g in generators.items()}
    return chain.optimizer, laws


def corrected_charge(law, tracked, start):
    r"""From a `gd_laws` law's tracked output along a run from `start`: the charge
    $C(w_k)$, the corrected charge $C(w_k) - \sum_{j<k}\eta^2 C(g_j)$ (conserved to
    rounding) and the per-step $C(g_k)$, as NumPy arrays (the first two with an entry
    for $k = 0$). $C(w_0)$ is evaluated as the law evaluates the later charges."""
    return corrected_charges({0: law}, {0: tracked}, start)[0]


def corrected_charges(laws: dict, tracked: dict, start):
    """`corrected_charge` for each law of `laws` (its tracked output in `tracked` under
    the same key), in one compiled function (the laws' numbers and the arrays traced,
    so it serves every run of the same network and length). Returns `{key: (charge,
    corrected, per_step)}`."""
    global _corrected_jit
    if _corrected_jit is None:
        import equinox as eqx

        _corrected_jit = eqx.filter_jit(_corrected_impl)
    out = {}
    for k, (measured, predicted, initial) in _corrected_jit(
        laws, {k: tracked[k] for k in laws}, start
    ).items():
        measured, predicted = np.asarray(measured), np.asarray(predicted)
        out[k] = (
            measured,
            measured - predicted + float(initial),
            np.asarray(tracked[k]["uAu"]),
        )
    return out


def _corrected_impl(laws, tracked, start):
    from lagrangian_nn import optim

    out = {}
    for k, law in laws.items():
        initial = optim.charge(law.generator, law.kind, start)
        measured, predicted = law.predict(tracked[k], initial)
        out[k] = (measured, predicted, initial)
    return out


_corrected_jit = None


def gd_identity(layer, corrected_drift, norm_change, name=None):
    r"""The claim that GD's corrected quantity (`corrected_charge`) is conserved: its
    drift relative to the change of $\|W_h\|^2$, at most 1e-10. An identity of the
    update, reported but not counted as evidence."""
    from ._common import claim

    return claim(
        name or f"GD: corrected layer-{layer} quantity drift / |Δ‖W{layer}‖²|",
        "exact GD accounting (ours)",
        corrected_drift / norm_change,
        1e-10,
        basis="identity",
    )


# The discrete runs train as the paper trains: at the paper's learning rate until the
# training loss stalls. Criterion (stated in results.json): the run goes in windows of
# `window` steps; after each window it stops when the best training loss so far improved
# over that window by at most `rtol`·L(w0) (the training curve is flat on the scale of
# its start; the cross-entropy of separable data keeps falling as ~1/k, so a tolerance
# relative to the current loss would never be met), `rtol` never below 64·eps of the
# dtype (below that the loss cannot resolve a decrease); or when the loss is not finite;
# or at `max_steps` (the cap, reported when hit). The best loss so far, not the last
# one, so that ND, which does not descend monotonically, stalls only when its lowest
# loss stops falling. The windows run under `lax.scan` inside one `lax.while_loop`
# whose condition is the criterion: no host sync until the run ends.
STALL_RULE = (
    "windows of {window} steps; stop after the first window over which the best "
    "training loss so far fell by at most max({rtol:g}, 64·eps)·L(w0), or at a "
    "non-finite loss, or at the cap of {max_steps} steps"
)


def stall_config(quick):
    """The stall criterion's settings: the full runs' cap is far beyond where they
    stall; the quick runs' is small (they stop at the cap, which they report)."""
    if quick:
        return {"window": 50, "rtol": 1e-3, "max_steps": 300}
    return {"window": 500, "rtol": 1e-3, "max_steps": 100_000}


def _stall_tol(rtol, dtype):
    import jax.numpy as jnp

    return max(float(rtol), 64 * float(jnp.finfo(dtype).eps))


def _until_stall_impl(optimizer, loss, q0, dt, track, window, n_windows, tol):
    import jax
    import jax.numpy as jnp
    import optax

    from lagrangian_nn import optim

    dtype = jnp.result_type(*jax.tree.leaves(q0))
    state0 = optimizer.init(q0)

    def step(carry, k):
        q, state = carry
        value, grad = jax.value_and_grad(loss)(q)
        updates, state = optimizer.update(grad, state, q)
        q_new = optax.apply_updates(q, updates)
        info = optim.Step(k, k.astype(dtype) * dt, q, q_new, grad, state)
        return (q_new, state), (value, {n: fn(info) for n, fn in track.items()})

    # per-step buffers for the whole cap (a few scalars a step), filled window by window
    probe = jax.eval_shape(lambda: step((q0, state0), jnp.asarray(1))[1])
    cap = window * n_windows
    bufs = jax.tree.map(lambda s: jnp.full((cap, *s.shape), jnp.nan, s.dtype), probe)
    inf = jnp.asarray(jnp.inf, dtype)
    L0 = loss(q0)

    def body(c):
        q, state, j, _, best, bufs = c
        ks = j * window + jnp.arange(1, window + 1)
        (q, state), out = jax.lax.scan(step, (q, state), ks)
        bufs = jax.tree.map(
            lambda b, o: jax.lax.dynamic_update_slice_in_dim(b, o, j * window, 0),
            bufs,
            out,
        )
        low = jnp.min(jnp.where(jnp.isfinite(out[0]), out[0], inf))
        new_best = jnp.where(
            jnp.all(jnp.isfinite(out[0])), jnp.minimum(best, low), jnp.nan
        )
        return q, state, j + 1, best, new_best, bufs

    def cond(c):
        _, _, j, prev, best, _ = c
        stalled = (j >= 2) & (prev - best <= tol * L0)
        return (j < n_windows) & ~stalled & ~jnp.isnan(best)

    c0 = (q0, state0, jnp.asarray(0), inf, inf, bufs)
    q, _, j, prev, best, bufs = jax.lax.while_loop(cond, body, c0)
    return q, j, prev, best, L0, bufs


_until_stall_jit = None


def train_until_stall(
    optimizer, loss, q0, *, window, rtol, max_steps, track=None, label="discrete run"
):
    """Runs an `lnn.optim` optimiser (`gd`, `newtonian`, `nesterov`) from `q0` until the
    training loss stalls (`STALL_RULE`). Returns `(params, info, per_step)`: `info` has
    the criterion, the step at which it stopped, whether it stalled or hit the cap, and
    the final loss; `per_step` has `loss` (before each step), `ts` and each tracked
    quantity for steps 1..stopped, as numpy arrays (a dict of them for a tracker that
    returns a dict). In a log the run ends with one plain line: `label`, its steps and
    simulated time, why it stopped, the wall time."""
    import time

    import equinox as eqx
    import jax
    import jax.numpy as jnp

    global _until_stall_jit
    if _until_stall_jit is None:
        _until_stall_jit = eqx.filter_jit(_until_stall_impl)
    if not (isinstance(window, int) and window > 0 and max_steps % window == 0):
        raise ValueError(
            f"`max_steps` ({max_steps!r}) must be a multiple of `window` ({window!r})."
        )
    dtype = jnp.result_type(*jax.tree.leaves(q0))
    tol = _stall_tol(rtol, dtype)
    dt = optimizer.update.lnn_time_step
    start = time.perf_counter()
    q, j, prev, best, L0, bufs = _until_stall_jit(
        optimizer,
        loss,
        q0,
        jnp.asarray(dt),
        dict(track or {}),
        window,
        max_steps // window,
        jnp.asarray(tol, dtype),
    )
    n = int(j) * window
    losses, tracked = bufs
    per_step = {"loss": np.asarray(losses[:n])}
    per_step.update(
        {k: jax.tree.map(lambda x: np.asarray(x[:n]), v) for k, v in tracked.items()}
    )
    per_step["ts"] = np.arange(1, n + 1) * float(dt)
    final = float(loss(q))
    finite = bool(np.isfinite(float(best))) and np.isfinite(final)
    stalled = (
        finite and (float(prev) - float(best) <= tol * float(L0)) and n >= 2 * window
    )
    info = {
        "criterion": STALL_RULE.format(window=window, rtol=rtol, max_steps=max_steps),
        "tolerance": tol,
        "steps": n,
        "stopped_by": "stall"
        if stalled
        else ("non-finite loss" if not finite else "cap"),
        "time": n * float(dt),
        "final_loss": final,
        "best_loss": float(best),
    }
    log(
        f"{label}: t = {info['time']:.4g}, {n} steps, stopped by {info['stopped_by']}, "
        f"{time.perf_counter() - start:.1f} s"
    )
    return q, info, per_step


def saved_steps(steps, at_most=4000):
    """Indices into the states 0..`steps` of a discrete run that its arrays keep: every
    one up to `at_most`, else an even stride, always with the first and the last."""
    stride = max(1, -(-steps // at_most))
    idx = np.arange(0, steps + 1, stride)
    return idx if idx[-1] == steps else np.append(idx, steps)


_ROTATION_CHARGE = []


def rotation_charge(h):
    """A tracker for `optim.run` of the input-rotation charge of eq. 21 at the time
    step `h`: entry [0, 1] of `optim.discrete_rotation_matrix(step, h)`. `h` is held as
    an array (an `eqx.Module` field), so one compiled run serves every step size,
    where a closure over `h` would compile once per value."""
    import equinox as eqx
    import jax
    import jax.numpy as jnp

    from lagrangian_nn import optim

    if not _ROTATION_CHARGE:

        class RotationCharge(eqx.Module):
            h: jax.Array

            def __call__(self, step):
                return optim.discrete_rotation_matrix(step, self.h)[0, 1]

        _ROTATION_CHARGE.append(RotationCharge)
    return _ROTATION_CHARGE[0](jnp.asarray(h))
