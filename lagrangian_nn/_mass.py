"""Static detection of a diagonal mass matrix, by reading the jaxpr of `u ↦ M u`.

Every Table-1 Lagrangian has `M = c(t)·I`, and many others a diagonal `M` (a mass per
parameter, per layer, or a magnetic term linear in q̇). If the traced Hessian-vector
product is, operation by operation, "each leaf of u times a coefficient that does not
depend on u", then M is that diagonal exactly, and the Euler–Lagrange solve is a
division with no run-time test and no control flow: the acceleration then costs what a
hand-written ODE costs, and the compiler can fuse it into whatever consumes it.

The reading is deliberately narrow. Only these operations may touch u: `mul` or `div`
by a u-independent value, `dot_general` with a u-independent scalar and no contraction,
`neg`, `add`/`add_any`/`sub` of two multiples of the same leaf, reshapes, dtype-preserving
converts, `copy`, and calls (`jit`, `custom_jvp_call`) whose bodies obey the same rules.
Each has its rule in the registry `_RULES` (primitive name -> rule). Any other operation
on u (a contraction, a transpose, a select, a loop, ...) makes the reader give up, and
the caller falls back to its general solver. Values that do not depend on u are
computed by binding their primitives as usual, on demand.

Any exception raised while reading makes `diagonal_mass` return `None` (the general
path), never an error.

`lanczos_ritz_values` is the other tool here: a few Lanczos steps on `u ↦ M u`, run once
per solve at the initial state (`EulerLagrange.certify_mass`) when M is neither small
enough for the dense Cholesky path nor read as diagonal, to refuse an indefinite or
singular M before the integration starts.
"""

import contextlib

import jax
import jax.numpy as jnp
import numpy as np
from jax.extend import core as jex_core

_ZERO_PRESERVING = frozenset(
    {"broadcast_in_dim", "reshape", "squeeze", "expand_dims", "convert_element_type"}
)


class _Unsupported(Exception):
    pass


class _Multiple:
    """The value `reshape(coeff * u[leaf], shape)`; `coeff` is a scalar or an array of
    `u[leaf]`'s shape that does not depend on u."""

    def __init__(self, leaf, coeff, shape):
        self.leaf, self.coeff, self.shape = leaf, coeff, tuple(shape)

    def scaled(self, factor, leaf_shape, op):
        factor = jnp.asarray(factor)
        if factor.shape not in ((), self.shape):
            raise _Unsupported
        if factor.shape != ():
            factor = factor.reshape(leaf_shape)
        return _Multiple(self.leaf, op(self.coeff, factor), self.shape)


def _sub_jaxpr(eqn):
    jaxpr = eqn.params.get("jaxpr", eqn.params.get("call_jaxpr"))
    if jaxpr is None:
        raise _Unsupported
    if not hasattr(jaxpr, "consts"):  # an open `Jaxpr`
        jaxpr = jex_core.ClosedJaxpr(jaxpr, ())
    return jaxpr


# --- The rules: how each primitive acts on a multiple of u ---------------------------
#
# `_RULES` maps a primitive's name to its rule, `rule(reader, eqn, values, zero_flags)
# -> outputs` (a list), called only when some input is a `_Multiple`; `zero_flags`
# says which inputs are known to be exactly zero. A rule raises `_Unsupported` for a
# use it cannot read as diagonal; a primitive with no rule is unsupported.

_RULES = {}


def _rule(*names):
    def register(rule):
        for name in names:
            _RULES[name] = rule
        return rule

    return register


def _out_shape(eqn):
    return tuple(eqn.outvars[0].aval.shape)


def _the_multiple(values):
    """The one `_Multiple` among `values` and the index of it."""
    where = [i for i, v in enumerate(values) if isinstance(v, _Multiple)]
    if len(where) != 1:
        raise _Unsupported  # e.g. a product of two multiples of u is not linear
    return values[where[0]], where[0]


@_rule("jit", "pjit", "closed_call", "core_call", "custom_jvp_call")
def _call(reader, eqn, values, zero_flags):
    return reader.run(_sub_jaxpr(eqn), values)


@_rule("reshape", "squeeze", "expand_dims")
def _reshape(reader, eqn, values, zero_flags):
    if eqn.primitive.name == "reshape" and eqn.params.get("dimensions") is not None:
        raise _Unsupported
    first, _ = _the_multiple(values)
    return [_Multiple(first.leaf, first.coeff, _out_shape(eqn))]


@_rule("convert_element_type")
def _convert(reader, eqn, values, zero_flags):
    if eqn.params["new_dtype"] != eqn.invars[0].aval.dtype:
        raise _Unsupported  # a change of precision rounds: not exactly linear
    first, _ = _the_multiple(values)
    return [_Multiple(first.leaf, first.coeff, _out_shape(eqn))]


@_rule("copy", "copy_p")
def _identity(reader, eqn, values, zero_flags):
    return [_the_multiple(values)[0]]


