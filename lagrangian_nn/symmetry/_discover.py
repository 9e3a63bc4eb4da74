"""Finding the symmetries of a loss inside a linear family of generators.

Precision. Every threshold here is set from the machine epsilon of the state `q` (the
least precise leaf), never from a fixed number. The sample matrix is scaled so that an
exact symmetry gives entries at the level of rounding, `eps` each (up to a modest
factor); a null vector over `samples` rows then has a singular value near
`eps·√samples`, the *rounding level*. A singular value is counted as zero when it is at
most the threshold `tol·√samples` (`tol = 10·eps` by default), and the count is
returned only when the smallest singular value counted as nonzero is at least `min_gap`
(100) times the threshold and the largest counted as zero at most 1/`zero_margin` (1/3)
of it; otherwise `discover` raises a `DiscoveryError`. Neither margin follows from how
the threshold is set, so it never returns a count the singular values cannot separate.
"""

import dataclasses
import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from .._noether import Generator
from .._tree import tree_dot
from .._validate import check_floating_tree
from . import _gap
from ._families import Diagonal, Family

# Singular values of exact symmetries, in units of the rounding level eps·√samples, were
# measured at 0.01–0.46 in float32 and float64 on MLPs of 2 to 11 layers and up to 4,600
# parameters (ReLU, RePU, Swish with biases, linear; rescaling and gl families); the
# default threshold, `TOL_FACTOR`·eps·√samples, leaves a factor of ≥ 20 above that.


class CertificationError(ValueError):
    """The base of the errors raised when singular values cannot separate what is
    counted from rounding at the precision used, so that a count would be a guess:
    `lnn.symmetry.DiscoveryError` (`discover`, `conservation_table`) and
    `lnn.symmetry.LawCountError` (`count_laws`). Catch it to handle both.

    The keyword arguments become attributes holding the numbers (`dtype`,
    `singular_values`, `threshold`, ...; see each subclass).
    """

    def __init__(self, message, **info):
        super().__init__(message)
        for k, v in info.items():
            setattr(self, k, v)


class DiscoveryError(CertificationError):
    """Raised by `discover` when the singular values of the sample matrix cannot separate
    the laws from the non-laws at the precision used (the count would be a guess).

    Attributes: `dtype`, `singular_values`, `threshold`, `rounding_level`,
    `largest_zero`, `smallest_nonzero` (NaN when that side is empty), `gap`
    (`smallest_nonzero / threshold`), `zero_margin` (`threshold / largest_zero`),
    `min_gap`; other errors of the module add their own numbers.
    """


class _Combination(eqx.Module):
    fields: tuple
    coefficients: jax.Array

    def __call__(self, t, q):
        out = None
        for c, f in zip(self.coefficients, self.fields):
            term = jax.tree.map(lambda x: c.astype(x.dtype) * x, f(q))
            out = term if out is None else jax.tree.map(jnp.add, out, term)
        return out


class _DiagonalCombination(eqx.Module):
    """A combination of a diagonal family's fields as one diagonal field."""

    field: Diagonal

    def __call__(self, t, q):
        return self.field(q)


def _fmt(x) -> str:
    return "none" if x is None or not np.isfinite(x) else f"{x:.2e}"


