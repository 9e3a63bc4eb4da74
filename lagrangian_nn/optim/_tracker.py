r"""Tracking symmetry charges inside a user's own jitted optax training loop.

`lnn.optim.run` owns its loop; most people write their own. A `LoopTrackerState`
rides along in that loop as one more pytree: `tracker.update` appends, at every step,
the charges and the per-step drives of their exact laws to buffers preallocated for
`n_steps` (no host callback, no conditional: it runs on a GPU as it runs on a CPU), and
`tracker.report` reads them after the loop.

For an SGD chain (`lnn.optim.sgd_chain`) the report holds the measured charges and the
exact sequence that `lnn.optim.charge_law` predicts from the recorded drives, equal to
rounding. For any other optimiser (AdamW, ...) it holds the measured drift of each
charge next to the bound that plain SGD with the same gradients would obey,
$|Q_k - Q_0| \le \eta^2\sum_{j<k}|\langle g_j, A g_j\rangle|$ (zero for a linear charge).
"""

import functools
from collections.abc import Mapping

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from .._noether import Generator
from ._chains import (
    KINDS,
    NoExactLaw,
    SGDChain,
    _SGDUpdate,
    charge_law,
)
from ._run import Step

_is_none = lambda x: x is None


def _leaves(tree):
    return jax.tree.leaves(tree, is_leaf=_is_none)


def _dtype(leaves):
    return jnp.result_type(*leaves)


class _Layout(eqx.Module):
    """Where the floating arrays of the parameters sit among the leaves of their pytree
    (leaves that are not floating arrays, e.g. an activation function or `None` in an
    equinox model, are kept as they are)."""

    treedef: object = eqx.field(static=True)
    positions: tuple[int, ...] = eqx.field(static=True)
    shapes: tuple[tuple[int, ...], ...] = eqx.field(static=True)
    dtypes: tuple[str, ...] = eqx.field(static=True)
    template: tuple  # the leaves that are not floating arrays, by position

    def arrays(self, tree, name):
        """The floating arrays of `tree` at the parameters' positions, checked."""
        leaves, treedef = jax.tree.flatten(tree, is_leaf=_is_none)
        if treedef != self.treedef:
            raise ValueError(
                f"`{name}` must have the structure of the parameters given to "
                f"`lnn.optim.tracker`; got {treedef}, expected {self.treedef}."
            )
        out = []
        for i, shape, dtype in zip(self.positions, self.shapes, self.dtypes):
            x = leaves[i]
            if not eqx.is_array(x) or x.shape != shape or str(x.dtype) != dtype:
                got = (
                    f"{x.dtype}{list(x.shape)}" if eqx.is_array(x) else type(x).__name__
                )
                raise ValueError(
                    f"`{name}` must hold the parameters' arrays; leaf {i} is {got}, "
                    f"expected {dtype}{list(shape)}."
                )
            out.append(x)
        return out

    def tree(self, arrays):
        """The parameters' pytree with `arrays` at the array positions."""
        leaves = list(self.template)
        for i, x in zip(self.positions, arrays):
            leaves[i] = x
        return jax.tree.unflatten(self.treedef, leaves)


def _layout(params) -> _Layout:
    leaves, treedef = jax.tree.flatten(params, is_leaf=_is_none)
    positions = tuple(i for i, x in enumerate(leaves) if eqx.is_inexact_array(x))
    if not positions:
        raise ValueError(
            "`params` must hold floating arrays (the parameters, or the equinox model "
            f"itself); got none in {type(params).__name__}."
        )
    if len({str(leaves[i].dtype) for i in positions}) != 1:
        raise ValueError(
            "`params` must hold floating arrays of one dtype; got "
            f"{sorted({str(leaves[i].dtype) for i in positions})}."
        )
    template = tuple(None if i in positions else x for i, x in enumerate(leaves))
    return _Layout(
        treedef,
        positions,
        tuple(leaves[i].shape for i in positions),
        tuple(str(leaves[i].dtype) for i in positions),
        template,
    )


def _is_family_leaf(x):
    return eqx.is_inexact_array(x)


