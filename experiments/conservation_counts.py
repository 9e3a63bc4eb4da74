r"""Counting every conservation law, and reproducing Marcotte, Gribonval & Peyré.

`lnn.symmetry.count_laws` counts the independent functions of the state conserved for
every loss and data set that factor through a model, $N = \dim(\text{state}) -
\dim\mathrm{Lie}(V)$ at a generic point (Lie brackets as nested JVPs, rank by a
certified SVD gap). We reproduce, as numbers:

1. gradient flow, deep ReLU networks with and without biases: $N = \sum_h d_h$ (the
   hidden widths), on random architectures of depth 2-4 and widths 2-9 (NeurIPS 2023);
2. gradient flow, deep linear networks: $N$ equals the rank of the gradients of the
   known laws $W_hW_h^\top - W_{h+1}^\top W_{h+1}$ at the point (computed independently);
3. momentum flows (ND, heavy ball, NAGF), deep ReLU networks: $N = 0$ (ICML 2024);
4. momentum flows, deep linear networks: $N$ equals the number of independent laws
   $m(t)Q(\theta, \dot\theta)$ with $Q$ a polynomial of degree ≤ 2 and $m$ the flow's
   integrating factor ($1$, $e^{\tau t}$, $t^3$), found by a linear solve for the
   coefficients of $Q$; and those laws are exactly spanned by the Noether charges
   (`lnn.noether_charge`) of the skew generators $A = -A^\top$ of each hidden layer's
   $GL(d_h)$ (they also leave the kinetic energy invariant; the symmetric ones do not).

Then the scaling: the time per architecture, and the largest two-layer ReLU network
certified in under a minute. Their SageMath notebooks report 34 min to 1 h 53 for the
50-architecture GF sweeps and 2 min 19 s (20 linear) and 1 min 03 s (20 ReLU) for the
momentum sweeps, on 64 cores, with widths at most 3 to 9.

Every count the certificate refuses (`LawCountError`) counts as a failure of its claim.

Negative controls are the same counts on networks whose symmetry is broken, against the
same prediction: tanh in place of ReLU (no rescaling symmetry: no law, so the count
misses Σ hidden widths by all of it), a ReLU first hidden layer in a linear network (it
breaks GL(d_1) down to d_1 rescalings, for GF, and so(d_1) to nothing, for momentum
flows), and the Noether charges of symmetric generators, which are not symmetries of the
kinetic energy (outside the law space).
"""

import time
from pathlib import Path

import numpy as np

from . import _style
from ._common import claim, control, enable_float64, load, progress
from ._counts_laws import (  # noqa: F401 (the independent laws, re-exported)
    charge_coefficients,
    known_linear_rank,
    momentum_laws,
    quadratic_laws,
    rescaling_rank,
    subspace_distance,
)
from ._counts_sweeps import MOMENTUM, Counter, _arch, _net, scaling
from ._counts_table import PUBLISHED, table_markdown

NAME = "conservation_counts"
_FLOW_NAMES = {"nd": "ND", "heavy_ball": "heavy ball", "nagf": "NAGF"}


def config_for(quick, seed):
    return {
        "seed": seed,
        "n_relu": 1 if quick else 50,
        "relu_depths": [2, 2] if quick else [2, 4],
        "relu_widths": [2, 3] if quick else [2, 9],
        "n_relu_controls": 1 if quick else 5,
        "n_linear": 1 if quick else 20,
        "linear_depths": [2, 2] if quick else [2, 4],
        "linear_widths": [2, 2] if quick else [2, 4],
        "n_momentum_relu": 1 if quick else 20,
        "momentum_relu_widths": [2, 2] if quick else [2, 5],
        "momentum_relu_depths": [2, 2] if quick else [2, 3],
        "n_momentum_linear": 1 if quick else 20,
        "momentum_linear_widths": [2, 2] if quick else [2, 3],
        "momentum_linear_depths": [2, 2] if quick else [2, 3],
        "damping": 1.0,
        # None: `count_laws`' default, one point for these analytic (or all-pattern)
        # fields, where the rank is the same at almost every point
        "n_points": None,
        "scaling_widths": [3] if quick else [25, 50, 100, 200, 400, 800],
        "scaling_d0": 4,
        "scaling_d_out": 2,
        "scaling_budget_s": 60.0,
    }