@dataclasses.dataclass(frozen=True, repr=False)
class Discovery:
    """The result of `discover`.

    - `generators`: one `lnn.Generator` per symmetry found.
    - `coefficients`: array `(n_found, n_basis)`, in reduced row-echelon form (each law
      normalised so its first free field has coefficient 1), in the family's basis.
    - `names`: the family's field names.
    - `singular_values`: of the scaled sample matrix (restricted to combinations whose
      field is not identically zero), descending.
    - `tol`: the per-entry threshold used; singular values at most
      `threshold = tol·√samples` count as zero.
    - `gap`: the smallest singular value counted as nonzero divided by `threshold` (inf
      when every combination is a symmetry). `discover` refuses (raises
      `DiscoveryError`) below `min_gap`.
    - `zero_margin`: `threshold` divided by the largest singular value counted as zero
      (inf when there is none); `discover` refuses below its `zero_margin`.
    - `threshold`, `rounding_level` (`eps·√samples`, the size of an exact symmetry's
      singular value up to a modest factor), `largest_zero`, `smallest_nonzero`
      (NaN when that side is empty), `dtype` (of `q`), `samples`.
    - `resolution`: the accuracy of the coefficients, about the larger of the largest
      zero and the rounding level over the smallest nonzero (entries smaller than about
      this are not resolved and are shown as 0).
    - `verdict`: one line saying why the count can be trusted.

    `str(discovery)` prints a short summary; `describe()` gives every law as text.
    """

    generators: list
    coefficients: np.ndarray
    names: tuple
    singular_values: np.ndarray
    tol: float
    gap: float
    threshold: float = math.nan
    rounding_level: float = math.nan
    largest_zero: float = math.nan
    smallest_nonzero: float = math.nan
    dtype: str = ""
    samples: int = 0
    resolution: float = 0.0
    verdict: str = ""
    zero_margin: float = math.inf

    def __len__(self):
        return len(self.generators)

    @property
    def count(self) -> int:
        """The number of independent symmetries found."""
        return len(self.generators)

    def describe(self, atol: float | None = None) -> list[str]:
        """Each law as text, e.g. `in2[0] + bias2[0] - 2*out2[0]`.

        **Arguments:**

        - `atol`: coefficients below this are left out, and coefficients are printed to
          this accuracy; default: ten times `resolution` (at least 1e-12).

        **Returns:** one string per law.
        """
        if atol is None:
            atol = max(10.0 * self.resolution, 1e-12)
        digits = int(min(max(math.ceil(-math.log10(atol)), 1), 15))
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
                        else f"{float(c):.{digits}g}*"
                    )
                    terms.append(f"{cs}{n}")
            lines.append(" + ".join(terms).replace("+ -", "- "))
        return lines

    def summary(self, max_laws: int = 6) -> str:
        """A few lines: the count, the singular-value gap, the verdict and the first
        `max_laws` laws."""
        n_sv = len(self.singular_values)
        lines = [
            f"Discovery: {self.count} law(s) among {len(self.names)} fields "
            f"({self.dtype}, {self.samples} samples)",
            f"  singular values: {n_sv - self.count} nonzero ≥ "
            f"{_fmt(self.smallest_nonzero)}, {self.count} zero ≤ "
            f"{_fmt(self.largest_zero)} (threshold {_fmt(self.threshold)}, rounding "
            f"level {_fmt(self.rounding_level)}); nonzero ≥ {self.gap:.3g}× the "
            f"threshold",
            f"  verdict: {self.verdict}",
        ]
        laws = self.describe()
        for law in laws[:max_laws]:
            lines.append(f"  {law}")
        if len(laws) > max_laws:
            lines.append(f"  ... ({len(laws) - max_laws} more; see describe())")
        return "\n".join(lines)

    def __str__(self):
        return self.summary()

    def __repr__(self):
        return self.summary()


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
        scale = np.sqrt(np.mean(x.astype(np.float64) ** 2)) + 1e-3
        out.append(
            jnp.asarray(scale * rng.standard_normal((samples, *x.shape)), x.dtype)
        )
    return jax.tree.unflatten(tree, out)


# The sample rows, the flattened states and the field matrices are compiled once per
# family structure and loss (a loss that is an `eqx.Module` holding arrays is traced,
# so new data of the same shapes reuses them too): the loss and the family's fields
# are arguments, never closures built per call.


