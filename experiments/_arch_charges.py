r"""What `transformer_charges` and `convnet_charges` share: one run of an
architecture (`Architecture`) under gradient flow, SGD with momentum and weight decay
(float64 and float32, under the exact charge laws) and AdamW (against the SGD bound),
each with its control; the measurements along the runs; the four-panel figure."""

from pathlib import Path

import numpy as np

from . import _networks as N
from ._common import (
    claim,
    control,
    enable_float64,
    load,
    log,
    stage,
)

# AdamW must leave the median quadratic charge at least this far beyond the SGD bound
# (plain SGD stays within it: its ratio is at most 1)
ADAMW_RATIO = 1e3


def run_config(quick):
    """The settings of the flows and the training that both architectures share."""
    return {
        # the flows' model is small (`gf_model`); ReLU's kinks keep the adaptive
        # solver's steps small, so their number grows with the samples, the units,
        # the horizon and the tolerance
        "gf_samples": 32,
        "gf_t1": 0.5 if quick else 1.0,
        # the solver's six stages in a loop: the same tableau and steps, a program
        # a sixth the size (compiles in half the time, runs slightly slower)
        "gf_looped_stages": quick,
        "gf_max_steps": 100_000 if quick else 250_000,
        "n_save": 5 if quick else 31,
        "rtol": 1e-8 if quick else 1e-9,
        "atol": 1e-10 if quick else 1e-11,
        "steps": 60 if quick else 1000,
        "batch": 16 if quick else 32,
        "lr": 0.05,
        "momentum": 0.9,
        "weight_decay": 1e-3,
        # the control's extra weight decay on one factor of each symmetry
        "control_decay": 0.05,
        "adamw_steps": 60 if quick else 300,
        "adamw_lr": 1e-3,
        "adamw_decay": 1e-2,
        "adamw_ratio": ADAMW_RATIO,
    }


def family(name: str) -> str:
    """The family of a catalogue name: `qk`, `vo`, `rescale`, `scale`, `translate`."""
    return name.split(":")[1].split("[")[0]


def group(name: str) -> str:
    """Charges that form one matrix or one layer's set: a head's $C_{QK}$ (`qk[h]`),
    a layer's unit rescalings, the translation of all logits."""
    where, rest = name.split(":")
    fam = family(name)
    if fam in ("qk", "vo"):
        return f"{where}:{fam}[{rest.split('[')[1].split(']')[0]}]"
    return f"{where}:{fam}"


def cast(generators, dtype):
    """The generators with their float arrays (masks, matrices) in `dtype`, so that
    every charge of the tracker is computed in the parameters' precision."""
    import jax
    import jax.numpy as jnp

    def one(a):
        if isinstance(a, np.ndarray | jax.Array) and jnp.issubdtype(
            a.dtype, jnp.floating
        ):
            return jnp.asarray(a, dtype)
        return a

    return {k: jax.tree.map(one, g) for k, g in generators.items()}


def params_in(params, dtype):
    import jax
    import jax.numpy as jnp

    return jax.tree.map(lambda a: jnp.asarray(a, dtype), params)


def charges_fn(tracker):
    """`(params at several times, their tracker) -> every charge of `tracker`'s
    generators at each time` (in `tracker.names` order): one compiled map of the
    families' charges, shared by every parameter tree whose arrays have the shapes of
    `tracker`'s (a model and its control, whose trees differ in static parts only)."""
    import jax
    import jax.numpy as jnp

    @jax.jit
    @jax.vmap
    def on_arrays(arrays):
        return jnp.concatenate([fam.charge(arrays) for fam in tracker.families])

    def f(qs, other):
        layout = other.layout
        if layout.shapes != tracker.layout.shapes:
            raise ValueError(
                f"the parameters' arrays have shapes {layout.shapes}, the tracker's "
                f"{tracker.layout.shapes}."
            )
        leaves = jax.tree.leaves(qs, is_leaf=lambda x: x is None)
        return on_arrays([leaves[i] for i in layout.positions])

    return f


def scaled_drift(Q, names):
    """Per charge, $\\max_t|Q(t) - Q(0)|$ over the largest $|Q|$ of its group (one
    head's matrix, one layer's set) along the run: `Q` is `(times, charges)`."""
    Q = np.asarray(Q)
    drift = np.max(np.abs(Q - Q[:1]), axis=0)
    scale = np.ones(len(names))
    groups = {}
    for i, n in enumerate(names):
        groups.setdefault(group(n), []).append(i)
    for idx in groups.values():
        s = np.max(np.abs(Q[:, idx]))
        scale[idx] = s if s > 0 else 1.0
    return drift / scale, scale


