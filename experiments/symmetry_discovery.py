r"""Discovering a network's symmetries and printing its conservation laws.

The paper derives Tables 2–5 by hand, architecture by architecture. Here
`lnn.symmetry.discover` finds them: it samples states, stacks the rows
$\langle\nabla L(q_s), \xi_a(q_s)\rangle$ over a family of candidate generators, and takes
the null space by SVD. We run it on

- the Figure-2 architecture (ReLU, RePU(2), RePU(2), ReLU): per-layer laws recover the
  factor $p$ of Table 2 and the chain factor $p^k = 4$;
- a Swish network with biases: the Table 3 law $W_h + b_h - \beta_h - W_{h+1}$;
- counts: for random bias-free ReLU networks (widths 2–9, depth 2–4) the number of
  independent GF laws found equals the sum of the hidden widths, the complete count of
  Marcotte, Gribonval & Peyré (NeurIPS 2023); for deep linear networks, the number of
  independent GF laws from $\mathfrak{gl}(d_h)$ equals the rank of the Jacobian of the
  entries of $W_hW_h^\top - W_{h+1}^\top W_{h+1}$ at random points.

Our search is restricted to the family given; their SageMath code (34 min to 2 h on 64
cores for such sweeps) also proves that no other laws exist. Ours does not.

Negative controls, each the same measurement on a network where the law must break: a
RePU(3) chain (factor 9, not 4); the first hidden activation replaced by tanh (its
neurons lose their laws); ReLU in place of tanh (laws appear); linear networks with tanh
hidden layers (no GL symmetry: no law, while the Jacobian rank stays).
"""

import time
from pathlib import Path

import numpy as np

from . import _networks as N
from ._common import claim, control, enable_float64, load, log, progress

NAME = "symmetry_discovery"


def config_for(quick, seed):
    return {
        "seed": seed,
        "n_random_relu": 2 if quick else 50,
        "n_random_linear": 1 if quick else 10,
        "widths": [2, 9],
        "depths": [2, 4],
        "d0": [2, 5],
        "n_data": 12,
        "fig2_hidden": [4, 4, 4, 4] if quick else [12, 12, 12, 12],
        "fig2_d0": 8,
        # negative controls: a mis-specified chain (RePU(3) for RePU(2): p^k = 9), the
        # first hidden activation replaced by tanh (not homogeneous), for the random
        # sweep on its first `n_control_relu` architectures
        "control_repu_power": 3.0,
        "n_control_relu": 1 if quick else 3,
        # and the first `n_control_linear` linear architectures with tanh hidden layers
        "n_control_linear": 1 if quick else 3,
        # quick: the conservation table (laws.md: each law checked along GF and ND
        # trajectories) of the Figure-2 network only; each table compiles its own
        # solves and checks, the largest part of a quick run. The full run also
        # renders the Swish network's (whose laws are discovered in both).
        **({"tables": ["figure2_per_layer"]} if quick else {}),
    }


TABLES = ("figure2_per_layer", "swish_bias_per_layer")


def _data(d0, n, k):
    import jax

    x = jax.random.normal(jax.random.key(k), (n, d0))
    y = jax.random.randint(jax.random.key(k + 1), (n,), 0, 3)
    return x, y