@eqx.filter_jit
def _diagonal_rows(loss, segments, n, states):
    """⟨∇L, ξ_a⟩, |∇L| and |ξ_a|² at every sampled state, for a diagonal family (`n`
    fields, `segments` as in `Family`): one gradient per state."""

    def row(qs):
        g, _ = ravel_pytree(jax.grad(loss)(qs))
        w, _ = ravel_pytree(qs)
        gw, w2 = g * w, w * w
        values = jnp.zeros(n, gw.dtype)
        field_sq = jnp.zeros(n, gw.dtype)
        for k in range(2):
            ids = jnp.where(segments[:, k] >= 0, segments[:, k], n)
            values = values + jax.ops.segment_sum(gw, ids, n + 1)[:n]
            field_sq = field_sq + jax.ops.segment_sum(w2, ids, n + 1)[:n]
        return values, jnp.sqrt(jnp.dot(g, g)), field_sq

    return jax.vmap(row)(states)


@eqx.filter_jit
def _field_rows(loss, fields, states):
    """⟨∇L, ξ_a⟩, |∇L| and |ξ_a|² at every sampled state, for any family."""

    def row(qs):
        g = jax.grad(loss)(qs)
        xs = [f(qs) for f in fields]
        values = jnp.stack([tree_dot(g, x) for x in xs])
        field_sq = jnp.stack([tree_dot(x, x) for x in xs])
        return values, jnp.sqrt(tree_dot(g, g)), field_sq

    return jax.vmap(row)(states)


@eqx.filter_jit
def _flat_states(states):
    return jax.vmap(lambda qs: ravel_pytree(qs)[0])(states)


@eqx.filter_jit
def _field_matrix(fields, states, i):
    """The fields at sampled state `i` (a traced index), one flattened row each."""
    qs = jax.tree.map(lambda x: x[i], states)
    return jnp.stack([ravel_pytree(f(qs))[0] for f in fields])


def _rref(N, tol):
    """Reduced row-echelon form of the rows of N (the null-space basis); pivots and
    entries below `tol` (relative to each row's largest entry) count as zero."""
    A = np.array(N, dtype=float)
    A = A / np.maximum(np.max(np.abs(A), axis=1, keepdims=True), 1e-300)
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


def _range_and_kernel(G, eps):
    """Orthonormal bases (columns) of the range and the kernel of the scaled Gram matrix
    `G` (float64; its eigenvalues are squared field norms). A combination whose field
    is zero up to rounding, `eps` relative, or below float64's eigenvalue resolution,
    is in the kernel."""
    evals, evecs = np.linalg.eigh(G)
    top = max(float(evals.max()), 1e-300)
    cut = max(
        (_gap.TOL_FACTOR * eps) ** 2, _gap.TOL_FACTOR * G.shape[0] * np.finfo(float).eps
    )
    keep = evals > cut * top
    return evecs[:, keep], evecs[:, ~keep]


def _null_space(M, G, threshold, eps):
    """Null space (`≤ threshold`) of `M` within the range of the Gram matrix `G`
    (combinations whose field vanishes identically, such as "all outgoing weights of
    layer h" minus "all incoming weights of layer h+1", are not symmetries). Returns
    (orthonormal basis as rows, singular values)."""
    n = M.shape[1]
    Qr, _ = _range_and_kernel(G, eps)
    r = Qr.shape[1]
    if r == 0:
        return np.zeros((0, n)), np.zeros(0)
    # samples ≥ n ≥ r, so the reduced SVD has every right singular vector
    _, S, Vt = np.linalg.svd(M @ Qr, full_matrices=False)
    sv = np.zeros(r)
    sv[: min(len(S), r)] = S[:r]
    null = sv <= threshold
    return Vt[null] @ Qr.T, sv


def _refuse(reason, dtype, info):
    raise DiscoveryError(
        f"`discover` cannot separate laws from non-laws in {dtype}: {reason} "
        f"The count would be a guess, so none is returned. {_gap.float64_advice(dtype)}. "
        "More `samples` may also separate them; or pass `tol` to set the threshold "
        "yourself (it accepts approximate symmetries up to about `tol`).",
        **info,
    )


