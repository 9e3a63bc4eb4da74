"""The models and the known laws of `attention_counts`.

The models: attention heads, residual blocks with a softmax head (with and without
LayerNorm, without the skip), and the controls whose $(W_Q, W_K)$ symmetry is broken.
The known laws: the rank of the Jacobian of Marcotte et al.'s laws and of the charges
of the catalogue `lnn.nn.symmetries` (gradient flow), of the laws of the skew part of
the catalogue's linear generators and of its translations (momentum flows), and the
conserved polynomials of degree at most 2 (a linear solve for their coefficients).
"""

import numpy as np

# the catalogue's generators of the published laws: per-head GL and translations
PUBLISHED_KINDS = (":qk[", ":vo[", ":translate[")


# the controls: heads whose (W_Q, W_K) symmetry is broken. Queries rotated by a
# position-dependent angle keep, of GL(2), the rotation-scalings aI + bJ that commute
# with the rotations (one GF law of three, and the so(2) law of the momentum flows);
# tanh on the queries keeps none.
CONTROLS = ("rotated", "tanh_queries")


def _tanh_queries_class():
    import equinox as eqx
    import jax.numpy as jnp

    class TanhQueries(eqx.Module):
        """Self-attention with tanh applied to every query: breaks GL(d_head) of
        (W_Q, W_K) entirely (a control)."""

        attention: eqx.nn.MultiheadAttention

        def __call__(self, x, *, key=None):
            def process(q, k, v):
                return jnp.tanh(q), k, v

            return self.attention(x, x, x, process_heads=process)

    return TanhQueries


def _TanhQueries(mha):
    return _tanh_queries_class()(mha)


def build(c, n_tokens, seed=0):
    """The equinox model of configuration `c` (float64), and whether it has a
    softmax head."""
    import equinox as eqx
    import jax
    import jax.numpy as jnp

    from lagrangian_nn import nn

    f64 = jnp.float64
    d, k, h = c["d_model"], c["d_head"], c["heads"]
    keys = jax.random.split(jax.random.key(seed), 3)
    mha = eqx.nn.MultiheadAttention(h, d, qk_size=k, vo_size=k, key=keys[0], dtype=f64)
    if c["kind"] == "tanh_queries":
        att = _TanhQueries(mha)
    else:
        att = nn.SelfAttention(mha, rotate_queries=c["kind"] == "rotated")
    if c["kind"] in CONTROLS + ("head",):
        return nn.sequential([att]), False
    branch = [att]
    if c["kind"] == "block_ln":
        branch = [nn.Tokenwise(eqx.nn.LayerNorm(d, eps=0.0, dtype=f64))] + branch
    first = (
        nn.sequential(branch) if c["kind"] == "block_noskip" else nn.Residual(branch)
    )
    last = eqx.nn.Linear(d, c["n_classes"], key=keys[1], dtype=f64)
    return nn.sequential([first, nn.TokenMean(), last]), True


def paper_laws(model, softmax):
    """`theta -> vector` of Marcotte et al.'s laws: the upper triangles of every
    head's $C_{QK}$ and $C_{VO}$, and (softmax head) the column sums of the last
    `Linear`'s weight and the sum of its bias."""
    import equinox as eqx
    import jax
    import jax.numpy as jnp

    from lagrangian_nn import nn

    _, static = eqx.partition(model, eqx.is_inexact_array)
    stop = lambda m: isinstance(m, eqx.nn.MultiheadAttention | eqx.nn.Linear)  # noqa: E731

    def laws(params):
        m = eqx.combine(params, static)
        mods = [x for x in jax.tree.leaves(m, is_leaf=stop) if stop(x)]
        out = []
        for a in mods:
            if isinstance(a, eqx.nn.MultiheadAttention):
                for C in nn.attention_charges(a):
                    iu = jnp.triu_indices(C.shape[-1])
                    out.append(C[:, iu[0], iu[1]].ravel())
        if softmax:
            lin = [x for x in mods if isinstance(x, eqx.nn.Linear)][-1]
            out.append(jnp.sum(lin.weight, axis=0))
            out.append(jnp.sum(lin.bias)[None])
        return jnp.concatenate(out)

    return laws


def catalogue(model, softmax, x):
    """`(charges, quadratic, translations)` from `lnn.nn.symmetries(model)`:
    `charges(params) -> vector` of every certified symmetry's charge, and the
    generators of each kind."""
    import jax.numpy as jnp

    from lagrangian_nn import nn

    sym = nn.symmetries(model, x, softmax_head=softmax)
    names = sorted(sym)

    def charges(params):
        ch = sym.charges(params)
        return jnp.stack([ch[n] for n in names])

    quad = [(n, sym[n]) for n in names if sym.kinds[n] == "quadratic"]
    lin = [(n, sym[n]) for n in names if sym.kinds[n] == "linear"]
    return charges, quad, lin, names