class _Family(eqx.Module):
    r"""Generators of one form that differ only in their array fields $\theta_i$
    (e.g. the unit masks of `rescale[c]`, the matrices $E_{ij}$ of a head's
    $GL(d_{head})$), with fields linear in $\theta$. Every quantity the tracker
    records, $\phi_\theta = \langle\xi_\theta(x), y\rangle$, is then linear in
    $\theta$, so one gradient $G = \nabla_\theta\phi$ gives all members at once,
    $\phi_{\theta_i} = \langle G, \theta_i\rangle$: the cost of a whole family is
    that of one field evaluation, not one per member. A family of one member is
    evaluated directly.

    Only the parameters' arrays on which the fields act (`support`, static) are
    read."""

    names: tuple[str, ...] = eqx.field(static=True)
    treedef: object = eqx.field(static=True)
    theta: list  # member 0's leaves (one member), or zeros of their shapes
    index: jax.Array | None  # member i's flattened theta: its non-zeros' positions
    values: jax.Array | None  # ... and values (rows padded with zeros)
    kind: str = eqx.field(static=True)
    symmetric: bool = eqx.field(static=True)
    support: tuple[int, ...] = eqx.field(static=True)
    layout: _Layout

    def _field(self, theta, arrays):
        gen = jax.tree.unflatten(self.treedef, theta)
        t = jnp.zeros((), _dtype(arrays))
        out = self.layout.arrays(
            gen.xi(t, self.layout.tree(arrays)), "the generator's field xi(t, params)"
        )
        return [out[i] for i in self.support]

    def _dot(self, field, arrays):
        terms = [jnp.vdot(f, arrays[i]) for f, i in zip(field, self.support)]
        return sum(terms[1:], terms[0])

    def _members(self, phi, dtype):
        """$\\phi_{\\theta_i}$ for every member $i$, as a vector."""
        if len(self.names) == 1:
            return jnp.reshape(phi(self.theta), (1,)).astype(dtype)
        grad = jax.grad(phi)(self.theta)
        flat = jnp.concatenate([jnp.ravel(g) for g in grad])
        return jnp.sum(self.values * flat[self.index], axis=1).astype(dtype)

    def charge(self, w):
        """$\\langle\\xi(w), w\\rangle$: $\\langle s, w\\rangle$ or $\\langle w, Aw\\rangle$."""
        return self._members(lambda th: self._dot(self._field(th, w), w), _dtype(w))

    def quadratic(self, x):
        """$\\langle x, Ax\\rangle$ (the symmetric part of $A$ only enters)."""
        return self.charge(x)

    def bilinear(self, x, y):
        """$\\langle x, \\tfrac12(A + A^\\top)y\\rangle$."""
        if self.symmetric:
            phi = lambda th: self._dot(self._field(th, x), y)
        else:
            phi = lambda th: (
                (self._dot(self._field(th, x), y) + self._dot(self._field(th, y), x))
                / 2
            )
        return self._members(phi, _dtype(x))


def _families(generators, layout, w, kinds):
    """Groups the generators into `_Family`s (same form, array fields of the same
    shapes, fields linear in those arrays), probing each family once."""
    groups = {}
    for name, gen in generators.items():
        leaves, treedef = jax.tree.flatten(gen)
        if leaves and all(_is_family_leaf(x) for x in leaves):
            key = (treedef, tuple((x.shape, str(x.dtype)) for x in leaves))
        else:
            key = ("single", name)
        groups.setdefault(key, []).append(name)
    families = []
    for names in groups.values():
        try:
            families.append(_family(names, generators, layout, w, kinds))
        except _NotLinearInTheta:
            for name in names:  # one family per generator
                families.append(_family([name], generators, layout, w, kinds))
    return families


class _NotLinearInTheta(Exception):
    pass


