r"""The independent side of `conservation_counts`: the conservation laws of deep linear
networks computed without `lnn.symmetry.count_laws`, to check its counts against.

- gradient flow: the rank of the gradients of the known laws
  $W_hW_h^\top - W_{h+1}^\top W_{h+1}$ (`known_linear_rank`; its diagonal alone,
  the rescaling laws, in `rescaling_rank`);
- momentum flows: the polynomials $Q$ of degree ≤ 2 with $m(t)Q$ conserved, found by
  a linear solve for their coefficients (`quadratic_laws`), and the coefficients of
  the Noether charges of each hidden layer's $GL(d_h)$ generators
  (`charge_coefficients`), compared by the angle between the spans
  (`subspace_distance`; `momentum_laws` does all three for one network).
"""

import numpy as np


def known_linear_rank(model) -> int:
    """The rank at `model` of the gradients of the entries of
    $W_hW_h^\top - W_{h+1}^\top W_{h+1}$ (the known GF laws of a deep linear net)."""
    import jax
    import jax.numpy as jnp
    from jax.flatten_util import ravel_pytree

    from lagrangian_nn import nn

    flat, unravel = ravel_pytree(model)

    def known(th):
        q = unravel(th)
        out = []
        for h in range(1, q.depth):
            C = nn.linear_quantity(q, h)
            out.append(C[jnp.triu_indices(C.shape[0])])
        return jnp.concatenate(out)

    J = np.asarray(jax.jacfwd(known)(flat))
    return _rank(J)


def rescaling_rank(model) -> int:
    """The same rank for the diagonals only (the rescaling laws): the control."""
    import jax
    import jax.numpy as jnp
    from jax.flatten_util import ravel_pytree

    from lagrangian_nn import nn

    flat, unravel = ravel_pytree(model)

    def known(th):
        q = unravel(th)
        return jnp.concatenate(
            [jnp.diag(nn.linear_quantity(q, h)) for h in range(1, q.depth)]
        )

    return _rank(np.asarray(jax.jacfwd(known)(flat)))


def _rank(M, factor=1e3):
    M = M / np.maximum(np.linalg.norm(M, axis=1, keepdims=True), 1e-300)
    sv = np.linalg.svd(M, compute_uv=False)
    return int(np.sum(sv > factor * np.finfo(float).eps * np.sqrt(M.shape[0])))


def _tau(flow, t, damping):
    return {"nd": 0.0, "heavy_ball": damping, "nagf": 3.0 / t}[flow]


def quadratic_laws(model, flow, *, damping=1.0, seed=0):
    r"""An orthonormal basis (rows) of the coefficient vectors of the polynomials $Q$ of
    degree ≤ 2 in $z = (\theta, \dot\theta)$, without constant term, such that
    $m(t)Q$ is conserved along every field of `flow` ($m'/m = \tau$), and the singular
    values. Coefficients: $Q = \sum_{i\le j} p_{ij}z_iz_j + \sum_i b_iz_i$."""
    import jax
    import jax.numpy as jnp
    from jax.flatten_util import ravel_pytree

    flat, unravel = ravel_pytree(model)
    D = flat.shape[0]
    n = 2 * D
    iu, ju = np.triu_indices(n)
    K = len(iu) + n
    rng = np.random.default_rng(seed)
    scale = float(np.sqrt(np.mean(np.asarray(flat) ** 2)))
    m = K + 20
    d_out = model.sizes[-1]

    def grad(th, x, c):
        return jax.grad(lambda t: jnp.sum(c * unravel(t)(x)))(th)

    th = scale * rng.standard_normal((m, D))
    xs = rng.standard_normal((m, model.sizes[0]))
    cs = rng.standard_normal((m, d_out))
    g = np.asarray(jax.jit(jax.vmap(grad))(jnp.asarray(th), xs, cs))
    z = np.concatenate([th, scale * rng.standard_normal((m, D))], axis=1)
    gt = np.concatenate([np.zeros((m, D)), g], axis=1)
    rows_y = np.concatenate(
        [z[:, ju] * gt[:, iu] + z[:, iu] * gt[:, ju], gt], axis=1
    )  # ∇_v Q · g = 0
    t = rng.uniform(0.5, 2.0, m)
    z2 = np.concatenate(
        [scale * rng.standard_normal((m, D)), scale * rng.standard_normal((m, D))], 1
    )
    tau = np.array([_tau(flow, ti, damping) for ti in t])[:, None]
    u = np.concatenate([z2[:, D:], -tau * z2[:, D:]], axis=1)
    rows_z = np.concatenate(
        [
            tau * z2[:, iu] * z2[:, ju] + z2[:, ju] * u[:, iu] + z2[:, iu] * u[:, ju],
            tau * z2 + u,
        ],
        axis=1,
    )  # τ Q + ∇Q · (v, −τ v) = 0
    A = np.concatenate([rows_y, rows_z])
    A = A / np.maximum(np.linalg.norm(A, axis=1, keepdims=True), 1e-300)
    _, S, Vt = np.linalg.svd(A, full_matrices=True)
    sv = np.zeros(K)
    sv[: len(S)] = S
    null = sv <= 1e3 * np.finfo(float).eps * np.sqrt(A.shape[0])
    assert A.shape[0] >= K
    return Vt[null], sv, K