def compute(cfg):
    enable_float64()
    import jax

    from lagrangian_nn import nn, symmetry as sy

    rng = np.random.default_rng(cfg["seed"])
    metrics, arrays, claims = {}, {}, []
    key = lambda k: jax.random.key(cfg["seed"] * 100_003 + k)  # noqa: E731

    counter = Counter(cfg, key)
    count, count_momentum, misses = (
        counter.count,
        counter.count_momentum,
        Counter.misses,
    )
    refused = counter.refused  # every count the certificate refused: a failure

    # 1. GF, deep ReLU, with and without biases; control: tanh (no rescaling symmetry)
    relu = {"sizes": [], "expected": [], "count": [], "count_bias": [], "time": []}
    relu["control"], relu["control_expected"], relu["data"] = [], [], []
    for k in progress(range(cfg["n_relu"]), desc="GF ReLU"):
        sizes = _arch(rng, cfg["relu_depths"], cfg["relu_widths"])
        # built before the clock starts: the time is that of the counts
        plain = _net(sizes, nn.ReLU(), seed=k)
        biased = _net(sizes, nn.ReLU(), bias=True, seed=k)
        t0 = time.perf_counter()
        relu["count"].append(count("relu", sizes, model=plain, key=key(k)))
        relu["count_bias"].append(count("relu_bias", sizes, model=biased, key=key(k)))
        relu["time"].append((time.perf_counter() - t0) / 2)
        relu["sizes"].append(sizes)
        relu["expected"].append(sum(sizes[1:-1]))
        if len(relu["control"]) < cfg["n_relu_controls"]:
            # control: tanh in place of ReLU, the symmetry broken: no law, so the
            # count misses Σ hidden widths by all of it
            relu["control"].append(
                count(
                    "relu_control",
                    sizes,
                    model=_net(sizes, nn.Tanh(), seed=k),
                    key=key(k),
                )
            )
            relu["control_expected"].append(sum(sizes[1:-1]))
            # the laws near this θ, with the patterns its inputs reach (≥ the count
            # above; more where a narrow layer leaves some patterns unreachable)
            try:
                relu["data"].append(
                    sy.count_laws(
                        n_points=1,
                        model=_net(sizes, nn.ReLU(), seed=k),
                        key=key(k),
                        patterns="data",
                    ).count
                )
            except sy.LawCountError:
                relu["data"].append(-1)
    arrays["relu_expected"] = np.array(relu["expected"])
    for name in ("count", "count_bias"):  # -1: refused
        arrays[f"relu_{name}"] = np.array([-1 if c is None else c for c in relu[name]])
    arrays["relu_time"] = np.array(relu["time"])
    mism = misses(relu["count"], relu["expected"])
    mism_b = misses(relu["count_bias"], relu["expected"])
    ctrl = misses(relu["control"], relu["control_expected"])
    metrics.update(
        relu_architectures=relu["sizes"],
        relu_mismatches=mism,
        relu_bias_mismatches=mism_b,
        relu_control_counts=relu["control"],
        relu_data_pattern_counts=relu["data"],
        relu_sweep_seconds=float(2 * np.sum(relu["time"])),
    )

    # 2. GF, deep linear: count against the rank of the known laws' gradients;
    # control: the first hidden layer ReLU (GL(d_1) broken to d_1 rescalings)
    lin = {"sizes": [], "count": [], "known": [], "control": [], "time": []}
    for k in progress(range(cfg["n_linear"]), desc="GF linear"):
        sizes = _arch(rng, cfg["linear_depths"], cfg["linear_widths"])
        m = _net(sizes, nn.Identity(), seed=100 + k)
        t0 = time.perf_counter()
        lin["count"].append(count("linear", sizes, model=m, key=key(100 + k)))
        lin["time"].append(time.perf_counter() - t0)
        lin["known"].append(known_linear_rank(m))
        lin["control"].append(
            count(
                "linear_control",
                sizes,
                model=_net(sizes, nn.Identity(), seed=100 + k, first=nn.ReLU()),
                key=key(100 + k),
            )
        )
        lin["sizes"].append(sizes)
    for name in ("count", "control"):
        arrays[f"linear_{name}"] = np.array([-1 if c is None else c for c in lin[name]])
    arrays["linear_known"] = np.array(lin["known"])
    arrays["linear_time"] = np.array(lin["time"])
    metrics.update(
        linear_architectures=lin["sizes"],
        linear_mismatches=misses(lin["count"], lin["known"]),
        linear_control_mismatches=misses(lin["control"], lin["known"]),
        linear_sweep_seconds=float(np.sum(lin["time"])),
    )

    # 3. momentum flows, deep ReLU: no law
    mr = {f: [] for f in MOMENTUM}
    mr_time, mr_sizes, mr_control = [], [], []
    for k in progress(range(cfg["n_momentum_relu"]), desc="momentum ReLU"):
        sizes = _arch(rng, cfg["momentum_relu_depths"], cfg["momentum_relu_widths"])
        m = _net(sizes, nn.ReLU(), seed=200 + k)
        counts, seconds = count_momentum("momentum_relu", sizes, m, 200 + k)
        for f in MOMENTUM:
            mr[f].append(counts[f])
        mr_time.append(seconds)
        mr_sizes.append(sizes)
        if not mr_control:  # control: the same architecture, linear: so(d_h) laws
            ml = _net(sizes, nn.Identity(), seed=200 + k)
            c = count(
                "momentum_relu_control", sizes, model=ml, flow="nd", key=key(200 + k)
            )
            mr_control.append(-1 if c is None else c)
    for f in MOMENTUM:
        arrays[f"momentum_relu_{f}"] = np.array([-1 if c is None else c for c in mr[f]])
    arrays["momentum_relu_time"] = np.array(mr_time)
    mr_all = [c for f in MOMENTUM for c in mr[f]]
    metrics.update(
        momentum_relu_architectures=mr_sizes,
        # a refusal counts as a count that is not 0
        momentum_relu_max_count=int(max(1 if c is None else max(c, 0) for c in mr_all))
        if mr_all
        else 1,
        momentum_relu_refused=int(sum(c is None for c in mr_all)),
        momentum_relu_control_linear_nd=mr_control,
        momentum_relu_sweep_seconds=float(len(MOMENTUM) * np.sum(mr_time)),
    )

    # 4. momentum flows, deep linear: quadratic laws and Noether charges; control: the
    # first hidden layer ReLU (so(d_1) broken), against the linear nets' degree-2 laws
    ml_count = {f: [] for f in MOMENTUM}
    ml_quad = {f: [] for f in MOMENTUM}
    ml_noether, ml_noether_ctrl, ml_ctrl, ml_time, ml_sizes = [], [], [], [], []
    for k in progress(range(cfg["n_momentum_linear"]), desc="momentum linear"):
        sizes = _arch(rng, cfg["momentum_linear_depths"], cfg["momentum_linear_widths"])
        m = _net(sizes, nn.Identity(), seed=300 + k)
        counts, seconds = count_momentum("momentum_linear", sizes, m, 300 + k)
        for f in MOMENTUM:
            ml_count[f].append(counts[f])
        ml_time.append(seconds)
        quad, dist, ctrl_dist = momentum_laws(
            m, MOMENTUM, damping=cfg["damping"], seed=k
        )
        for f in MOMENTUM:
            ml_quad[f].append(quad[f])
        ml_noether.append(dist)
        ml_noether_ctrl.append(ctrl_dist)
        ml_ctrl.append(
            count(
                "momentum_linear_control",
                sizes,
                model=_net(sizes, nn.Identity(), seed=300 + k, first=nn.ReLU()),
                flow="nd",
                key=key(300 + k),
            )
        )
        ml_sizes.append(sizes)
    for f in MOMENTUM:
        arrays[f"momentum_linear_{f}"] = np.array(
            [-1 if c is None else c for c in ml_count[f]]
        )
        arrays[f"momentum_linear_quadratic_{f}"] = np.array(ml_quad[f])
    arrays["momentum_linear_noether_distance"] = np.array(ml_noether)
    arrays["momentum_linear_time"] = np.array(ml_time)
    arrays["momentum_linear_control_nd"] = np.array(
        [-1 if c is None else c for c in ml_ctrl]
    )
    so = [sum(d * (d - 1) // 2 for d in s[1:-1]) for s in ml_sizes]
    arrays["momentum_linear_so_dimension"] = np.array(so)
    metrics.update(
        momentum_linear_architectures=ml_sizes,
        momentum_linear_mismatches=int(
            sum(misses(ml_count[f], ml_quad[f]) for f in MOMENTUM)
        ),
        momentum_linear_so_mismatches=int(
            sum(misses(ml_count[f], so) for f in MOMENTUM)
        ),
        momentum_linear_control_mismatches=misses(ml_ctrl, ml_quad["nd"]),
        momentum_linear_noether_max_distance=float(np.max(ml_noether)),
        momentum_linear_control_symmetric_min_residual=float(np.min(ml_noether_ctrl)),
        momentum_linear_sweep_seconds=float(len(MOMENTUM) * np.sum(ml_time)),
    )
    metrics["refused"] = refused

    # scaling: two-layer ReLU networks of growing width (GF)
    sc_arrays, sc_metrics = scaling(cfg, counter)
    arrays.update(sc_arrays)
    metrics.update(**sc_metrics, published_seconds=PUBLISHED)

    nrc = len(relu["control"])
    n_relu, n_mrelu = len(relu["sizes"]), len(mr_sizes)
    n_refused = {
        name: sum(r["section"].startswith(name) for r in refused)
        for name in ("relu", "linear", "momentum_relu", "momentum_linear")
    }
    relu_control = control(
        f"the same for the first {nrc} architectures with tanh in place of ReLU (no "
        "rescaling symmetry: no law, a miss by Σ hidden widths)",
        ctrl,
    )
    claims += [
        claim(
            f"GF ReLU nets, no biases: counts ≠ Σ hidden widths or refused (of "
            f"{n_relu})",
            "Marcotte et al. 2023",
            mism,
            0.0,
            basis="count",
            control=relu_control,
        ),
        claim(
            f"GF ReLU nets with biases: counts ≠ Σ hidden widths or refused (of "
            f"{n_relu})",
            "Marcotte et al. 2023",
            mism_b,
            0.0,
            basis="count",
            control=relu_control,
        ),
        claim(
            f"GF linear nets: counts ≠ rank of ∇(W_hW_hᵀ − W_{{h+1}}ᵀW_{{h+1}}) or "
            f"refused (of {cfg['n_linear']})",
            "Marcotte et al. 2023",
            metrics["linear_mismatches"],
            0.0,
            basis="count",
            control=control(
                "the same nets with a ReLU first hidden layer (GL(d_1) broken to d_1 "
                "rescalings: d_1(d_1 − 1)/2 laws fewer), against the same rank",
                metrics["linear_control_mismatches"],
            ),
        ),
        claim(
            "momentum flows (ND, heavy ball, NAGF), ReLU nets: largest count, a "
            f"refusal counting as 1 (of {n_mrelu} × 3)",
            "Marcotte et al. 2024",
            metrics["momentum_relu_max_count"],
            0.0,
            basis="count",
            control=control(
                "ND count of the first architecture made linear (so(d_h) laws)",
                mr_control[0] if mr_control else 0,
            ),
        ),
        claim(
            "momentum flows, linear nets: counts ≠ number of degree-2 laws or refused "
            f"(of {cfg['n_momentum_linear']} × 3)",
            "Marcotte et al. 2024",
            metrics["momentum_linear_mismatches"],
            0.0,
            basis="count",
            control=control(
                "ND counts of the same nets with a ReLU first hidden layer (so(d_1) "
                "broken: d_1(d_1 − 1)/2 laws fewer), against the same degree-2 laws",
                metrics["momentum_linear_control_mismatches"],
            ),
        ),
        claim(
            "momentum flows, linear nets: Noether charges of skew A span the degree-2 "
            "laws (sine of the largest angle)",
            "Noether, Lemma 2",
            metrics["momentum_linear_noether_max_distance"],
            1e-8,
            basis="pointwise",
            control=control(
                "smallest relative residual off the laws of the charge of a symmetric "
                "A (not a symmetry: it changes the kinetic energy)",
                metrics["momentum_linear_control_symmetric_min_residual"],
            ),
        ),
    ]
    metrics["refused_by_section"] = n_refused
    return metrics, arrays, claims


def draw(folder: Path):
    res, a = load(folder)
    plt = _style.use()
    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(_style.DOUBLE, 2.8))
    lim = max(a["relu_expected"].max(), a["linear_known"].max()) + 2
    ax0.plot([0, lim], [0, lim], **_style.PREDICTED, label="count = prediction")
    # (predicted, counted, marker, colour, label); hollow markers but for ReLU's
    points = [
        ("relu_expected", "relu_count", "o", _style.color("GF"), "GF, ReLU (no bias)"),
        (
            "relu_expected",
            "relu_count_bias",
            "x",
            _style.color("GD"),
            "GF, ReLU (bias)",
        ),
        ("linear_known", "linear_count", "s", _style.CYCLE[3], "GF, linear"),
    ]
    points += [
        (
            f"momentum_linear_quadratic_{f}",
            f"momentum_linear_{f}",
            mk,
            _style.color("ND" if f != "nagf" else "NAGF"),
            f"{_FLOW_NAMES[f]}, linear",
        )
        for f, mk in zip(MOMENTUM, ("^", "v", "d"))
    ]
    for x, y, mk, color, label in points:
        hollow = {} if mk in ("o", "x") else {"mfc": "none"}
        ax0.plot(a[x], a[y], mk, color=color, label=label, ms=4, **hollow)
    ax0.set_xlabel("predicted count (Σ widths, known-law rank, degree-2 laws)")
    ax0.set_ylabel("certified count of laws")
    ax0.legend(loc="upper left", fontsize=6)
    ax1.loglog(
        a["scaling_parameters"], a["scaling_seconds"], "o-", color=_style.color("GF")
    )
    ax1.axhline(60, **_style.CONTROL, label="one minute")
    ax1.set_xlabel("parameters D (two-layer ReLU)")
    ax1.set_ylabel("seconds per count")
    from matplotlib import ticker

    # plain numbers at the measured sizes, no crowded minor labels
    ax1.set_xticks(a["scaling_parameters"])
    top = max(60.0, float(np.max(a["scaling_seconds"])))
    ax1.set_yticks([v for v in (1, 2, 5, 10, 20, 60, 120, 300, 600) if v <= 1.5 * top])
    for axis in (ax1.xaxis, ax1.yaxis):
        axis.set_major_formatter(ticker.FormatStrFormatter("%g"))
        axis.set_minor_formatter(ticker.NullFormatter())
    ax1.legend(loc="upper left")
    _style.caption(
        fig,
        "Left: counts of conservation laws against the published predictions "
        "(every point on the diagonal). Right: time to certify the count of a "
        "two-layer ReLU network against its number of parameters, in wall-clock seconds.",
    )
    _style.save(fig, folder, "counts")
    m = res["metrics"]
    (folder / "table.md").write_text(table_markdown(res))
    del m


def report(results):
    print(table_markdown(results))