def _family(names, generators, layout, w, kinds):
    leaves0, treedef = jax.tree.flatten(generators[names[0]])
    if len(names) == 1:
        kind, support, symmetric = _probe(
            names[0], generators[names[0]], layout, w, kinds.get(names[0])
        )
        return _Family(
            tuple(names), treedef, leaves0, None, None, kind, symmetric, support, layout
        )
    thetas = np.stack(
        [
            np.concatenate(
                [np.ravel(np.asarray(x)) for x in jax.tree.leaves(generators[n])]
            )
            for n in names
        ]
    )
    shapes = [x.shape for x in leaves0]
    sizes = [int(np.prod(s)) for s in shapes]

    def unflat(vec):
        parts = np.split(np.asarray(vec), np.cumsum(sizes)[:-1])
        arrs = [
            jnp.asarray(p.reshape(s), x.dtype)
            for p, s, x in zip(parts, shapes, leaves0)
        ]
        return jax.tree.unflatten(treedef, arrs)

    # a random member of the span: where the family acts, its kind and symmetry
    coeffs = np.random.default_rng(0).standard_normal(len(names))
    span = unflat(coeffs @ thetas)
    label = f"{names[0]}' (and {len(names) - 1} more of its form"
    kind, support, symmetric = _probe(label + ")", span, layout, w, None)
    for n in names:
        if kinds.get(n) not in (None, kind):
            raise ValueError(
                f"`kinds[{n!r}]` is {kinds[n]!r}, but the generator's field is "
                f"{'constant' if kind == 'linear' else 'linear'}, so its charge is "
                f"{kind!r}."
            )
    # the fields must be linear in theta: xi_{a+b} = xi_a + xi_b, xi_{2a} = 2 xi_a
    dtype = _dtype(w)
    eps = float(jnp.finfo(dtype).eps)
    r = _random_like(w, 7)
    a, b = thetas[0], thetas[-1]
    xa, xb, xab, x2a = (
        _field_np(names[0], unflat(v), layout, r) for v in (a, b, a + b, 2 * a)
    )
    scale = max(float(np.max(np.abs(x))) for x in xab + xa + xb if x.size) or 1.0
    gap = max(
        max(float(np.max(np.abs(p + q - s))) for p, q, s in zip(xa, xb, xab) if p.size),
        max(float(np.max(np.abs(2 * p - s))) for p, s in zip(xa, x2a) if p.size),
    )
    if not gap <= 1e3 * eps * scale:
        raise _NotLinearInTheta
    # members as sparse rows (indices and values of their non-zeros, padded)
    nnz = max(int(np.max(np.count_nonzero(thetas, axis=1))), 1)
    index = np.zeros((len(names), nnz), np.int32)
    values = np.zeros((len(names), nnz), thetas.dtype)
    for i, row in enumerate(thetas):
        (cols,) = np.nonzero(row)
        index[i, : len(cols)], values[i, : len(cols)] = cols, row[cols]
    # theta in the parameters' precision at least: the members' values are read off
    # the gradient with respect to theta, which has theta's dtype (a float32 mask of
    # a float64 model would round every recorded quantity to float32)
    zeros = [jnp.zeros(x.shape, jnp.promote_types(x.dtype, dtype)) for x in leaves0]
    return _Family(
        tuple(names),
        treedef,
        zeros,
        jnp.asarray(index),
        jnp.asarray(values, dtype),
        kind,
        symmetric,
        support,
        layout,
    )


def _probe(name, generator, layout, w, kind):
    """Decides, once before the loop, whether `generator`'s field is constant (a
    linear charge) or linear (a quadratic charge), whether a linear one is symmetric,
    and on which arrays it acts. Tolerances are rounding levels of the parameters'
    dtype, relative to the size of the terms. Returns `(kind, support, symmetric)`."""
    eps = float(jnp.finfo(_dtype(w)).eps)
    r, s = _random_like(w, 1), _random_like(w, 2)
    xi = lambda arrays: _field_np(name, generator, layout, arrays)

    def close(a, b, scale):
        gap = max(
            (float(np.max(np.abs(x - y))) for x, y in zip(a, b) if x.size), default=0
        )
        return gap <= 1e3 * eps * scale

    def size(a):
        return max((float(np.max(np.abs(x))) for x in a if x.size), default=0.0)

    w = [np.asarray(x) for x in w]
    xw, xr, xs = xi(w), xi(r), xi(s)
    two_r = xi([2 * x for x in r])
    sum_rs = xi([x + y for x, y in zip(r, s)])
    scale = max(size(xr), size(xs), size(xw), size(two_r))
    if scale == 0:
        raise ValueError(
            f"`generators[{name!r}]` has a field that vanishes everywhere it was "
            "probed: it moves no parameter, so it has no charge."
        )
    constant = close(xr, xs, scale) and close(xr, xw, scale)
    linear = close(two_r, [2 * x for x in xr], scale) and close(
        sum_rs, [x + y for x, y in zip(xr, xs)], scale
    )
    found = "linear" if constant else "quadratic" if linear else None
    if found is None:
        raise ValueError(
            f"`generators[{name!r}]` is neither constant (ξ(w) = s, a linear charge "
            "⟨s, w⟩) nor linear (ξ(w) = Aw, a quadratic charge ⟨w, Aw⟩): its charge "
            "has no exact per-step law and no SGD bound."
        )
    if kind is not None and kind != found:
        raise ValueError(
            f"`kinds[{name!r}]` is {kind!r}, but the generator's field is "
            f"{'constant' if constant else 'linear'}, so its charge is {found!r}."
        )
    support = tuple(
        i for i in range(len(w)) if any(bool(np.any(x[i] != 0)) for x in (xw, xr, xs))
    )
    symmetric = True
    if found == "quadratic":  # ⟨s, A r⟩ = ⟨A s, r⟩ for a symmetric A
        dot = lambda a, b: sum(float(np.vdot(x, y)) for x, y in zip(a, b))
        lhs, rhs = dot(s, xr), dot(xs, r)
        ref = np.sqrt(dot(s, s) * dot(xr, xr)) + np.sqrt(dot(xs, xs) * dot(r, r))
        symmetric = bool(abs(lhs - rhs) <= 1e3 * eps * ref)
    return found, support, symmetric