def compute(cfg):
    enable_float64()
    import jax
    import jax.numpy as jnp

    from lagrangian_nn import nn, symmetry as sy

    metrics, arrays, claims, tables = {}, {}, [], {}
    # Figure-2 architecture, per-layer laws
    x, y = _data(cfg["fig2_d0"], 40, cfg["seed"])
    loss = nn.make_loss(x, y)
    m = N.build(
        [cfg["fig2_d0"], *cfg["fig2_hidden"], 3],
        [nn.ReLU(), nn.RePU(2.0), nn.RePU(2.0), nn.ReLU(), nn.Identity()],
        seed=cfg["seed"],
    )
    d = sy.discover(
        loss,
        m,
        sy.rescaling_family(m, per_neuron=False),
        key=jax.random.key(cfg["seed"]),
    )
    rendered = cfg.get("tables", TABLES)
    if "figure2_per_layer" in rendered:
        tables["figure2_per_layer"] = sy.conservation_table(d, loss, m)
    metrics["figure2_laws"] = d.describe()
    metrics["figure2_gap"] = d.gap

    def w2_to_w4(d):
        # rows in reduced echelon form, one per pivot W_h; eliminate their common last
        # field to get the law between W2 and W4 directly: W2 - factor * W4
        rows = {d.names[int(np.flatnonzero(r)[0])]: r for r in d.coefficients}
        last = int(np.flatnonzero(rows["W2"])[-1])
        return float(rows["W2"][last] / rows["W4"][last])

    metrics["figure2_W2_to_W4_factor"] = w2_to_w4(d)
    # control: the chain with RePU(3) in place of RePU(2), whose factor is 3² = 9
    p3 = cfg["control_repu_power"]
    m3 = N.build(
        [cfg["fig2_d0"], *cfg["fig2_hidden"], 3],
        [nn.ReLU(), nn.RePU(p3), nn.RePU(p3), nn.ReLU(), nn.Identity()],
        seed=cfg["seed"],
    )
    d3 = sy.discover(
        loss,
        m3,
        sy.rescaling_family(m3, per_neuron=False),
        key=jax.random.key(cfg["seed"]),
    )
    metrics["control_repu3_W2_to_W4_factor"] = w2_to_w4(d3)
    dn = sy.discover(
        loss, m, sy.rescaling_family(m), key=jax.random.key(cfg["seed"] + 1)
    )
    metrics["figure2_per_neuron_count"] = len(dn)
    # control: the first hidden activation tanh instead of ReLU (not homogeneous)
    mtn = N.build(
        [cfg["fig2_d0"], *cfg["fig2_hidden"], 3],
        [nn.Tanh(), nn.RePU(2.0), nn.RePU(2.0), nn.ReLU(), nn.Identity()],
        seed=cfg["seed"],
    )
    metrics["control_tanh_first_per_neuron_count"] = len(
        sy.discover(
            loss, mtn, sy.rescaling_family(mtn), key=jax.random.key(cfg["seed"] + 1)
        )
    )
    metrics["figure2_per_neuron_laws_first"] = dn.describe()[:3]
    # Swish with biases (Table 3)
    x, y = _data(4, 40, cfg["seed"] + 7)
    ms = N.build(
        [4, 5, 5, 3],
        [nn.Swish(), nn.Swish(), nn.Identity()],
        bias=True,
        seed=cfg["seed"],
    )
    lossS = nn.make_loss(x, y)
    ds = sy.discover(
        lossS,
        ms,
        sy.rescaling_family(ms, per_neuron=False),
        key=jax.random.key(cfg["seed"] + 2),
    )
    if "swish_bias_per_layer" in rendered:
        tables["swish_bias_per_layer"] = sy.conservation_table(ds, lossS, ms)
    metrics["swish_laws"] = ds.describe()
    # tanh: nothing
    mt = N.build([4, 5, 3], [nn.Tanh(), nn.Identity()], seed=cfg["seed"])
    metrics["tanh_count"] = len(
        sy.discover(lossS, mt, sy.rescaling_family(mt), key=jax.random.key(3))
    )
    # control: the same network with ReLU (5 homogeneous neurons, 5 laws)
    mr = N.build([4, 5, 3], [nn.ReLU(), nn.Identity()], seed=cfg["seed"])
    metrics["control_relu_count"] = len(
        sy.discover(lossS, mr, sy.rescaling_family(mr), key=jax.random.key(3))
    )
    # counts over random ReLU architectures
    rng = np.random.default_rng(cfg["seed"])
    found, expected, gaps, ctrl_found, ctrl_expected = [], [], [], [], []
    start = time.perf_counter()
    for k in progress(range(cfg["n_random_relu"]), desc="random ReLU nets"):
        depth = int(rng.integers(cfg["depths"][0], cfg["depths"][1] + 1))
        widths = [
            int(w)
            for w in rng.integers(
                cfg["widths"][0], cfg["widths"][1] + 1, size=depth - 1
            )
        ]
        d0 = int(rng.integers(cfg["d0"][0], cfg["d0"][1] + 1))
        xk, yk = _data(d0, cfg["n_data"], 100 + k)

        def rescaling_laws(first, k=k, d0=d0, widths=widths, xk=xk, yk=yk):
            acts = [first] + [nn.ReLU()] * (len(widths) - 1) + [nn.Identity()]
            mk = N.build([d0, *widths, 3], acts, seed=k)
            return sy.discover(
                nn.make_loss(xk, yk),
                mk,
                sy.rescaling_family(mk),
                key=jax.random.key(1000 + k),
            )

        dk = rescaling_laws(nn.ReLU())
        found.append(len(dk))
        expected.append(sum(widths))
        gaps.append(dk.gap)
        if k < cfg["n_control_relu"]:
            # control: the first hidden activation tanh; its neurons have no law
            ctrl_found.append(len(rescaling_laws(nn.Tanh())))
            ctrl_expected.append(sum(widths))
    metrics["relu_sweep_seconds"] = time.perf_counter() - start
    matched = int(np.sum(np.equal(found, expected)))
    seconds = metrics["relu_sweep_seconds"]
    log(
        f"random ReLU nets: {matched} of {len(found)} counts as predicted, {seconds:.1f} s"
    )
    arrays["relu_found"], arrays["relu_expected"], arrays["relu_gap"] = (
        np.array(found),
        np.array(expected),
        np.array(gaps),
    )
    metrics["relu_all_counts_match"] = bool(
        np.all(arrays["relu_found"] == arrays["relu_expected"])
    )
    metrics["relu_min_gap"] = float(np.min(gaps))
    metrics["control_relu_tanh_first_found"] = ctrl_found
    metrics["control_relu_tanh_first_mismatches"] = int(
        np.sum(np.array(ctrl_found) != np.array(ctrl_expected))
    )
    # deep linear networks: gl(d_h) laws, integrable parts, against the Jacobian rank
    lin_found, lin_rank, lin_ctrl_found, lin_ctrl_rank = [], [], [], []
    for k in range(cfg["n_random_linear"]):
        depth = int(rng.integers(3, 5))
        widths = [int(w) for w in rng.integers(2, 5, size=depth - 1)]
        d0 = int(rng.integers(2, 4))
        xk = jax.random.normal(jax.random.key(200 + k), (cfg["n_data"], d0))
        yk = jax.random.normal(jax.random.key(300 + k), (cfg["n_data"], 2))
        mk = N.build([d0, *widths, 2], [nn.Identity()] * (len(widths) + 1), seed=k)
        lk = nn.make_loss(xk, yk, kind="squared_error")

        def gf_laws(mk, lk, k=k, widths=widths):
            total = 0
            for h in range(1, len(widths) + 1):
                dk = sy.discover(
                    lk, mk, sy.gl_family(mk, h), key=jax.random.key(400 + k)
                )
                # GF laws: the symmetric parts of the discovered A's (tr(C A) = 0 for
                # skew A)
                dh = widths[h - 1]
                sym = [
                    ((c.reshape(dh, dh) + c.reshape(dh, dh).T) / 2).ravel()
                    for c in dk.coefficients
                ]
                total += (
                    int(np.linalg.matrix_rank(np.array(sym), tol=1e-8)) if sym else 0
                )
            return total

        lin_found.append(gf_laws(mk, lk))

        def known(q):
            out = []
            for h in range(1, len(widths) + 1):
                C = nn.linear_quantity(q, h)
                iu = np.triu_indices(C.shape[0])
                out.append(C[iu])
            return jnp.concatenate(out)

        def rank_of_known(mk, known=known):
            J = jax.jacfwd(known)(mk)
            Jm = np.concatenate(
                [
                    np.asarray(j).reshape(J.weights[0].shape[0], -1)
                    for j in jax.tree.leaves(J)
                ],
                axis=1,
            )
            return int(np.linalg.matrix_rank(Jm, tol=1e-8))

        lin_rank.append(rank_of_known(mk))
        if k < cfg["n_control_linear"]:
            # control: the same comparison with tanh hidden layers, which have no
            # GL(d_h) symmetry: the quantities' Jacobian keeps its rank, the laws go
            mc = N.build(
                [d0, *widths, 2], [nn.Tanh()] * len(widths) + [nn.Identity()], seed=k
            )
            lin_ctrl_found.append(gf_laws(mc, lk))
            lin_ctrl_rank.append(rank_of_known(mc))
    arrays["linear_found"], arrays["linear_rank"] = (
        np.array(lin_found),
        np.array(lin_rank),
    )
    metrics["linear_all_counts_match"] = bool(
        np.all(arrays["linear_found"] == arrays["linear_rank"])
    )
    arrays["control_linear_tanh_found"] = np.array(lin_ctrl_found)
    arrays["control_linear_tanh_rank"] = np.array(lin_ctrl_rank)
    metrics["control_linear_tanh_found"] = lin_ctrl_found
    metrics["control_linear_tanh_mismatches"] = int(
        np.sum(np.array(lin_ctrl_found) != np.array(lin_ctrl_rank))
    )
    nctl = cfg["n_control_relu"]
    claims += [
        claim(
            "Figure-2 net: W2 law has factor p^k = 4 on W4 (|factor − 4|)",
            "Table 2, Fig. 2",
            abs(metrics["figure2_W2_to_W4_factor"] - 4.0),
            1e-6,
            basis="pointwise",  # read off the null space at sampled states
            control=control(
                f"|factor − 4| for the chain with RePU({p3:g}) in place of RePU(2), "
                f"whose law has p^k = {p3**2:g}",
                abs(metrics["control_repu3_W2_to_W4_factor"] - 4.0),
            ),
        ),
        claim(
            "Figure-2 net: per-neuron laws = hidden neurons (difference)",
            "eq. 28",
            abs(metrics["figure2_per_neuron_count"] - sum(cfg["fig2_hidden"])),
            0.0,
            basis="count",
            control=control(
                "the same difference with the first hidden activation tanh",
                abs(
                    metrics["control_tanh_first_per_neuron_count"]
                    - sum(cfg["fig2_hidden"])
                ),
            ),
        ),
        claim(
            "tanh network: number of rescaling laws",
            "no homogeneity",
            metrics["tanh_count"],
            0.0,
            basis="count",
            control=control(
                "the same count with ReLU in place of tanh",
                metrics["control_relu_count"],
            ),
        ),
        claim(
            f"random ReLU nets with count ≠ Σ widths (of {cfg['n_random_relu']})",
            "Marcotte et al. 2023",
            float(np.sum(arrays["relu_found"] != arrays["relu_expected"])),
            0.0,
            basis="count",
            control=control(
                f"the same for the first {nctl} nets with their first hidden "
                "activation tanh",
                metrics["control_relu_tanh_first_mismatches"],
            ),
        ),
        claim(
            f"deep linear nets with count ≠ Jacobian rank (of {cfg['n_random_linear']})",
            "eq. 42",
            float(np.sum(arrays["linear_found"] != arrays["linear_rank"])),
            0.0,
            basis="count",
            control=control(
                f"the same for the first {cfg['n_control_linear']} nets with tanh "
                "hidden layers (no GL(d_h) symmetry)",
                metrics["control_linear_tanh_mismatches"],
            ),
        ),
    ]
    metrics["tables_markdown"] = {k: t.markdown() for k, t in tables.items()}
    metrics["tables_text"] = {k: t.text() for k, t in tables.items()}
    return metrics, arrays, claims


def draw(folder: Path):
    res, _ = load(folder)
    md = ["# Discovered conservation laws", ""]
    for name, table in res["metrics"]["tables_markdown"].items():
        md += [f"## {name}", "", table, ""]
    md += [
        f"Random ReLU sweep: {res['config']['n_random_relu']} architectures in "
        f"{res['metrics']['relu_sweep_seconds']:.1f} s; all counts equal "
        f"the sum of hidden widths: {res['metrics']['relu_all_counts_match']}. Our search "
        "covers only the rescaling family; Marcotte et al.'s SageMath code (34 min to 2 h "
        "on 64 cores) also proves completeness.",
        "",
    ]
    (folder / "laws.md").write_text("\n".join(md))
    (folder / "laws.txt").write_text(
        "\n\n".join(f"{k}\n{v}" for k, v in res["metrics"]["tables_text"].items())
    )


def report(results):
    for name, text in results["metrics"]["tables_text"].items():
        print(f"\n{name}\n{text}")