@_rule("neg")
def _neg(reader, eqn, values, zero_flags):
    first, _ = _the_multiple(values)
    return [_Multiple(first.leaf, -first.coeff, _out_shape(eqn))]


@_rule("add", "add_any", "sub")
def _sum(reader, eqn, values, zero_flags):
    name, shape = eqn.primitive.name, _out_shape(eqn)
    if any(zero_flags):
        # multiple ± 0, or 0 − multiple
        kept, i = _the_multiple(values)
        if not zero_flags[1 - i] or kept.shape != shape:
            raise _Unsupported
        if name == "sub" and i == 1:
            return [_Multiple(kept.leaf, -kept.coeff, shape)]
        return [kept]
    # two multiples of the same leaf
    if not all(isinstance(v, _Multiple) for v in values) or len(values) != 2:
        raise _Unsupported
    a, b = values
    if a.leaf != b.leaf or a.shape != b.shape:
        raise _Unsupported
    coeff = a.coeff - b.coeff if name == "sub" else a.coeff + b.coeff
    return [_Multiple(a.leaf, coeff, shape)]


def _scaling(values, reader):
    """`(multiple, i, other, leaf_shape)` for a binary operation of one multiple of u
    (at index `i`) and one u-independent value."""
    if len(values) != 2:
        raise _Unsupported
    first, i = _the_multiple(values)
    return first, i, values[1 - i], reader.leaf_shapes[first.leaf]


@_rule("mul")
def _mul(reader, eqn, values, zero_flags):
    first, _, other, leaf_shape = _scaling(values, reader)
    return [first.scaled(other, leaf_shape, lambda c, f: c * f)]


@_rule("div")
def _div(reader, eqn, values, zero_flags):
    first, i, other, leaf_shape = _scaling(values, reader)
    if i != 0:
        raise _Unsupported  # c / u is not linear in u
    return [first.scaled(other, leaf_shape, lambda c, f: c / f)]


@_rule("dot_general")
def _dot_general(reader, eqn, values, zero_flags):
    first, _, other, leaf_shape = _scaling(values, reader)
    contract, batch = eqn.params["dimension_numbers"]
    if any(contract) or any(batch) or jnp.shape(other) != ():
        raise _Unsupported
    return [first.scaled(other, leaf_shape, lambda c, f: c * f)]


class _Reader:
    def __init__(self, leaf_shapes):
        self.leaf_shapes = leaf_shapes

    def run(self, closed, args):
        """Interprets `closed` on `args` (each a `_Multiple` or a u-independent
        value), returning its outputs in the same form. Only the equations the
        outputs need are evaluated."""
        jaxpr = closed.jaxpr
        env = dict(zip(jaxpr.constvars, closed.consts, strict=True))
        env.update(zip(jaxpr.invars, args, strict=True))
        needed = {v for v in jaxpr.outvars if not isinstance(v, jex_core.Literal)}
        kept = []
        for eqn in reversed(jaxpr.eqns):
            if any(out in needed for out in eqn.outvars):
                kept.append(eqn)
                needed.update(
                    v for v in eqn.invars if not isinstance(v, jex_core.Literal)
                )
        read = lambda v: v.val if isinstance(v, jex_core.Literal) else env[v]
        # Variables known to be exactly zero: AD instantiates a zero tangent as a
        # broadcast literal 0 and adds it to the rest (e.g. for a term linear in q̇).
        zeros = set()

        def is_zero(v):
            if isinstance(v, jex_core.Literal):
                return bool(np.all(np.asarray(v.val) == 0))
            return v in zeros

        for eqn in reversed(kept):
            if eqn.effects:
                raise _Unsupported
            values = [read(v) for v in eqn.invars]
            flags = [is_zero(v) for v in eqn.invars]
            if eqn.primitive.name in _ZERO_PRESERVING and all(flags):
                zeros.update(eqn.outvars)
            outs = self.evaluate(eqn, values, flags)
            env.update(zip(eqn.outvars, outs, strict=True))
        return [read(v) for v in jaxpr.outvars]

    def evaluate(self, eqn, values, zero_flags):
        """The outputs of one equation: bound as usual if no input depends on u,
        else by the primitive's rule in `_RULES`."""
        if not any(isinstance(v, _Multiple) for v in values):
            # As `jax.core.eval_jaxpr` does; older JAX returns (subfuns, params).
            params = eqn.primitive.get_bind_params(eqn.params)
            subfuns, params = params if isinstance(params, tuple) else ((), params)
            ctx = getattr(
                getattr(eqn, "ctx", None), "manager", contextlib.nullcontext()
            )
            with ctx:
                out = eqn.primitive.bind(*subfuns, *values, **params)
            return out if eqn.primitive.multiple_results else [out]
        rule = _RULES.get(eqn.primitive.name)
        if rule is None:
            raise _Unsupported
        return rule(self, eqn, values, zero_flags)