def charge_coefficients(model, flow, *, skew=True, damping=1.0, seed=0):
    """Coefficient vectors (as in `quadratic_laws`) of $Q = e^{-s(t)}\\times$ the Noether
    charge of each generator $A$ of each hidden layer's $GL(d_h)$, from
    `lnn.noether_charge` with the flow's Lagrangian: the skew basis $E_{ab} - E_{ba}$
    (`skew=True`) or the symmetric one $E_{ab} + E_{ba}$ (the control)."""
    import jax
    import jax.numpy as jnp
    from jax.flatten_util import ravel_pytree

    import lagrangian_nn as lnn
    from lagrangian_nn import nn

    rng = np.random.default_rng(seed)
    x = jnp.asarray(rng.standard_normal((6, model.sizes[0])))
    y = jnp.asarray(rng.standard_normal((6, model.sizes[-1])))
    loss = nn.make_loss(x, y, kind="squared_error")
    L = {
        "nd": lambda: lnn.dynamics.newtonian(loss),
        "heavy_ball": lambda: lnn.dynamics.damped(loss, 1.0 / damping),
        "nagf": lambda: lnn.dynamics.nesterov(loss),
    }[flow]()
    flat, unravel = ravel_pytree(model)
    D = flat.shape[0]
    n = 2 * D
    iu, ju = np.triu_indices(n)
    out = []
    for h in range(1, model.depth):
        d = model.sizes[h]
        for a in range(d):
            for b in range(a if skew else a, d):
                if skew and a == b:
                    continue
                A = np.zeros((d, d))
                A[a, b] += 1.0
                A[b, a] += -1.0 if skew else 1.0
                Q = lnn.noether_charge(L, nn.gl(model, h, jnp.asarray(A)), reduced=True)
                f = (
                    lambda zz, Q=Q: Q(  # noqa: E731
                        jnp.asarray(1.0), unravel(zz[:D]), unravel(zz[D:])
                    )
                )
                z0 = jnp.zeros(n)
                H = np.asarray(jax.hessian(f)(z0))
                gr = np.asarray(jax.grad(f)(z0))
                quad = np.where(iu == ju, np.diag(H)[iu] / 2, H[iu, ju])
                out.append(np.concatenate([quad, gr]))
    return np.array(out)


def subspace_distance(A, B) -> float:
    """The sine of the largest principal angle between the row spaces of `A` and `B`
    (1 when their dimensions differ)."""
    if A.shape[0] != B.shape[0] or A.shape[0] == 0:
        return 1.0 if A.shape[0] != B.shape[0] else 0.0
    Qa, _ = np.linalg.qr(A.T)
    Qb, _ = np.linalg.qr(B.T)
    return float(np.linalg.norm(Qb - Qa @ (Qa.T @ Qb), 2))


def momentum_laws(model, flows, *, damping, seed):
    """For each flow, the number of degree-2 laws (`quadratic_laws`); the largest
    `subspace_distance` between them and the skew generators' Noether charges; and the
    control: the smallest relative residual off the ND laws of a symmetric
    generator's charge (not a symmetry of the kinetic energy)."""
    counts, dist, ctrl_dist = {}, 0.0, 0.0
    for f in flows:
        null, _, _ = quadratic_laws(model, f, damping=damping, seed=seed)
        counts[f] = len(null)
        ch = charge_coefficients(model, f, damping=damping)
        dist = max(dist, subspace_distance(ch, null))
        if f == "nd":  # control: symmetric generators' charges are not laws
            chs = charge_coefficients(model, f, skew=False)
            Qn, _ = np.linalg.qr(null.T)
            res = chs.T - Qn @ (Qn.T @ chs.T)
            ctrl_dist = float(
                np.min(np.linalg.norm(res, axis=0) / np.linalg.norm(chs.T, axis=0))
            )
    return counts, dist, ctrl_dist
