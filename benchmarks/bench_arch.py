"""Row (m): the Euler–Lagrange engine on a transformer of more than a million
parameters: `lnn.simulate` of Newtonian dynamics (ND), $\\ddot\\theta = -\\nabla
\\mathrm{loss}(\\theta)$, against a hand-written `diffrax.diffeqsolve` of the same
vector field, and the drift of the conserved charges along the run.

- Model: `lnn.nn.Transformer` (pre-LN, softmax cross-entropy head) on sequences of 8
  tokens of 8 features, one batch of 16 held by the loss (an `eqx.Module`, so both
  sides take the data as an argument); d_model 256, 8 heads of 32, 2 blocks, MLP
  width 1024: 1.58M parameters, float32. `--quick`: d_model 16, 8 heads of 2.
- Ours: `lnn.simulate(lnn.dynamics.newtonian(loss), θ0, θ̇0, t0=0, t1=0.02)` from
  the model's initialisation with θ̇0 = 0.1·N(0, 1) per parameter, rtol 1e-4,
  atol 1e-6: the acceleration derived from the Lagrangian, `lnn.FusedTsit5`,
  adaptive steps.
- Baseline: `diffrax.diffeqsolve` of the hand-written right-hand side
  `(θ, v) -> (v, -∇loss(θ))` with the same solver (`lnn.FusedTsit5`) and PID
  controller: the ratio is what deriving the acceleration from the Lagrangian
  costs, with the solver held fixed (the end states of `simulate` and of a stock
  `diffrax.Tsit5` solve agree to 100·rtol: checked). A reference line times the
  stock `diffrax.Tsit5` solve, as a user writes it, against the same baseline.
  Runs alternate in rounds (`paired_times`); ratios are medians of per-round
  ratios. Target <= 1.10.
- Charges: the isometries of the catalogue (`lnn.nn.symmetries(...).isometries()`:
  the rotations $E_{ij} - E_{ji}$ of each head's $GL(d_{head})$ of $(W_Q, W_K)$ and
  $(W_V, W_O)$, the translation of the head's bias), conserved by ND; their largest
  drift $|Q(T) - Q(0)|$ relative to the size of their terms
  $\\langle|\\dot\\theta|, |\\xi|\\rangle$, next to the same measurement for the
  diagonal $E_{00}$ of each head's $GL$ (a symmetry of the loss that moves the kinetic
  energy: its charge is not conserved, a control). At the full size the catalogue is
  certified on the small model of the same depth and heads and its generators
  enlarged to the full widths (same paths; $E_{ij}$ embedded in the larger head).

Usage: python benchmarks/bench_arch.py [--quick]
"""

import argparse
import sys
from pathlib import Path

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import ms, paired_times, row  # noqa: E402

import lagrangian_nn as lnn  # noqa: E402
from lagrangian_nn import nn  # noqa: E402

SMALL = dict(d_model=16, n_heads=8, n_layers=2, d_mlp=32)
LARGE = dict(d_model=256, n_heads=8, n_layers=2, d_mlp=1024)
BATCH = 16
T1, RTOL, ATOL = 0.02, 1e-4, 1e-6


class _Loss(eqx.Module):
    static: object = eqx.field(static=True)
    x: jax.Array
    y: jax.Array

    def __call__(self, p):
        logp = jax.nn.log_softmax(eqx.combine(p, self.static)(self.x))
        return -jnp.mean(jnp.take_along_axis(logp, self.y[:, None], axis=1))


def _enlarge(gen, factor):
    """A head generator of the small model for the model `factor` times as wide:
    $A$ embedded in the top-left block of the larger head's matrix."""
    xi = gen.xi
    if type(xi).__name__ != "_HeadGL":
        return gen  # a field that does not depend on the widths (translate[bias])
    A = np.asarray(xi.A)
    big = np.zeros((A.shape[0] * factor,) * 2, A.dtype)
    big[: A.shape[0], : A.shape[1]] = A
    return lnn.Generator(eqx.tree_at(lambda x: x.A, xi, jnp.asarray(big)))


def _problem(quick: bool):
    small = nn.Transformer(**SMALL, key=jax.random.key(0), dtype=jnp.float32)
    S = nn.symmetries(small)
    iso = S.isometries()
    # the isometries that do not depend on the widths, and the control E_00 per head
    keep = {
        k: g
        for k, g in iso.items()
        if (":so_" in k and k.endswith("[0,1]")) or k.endswith("translate[bias]")
    }
    control = {k: g for k, g in S.items() if k.endswith("][0,0]")}
    model = small
    if not quick:
        model = nn.Transformer(**LARGE, key=jax.random.key(0), dtype=jnp.float32)
        factor = LARGE["d_model"] // SMALL["d_model"]
        keep = {k: _enlarge(g, factor) for k, g in keep.items()}
        control = {k: _enlarge(g, factor) for k, g in control.items()}
    params, static = eqx.partition(model, eqx.is_inexact_array)
    kx, ky, kv = jax.random.split(jax.random.key(1), 3)
    x = jax.random.normal(kx, (BATCH, 8, 8), jnp.float32)
    y = jax.random.randint(ky, (BATCH,), 0, 10)
    loss = _Loss(static, x, y)
    leaves, treedef = jax.tree.flatten(params)
    keys = jax.random.split(kv, len(leaves))
    v0 = jax.tree.unflatten(
        treedef,
        [0.1 * jax.random.normal(k, a.shape, a.dtype) for k, a in zip(keys, leaves)],
    )
    return params, v0, loss, keep, control