@functools.lru_cache(maxsize=64)
def _field_fn(static, layout):
    def field(dynamic, arrays):
        gen = eqx.combine(dynamic, static)
        t = jnp.zeros((), _dtype(arrays))
        return layout.arrays(gen.xi(t, layout.tree(arrays)), "xi(t, params)")

    return jax.jit(field)


def _field_np(name, generator, layout, arrays):
    """The field at `arrays`, as NumPy arrays (compiled once per form of generator,
    so probing a family costs one compilation, not one per operation)."""
    dynamic, static = eqx.partition(generator, eqx.is_array)
    try:
        out = _field_fn(static, layout)(dynamic, list(arrays))
    except ValueError as e:
        raise ValueError(f"`generators[{name!r}]`: {e}") from None
    except Exception as e:
        raise ValueError(
            f"`generators[{name!r}]` fails on the parameters: {type(e).__name__}: {e}"
        ) from None
    return [np.asarray(x, np.float64) for x in out]


def _random_probe(shapes, dtype, scales, seed):
    """Random arrays of the parameters' shapes, each of the size of its array (drawn
    on the host: no compilation per shape)."""
    rng = np.random.default_rng(seed)
    return tuple(
        (rng.standard_normal(shape) * (1 + c)).astype(dtype)
        for shape, c in zip(shapes, scales)
    )


def _random_like(arrays, seed):
    scales = tuple(
        float(np.max(np.abs(np.asarray(a)))) if a.size else 0.0 for a in arrays
    )
    shapes = tuple(a.shape for a in arrays)
    return list(_random_probe(shapes, np.dtype(_dtype(arrays)), scales, seed))


class LoopTrackerState(eqx.Module):
    """The tracker's state in the user's loop: the step count, the charges $Q_0$ at
    `init`, and per charge one buffer of length `n_steps` for each recorded quantity
    (`charge`: $Q(w_{k+1})$; with an exact law `uAu`, `uAv`: the drives of the law;
    without one `gAg`: $\\langle g_k, A g_k\\rangle$, the drive of plain SGD)."""

    count: jax.Array
    initial: list  # per family of generators: Q_0 of each member
    buffers: list  # per family: {quantity: (n_steps, members)}