def gradient_flow(label, loss, params, cfg, charges):
    """GF of `loss` from `params`; the charges at the saved times (`charges`: the
    parameters at those times -> their charges)."""
    import jax
    import jax.numpy as jnp
    from jax.flatten_util import ravel_pytree

    import lagrangian_nn as lnn

    ts = jnp.linspace(0.0, cfg["gf_t1"], cfg["n_save"])
    # the flow of one flat vector: the solver's stages are then one array operation
    # each, not one per array of the model, and compile in about half the time; the
    # step-size controller's norm (the RMS over every entry) is the same
    flat, unravel = ravel_pytree(params)
    traj = stage(
        f"{label}GF",
        lambda: lnn.simulate(
            lnn.dynamics.gradient_flow(lambda v: loss(unravel(v))),
            flat,
            t0=0.0,
            t1=cfg["gf_t1"],
            ts=ts,
            rtol=cfg["rtol"],
            atol=cfg["atol"],
            max_steps=cfg["gf_max_steps"],
            solver=lnn.FusedTsit5(
                unroll_stages=False if cfg.get("gf_looped_stages") else None
            ),
            progress=True,
        ),
    )
    q = jax.vmap(unravel)(traj.q)
    Q = np.asarray(charges(q))
    sq = lambda p: sum(jnp.sum(a**2) for a in jax.tree.leaves(p))  # noqa: E731
    moved = float(sq(jax.tree.map(lambda a: a[-1] - a[0], q)) / sq(params))
    return np.asarray(ts), Q, moved


def train(tracker, optimizer, loss, params, x, y, idx):
    """`len(idx)` steps of `optimizer` on the mini-batches `x[idx[k]], y[idx[k]]`,
    inside one `jax.lax.scan`, with the tracker riding along; the final state of the
    tracker and the losses."""
    import equinox as eqx
    import jax
    import optax

    @eqx.filter_jit
    def run(tracker, params, x, y, idx):
        def step(carry, i):
            p, s, ts = carry
            value, g = jax.value_and_grad(loss)(p, x[i], y[i])
            u, s = optimizer.update(g, s, p)
            new = optax.apply_updates(p, u)
            ts = tracker.update(ts, p, g, s, new)
            return (new, s, ts), value

        init = (params, optimizer.init(params), tracker.init(params))
        (_, _, ts), losses = jax.lax.scan(step, init, idx)
        return ts, losses

    ts, losses = run(tracker, params, x, y, idx)
    return jax.block_until_ready(ts), np.asarray(losses)


def law_curves(report, tracker):
    """Per charge, $|Q_k - \\hat Q_k|$ at every step over the largest $|Q|$ of its
    family of generators (the report's own scaling; in the catalogue a family is one
    head's matrix or one layer's set): `(steps + 1, charges)`, with the measured
    and the predicted charges."""
    names = list(tracker.names)
    Q = np.stack([report.charges[n] for n in names], axis=1)
    P = np.stack([report.predicted[n] for n in names], axis=1)
    scale = np.ones(len(names))
    start = 0
    for fam in tracker.families:
        sl = slice(start, start + len(fam.names))
        s = np.max(np.abs(Q[:, sl]))
        scale[sl] = s if s > 0 else 1.0
        start += len(fam.names)
    return np.abs(Q - P) / scale, Q, P


def bound_curves(tracker, state, lr, names):
    """For an optimiser without an exact law: per charge the drift $|Q_k - Q_0|$ and
    the SGD bound $\\eta^2\\sum_{j<k}|\\langle g_j, Ag_j\\rangle|$ at every step
    (0 for a linear charge), unscaled: `(steps + 1, charges)` each."""
    import jax

    state = jax.device_get(state)
    Q, B = [], []
    for fam, Q0, buf in zip(tracker.families, state.initial, state.buffers):
        q = np.concatenate([np.asarray(Q0)[None], np.asarray(buf["charge"])])
        Q.append(q)
        gag = np.asarray(buf["gAg"]) if "gAg" in buf else np.zeros_like(q[1:])
        B.append(
            np.concatenate(
                [np.zeros((1, q.shape[1])), lr**2 * np.cumsum(np.abs(gag), axis=0)]
            )
        )
    Q, B = np.concatenate(Q, axis=1), np.concatenate(B, axis=1)
    assert list(tracker.names) == list(names)
    return np.abs(Q - Q[:1]), B