def diagonal_mass(closed_jaxpr, leaves):
    """Reads the diagonal of M from the jaxpr of `u ↦ M u` (flat leaves in, flat
    leaves out). Returns one coefficient per leaf (a scalar or an array of the leaf's
    shape, cast to its dtype) such that `(M u)_i = coeff_i * u_i` for every u, or
    `None` if the jaxpr is not of that form."""
    shapes = [tuple(leaf.shape) for leaf in leaves]
    args = [_Multiple(i, 1.0, s) for i, s in enumerate(shapes)]
    try:
        outs = _Reader(shapes).run(closed_jaxpr, args)
    except _Unsupported:
        return None
    except Exception:  # noqa: BLE001
        # The reader is only an optimisation: a primitive it does not know how to
        # bind (a new JAX version, an unusual custom rule) must not break the
        # solve. The caller falls back to its general path.
        return None
    coeffs = []
    for i, (out, leaf) in enumerate(zip(outs, leaves, strict=True)):
        if not isinstance(out, _Multiple) or out.leaf != i or out.shape != shapes[i]:
            return None
        coeffs.append(jnp.asarray(out.coeff).astype(leaf.dtype))
    return coeffs


def _hash_vector(n: int, seed, dtype):
    """A fixed pseudo-random vector, entries uniform in [-½, ½), from an integer hash
    of (index, seed) ("lowbias32"): generic enough to start Lanczos, and a few
    integer operations to compile, where a `jax.random` draw costs far more."""
    x = jnp.arange(n, dtype=jnp.uint32) * jnp.uint32(0x9E3779B9)
    x = x + (jnp.asarray(seed, jnp.uint32) + jnp.uint32(1)) * jnp.uint32(0x85EBCA6B)
    x = x ^ (x >> 16)
    x = x * jnp.uint32(0x7FEB352D)
    x = x ^ (x >> 15)
    x = x * jnp.uint32(0x846CA68B)
    x = x ^ (x >> 16)
    return (x.astype(jnp.float32) * 2.0**-32 - 0.5).astype(dtype)


def lanczos_ritz_values(matvec, n: int, dtype, steps: int, seed: int = 0):
    """Ritz values of a symmetric `n × n` matrix, given as `matvec` on flat vectors
    of `dtype`, from `steps` Lanczos steps with full reorthogonalisation, started from
    a fixed pseudo-random vector (`seed`).

    Returns the `steps` eigenvalues, ascending, of `T = Vᵀ M V` for an orthonormal
    `V` (`n × steps`). By Cauchy's interlacing theorem they lie in
    `[λ_min(M), λ_max(M)]` (up to the rounding of the products), so a Ritz value
    `θ <= 0` proves that M is not positive definite; positive Ritz values prove
    nothing about the eigenvalues the Krylov space does not resolve.

    If the Krylov space becomes invariant (for `M = c·I` after one step), the
    iteration continues with a fresh pseudo-random direction orthogonal to the previous ones
    (`T` then becomes block diagonal and is still `Vᵀ M V`). Costs `steps` products
    with M and `steps` vectors of memory; one `fori_loop`, so it compiles small.
    """
    eps = jnp.finfo(dtype).eps

    def orthogonalise(basis, w):
        # Classical Gram–Schmidt against every stored vector (unused rows are zero),
        # twice: "twice is enough" for orthogonality to rounding.
        for _ in range(2):
            w = w - basis.T @ (basis @ w)
        return w

    def unit(w):
        norm = jnp.linalg.norm(w)
        return jnp.where(norm > 0, w / jnp.where(norm > 0, norm, 1), 0), norm

    def body(j, carry):
        basis, alpha, beta, v, scale = carry
        basis = basis.at[j].set(v)
        w = matvec(v).astype(dtype)
        a = jnp.vdot(v, w)
        w = orthogonalise(basis, w)
        b = jnp.linalg.norm(w)
        scale = jnp.maximum(scale, jnp.maximum(jnp.abs(a), b))
        broke = b <= 100 * eps * scale
        fresh = _hash_vector(n, seed + 1 + j, dtype)
        fresh, _ = unit(orthogonalise(basis, fresh))
        v_next = jnp.where(broke, fresh, unit(w)[0])
        return (
            basis,
            alpha.at[j].set(a),
            beta.at[j].set(jnp.where(broke, 0, b)),
            v_next,
            scale,
        )

    v0, _ = unit(_hash_vector(n, seed, dtype))
    init = (
        jnp.zeros((steps, n), dtype),
        jnp.zeros(steps, dtype),
        jnp.zeros(steps, dtype),
        v0,
        jnp.zeros((), dtype),
    )
    _, alpha, beta, _, _ = jax.lax.fori_loop(0, steps, body, init)
    off = beta[:-1]
    T = jnp.diag(alpha) + jnp.diag(off, 1) + jnp.diag(off, -1)
    return jnp.linalg.eigvalsh(T)