class TrackerReport(eqx.Module):
    r"""What `tracker.report(state)` returns, as NumPy arrays and Python numbers.

    Per charge name:

    - `charges[name]`: the measured $Q_0, \ldots, Q_n$ (length `steps + 1`);
    - `predicted[name]`: the exact law's sequence from $Q_0$ (SGD chains only, else
      absent);
    - `deviation[name]`: $\max_k|Q_k - \hat Q_k| / s$ (exact law only), with $s$
      the largest $|Q_k|$ of the charge's family (generators of one form, e.g. the
      entries $E_{ij}$ of a head's $GL(d_{head})$: the entries of one matrix
      charge share its rounding, also where one entry is small by cancellation);
    - `exact[name]`: `deviation <= tolerance` (exact law only);
    - `drift[name]`: $\max_k|Q_k - Q_0| / s$;
    - `sgd_bound[name]`: $\eta^2\sum_{j<k}|\langle g_j, Ag_j\rangle|$ at the last step,
      relative to $s$: what plain SGD with the same gradients could move the
      charge by (0 for a linear charge; optimisers without an exact law only).

    `tolerance` is the rounding bound of the exact law, `100·eps·√steps` relative to
    $s$: each step rounds $Q$, $P$ and the drives a few times, amplified
    at most by the momentum's $1/(1-\beta)$. The roundings of successive steps are
    independent and of either sign, so they add up like a random walk: after $n$
    steps their sum stays below $\lambda\sqrt{n}$ times one step's, except with
    probability at most $2e^{-\lambda^2/2}$ (the probabilistic rounding-error
    analysis of Higham & Mary, SIAM J. Sci. Comput. 2019), where the worst case
    $n\cdot$eps is reached only by roundings that all push the same way. Measured
    deviations stay at tens to a few hundred eps (float64, 300 steps; float32, 1,000
    steps, 10⁶ parameters) when every generator is a symmetry; a broken symmetry
    misses the bound by orders of magnitude.
    """

    steps: int
    law: str  # "exact" or "none"
    kinds: dict
    charges: dict
    predicted: dict
    deviation: dict
    exact: dict
    drift: dict
    sgd_bound: dict
    tolerance: float

    def __str__(self):
        lines = [f"{self.steps} steps, law: {self.law}"]
        for name in self.charges:
            q = self.charges[name]
            text = f"  {name} ({self.kinds[name]}): Q0 = {q[0]:.6g}, Q_n = {q[-1]:.6g}"
            text += f", drift {self.drift[name]:.2e}"
            if self.law == "exact":
                text += (
                    f", |measured - predicted| {self.deviation[name]:.2e} "
                    f"(rounding bound {self.tolerance:.1e}: "
                    f"{'holds' if self.exact[name] else 'BROKEN'})"
                )
            else:
                text += f", SGD bound {self.sgd_bound[name]:.2e}"
            lines.append(text)
        return "\n".join(lines)