def published(gens):
    """The `(name, generator)` pairs of the published laws' symmetries."""
    return [g for g in gens if any(t in g[0] for t in PUBLISHED_KINDS)]


def _rank(J, factor=1e3):
    """The numerical rank of the rows of `J` (each normalised), in float64."""
    J = np.asarray(J, np.float64)
    if J.size == 0:
        return 0
    J = J / np.maximum(np.linalg.norm(J, axis=1, keepdims=True), 1e-300)
    sv = np.linalg.svd(J, compute_uv=False)
    return int(np.sum(sv > factor * np.finfo(float).eps * np.sqrt(max(J.shape))))


def random_params(params, rng):
    """Gaussian parameters with the per-leaf RMS scale of `params`, flat."""
    import jax
    from jax.flatten_util import ravel_pytree

    flat, unravel = ravel_pytree(params)
    scales = []
    for x in jax.tree.leaves(params):
        rms = float(np.sqrt(np.mean(np.asarray(x) ** 2)))
        scales.append(np.full(np.size(x), rms if rms > 0 else 1.0))
    scales = np.concatenate(scales)
    return scales * rng.standard_normal(flat.shape[0]), unravel, scales


def gf_known(laws, params, rng):
    """The rank of the Jacobian of `laws` at a random point."""
    import jax
    import jax.numpy as jnp

    theta, unravel, _ = random_params(params, rng)
    J = jax.jacfwd(lambda th: laws(unravel(th)))(jnp.asarray(theta))
    return _rank(J)


def momentum_known(quad, lin, params, flow, damping, rng):
    r"""The rank of the Jacobian, in $(t, \theta, \dot\theta)$ at a random state, of
    the known momentum-flow laws: $m(t)\langle\dot\theta, S\theta\rangle$ for $S$ in
    the skew part of the span of the catalogue's linear generators $\xi = M\theta$, and
    $m(t)\langle\dot\theta, u\rangle$, $\langle\theta, u\rangle + \beta(t)
    \langle\dot\theta, u\rangle$ for each translation $u$. Returns the rank and the
    dimension of the skew part."""
    import jax
    import jax.numpy as jnp
    from jax.flatten_util import ravel_pytree

    theta, unravel, scales = random_params(params, rng)
    D = theta.shape[0]
    t0 = jnp.zeros(())

    def field(g):
        return lambda th: ravel_pytree(g.xi(t0, unravel(th)))[0]

    Ms = [np.asarray(jax.jacfwd(field(g))(jnp.asarray(theta))) for _, g in quad]
    us = [np.asarray(field(g)(jnp.asarray(theta))) for _, g in lin]
    skew = []
    if Ms:
        # combinations c with Σ c_g (M_g + M_gᵀ) = 0
        A = np.stack([(M + M.T).ravel() for M in Ms], axis=1)
        _, sv, Vt = np.linalg.svd(A, full_matrices=False)
        tol = 1e3 * np.finfo(float).eps * max(A.shape) * max(sv[0], 1.0)
        null = Vt[np.sum(sv > tol) :]
        for c in null:
            skew.append(sum(ci * M for ci, M in zip(c, Ms)))
    m = {
        "nd": lambda t: jnp.ones_like(t),
        "heavy_ball": lambda t: jnp.exp(damping * t),
        "nagf": lambda t: t**3,
    }[flow]
    beta = {
        "nd": lambda t: -t,
        "heavy_ball": lambda t: jnp.ones_like(t) / damping,
        "nagf": lambda t: t / 2,
    }[flow]
    S = jnp.asarray(np.stack(skew)) if skew else jnp.zeros((0, D, D))
    U = jnp.asarray(np.stack(us)) if us else jnp.zeros((0, D))

    def laws(s):
        t, th, v = s[0], s[1 : D + 1], s[D + 1 :]
        rot = m(t) * jnp.einsum("i,kij,j->k", v, S, th)
        mom = m(t) * (U @ v)
        boost = U @ th + beta(t) * (U @ v)
        return jnp.concatenate([rot, mom, boost])

    s0 = np.concatenate(
        [rng.uniform(0.5, 2.0, 1), theta, scales * rng.standard_normal(D)]
    )
    J = jax.jacfwd(laws)(jnp.asarray(s0))
    return _rank(J), len(skew)