def aggregate(values, names, how="max"):
    """`values` `(T, charges)` reduced over the charges of each `group` (max of the
    absolute values, or the trace of a head's matrix / the sum of a layer's set):
    `(T, groups)` and the groups' names, in order of first appearance."""
    values = np.asarray(values)
    groups = {}
    for i, n in enumerate(names):
        groups.setdefault(group(n), []).append(i)
    cols = []
    for g, idx in groups.items():
        if how == "max":
            cols.append(np.max(np.abs(values[:, idx]), axis=1))
        else:
            keep = [i for i in idx if _diagonal(names[i])]
            cols.append(np.sum(values[:, keep], axis=1))
    return np.stack(cols, axis=1), list(groups)


def _diagonal(name):
    fam = family(name)
    if fam not in ("qk", "vo"):
        return True
    i, j = name.rsplit("[", 1)[1].rstrip("]").split(",")
    return i == j


class Architecture:
    """What `run` needs of an architecture: `build(spec, dtype, seed, broken)` its
    model (`broken=True`: the control, with the same parameters), `reshape(x)` of the
    digits for it, `one_factor(params)` the arrays the control's extra weight decay
    acts on, and `claims`: `(key, families, label, what the control breaks)`."""

    def __init__(self, build, reshape, one_factor, claims):
        self.build, self.reshape, self.one_factor = build, reshape, one_factor
        self.claims = claims


def _systems(arch, spec, x_probe, dtype, seed):
    """The catalogue of the model (certified in float64) and the parameters of the
    model and of its control in `dtype`, with their static parts."""
    import equinox as eqx
    import jax.numpy as jnp

    from lagrangian_nn import nn

    model = arch.build(spec, jnp.float64, seed, False)
    ctrl = arch.build(spec, jnp.float64, seed, True)
    S = nn.symmetries(model, x_probe)
    pc, static_c = eqx.partition(ctrl, eqx.is_inexact_array)
    return {
        "S": S,
        # the generators act on paths into the parameters, the same in the control
        "gens": cast(dict(S), dtype),
        "params": params_in(S.params, dtype),
        "params_c": params_in(pc, dtype),
        "static": S.static,
        "static_c": static_c,
    }


def _losses(arch, sys_, mu):
    import equinox as eqx
    import jax
    import jax.numpy as jnp

    from lagrangian_nn import nn

    static, static_c = sys_["static"], sys_["static_c"]

    def loss(p, xb, yb):
        return nn.nll(jax.vmap(eqx.combine(p, static))(xb), yb)

    def loss_c(p, xb, yb):
        extra = sum(jnp.sum(a**2) for a in arch.one_factor(p))
        return nn.nll(jax.vmap(eqx.combine(p, static_c))(xb), yb) + 0.5 * mu * extra

    return loss, loss_c


def _claims_of(arch, prefix, values, values_c, names, bound, paper, metrics, what):
    out = []
    for key, fams, label, broken in arch.claims:
        m = max(float(v) for v, n in zip(values, names) if family(n) in fams)
        mc = max(float(v) for v, n in zip(values_c, names) if family(n) in fams)
        metrics[f"{prefix}_{key}"] = m
        metrics[f"{prefix}_control_{key}"] = mc
        out.append(
            claim(
                f"{what}: {label}: {metrics_label(prefix)}",
                paper,
                m,
                bound,
                basis="trajectory",
                control=control(f"{what.split(',')[0]} of the same start {broken}", mc),
            )
        )
    return out


def metrics_label(prefix):
    if prefix.startswith("gf"):
        return "max drift / largest charge of its head or layer"
    return "max |measured − exact law| / largest charge of its head or layer"