def discover(
    loss,
    q,
    family: Family,
    *,
    key,
    samples: int | None = None,
    tol: float | None = None,
    min_gap: float = _gap.MIN_GAP,
    zero_margin: float = _gap.ZERO_MARGIN,
) -> Discovery:
    r"""A basis of the generators in `family` that leave `loss` invariant.

    Samples states $q_s$ (Gaussian, with the per-leaf scale of `q`), stacks the rows
    $M_{sa} = \langle\nabla L(q_s), \xi_a(q_s)\rangle / (\|\nabla L(q_s)\|\sigma_a)$, with
    $\sigma_a$ the RMS of $\|\xi_a(q_s)\|$ over the samples, and returns the null space of
    $M$ from its SVD: the right singular vectors whose singular value is at most
    `tol·√samples`. Combinations whose field vanishes identically are excluded first. A
    combination $\sum_a c_a\xi_a$ in that null space satisfies eq. 16 at every sampled
    state, hence (for enough samples) is a symmetry within the family. Nothing outside the
    family is searched.

    An exact symmetry gives entries of $M$ at the rounding level of the state's dtype,
    $\epsilon$, so its singular value is about $\epsilon\sqrt{\text{samples}}$. The
    default threshold is `tol = 10·eps`. The count is returned only if the smallest
    singular value counted as nonzero is at least `min_gap` times the threshold and
    the largest counted as zero at most 1/`zero_margin` of it (each margin on its own
    side, so neither follows from how the threshold was set); otherwise the laws
    cannot be told from near-laws at this precision and `DiscoveryError` (a
    `ValueError`) is raised with the numbers. A combination whose field vanishes at
    every sampled state (all `samples` of them) is not a symmetry but a vanishing
    field, and is left out of the count.

    **Arguments:**

    - `loss`: `loss(q) -> scalar`.
    - `q`: a state fixing the structure, scale and dtype of the samples.
    - `family`: an `lnn.symmetry.Family` (`rescaling_family`, `gl_family`,
      `rotation_family`, `custom_family`).
    - `key`: PRNG key for the samples.
    - `samples`: number of sampled states, at least `len(family)`; default
      `2·len(family) + 8`.
    - `tol`: per-entry singular-value threshold (singular values at most
      `tol·√samples` count as zero); default `10·eps` of `q`'s dtype. A larger `tol`
      accepts approximate symmetries with residuals up to about `tol`.
    - `min_gap`: how far above the threshold the smallest nonzero singular value must
      be (default 100).
    - `zero_margin`: how far below the threshold the largest zero singular value must
      be (default 3).

    **Returns:** a `Discovery`; `str()` of it is a short summary.

    **Raises:** `DiscoveryError` when the singular values cannot separate laws from
    non-laws.
    """
    check_floating_tree(q, "q")
    if not isinstance(family, Family):
        raise ValueError(f"`family` must be an `lnn.symmetry.Family`; got {family!r}.")
    n = len(family)
    if n == 0:
        raise ValueError("`family` is empty.")
    samples = 2 * n + 8 if samples is None else samples
    if not isinstance(samples, int) or isinstance(samples, bool) or samples < n:
        raise ValueError(
            f"`samples` must be an int at least len(family) = {n} (fewer rows leave "
            f"null directions undetermined); got {samples!r}."
        )
    if tol is not None and not (isinstance(tol, int | float) and 0 < tol < math.inf):
        raise ValueError(
            f"`tol` must be a positive finite number or None; got {tol!r}."
        )
    _gap.check_margins(min_gap, zero_margin)
    leaves = jax.tree.leaves(q)
    eps = max(float(jnp.finfo(jnp.asarray(x).dtype).eps) for x in leaves)
    dtype = str(
        min((jnp.asarray(x).dtype for x in leaves), key=lambda d: jnp.finfo(d).bits)
    )
    tol_ = _gap.TOL_FACTOR * eps if tol is None else float(tol)
    threshold = tol_ * math.sqrt(samples)
    rounding = eps * math.sqrt(samples)

    states = _sample_states(q, key, samples)
    if family.segments is not None:
        values, gnorm, field_sq = _diagonal_rows(loss, family.segments, n, states)

        def gram(states):
            # linear in w², so the sum over every sampled state is one call
            seg = np.asarray(family.segments)
            w2 = np.sum(np.asarray(_flat_states(states), np.float64) ** 2, axis=0)
            G = np.zeros((n, n))
            for a in range(2):
                for b in range(2):
                    ok = (seg[:, a] >= 0) & (seg[:, b] >= 0)
                    np.add.at(G, (seg[ok, a], seg[ok, b]), w2[ok])
            return G

    else:
        values, gnorm, field_sq = _field_rows(loss, family.fields, states)

        def gram(states):
            # in float64 from the fields themselves, so that a combination that
            # vanishes identically has a Gram eigenvalue at (eps·|ξ|)², not eps·|ξ|²;
            # summed over every sampled state (one call of the compiled field matrix
            # per state)
            G = np.zeros((n, n))
            for i in range(samples):
                F = _field_matrix(family.fields, states, jnp.asarray(i))
                F = np.asarray(F, np.float64)
                G += F @ F.T
            return G

    values = np.asarray(values, dtype=np.float64)
    gnorm = np.asarray(gnorm, dtype=np.float64)
    field_sq = np.asarray(field_sq, dtype=np.float64)
    if not (np.all(np.isfinite(values)) and np.all(np.isfinite(gnorm))):
        raise ValueError(
            "`loss` has a non-finite gradient at some sampled states (drawn with the "
            "per-leaf scale of `q`); `discover` needs a loss that is finite there."
        )
    # Row s scaled by |∇L(q_s)|, column a by σ_a = RMS_s |ξ_a(q_s)|: entries are cosines
    # of size ≤ |ξ_a(q_s)|/σ_a = O(1), and an exact symmetry gives entries at the level
    # of rounding, eps each.
    sigma = np.sqrt(np.mean(field_sq, axis=0))
    sigma = np.where(sigma > 0, sigma, 1.0)
    M = values / np.maximum(gnorm, 1e-300)[:, None] / sigma[None, :]
    # Which combinations vanish identically is decided on all the sampled states: a
    # field that vanishes on a few of them (e.g. where a ReLU is off) is still a field.
    G = gram(states) / samples
    G = G / np.outer(sigma, sigma)

    B, sv = _null_space(M, G, threshold, eps)
    k = len(B)
    split = _gap.singular_gap(
        sv, threshold, rounding, min_gap=min_gap, zero_margin=zero_margin
    )
    gap, floor, n_kept = split["gap"], split["floor"], split["rank"]
    n_zero = len(sv) - n_kept
    largest_zero, smallest_nonzero = split["largest_zero"], split["smallest_nonzero"]
    info = _gap.split_numbers(split, sv, threshold, rounding, dtype, min_gap)
    if not split["certified"]:
        _refuse(
            f"{_gap.describe_split(split, threshold, min_gap, zero_margin)}; {n_zero} of "
            f"{len(sv)} singular values counted as zero (threshold {_fmt(threshold)}"
            f" = {tol_:.3g}·√samples, rounding level eps·√samples = "
            f"{rounding:.3e}).",
            dtype,
            info,
        )
    # The separation between the two sides: coefficients are resolved to about its
    # inverse (Wedin's bound for the null space).
    sep = smallest_nonzero / floor if n_kept else math.inf
    resolution = float(min(max(1.0 / sep, np.finfo(float).eps), 1e-2))
    rref_tol = float(min(max(100.0 * resolution, 1e-12), 0.1))
    # Any unit vector v with |Mv| ≤ √(floor·smallest_nonzero) lies within an angle
    # 1/√sep of the null space: the threshold for laws supported on one group.
    local_threshold = (
        math.sqrt(floor * smallest_nonzero) if n_kept else max(threshold, floor)
    )

    if family.groups is not None and k:
        # Sparse laws first: the null space within each group (e.g. one neuron) ...
        local = []
        for group in family.groups:
            idx = np.asarray(group)
            c, _ = _null_space(M[:, idx], G[np.ix_(idx, idx)], local_threshold, eps)
            for row_ in c:
                full = np.zeros(n)
                full[idx] = row_
                local.append(full)
        local = np.asarray(local).reshape(-1, n)
        if len(local) > k:
            _refuse(
                f"the groups' null spaces hold {len(local)} laws but the whole "
                f"family's only {k}.",
                dtype,
                info,
            )
        # ... then whatever the groups do not explain, modulo fields that vanish.
        _, trivial = _range_and_kernel(G, eps)
        span = np.concatenate([local, trivial.T]) if trivial.shape[1] else local
        extra = np.zeros((0, n))
        if k > len(local):
            if len(span):
                Q, _ = np.linalg.qr(span.T)
                R = B - (B @ Q) @ Q.T
            else:
                R = B
            _, S, Vt = np.linalg.svd(R, full_matrices=False)
            m_extra = k - len(local)
            after = S[m_extra] if len(S) > m_extra else 0.0
            if S[m_extra - 1] < 0.1 or after > 10.0 / math.sqrt(sep):
                _refuse(
                    f"the laws within groups and the family's null space disagree "
                    f"(residual singular values {S[: m_extra + 1]}).",
                    dtype,
                    info,
                )
            extra = Vt[:m_extra]
        # back to the family's basis: c_a = v_a / σ_a
        local_c = [_rref((v / sigma)[None], rref_tol)[0] for v in local]
        extra_c = _rref(extra / sigma, rref_tol) if len(extra) else np.zeros((0, n))
        coeffs = np.concatenate([np.reshape(local_c, (-1, n)), extra_c])
    else:
        coeffs = _rref(B / sigma, rref_tol) if k else np.zeros((0, n))
    if len(coeffs) != k:
        _refuse(
            f"the echelon form of the {k} null vectors has rank {len(coeffs)} at "
            f"resolution {rref_tol:.1e}.",
            dtype,
            info,
        )
    approximate = (
        f"; the zeros reach {_fmt(largest_zero)}, above {_gap.TOL_FACTOR:g}× the rounding "
        f"level, so these are symmetries only up to the `tol` = {tol_:.2g} given"
        if n_zero and largest_zero > _gap.TOL_FACTOR * rounding
        else ""
    )
    verdict = (
        f"reliable: {k} law(s); smallest nonzero singular value "
        f"{_fmt(smallest_nonzero)} is {gap:.2g}× the threshold {_fmt(threshold)} "
        f"(≥ min_gap {min_gap:g}), "
        + (
            f"largest zero {_fmt(largest_zero)} is 1/{split['zero_margin']:.2g} of it"
            if n_zero
            else "none counted as zero"
        )
        if n_kept
        else f"reliable: every combination is a symmetry (all singular values ≤ "
        f"{_fmt(largest_zero)}, 1/{split['zero_margin']:.2g} of the threshold "
        f"{_fmt(threshold)})"
    ) + approximate
    if family.segments is not None:  # diag(Σ c_a D_a) q: one field, not n of them
        gens = [
            Generator(_DiagonalCombination(Diagonal(family.segments, jnp.asarray(c))))
            for c in coeffs
        ]
    else:
        gens = [Generator(_Combination(family.fields, jnp.asarray(c))) for c in coeffs]
    return Discovery(
        gens,
        coeffs,
        family.names,
        sv,
        tol_,
        gap,
        threshold,
        rounding,
        largest_zero,
        smallest_nonzero,
        dtype,
        samples,
        resolution,
        verdict,
        split["zero_margin"],
    )
