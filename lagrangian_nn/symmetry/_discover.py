"""Finding the symmetries of a loss inside a linear family of generators."""

import dataclasses

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from .._noether import Generator
from .._tree import check_floating_tree, tree_dot
from ._families import Family


class _Combination(eqx.Module):
    fields: tuple
    coefficients: jax.Array

    def __call__(self, t, q):
        out = None
        for c, f in zip(self.coefficients, self.fields):
            term = jax.tree.map(lambda x: c * x, f(q))
            out = term if out is None else jax.tree.map(jnp.add, out, term)
        return out


@dataclasses.dataclass(frozen=True)
class Discovery:
    """The result of `discover`.

    - `generators`: one `lnn.Generator` per symmetry found.
    - `coefficients`: array `(n_found, n_basis)`, in reduced row-echelon form (each law
      normalised so its first free field has coefficient 1), in the family's basis.
    - `names`: the family's field names.
    - `singular_values`: of the scaled sample matrix (restricted to combinations whose
      field is not identically zero), descending.
    - `tol`: the threshold used (singular values below `tol·√samples` count as zero);
      `gap`: the smallest singular value kept as nonzero divided by the largest one
      counted as zero (inf when one side is empty).
    """

    generators: list
    coefficients: np.ndarray
    names: tuple
    singular_values: np.ndarray
    tol: float
    gap: float

    def __len__(self):
        return len(self.generators)

    def describe(self, atol: float = 1e-8) -> list[str]:
        """Each law as text, e.g. `in2[0] + bias2[0] - 2*out2[0]`."""
        lines = []
        for row in self.coefficients:
            terms = []
            for c, n in zip(row, self.names):
                if abs(c) > atol:
                    cs = (
                        ""
                        if abs(c - 1) < atol
                        else "-"
                        if abs(c + 1) < atol
                        else f"{c:.6g}*"
                    )
                    terms.append(f"{cs}{n}")
            lines.append(" + ".join(terms).replace("+ -", "- "))
        return lines