def run(cfg, arch):  # noqa: C901
    """Gradient flow, SGD with momentum and weight decay (float64 and float32) and
    AdamW of `arch` on the digits, with the control of every claim."""
    enable_float64()
    import jax
    import jax.numpy as jnp
    import optax

    from lagrangian_nn import optim

    arrays, metrics, claims = {}, {}, []
    x, y = N.load_data(cfg)
    x = arch.reshape(x)
    mu = cfg["control_decay"]
    steps = cfg["steps"]
    chain = optim.sgd_chain(
        cfg["lr"], momentum=cfg["momentum"], weight_decay=cfg["weight_decay"]
    )
    big = stage(
        "catalogue",
        lambda: _systems(arch, cfg["sgd_model"], x[:16], jnp.float64, cfg["seed"]),
    )
    big_tr = stage(
        "trackers", lambda: optim.tracker(big["gens"], chain, big["params"], steps)
    )
    big_tr_c = optim.tracker(big["gens"], chain, big["params_c"], steps)
    log(f"catalogue: {len(big['gens'])} certified charges; trackers built")
    metrics["sgd_parameters"] = int(sum(a.size for a in jax.tree.leaves(big["params"])))
    metrics["refused"] = dict(big["S"].refused)

    # --- gradient flow, float64 -----------------------------------------------------
    if cfg["gf_model"] == cfg["sgd_model"]:
        gf, tr, tr_c = big, big_tr, big_tr_c
    else:
        gf = _systems(arch, cfg["gf_model"], x[:16], jnp.float64, cfg["seed"])
        tr = optim.tracker(gf["gens"], chain, gf["params"], 1)
        tr_c = optim.tracker(gf["gens"], chain, gf["params_c"], 1)
    names = list(tr.names)
    assert list(tr_c.names) == names
    xg, yg = x[: cfg["gf_samples"]], y[: cfg["gf_samples"]]
    loss, loss_c = _losses(arch, gf, mu)
    # a charge depends on the parameters alone: one compiled map serves both runs
    charges = charges_fn(tr)
    ts, Q, moved = gradient_flow(
        "", lambda p: loss(p, xg, yg), gf["params"], cfg, lambda q: charges(q, tr)
    )
    _, Qc, moved_c = gradient_flow(
        "control: ",
        lambda p: loss_c(p, xg, yg),
        gf["params_c"],
        cfg,
        lambda q: charges(q, tr_c),
    )
    drift, _ = scaled_drift(Q, names)
    drift_c, _ = scaled_drift(Qc, names)
    metrics["gf_parameters"] = int(sum(a.size for a in jax.tree.leaves(gf["params"])))
    metrics["gf_charges"] = len(names)
    metrics["gf_relative_parameter_change"] = moved
    metrics["gf_control_relative_parameter_change"] = moved_c
    metrics["gf_groups"] = aggregate(Q[:1], names)[1]
    arrays["gf_ts"] = ts
    for tag, q in (("", Q), ("control_", Qc)):
        rel = np.abs(q - q[:1]) / scaled_drift(q, names)[1]
        arrays[f"gf_{tag}change"] = aggregate(rel, names)[0]
    claims += _claims_of(
        arch,
        "gf_drift",
        drift,
        drift_c,
        names,
        1e3 * cfg["rtol"],
        "Noether: gradient flow conserves every certified charge",
        metrics,
        "GF",
    )

    # --- SGD with momentum and weight decay, float64 and float32 --------------------
    idx = jax.random.randint(
        jax.random.key(cfg["seed"] + 1), (steps, cfg["batch"]), 0, x.shape[0]
    )
    loss, loss_c = _losses(arch, big, mu)
    names = list(big_tr.names)
    metrics["sgd_groups"] = aggregate(np.zeros((1, len(names))), names)[1]
    for dtype, tag in ((jnp.float64, "f64"), (jnp.float32, "f32")):
        xs = x.astype(dtype)
        devs, tols = {}, {}
        for sysname, p, lfn, t64 in (
            ("", big["params"], loss, big_tr),
            ("control_", big["params_c"], loss_c, big_tr_c),
        ):
            if dtype == jnp.float64:
                trk = t64
            else:
                trk = optim.tracker(
                    cast(big["gens"], dtype), chain, params_in(p, dtype), steps
                )
            p = params_in(p, dtype)
            state, losses = stage(
                f"SGD {tag} {sysname.rstrip('_')}",
                lambda trk=trk, p=p, lfn=lfn: train(
                    trk, chain.optimizer, lfn, p, xs, y, idx
                ),
            )
            rep = trk.report(state)
            assert list(trk.names) == names
            dev, Qm, Qp = law_curves(rep, trk)
            devs[sysname] = [rep.deviation[n] for n in names]
            tols[sysname] = rep.tolerance
            arrays[f"sgd_{tag}_{sysname}deviation"] = aggregate(dev, names)[0]
            arrays[f"sgd_{tag}_{sysname}loss"] = losses
            if sysname == "":
                arrays[f"sgd_{tag}_trace"] = aggregate(Qm, names, "trace")[0]
                arrays[f"sgd_{tag}_trace_predicted"] = aggregate(Qp, names, "trace")[0]
                metrics[f"sgd_{tag}_max_drift"] = max(rep.drift.values())
        metrics[f"sgd_{tag}_tolerance"] = tols[""]
        metrics[f"sgd_{tag}_loss_first_last"] = [
            float(arrays[f"sgd_{tag}_loss"][0]),
            float(arrays[f"sgd_{tag}_loss"][-1]),
        ]
        bits = tag[1:]
        claims += _claims_of(
            arch,
            f"sgd_{tag}_deviation",
            devs[""],
            devs["control_"],
            names,
            tols[""],
            "exact discrete charge law of SGD with momentum and weight "
            "decay (lnn.optim.charge_law)",
            metrics,
            f"SGD, {bits}-bit, {steps} steps",
        )

    # --- AdamW against the SGD bound; plain SGD obeys it ------------------------------
    n_a = cfg["adamw_steps"]
    lr = cfg["adamw_lr"]
    quad = np.array([big["S"].kinds[n] == "quadratic" for n in names])
    ratios = {}
    for tag, opt in (
        ("adamw", optax.adamw(lr, weight_decay=cfg["adamw_decay"])),
        ("plain_sgd", optax.sgd(lr)),
    ):
        trk = optim.tracker(big["gens"], opt, big["params"], n_a, lr=lr)
        state, _ = stage(
            f"{tag} against the SGD bound",
            lambda trk=trk, opt=opt: train(
                trk, opt, loss, big["params"], x, y, idx[:n_a]
            ),
        )
        d, b = bound_curves(trk, state, lr, names)
        ratios[tag] = d[-1, quad] / np.maximum(b[-1, quad], np.finfo(float).tiny)
        arrays[f"{tag}_drift"] = aggregate(d, names)[0]
        arrays[f"{tag}_bound"] = aggregate(b, names)[0]
        metrics[f"{tag}_min_ratio"] = float(np.min(ratios[tag]))
        metrics[f"{tag}_median_ratio"] = float(np.median(ratios[tag]))
        metrics[f"{tag}_max_ratio"] = float(np.max(ratios[tag]))
    claims.append(
        claim(
            f"AdamW, {n_a} steps: the quadratic charges drift far beyond the bound "
            "η²Σ|⟨g, Ag⟩| of plain SGD with the same gradients: median over the "
            "charges of drift / bound",
            "no exact law for adaptive optimisers",
            metrics["adamw_median_ratio"],
            cfg["adamw_ratio"],
            kind=">=",
            basis="trajectory",
            control=control(
                "plain SGD from the same start on the same batches, whose charges "
                "change by exactly η²⟨g, Ag⟩ per step (median of drift / bound)",
                metrics["plain_sgd_median_ratio"],
            ),
        )
    )
    return metrics, arrays, claims