class LoopTracker(eqx.Module):
    r"""Records symmetry charges in the user's own jitted optax loop; built by
    `lnn.optim.tracker`. Pure functions on a pytree state:

    ```python
    tstate = tracker.init(params)
    # each step, inside the user's jit / scan:
    tstate = tracker.update(tstate, params, grads, opt_state, new_params)
    # after the loop:
    report = tracker.report(tstate)
    ```
    """

    families: list
    laws: list | None  # one `ChargeLaw` per family (SGD chains)
    chain: SGDChain | None
    lr: float | None = eqx.field(static=True)
    layout: _Layout
    n_steps: int = eqx.field(static=True)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(n for f in self.families for n in f.names)

    @property
    def kinds(self) -> dict:
        return {n: f.kind for f in self.families for n in f.names}

    def _recorded(self, family):
        """The quantities recorded per step for a family."""
        if family.kind == "linear":
            return ("charge",)
        if self.laws is None:
            return ("charge", "gAg")
        return ("charge", "uAu", *(["uAv"] if self.chain.nesterov else []))

    def init(self, params) -> LoopTrackerState:
        """The state before the first step: the charges $Q_0$ at `params` and empty
        buffers."""
        w = self.layout.arrays(params, "params")
        dtype = _dtype(w)
        initial = [f.charge(w) for f in self.families]
        buffers = [
            {
                q: jnp.zeros((self.n_steps, len(f.names)), dtype)
                for q in self._recorded(f)
            }
            for f in self.families
        ]
        return LoopTrackerState(jnp.zeros((), jnp.int32), initial, buffers)

    def update(
        self, state: LoopTrackerState, params, grads, opt_state, new_params
    ) -> LoopTrackerState:
        r"""Records step $k$: `params` $= w_k$ (before the update), `grads` $= g_k$
        (the gradient the update used), `opt_state` (the optimiser's state *after*
        the update) and `new_params` $= w_{k+1}$. Call it inside the jitted step,
        after the update. No host callback, no conditional: a step past `n_steps` is
        dropped, and `report` says so."""
        self._check_state(state)
        w = self.layout.arrays(params, "params")
        g = self.layout.arrays(grads, "grads")
        w_new = self.layout.arrays(new_params, "new_params")
        k = state.count
        records = []
        if self.laws is not None:
            opt_state = self._restricted_state(opt_state)
            step = Step(k + 1, jnp.zeros((), _dtype(w)), w, w_new, g, opt_state)
            for f, law in zip(self.families, self.laws):
                r = {"charge": f.charge(w_new)}
                if f.kind == "quadratic":
                    u, v_new = law._update(step)  # the law's own u_k and v_{k+1}
                    r["uAu"] = f.quadratic(u)
                    if self.chain.nesterov:  # else u = v_{k+1} and uAv is uAu
                        r["uAv"] = f.bilinear(u, v_new)
                records.append(r)
        else:
            for f in self.families:
                r = {"charge": f.charge(w_new)}
                if f.kind == "quadratic":
                    r["gAg"] = f.quadratic(g)
                records.append(r)
        buffers = [
            {q: b.at[k].set(r[q], mode="drop") for q, b in buf.items()}
            for buf, r in zip(state.buffers, records)
        ]
        return LoopTrackerState(k + 1, state.initial, buffers)

    def _restricted_state(self, opt_state):
        """The SGD chain's state, as the law reads it, with its momentum buffer cut to
        the parameters' arrays. `opt_state` is the chain's own (`chain.optimizer`)
        or, for a chain without dampening, that of any optax transformation holding
        one `optax.TraceState` (e.g. `optax.chain(optax.add_decayed_weights(l),
        optax.sgd(lr, momentum=b))`)."""
        c = self.chain
        own = isinstance(opt_state, tuple) and len(opt_state) == len(c.structure)
        if own and c.trace_index is not None:
            own = isinstance(opt_state[c.trace_index], optax.TraceState)
        if own:
            state = list(opt_state)
        else:
            is_trace = lambda x: isinstance(x, optax.TraceState)  # noqa: E731
            traces = [
                x for x in jax.tree.leaves(opt_state, is_leaf=is_trace) if is_trace(x)
            ]
            wanted = 0 if c.trace_index is None else 1
            if "dampening" in c.structure or len(traces) != wanted:
                raise ValueError(
                    "`opt_state` must be the state, after the update, of the SGD chain "
                    f"given to `lnn.optim.tracker` (parts {c.structure}), or of an "
                    f"optax transformation with {wanted} momentum buffer(s) "
                    "(`optax.TraceState`) for a chain without dampening; got "
                    f"{len(traces)} in {type(opt_state).__name__}."
                )
            state = [optax.EmptyState() for _ in c.structure]
            if traces:
                state[c.trace_index] = traces[0]
        if c.trace_index is not None:
            trace = state[c.trace_index].trace
            trace = self.layout.arrays(trace, "opt_state's momentum buffer")
            state[c.trace_index] = optax.TraceState(trace=trace)
        return tuple(state)

    def _check_state(self, state):
        if not isinstance(state, LoopTrackerState):
            raise ValueError(
                "`state` must be the `LoopTrackerState` from `tracker.init`; got "
                f"{type(state).__name__}."
            )
        shapes = [{q: b.shape for q, b in buf.items()} for buf in state.buffers]
        expected = [
            {q: (self.n_steps, len(f.names)) for q in self._recorded(f)}
            for f in self.families
        ]
        if shapes != expected:
            raise ValueError(
                "`state` was not made by this tracker's `init` (its buffers do not "
                f"match {len(self.names)} charges over `n_steps` = {self.n_steps})."
            )

    def report(self, state: LoopTrackerState) -> TrackerReport:
        """Reads the buffers after the loop (one transfer) and compares the measured
        charges with the exact law (SGD chains) or the SGD bound (other optimisers).

        **Raises:** `ValueError` if more steps were taken than `n_steps` (their
        records were dropped), or none."""
        self._check_state(state)
        state = jax.device_get(state)
        n = int(state.count)
        if n > self.n_steps:
            raise ValueError(
                f"{n} steps were tracked, more than the tracker's `n_steps` = "
                f"{self.n_steps}: steps after {self.n_steps} were not recorded. Build "
                f"the tracker with `n_steps` >= {n}."
            )
        if n == 0:
            raise ValueError("`state` has recorded no step: call `tracker.update`.")
        eps = float(np.finfo(state.initial[0].dtype).eps)
        tol = 100 * eps * float(np.sqrt(n))
        charges, predicted, deviation, exact, drift, bound = {}, {}, {}, {}, {}, {}
        for i, f in enumerate(self.families):
            buf = {q: np.asarray(b[:n]).T for q, b in state.buffers[i].items()}
            Q0 = np.asarray(state.initial[i])
            measured = np.concatenate([Q0[:, None], buf["charge"]], axis=1)
            # relative to the largest charge of the family: its members are the
            # entries of one charge (a head's W_QᵀW_Q - W_KᵀW_K, the per-unit
            # balances of a layer) and share its rounding, also where one entry
            # is small by cancellation
            scale = np.full(len(f.names), np.max(np.abs(measured)))
            scale = np.where(scale > 0, scale, 1.0)
            dr = np.max(np.abs(measured - Q0[:, None]), axis=1) / scale
            if self.laws is not None:
                predict = jax.vmap(self.laws[i].predict)
                pred = np.asarray(predict(buf, jnp.asarray(Q0))[1])
                dev = np.max(np.abs(measured - pred), axis=1) / scale
            else:
                gAg = buf.get("gAg", np.zeros_like(buf["charge"]))
                b = self.lr**2 * np.sum(np.abs(gAg), axis=1) / scale
            for j, name in enumerate(f.names):
                charges[name] = measured[j]
                drift[name] = float(dr[j])
                if self.laws is not None:
                    predicted[name] = pred[j]
                    deviation[name] = float(dev[j])
                    exact[name] = bool(dev[j] <= tol)
                else:
                    bound[name] = float(b[j])
        return TrackerReport(
            steps=n,
            law="exact" if self.laws is not None else "none",
            kinds=self.kinds,
            charges=charges,
            predicted=predicted,
            deviation=deviation,
            exact=exact,
            drift=drift,
            sgd_bound=bound,
            tolerance=tol,
        )