def _hand(loss_like, solver):
    @jax.jit
    def run(loss, w, v):
        def rhs(t, y, args):
            w, v = y
            return v, jax.tree.map(jnp.negative, jax.grad(loss)(w))

        sol = diffrax.diffeqsolve(
            diffrax.ODETerm(rhs),
            solver,
            0.0,
            T1,
            None,
            (w, v),
            stepsize_controller=diffrax.PIDController(rtol=RTOL, atol=ATOL),
            max_steps=10_000,
        )
        return sol.ys, sol.stats["num_steps"]

    return run


class _Drift(eqx.Module):
    """Per generator: Q = ⟨θ̇, ξ(θ)⟩ and the size of its terms ⟨|θ̇|, |ξ(θ)|⟩."""

    gens: dict

    def __call__(self, q, v):
        t = jnp.zeros((), jnp.float32)
        out = {}
        for k, g in self.gens.items():
            xi = g.xi(t, q)
            dot = lambda a, b: sum(
                jnp.vdot(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b))
            )
            out[k] = (
                dot(v, xi),
                dot(jax.tree.map(jnp.abs, v), jax.tree.map(jnp.abs, xi)),
            )
        return out


def rows_m(quick: bool = False):
    params, v0, loss, iso, control = _problem(quick)
    n = sum(int(a.size) for a in jax.tree.leaves(params))
    L = lnn.dynamics.newtonian(loss)
    ours = lambda w, v: lnn.simulate(L, w, v, t0=0.0, t1=T1, rtol=RTOL, atol=ATOL)
    tsit5, fused = _hand(loss, diffrax.Tsit5()), _hand(loss, lnn.FusedTsit5())
    traj = ours(params, v0)
    (wh, vh), steps = tsit5(loss, params, v0)
    # same vector field, same steps: the end states agree to the tolerances
    gap = max(
        float(jnp.max(jnp.abs(a[-1] - b[-1])) / (1 + jnp.max(jnp.abs(b[-1]))))
        for a, b in zip(jax.tree.leaves(traj.q), jax.tree.leaves(wh))
    )
    if not gap <= 100 * RTOL:
        raise AssertionError(f"simulate and the hand-written solve disagree: {gap:.2e}")
    # charges at the start and the end of the run
    measure = eqx.filter_jit(_Drift({**iso, **control}))
    first = measure(jax.tree.map(lambda a: a[0], traj.q), v0)
    last = measure(
        jax.tree.map(lambda a: a[-1], traj.q), jax.tree.map(lambda a: a[-1], traj.qdot)
    )

    def drift(names):
        return max(
            abs(float(last[k][0] - first[k][0])) / float(max(first[k][1], last[k][1]))
            for k in names
        )

    d_iso, d_control = drift(iso), drift(control)
    if not d_control > 100 * d_iso:
        raise AssertionError(
            f"the control charges drift by {d_control:.2e}, the isometries' by "
            f"{d_iso:.2e}: not separated"
        )
    fns = [
        lambda w, v: fused(loss, w, v)[0],
        lambda w, v: ours(w, v).q,
        lambda w, v: tsit5(loss, w, v)[0],
    ]
    (t_hand, t_ours, t_tsit5), ratios, ratios_min = paired_times(
        fns, (params, v0), rounds=3 if quick else 6, min_batch_s=0.0
    )
    size = f"{n:,} params, {int(steps)} steps"
    label = "transformer" if not quick else "small transformer (--quick)"
    return [
        row(
            "m",
            f"simulate of ND on a {label} vs a hand-written diffrax solve of "
            f"(θ, v) -> (v, -∇loss) with the same solver (lnn.FusedTsit5); isometry "
            f"charges drift {d_iso:.1e} (control E_00 of GL(d_head): "
            f"{d_control:.1e}), relative to their terms",
            size,
            ms(t_ours),
            ms(t_hand),
            ratios[1],
            1.10,
            ratio_min=ratios_min[1],
        ),
        row(
            "m",
            f"(reference) the hand-written solve with stock diffrax.Tsit5, same "
            f"baseline, {label}",
            size,
            ms(t_tsit5),
            ms(t_hand),
            ratios[2],
            None,
            ratio_min=ratios_min[2],
        ),
    ]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    for r in rows_m(parser.parse_args().quick):
        print(r)