def draw_figure(folder: Path, model_word: str, focus: tuple):
    """The charges of each head or layer over training, from the saved files: (a)
    gradient flow, (b) SGD against its exact law, (c) the law's residual in float64
    and float32, (d) AdamW against the SGD bound."""
    from . import _style as st

    plt = st.use()
    res, a = load(folder)
    m = res["metrics"]
    fig, axes = plt.subplots(2, 2, figsize=(st.DOUBLE, 4.6))
    (ax1, ax2), (ax3, ax4) = axes
    tiny = 1e-18

    # (a) gradient flow: every group's change, the control's largest per claim
    groups = m["gf_groups"]
    shades = st.shades(len(groups))
    for k in range(len(groups)):
        ax1.semilogy(
            a["gf_ts"][1:],
            np.maximum(a["gf_change"][1:, k], tiny),
            color=shades[k],
            lw=1.0,
        )
    ax1.semilogy(
        a["gf_ts"][1:],
        np.maximum(np.max(a["gf_control_change"][1:], axis=1), tiny),
        **st.CONTROL,
        label="control: symmetries broken",
    )
    ax1.plot([], [], color=shades[-1], lw=1.0, label=f"each {model_word}'s charges")
    ax1.set_xlabel("gradient-flow time $t$")
    ax1.set_ylabel("largest change / largest charge")
    ax1.set_title("(a) gradient flow", loc="left")
    ax1.legend(loc="center right")

    # (b) SGD, float64: the trace of each focus group, measured and predicted
    sg = m["sgd_groups"]
    keep = [k for k, g in enumerate(sg) if g.split(":")[1].split("[")[0] in focus]
    shades = st.shades(len(keep))
    steps = np.arange(a["sgd_f64_trace"].shape[0])
    for c, k in zip(shades, keep):
        ax2.plot(steps, a["sgd_f64_trace"][:, k], color=c, lw=1.2)
        ax2.plot(steps, a["sgd_f64_trace_predicted"][:, k], **st.PREDICTED)
    ax2.plot([], [], color=shades[-1], lw=1.2, label="measured")
    ax2.plot([], [], **st.PREDICTED, label="exact law")
    ax2.set_xlabel("SGD step $k$")
    ax2.set_ylabel(
        "trace of each head's charge matrix"
        if "qk" in focus
        else "sum of each layer's charges"
    )
    ax2.set_title("(b) SGD with momentum and weight decay", loc="left")
    ax2.legend(loc="best")

    # (c) the law's residual, float64 and float32, against its rounding bound
    for tag, c, bits in (("f64", st.color("GF"), "64"), ("f32", st.color("GD"), "32")):
        dev = np.max(a[f"sgd_{tag}_deviation"], axis=1)
        dev_c = np.max(a[f"sgd_{tag}_control_deviation"], axis=1)
        eps = np.finfo(np.float64 if tag == "f64" else np.float32).eps
        ax3.semilogy(steps, np.maximum(dev, tiny), color=c, label=f"{bits}-bit")
        ax3.semilogy(
            steps[1:], 100 * eps * np.sqrt(steps[1:]), color=c, ls="--", lw=0.8
        )
        ax3.semilogy(steps, np.maximum(dev_c, tiny), color=c, ls=":", lw=1.3)
    ax3.plot([], [], color="0.3", ls="--", lw=0.8, label="rounding bound")
    ax3.plot([], [], **st.CONTROL, label="control")
    ax3.set_xlabel("SGD step $k$")
    ax3.set_ylabel("|measured − exact law| / largest charge")
    ax3.set_title("(c) the exact law, to rounding", loc="left")
    ax3.set_ylim(1e-19, 1e10)
    ax3.legend(loc="upper right", ncol=2)

    # (d) AdamW against what plain SGD with the same gradients could do
    quad = [k for k, g in enumerate(sg) if "translate" not in g]
    n = a["adamw_drift"].shape[0]
    ks = np.arange(1, n)
    for tag, style, label in (
        ("adamw", dict(color=st.color("NAGD"), lw=1.0), "AdamW"),
        ("plain_sgd", st.CONTROL, "control: plain SGD"),
    ):
        ratio = a[f"{tag}_drift"][1:, quad] / np.maximum(
            a[f"{tag}_bound"][1:, quad], 1e-300
        )
        ax4.loglog(ks, np.maximum(ratio, tiny), **style, alpha=0.8)
        ax4.plot([], [], **style, label=label)
    ax4.axhline(1.0, **st.PREDICTED, label="the SGD bound")
    ax4.set_xlabel("step $k$")
    ax4.set_ylabel("charge drift / SGD bound $\\eta^2\\sum|\\langle g, Ag\\rangle|$")
    ax4.set_title("(d) AdamW breaks the SGD bound", loc="left")
    lo = min(1e-2, ax4.get_ylim()[0])
    ax4.set_ylim(lo, 1e6 * ax4.get_ylim()[1])
    ax4.legend(loc="upper right", ncol=2, fontsize=7)
    st.caption(
        fig,
        f"Charges of each {model_word} on the digits. (a) Gradient flow: the largest "
        f"change of the charges of each {model_word}, relative to the largest of "
        "them, stays at the solver's tolerance; dotted: the same on the control, "
        "whose symmetries are broken. (b) SGD with momentum and weight decay on "
        "mini-batches: the charges are not conserved (weight decay, finite steps) "
        "but follow their exact per-step law (dashed). (c) |measured − law| in 64- "
        "and 32-bit arithmetic against the rounding bound 100·eps·√k (dashed); "
        "dotted: the control. (d) AdamW: the drift of the quadratic charges over "
        "the bound that plain SGD with the same gradients obeys (one line per "
        f"{model_word}); dotted: plain SGD itself.",
    )
    st.save(fig, folder, "charges")