def tracker(
    generators: Mapping[str, Generator],
    optimizer,
    params,
    n_steps: int,
    *,
    kinds: Mapping[str, str] | None = None,
    lr: float | None = None,
) -> LoopTracker:
    r"""A charge tracker for your own jitted optax training loop.

    Each generator's charge is $Q = \langle s, w\rangle$ for a constant field
    $\xi(w) = s$ (`"linear"`, e.g. translation of softmax logits) or
    $Q = \langle w, Aw\rangle$ for a linear field $\xi(w) = Aw$ (`"quadratic"`:
    rescaling across a homogeneous activation, scale invariance before a
    normalisation, the per-head $GL(d_{head})$ of attention). Which one is decided
    here, once, by probing the field (a `kinds` given, or declared by
    `lnn.nn.symmetries`, is checked against it). A linear field that is not
    symmetric enters through its symmetric part $(A + A^\top)/2$, which has the same
    charge (the law then needs $A^\top$ to be a symmetry too, as it is for a $GL$
    family).

    Generators of one form that differ only in their arrays (the catalogue's
    `rescale[c]` masks, a head's $E_{ij}$) are evaluated together: every recorded
    quantity is linear in those arrays, so one gradient gives the whole family.

    At every step the tracker records the charges, and for an SGD chain
    (`lnn.optim.sgd_chain`: momentum, Nesterov, dampening, coupled or decoupled
    weight decay) the drives of their exact laws (`lnn.optim.charge_law`); the
    report then gives the predicted sequence, equal to the measured one to rounding
    when every generator is a symmetry of every mini-batch loss. For another
    optimiser (`optax.adamw`, ...) there is no exact law: the report gives each
    charge's drift next to the bound $\eta^2\sum_k|\langle g_k, Ag_k\rangle|$ that
    plain SGD with the same gradients obeys.

    Only the arrays on which a field acts are read: a charge costs the size of its
    support, not of the model.

    **Arguments:**

    - `generators`: `{name: lnn.Generator}`, e.g. `lnn.nn.symmetries(model)`.
    - `optimizer`: an `lnn.optim.SGDChain` (or its `.optimizer`), for the exact
      laws; any other `optax.GradientTransformation` for the measured drift. With
      an `SGDChain` the loop may step with the chain's `.optimizer` or with the
      same chain written in optax (`optax.chain(optax.add_decayed_weights(l),
      optax.sgd(lr, momentum=b))`; without dampening): the tracker reads the
      momentum buffer from the state. If the loop's optimiser is not the one
      described, the laws fail, and the report says so.
    - `params`: the parameters the loop starts from (the pytree passed to the
      optimiser: an equinox model, or `eqx.filter(model, eqx.is_array)`).
    - `n_steps`: the number of steps to record (the buffers' length).
    - `kinds`: optional `{name: "linear" | "quadratic"}`, checked against the probe.
    - `lr`: the learning rate $\eta$ of an optimiser without an exact law, for the
      SGD bound (required there; an SGD chain knows its own).

    **Returns:** an `lnn.optim.LoopTracker`.

    **Example:**

    ```python
    chain = lnn.optim.sgd_chain(0.05, momentum=0.9, weight_decay=1e-4)
    opt = chain.optimizer
    tracker = lnn.optim.tracker(lnn.nn.symmetries(model), chain, params, 1000)

    @jax.jit
    def train(params, batches):
        def step(carry, batch):
            params, opt_state, tstate = carry
            grads = jax.grad(loss)(params, batch)
            updates, opt_state = opt.update(grads, opt_state, params)
            new = optax.apply_updates(params, updates)
            tstate = tracker.update(tstate, params, grads, opt_state, new)
            return (new, opt_state, tstate), None

        init = (params, opt.init(params), tracker.init(params))
        return jax.lax.scan(step, init, batches)[0]

    params, _, tstate = train(params, batches)
    print(tracker.report(tstate))
    ```
    """
    if not isinstance(generators, Mapping) or not generators:
        raise ValueError(
            "`generators` must be a non-empty dict {name: lnn.Generator}, e.g. "
            f"`lnn.nn.symmetries(model)`; got {generators!r:.200}."
        )
    for name, gen in generators.items():
        if not isinstance(name, str):
            raise ValueError(f"`generators` must have str keys; got {name!r}.")
        if not isinstance(gen, Generator):
            raise ValueError(
                f"`generators[{name!r}]` must be an `lnn.Generator`; got "
                f"{type(gen).__name__}."
            )
    kinds = {} if kinds is None else dict(kinds)
    unknown = sorted(set(kinds) - set(generators), key=str)
    if unknown:
        raise ValueError(
            f"`kinds` names charges that are not in `generators`: {unknown}; the "
            f"generators are {sorted(generators)}."
        )
    for name, kind in kinds.items():
        if kind not in KINDS:
            raise ValueError(
                f"`kinds[{name!r}]` must be 'linear' or 'quadratic'; got {kind!r}."
            )
    if isinstance(n_steps, bool) or not isinstance(n_steps, int) or n_steps <= 0:
        raise ValueError(f"`n_steps` must be a positive int; got {n_steps!r}.")
    chain = optimizer
    if isinstance(getattr(optimizer, "update", None), _SGDUpdate):
        chain = optimizer.update.chain  # an SGD chain's `.optimizer`
    if not isinstance(chain, SGDChain) and not (
        callable(getattr(optimizer, "init", None))
        and callable(getattr(optimizer, "update", None))
    ):
        raise ValueError(
            "`optimizer` must be an lnn.optim.SGDChain or an "
            f"optax.GradientTransformation; got {optimizer!r:.200}."
        )
    declared = getattr(generators, "kinds", None)  # `lnn.nn.symmetries` states them
    if isinstance(declared, Mapping):
        kinds = {**{k: v for k, v in declared.items() if k in generators}, **kinds}
    layout = _layout(params)
    w = layout.arrays(params, "params")
    # NumPy arrays in a generator (masks, matrices) are traced like JAX arrays
    as_jax = lambda x: jnp.asarray(x) if isinstance(x, np.ndarray) else x
    generators = {k: jax.tree.map(as_jax, g) for k, g in generators.items()}
    families = _families(generators, layout, w, kinds)
    try:
        laws = [charge_law(chain, _member(f, generators), f.kind) for f in families]
    except NoExactLaw:
        laws = None
        chain = None
        if lr is None:
            raise ValueError(
                "`lr` is required for an optimiser without an exact law (to state "
                "the SGD bound η²Σ|⟨g, Ag⟩| next to the measured drift); got None."
            ) from None
    if lr is not None:
        if isinstance(lr, bool) or not isinstance(lr, int | float) or not lr > 0:
            raise ValueError(f"`lr` must be a positive float; got {lr!r}.")
        lr = float(lr)
    return LoopTracker(families, laws, chain, lr, layout, n_steps)


def _member(family, generators):
    return generators[family.names[0]]