def quadratic_gf_laws(phi, params, inputs_shape, rng, extra_rows=200):
    r"""An orthonormal basis (rows) of the coefficients of the polynomials $Q$ of
    degree ≤ 2 without constant term, $Q = \sum_{i\le j}p_{ij}\theta_i\theta_j +
    \sum_i b_i\theta_i$, with $\nabla Q(\theta)\cdot\nabla_\theta\langle c,
    \varphi(\theta, x)\rangle = 0$ at random $(\theta, x, c)$: the gradient-flow laws
    of degree ≤ 2. Also returns the singular values."""
    import jax
    import jax.numpy as jnp

    theta0, unravel, scales = random_params(params, rng)
    D = theta0.shape[0]
    iu, ju = np.triu_indices(D)
    K = len(iu) + D
    m = K + extra_rows
    out = jax.eval_shape(
        lambda th, x: phi(unravel(th), x),
        jnp.asarray(theta0),
        jax.ShapeDtypeStruct(inputs_shape, jnp.float64),
    )

    def grad(th, x, c):
        return jax.grad(lambda t: jnp.sum(c * phi(unravel(t), x)))(th)

    th = scales * rng.standard_normal((m, D))
    xs = rng.standard_normal((m, *inputs_shape))
    cs = rng.standard_normal((m, *out.shape))
    g = np.asarray(jax.jit(jax.vmap(grad))(jnp.asarray(th), xs, cs))
    A = np.concatenate([th[:, iu] * g[:, ju] + th[:, ju] * g[:, iu], g], axis=1)
    A = A / np.maximum(np.linalg.norm(A, axis=1, keepdims=True), 1e-300)
    _, sv, Vt = np.linalg.svd(A, full_matrices=False)  # m > K rows: Vt is K × K
    null = sv <= 1e3 * np.finfo(float).eps * np.sqrt(A.shape[0])
    return Vt[null], sv, (iu, ju)


def degree2_rank(coeffs, pairs, theta) -> int:
    """The number of functionally independent polynomials among those with
    coefficient rows `coeffs` (as in `quadratic_gf_laws`): the rank of their
    Jacobian at `theta`."""
    iu, ju = pairs
    D = theta.shape[0]
    F = np.zeros((len(iu) + D, D))  # ∂(feature)/∂θ
    r = np.arange(len(iu))
    F[r, iu] += theta[ju]
    F[r, ju] += theta[iu]
    F[len(iu) + np.arange(D), np.arange(D)] = 1.0
    return _rank(coeffs @ F) if len(coeffs) else 0


def charge_coefficients(quad, lin, params, pairs, rng):
    r"""The coefficient vectors, as in `quadratic_gf_laws`, of the charges of the
    catalogue's generators: $\langle\theta, M\theta\rangle$ for a linear field
    $M\theta$, $\langle u, \theta\rangle$ for a constant one."""
    import jax
    import jax.numpy as jnp
    from jax.flatten_util import ravel_pytree

    iu, ju = pairs
    theta, unravel, _ = random_params(params, rng)
    D = theta.shape[0]
    t0 = jnp.zeros(())

    def field(g):
        return lambda th: ravel_pytree(g.xi(t0, unravel(th)))[0]

    rows = []
    for _, g in quad:
        M = np.asarray(jax.jacfwd(field(g))(jnp.asarray(theta)))
        quadc = np.where(iu == ju, np.diag(M)[iu], (M + M.T)[iu, ju])
        rows.append(np.concatenate([quadc, np.zeros(D)]))
    for _, g in lin:
        u = np.asarray(field(g)(jnp.asarray(theta)))
        rows.append(np.concatenate([np.zeros(len(iu)), u]))
    return np.array(rows)


def degree2_row(phi, params, shape, kp, quad, lin, rng, extra_rows):
    """The degree-2 solve of one configuration (`phi`, `params` on inputs of `shape`;
    `kp` the parameters of its known laws, `quad`, `lin` the catalogue's generators):
    the number of conserved polynomials of degree ≤ 2, how many of them are
    functionally independent, the singular values around the cut, and how far the
    catalogue's charges lie off them."""
    null, sv, pairs = quadratic_gf_laws(phi, params, shape, rng, extra_rows)
    # products of laws are laws: the polynomials of degree ≤ 2 span
    # `degree2_polynomials` dimensions, of which `degree2_gf` are
    # functionally independent (the rank of their Jacobian at a random point)
    row = {"degree2_polynomials": int(len(null))}
    row["degree2_gf"] = degree2_rank(null, pairs, random_params(kp, rng)[0])
    cut = len(sv) - len(null)
    row["degree2_smallest_nonzero"] = float(sv[cut - 1]) if cut else np.nan
    row["degree2_largest_zero"] = float(sv[cut]) if len(null) else np.nan
    # the catalogue's charges as coefficient vectors, and how far they lie
    # off the degree-2 laws (relative residual; 0 when all are inside)
    V = charge_coefficients(quad, lin, kp, pairs, rng)
    Qn, _ = np.linalg.qr(null.T)
    res = V.T - Qn @ (Qn.T @ V.T)
    row["catalogue_off_degree2"] = float(
        np.max(np.linalg.norm(res, axis=0) / np.linalg.norm(V.T, axis=0))
    )
    return row