def _sample_states(q, key, samples):
    """`samples` Gaussian states with the per-leaf RMS scale of `q`, stacked on axis 0.

    Drawn with NumPy (seeded from `key`): one `jax.random` call per leaf shape would
    compile a kernel per shape, which dominates the cost for small networks."""
    seed = int(jax.random.randint(key, (), 0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    leaves, tree = jax.tree.flatten(q)
    out = []
    for x in leaves:
        x = np.asarray(x)
        scale = np.sqrt(np.mean(x**2)) + 1e-3
        out.append(
            jnp.asarray(scale * rng.standard_normal((samples, *x.shape)), x.dtype)
        )
    return jax.tree.unflatten(tree, out)


def _rref(N, tol=1e-9):
    """Reduced row-echelon form of the rows of N (the null-space basis)."""
    A = np.array(N, dtype=float)
    rows, cols = A.shape
    r = 0
    for c in range(cols):
        if r == rows:
            break
        piv = r + int(np.argmax(np.abs(A[r:, c])))
        if abs(A[piv, c]) < tol:
            continue
        A[[r, piv]] = A[[piv, r]]
        A[r] /= A[r, c]
        for k in range(rows):
            if k != r:
                A[k] -= A[k, c] * A[r]
        r += 1
    A[np.abs(A) < tol] = 0.0
    return A[:r]


def _kernel(G, rel=1e-10):
    evals, evecs = np.linalg.eigh(G)
    return evecs[:, evals <= rel * max(evals.max(), 1e-300)].T


def _null_space(M, G, threshold):
    """Null space of M within the range of the Gram matrix G (combinations whose field
    vanishes identically, such as "all outgoing weights of layer h" minus "all incoming
    weights of layer h+1", are not symmetries). Returns (rref basis, singular values,
    gap)."""
    n = M.shape[1]
    evals, evecs = np.linalg.eigh(G)
    Qr = evecs[:, evals > 1e-10 * max(evals.max(), 1e-300)]
    r = Qr.shape[1]
    _, S, Vt = np.linalg.svd(M @ Qr, full_matrices=True)
    sv = np.zeros(r)
    sv[: min(len(S), r)] = S[:r]
    null = sv <= threshold
    kept, zero = sv[~null], sv[null]
    gap = (
        float(kept.min() / max(zero.max(), 1e-300))
        if len(zero) and len(kept)
        else float("inf")
    )
    basis = Vt[null] @ Qr.T
    return (_rref(basis) if len(basis) else np.zeros((0, n))), sv, gap


def _complement(B, span, tol=1e-8):
    """Rows spanning span(B) modulo span(`span`)."""
    if len(span) == 0:
        return B
    Q, _ = np.linalg.qr(span.T)
    R = B - (B @ Q) @ Q.T
    U, S, Vt = np.linalg.svd(R, full_matrices=False)
    return Vt[S > tol * max(1.0, S.max() if len(S) else 1.0)]


def discover(
    loss, q, family: Family, *, key, samples: int | None = None, tol: float = 1e-8
) -> Discovery:
    r"""A basis of the generators in `family` that leave `loss` invariant.

    Samples states $q_s$ (Gaussian, with the per-leaf scale of `q`), stacks the rows
    $M_{sa} = \langle\nabla L(q_s), \xi_a(q_s)\rangle$, each row scaled by
    $\|\nabla L(q_s)\|\max_a\|\xi_a(q_s)\|$, and returns the null space of $M$ from its
    SVD: the right singular vectors whose singular value is at most `tol·√samples`.
    Combinations whose field vanishes identically are excluded first. A combination $\sum_a c_a\xi_a$ in that null
    space satisfies eq. 16 at every sampled state, hence (for enough samples) is a
    symmetry within the family. Nothing outside the family is searched.

    **Arguments:**

    - `loss`: `loss(q) -> scalar`.
    - `q`: a state fixing the structure and scale of the samples.
    - `family`: an `lnn.symmetry.Family` (`rescaling_family`, `gl_family`,
      `rotation_family`, `custom_family`).
    - `key`: PRNG key for the samples.
    - `samples`: number of sampled states; default `2·len(family) + 8`.
    - `tol`: singular-value threshold (the gap around it is reported).

    **Returns:** a `Discovery`.
    """
    check_floating_tree(q, "q")
    if not isinstance(family, Family):
        raise ValueError(f"`family` must be an `lnn.symmetry.Family`; got {family!r}.")
    n = len(family)
    if n == 0:
        raise ValueError("`family` is empty.")
    samples = 2 * n + 8 if samples is None else samples
    if not isinstance(samples, int) or samples < 1:
        raise ValueError(f"`samples` must be a positive int; got {samples!r}.")
    states = _sample_states(q, key, samples)
    grad = jax.grad(loss)
    if family.segments is not None:
        seg = np.asarray(family.segments)
        seg_j = family.segments

        def row(qs):
            g, _ = ravel_pytree(grad(qs))
            w, _ = ravel_pytree(qs)
            gw, w2 = g * w, w * w
            values = jnp.zeros(n, gw.dtype)
            field_sq = jnp.zeros(n, gw.dtype)
            for k in range(2):
                ids = jnp.where(seg_j[:, k] >= 0, seg_j[:, k], n)
                values = values + jax.ops.segment_sum(gw, ids, n + 1)[:n]
                field_sq = field_sq + jax.ops.segment_sum(w2, ids, n + 1)[:n]
            return values, jnp.sqrt(jnp.dot(g, g) * jnp.max(field_sq))

        def gram(qs):
            w2 = np.asarray(ravel_pytree(qs)[0]) ** 2
            G = np.zeros((n, n))
            for a in range(2):
                for b in range(2):
                    ok = (seg[:, a] >= 0) & (seg[:, b] >= 0)
                    np.add.at(G, (seg[ok, a], seg[ok, b]), w2[ok])
            return G

    else:
        fields = family.fields

        def row(qs):
            g = grad(qs)
            xs = [f(qs) for f in fields]
            values = jnp.stack([tree_dot(g, x) for x in xs])
            field_sq = jnp.stack([tree_dot(x, x) for x in xs])
            return values, jnp.sqrt(tree_dot(g, g) * jnp.max(field_sq))

        @jax.jit
        def gram(qs):
            xs = [f(qs) for f in fields]
            return jnp.stack([jnp.stack([tree_dot(a, b) for b in xs]) for a in xs])

    values, scales = jax.jit(jax.vmap(row))(states)
    # Each row is scaled by |∇L(q_s)|·max_a|ξ_a(q_s)|, so entries are at most 1 in size
    # and an exact symmetry gives entries at the level of rounding.
    M = np.asarray(values) / np.maximum(np.asarray(scales), 1e-300)[:, None]
    G = sum(
        np.asarray(gram(jax.tree.map(lambda x, i=i: x[i], states))) for i in range(2)
    )
    threshold = tol * np.sqrt(samples)
    coeffs, sv, gap = _null_space(M, G, threshold)
    if family.groups is not None and len(coeffs):
        # Sparse laws first: the null space within each group (e.g. one neuron) ...
        local = []
        for group in family.groups:
            idx = np.asarray(group)
            c, _, _ = _null_space(M[:, idx], G[np.ix_(idx, idx)], threshold)
            for row_ in c:
                full = np.zeros(n)
                full[idx] = row_
                local.append(full)
        local = np.asarray(local).reshape(-1, n)
        # ... then whatever the groups do not explain, modulo fields that vanish.
        trivial = _kernel(G)
        span = np.concatenate([local, trivial]) if len(trivial) else local
        extra = _complement(coeffs, span)
        coeffs = np.concatenate([local, _rref(extra)]) if len(extra) else local
    gens = [Generator(_Combination(family.fields, jnp.asarray(c))) for c in coeffs]
    return Discovery(gens, coeffs, family.names, sv, tol, gap)
