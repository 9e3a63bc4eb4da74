r"""SGD as people run it (weight decay, heavy-ball or Nesterov momentum, dampening,
mini-batches), built as an optax chain that also knows the exact discrete law of every
symmetry charge.

**The setting.** A charge is either *linear*, $Q(w) = \langle s, w\rangle$, from a
generator with a constant field $\xi(w) = s$ (translation of softmax logits), or
*quadratic*, $Q(w) = \langle w, A w\rangle$, from a linear generator $\xi(w) = Aw$
with $A$ symmetric (scale invariance: $A = I$ on a normalised layer; rescaling of a
hidden neuron: $+1$ on its incoming weights and bias, $-p$ on its outgoing ones). The
symmetry holds for every mini-batch loss, so every gradient $g$ satisfies
$\langle s, g\rangle = 0$, resp. $\langle Aw, g\rangle = 0$.

**One step.** With coupled decay $\lambda_c$, dampening $d$, momentum $\beta$ and
decoupled decay $\lambda_d$ (one of the two decays is zero), and PyTorch's convention
for the dampening (`torch.optim.SGD`: the buffer starts undampened, $v_1 = \tilde g_0$,
so the gain is $a_k = 1$ at the first step and $a_k = a = 1-d$ after it),

$$\tilde g = g + \lambda_c w,\quad v' = \beta v + a_k\tilde g,\quad
  u = v' \ \text{(heavy ball)}\ \text{or}\ a_k\tilde g + \beta v' \ \text{(Nesterov)},\quad
  w' = (1 - \eta\lambda_d)w - \eta u .$$

Without momentum there is no buffer and the dampening does nothing ($a_k = 1$), as in
PyTorch. PyTorch refuses Nesterov's momentum with dampening; here it is optax's
Nesterov trace of the dampened gradient, as written.

**The exact law.** Carry $Q$ and the cross term $P = \langle Aw, v\rangle$
($\langle s, v\rangle$ for a linear charge). With $R = \beta P + a_k\lambda_c Q$
($= \langle Aw, v'\rangle$) and $S = R$ (heavy ball) or $a_k\lambda_c Q + \beta R$
(Nesterov) ($= \langle Aw, u\rangle$):

- linear: $Q' = (1-\eta\lambda_d)Q - \eta S$, $P' = R$ — a damped discrete
  oscillator with no driving term;
- quadratic: $Q' = (1-\eta\lambda_d)^2 Q - 2\eta(1-\eta\lambda_d)S
  + \eta^2\langle u, Au\rangle$, $P' = (1-\eta\lambda_d)R - \eta\langle u, Av'\rangle$,
  driven by two quadratic forms of the step's update that the tracker records.

Without momentum ($\beta = 0$, $v' = u = \tilde g$) and with coupled decay this is
$Q' = (1-\eta\lambda)^2 Q + \eta^2\langle g, Ag\rangle$; without decay either,
the GD law $Q' = Q + \eta^2\langle g, Ag\rangle$ (`sgd_chain(lr)` takes the steps of
`gd(lr)`).
"""

from typing import Literal

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.extend.core import Literal as _JaxprLiteral

from .._noether import Generator
from .._tree import tree_dot
from ._run import OptimizerDescription, Step

KINDS = ("linear", "quadratic")


class NoExactLaw(ValueError):
    """Raised by `lnn.optim.charge_law` for an optimiser whose charges have no exact
    law in `lnn.optim` (for example `optax.adam`): measure their drift with
    `lnn.optim.charge_tracker` and `lnn.optim.charge_drift` instead."""


def _number(value, name, lo, hi=None, *, hi_open=True):
    # a Python number, or a concrete 0-d real array (e.g. another chain's `lr`)
    is_array = isinstance(value, np.ndarray | np.generic | jax.Array)
    if is_array and not isinstance(value, jax.core.Tracer):
        ok = jnp.shape(value) == () and jnp.issubdtype(
            jnp.result_type(value), jnp.number
        )
        value = float(value) if ok else value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"`{name}` must be a Python float; got {value!r}.")
    value = float(value)
    ok = value >= lo and (hi is None or (value < hi if hi_open else value <= hi))
    if not ok:
        where = f">= {lo}" if hi is None else f"in [{lo}, {hi})"
        raise ValueError(f"`{name}` must be {where}; got {name} = {value!r}.")
    return value


def _like(scalar, x):
    """`scalar` in the dtype of the array `x`: what a Python float becomes in
    `scalar * x`, so the chain rounds exactly as optax's chain of Python floats."""
    return jnp.asarray(scalar, jnp.result_type(x))


class SGDChain(OptimizerDescription):
    r"""The description of an SGD optax chain, with its exact charge laws; built by
    `lnn.optim.sgd_chain`.

    The numbers $\eta$ (`lr`), $\beta$ (`momentum`), $\lambda$ (`weight_decay`) and $d$
    (`dampening`) are 0-d float64 NumPy arrays, traced under `jit`: a chain with new
    values but the same `structure` reuses the compiled `lnn.optim.run` and the
    compiled charge law. The `structure` (the chain's parts in order: where the decay
    goes, whether there is a momentum buffer, whether it is dampened) and `nesterov`
    are static. `optimizer` is the `optax.GradientTransformation`."""

    lr: np.ndarray
    momentum: np.ndarray
    weight_decay: np.ndarray
    dampening: np.ndarray
    gain: np.ndarray  # a = 1 - d after the first step (1 without a dampening stage)
    nesterov: bool = eqx.field(static=True)
    decay: str = eqx.field(static=True)
    structure: tuple[str, ...] = eqx.field(static=True)

    @property
    def coupled_decay(self):
        """$\\lambda_c$: the decay added to the gradient before the momentum."""
        return self.weight_decay if self.decay == "coupled" else 0.0

    @property
    def decoupled_decay(self):
        """$\\lambda_d$: the decay added to the update after the momentum."""
        return self.weight_decay if self.decay == "decoupled" else 0.0

    @property
    def trace_index(self) -> int | None:
        """The position of `optax.trace`'s state in the chain's state."""
        return self.structure.index("trace") if "trace" in self.structure else None

    @property
    def optimizer(self) -> optax.GradientTransformation:
        """The chain as an `optax.GradientTransformation`; its `init` and `update` are
        `eqx.Module`s holding this chain, so `jit` traces the hyperparameters."""
        return optax.GradientTransformation(_SGDInit(self), _SGDUpdate(self))

    def velocity(self, opt_state):
        """The momentum buffer $v$ in an optimiser state of this chain (`None` without
        momentum)."""
        if self.trace_index is None:
            return None
        return opt_state[self.trace_index].trace

    def step_gain(self, opt_state, dtype):
        r"""The gain $a_k$ of the step that produced `opt_state`: 1 at the first step
        (PyTorch's undampened start of the buffer) and $1 - d$ after it; 1 without a
        dampening stage."""
        if "dampening" not in self.structure:
            return jnp.ones((), dtype)
        count = opt_state[self.structure.index("dampening")].count
        return _first_step_gain(count - 1, self.gain, dtype)


def _first_step_gain(count, gain, dtype):
    """`optax.scale_by_schedule(lambda n: jnp.where(n == 0, 1.0, gain))`'s step size
    at update `count` (0 first), in `dtype` as that transform rounds it."""
    return jnp.asarray(jnp.where(count == 0, 1.0, gain), dtype)


class _SGDInit(eqx.Module):
    chain: SGDChain

    def __call__(self, params):
        def part_state(part):
            if part == "trace":
                return optax.TraceState(trace=optax.tree.zeros_like(params))
            if part == "dampening":
                return optax.ScaleByScheduleState(count=jnp.zeros([], jnp.int32))
            return optax.EmptyState()

        return tuple(part_state(part) for part in self.chain.structure)


class _SGDUpdate(eqx.Module):
    """The update of `optax.chain(add_decayed_weights, scale_by_schedule, trace,
    add_decayed_weights, scale_by_learning_rate)` with each part's arithmetic as in
    optax, and the hyperparameters traced."""

    chain: SGDChain

    @property
    def lnn_time_step(self):
        # `lnn.optim.run` maps step k to t = k·lr
        return self.chain.lr

    def __call__(self, updates, state, params=None):
        c = self.chain
        state = list(state)
        for i, part in enumerate(c.structure):
            if part in ("coupled", "decoupled"):
                if params is None:
                    raise ValueError(
                        "`params` must be passed to the update of an SGD chain with "
                        "weight decay; got None."
                    )
                updates = jax.tree.map(
                    lambda g, p: g + _like(c.weight_decay, p) * p, updates, params
                )
            elif part == "dampening":
                count = state[i].count
                updates = jax.tree.map(
                    lambda g: _first_step_gain(count, c.gain, g.dtype) * g, updates
                )
                state[i] = optax.ScaleByScheduleState(count=optax.safe_increment(count))
            elif part == "trace":
                f = lambda g, t: g + _like(c.momentum, t) * t
                trace = jax.tree.map(f, updates, state[i].trace)
                updates = jax.tree.map(f, updates, trace) if c.nesterov else trace
                state[i] = optax.TraceState(trace=trace)
            else:  # "lr": optax.scale_by_learning_rate(lr) = optax.scale(-lr)
                updates = jax.tree.map(lambda g: -_like(c.lr, g) * g, updates)
        return updates, tuple(state)


def sgd_chain(
    lr: float,
    *,
    momentum: float = 0.0,
    nesterov: bool = False,
    weight_decay: float = 0.0,
    decay: Literal["coupled", "decoupled"] = "coupled",
    dampening: float = 0.0,
) -> SGDChain:
    r"""SGD with weight decay, momentum and dampening as an optax chain, the way it is
    usually built, together with its exact discrete charge laws (`charge_law`).

    The chain steps exactly (to the bit, in `lnn.optim.run` and in your own loop) as,
    leaving out the parts that are off,

    ```python
    optax.chain(
        optax.add_decayed_weights(weight_decay),  # decay="coupled"
        optax.scale_by_schedule(  # dampening > 0 (with momentum)
            lambda n: jnp.where(n == 0, 1.0, 1 - dampening)
        ),
        optax.trace(momentum, nesterov=nesterov),  # momentum > 0
        optax.add_decayed_weights(weight_decay),  # decay="decoupled"
        optax.scale_by_learning_rate(lr),
    )
    ```

    so `sgd_chain(lr, momentum=b, nesterov=n, weight_decay=l)` steps exactly as
    `optax.chain(optax.add_decayed_weights(l), optax.sgd(lr, momentum=b, nesterov=n))`
    (and, with `l = 0`, as `optax.sgd(lr, momentum=b, nesterov=n)`).

    **Dampening** is PyTorch's (`torch.optim.SGD(dampening=d)`): the momentum buffer
    starts undampened, $v_1 = \tilde g_0$, then $v_{k+1} = \beta v_k +
    (1-d)\tilde g_k$; without momentum the dampening does nothing. PyTorch refuses
    Nesterov's momentum with dampening; here it is optax's Nesterov trace of the
    dampened gradient, $u = a_k\tilde g + \beta v'$ (with $a_k = 1$ at the first step
    and $1-d$ after it).

    **Compiling.** The numbers are traced, not compiled in: `lnn.optim.run` with a new
    `lr`, `momentum` (non-zero), `weight_decay` (0 included) or `dampening`
    (non-zero) does not recompile. The structure is compiled in: where the decay goes,
    whether there is momentum (`momentum` 0 or not), whether it is dampened
    (`dampening` 0 or not) and `nesterov`. A zero decay stays in the chain as an exact
    no-op ($g + 0\cdot w = g$, up to the sign of a zero). A zero dampening is left out,
    so the chain compiles to exactly the optax chain without it (a gain of 1 in the
    compiled update would be exact too, but it changes which multiplications the
    compiler fuses and hence the rounding).

    **Arguments:**

    - `lr`: the learning rate $\eta > 0$ (a constant: the laws are for a fixed $\eta$).
    - `momentum`: $\beta \in [0, 1)$; 0 means plain SGD (no momentum buffer).
    - `nesterov`: Nesterov's form of the momentum (`optax.trace(nesterov=True)`).
    - `weight_decay`: $\lambda \ge 0$.
    - `decay`: `"coupled"` (added to the gradient before the momentum, L2
      regularisation) or `"decoupled"` (added to the update after it, as AdamW does).
    - `dampening`: $d \in [0, 1)$: after the first step the gradient enters the
      momentum buffer as $(1-d)g$ (PyTorch's dampening; ignored without momentum).

    **Returns:** an `lnn.optim.SGDChain`; pass `.optimizer` to `lnn.optim.run` (its
    time step is $\eta$) or use it in your own loop.
    """
    lr = _number(lr, "lr", 0.0)
    if not lr > 0:
        raise ValueError(f"`lr` must be > 0; got lr = {lr!r}.")
    momentum = _number(momentum, "momentum", 0.0, 1.0)
    weight_decay = _number(weight_decay, "weight_decay", 0.0)
    dampening = _number(dampening, "dampening", 0.0, 1.0)
    if not isinstance(nesterov, bool):
        raise ValueError(f"`nesterov` must be a bool; got {nesterov!r}.")
    if decay not in ("coupled", "decoupled"):
        raise ValueError(f"`decay` must be 'coupled' or 'decoupled'; got {decay!r}.")
    if nesterov and momentum == 0:
        raise ValueError(
            "`nesterov=True` needs `momentum` > 0; got momentum = 0.0 (Nesterov's "
            "form of no momentum is plain SGD)."
        )
    # the decay is always in (0 makes it an exact no-op, so a new value never
    # recompiles); the momentum buffer only with momentum, its dampening only when
    # non-zero (PyTorch ignores it without momentum)
    dampened = bool(momentum) and dampening > 0
    structure = (
        *(["coupled"] if decay == "coupled" else []),
        *(["dampening"] if dampened else []),
        *(["trace"] if momentum else []),
        *(["decoupled"] if decay == "decoupled" else []),
        "lr",
    )
    f64 = lambda x: np.asarray(x, np.float64)
    return SGDChain(
        f64(lr),
        f64(momentum),
        f64(weight_decay),
        f64(dampening),
        f64(1.0 - dampening if dampened else 1.0),
        nesterov,
        decay,
        structure,
    )


def _xi(gen, q):
    return gen.xi(jnp.zeros((), jnp.result_type(*jax.tree.leaves(q))), q)


def _zero_leaves(generator, q) -> tuple[bool, ...]:
    r"""Which leaves of $\xi(q)$ are zero for every `q` and every value of the
    generator's own arrays: those that the traced field computes from neither (only
    from constants), and whose constant value is zero (e.g. the untouched layers of a
    rescaling). Decided once per trace; a dot product can then skip them exactly
    (adding a zero is exact)."""
    dyn, static = eqx.partition(generator, eqx.is_array)
    spec = lambda x: jax.ShapeDtypeStruct(jnp.shape(x), jnp.result_type(x))  # noqa: E731

    def field(d, z):
        return jax.tree.leaves(_xi(eqx.combine(d, static), z))

    shapes = jax.tree.map(spec, (dyn, q))
    closed = jax.make_jaxpr(field)(*shapes)
    jaxpr = closed.jaxpr
    depends = set(jaxpr.invars) | set(jaxpr.constvars)
    for eqn in jaxpr.eqns:
        if any(not isinstance(v, _JaxprLiteral) and v in depends for v in eqn.invars):
            depends.update(eqn.outvars)
    free = [
        not isinstance(v, _JaxprLiteral) and v not in depends for v in jaxpr.outvars
    ]
    free = [f or isinstance(v, _JaxprLiteral) for f, v in zip(free, jaxpr.outvars)]
    if not any(free):
        return tuple(free)
    zeros = jax.tree.map(lambda x: np.zeros(x.shape, x.dtype), shapes)
    try:
        with jax.ensure_compile_time_eval():
            values = [np.asarray(x) if f else None for f, x in zip(free, field(*zeros))]
    except Exception:  # a field that cannot run on concrete zeros: skip nothing
        return tuple(False for _ in free)
    return tuple(bool(f) and not np.any(x) for f, x in zip(free, values, strict=True))


def _dot(a, b, skip):
    """`tree_dot(a, b)` over the leaves not in `skip` (exactly: the skipped products
    are zero)."""
    leaves = [
        jnp.vdot(x, y)
        for x, y, s in zip(jax.tree.leaves(a), jax.tree.leaves(b), skip, strict=True)
        if not s
    ]
    if not leaves:
        return jnp.zeros((), jnp.result_type(*jax.tree.leaves(a)))
    out = leaves[0]
    for x in leaves[1:]:
        out = out + x
    return out


class ChargeLaw(eqx.Module):
    r"""A tracker for `lnn.optim.run(chain.optimizer, ...)` recording, after each step,
    what the exact law of the charge needs; see `charge_law`. Returns a dict of
    scalars:

    - `charge`: $Q(w_{k+1})$ (every charge);
    - `uAu`: $\langle u_k, Au_k\rangle$ (quadratic charges), the drive of the exact
      law;
    - `uAv`: $\langle u_k, Av_{k+1}\rangle$ (quadratic charges under Nesterov's
      momentum only: for heavy ball and plain SGD the update is the buffer, $u_k =
      v_{k+1}$, and `uAv` is `uAu`).

    With `continuous=True` (`charge_law(..., continuous=True)`) it also records the
    drives of the continuous forms (`lnn.optim.continuous_charge`, of this chain or
    another) of a quadratic charge: `gAg` $= \langle g_k, Ag_k\rangle$ (used without
    momentum), `dAd` $= \langle\delta_k, A\delta_k\rangle$ (with momentum) and `dAg`
    $= \langle\delta_k, Ag_k\rangle$ (Nesterov's), with
    $\delta_k = (w_k - w_{k+1})/\eta$.
    """

    chain: SGDChain
    generator: Generator
    kind: str = eqx.field(static=True)
    continuous: bool = eqx.field(static=True, default=False)

    def _update(self, step: Step):
        """The update direction $u_k$ and the new buffer $v_{k+1}$ of the step."""
        c = self.chain
        w, g = step.q_prev, step.grad
        v_new = c.velocity(step.opt_state)
        if v_new is not None and not c.nesterov:  # heavy ball: u = v'
            return v_new, v_new
        g_tilde = jax.tree.map(
            lambda gi, wi: gi + _like(c.coupled_decay, wi) * wi, g, w
        )
        if v_new is None:  # no buffer, no dampening: u = v' = g̃
            return g_tilde, g_tilde
        a_k = c.step_gain(step.opt_state, jnp.result_type(*jax.tree.leaves(w)))
        gained = jax.tree.map(lambda x: a_k.astype(x.dtype) * x, g_tilde)
        u = jax.tree.map(lambda x, v: x + _like(c.momentum, v) * v, gained, v_new)
        return u, v_new

    def __call__(self, step: Step):
        c = self.chain
        skip = _zero_leaves(self.generator, step.q)
        A = lambda x: _xi(self.generator, x)  # noqa: E731
        if self.kind == "linear":
            return {"charge": _dot(A(step.q), step.q, skip)}
        u, v_new = self._update(step)
        Au = A(u)
        out = {
            "charge": _dot(step.q, A(step.q), skip),
            "uAu": _dot(u, Au, skip),
        }
        if c.nesterov:
            out["uAv"] = _dot(Au, v_new, skip)
        if self.continuous:
            g = step.grad
            delta = jax.tree.map(
                lambda ui, wi: ui + _like(c.decoupled_decay, wi) * wi, u, step.q_prev
            )
            Ad = A(delta)
            out["gAg"] = _dot(g, A(g), skip)
            out["dAd"] = _dot(delta, Ad, skip)
            out["dAg"] = _dot(Ad, g, skip)
        return out

    def predict(self, tracked, initial):
        r"""The exact charge sequence predicted from `initial` $= Q(w_0)$ (the run
        starts from rest, $P_0 = 0$) and the per-step drives in `tracked` (this
        tracker's output from `lnn.optim.run`).

        **Returns:** `(measured, predicted)`, arrays of length `steps + 1` (entry 0 is
        `initial`)."""
        if not isinstance(tracked, dict) or "charge" not in tracked:
            raise ValueError(
                "`tracked` must be this tracker's output from `lnn.optim.run` (a dict "
                f"holding 'charge'); got {tracked!r:.200}."
            )
        tracked = {k: jnp.asarray(v) for k, v in tracked.items()}
        Q0 = jnp.asarray(initial, tracked["charge"].dtype)
        if self.kind == "quadratic":
            for name in ("uAu", *(["uAv"] if self.chain.nesterov else [])):
                if name not in tracked:
                    raise ValueError(
                        f"`tracked` must hold {name!r} (the drive of a quadratic "
                        f"charge's law); got the keys {sorted(tracked)}."
                    )
            uAu = tracked["uAu"]
            uAv = tracked.get("uAv", uAu)  # u = v' without Nesterov
        else:
            uAu = uAv = jnp.zeros_like(tracked["charge"])
        predicted = _recursion(self.chain, self.kind, Q0, uAu, uAv)
        measured = jnp.concatenate([Q0[None], tracked["charge"]])
        return measured, jnp.concatenate([Q0[None], predicted])


@eqx.filter_jit
def _recursion(c: SGDChain, kind: str, Q0, uAu, uAv):
    eta, beta = _like(c.lr, Q0), _like(c.momentum, Q0)
    lc, ld = _like(c.coupled_decay, Q0), _like(c.decoupled_decay, Q0)
    shrink = 1 - eta * ld
    # the gain a_k of each step: 1 at the first (PyTorch's undampened start)
    steps = jnp.arange(uAu.shape[0])
    if "dampening" in c.structure:
        gains = _first_step_gain(steps, c.gain, Q0.dtype)
    else:
        gains = jnp.ones_like(uAu)

    def body(carry, drive):
        Q, P = carry
        uAu, uAv, a = drive
        R = beta * P + a * lc * Q
        S = a * lc * Q + beta * R if c.nesterov else R
        if kind == "quadratic":
            Q_new = shrink**2 * Q - 2 * eta * shrink * S + eta**2 * uAu
            P_new = shrink * R - eta * uAv
        else:
            Q_new = shrink * Q - eta * S
            P_new = R
        return (Q_new, P_new), Q_new

    return jax.lax.scan(body, (Q0, jnp.zeros_like(Q0)), (uAu, uAv, gains))[1]


def _check_generator(gen, kind):
    if not isinstance(gen, Generator):
        raise ValueError(f"`generator` must be an `lnn.Generator`; got {gen!r}.")
    if kind not in KINDS:
        raise ValueError(
            f"`kind` must be 'linear' (a constant generator, Q = ⟨s, w⟩) or "
            f"'quadratic' (a linear generator, Q = ⟨w, A w⟩); got {kind!r}."
        )


def charge_law(
    optimizer, generator: Generator, kind: str, *, continuous: bool = False
) -> ChargeLaw:
    r"""The exact discrete law of a symmetry charge under an SGD chain.

    **Arguments:**

    - `optimizer`: an `lnn.optim.SGDChain` from `sgd_chain`. Anything else (an
      `optax.adam`, an opaque optax transform) raises `lnn.optim.NoExactLaw`.
    - `generator`: the symmetry's `lnn.Generator`: a constant field $\xi(w) = s$ for
      `kind="linear"` ($Q = \langle s, w\rangle$), a linear symmetric one
      $\xi(w) = Aw$ for `kind="quadratic"` ($Q = \langle w, Aw\rangle$). It must be a
      symmetry of every mini-batch loss; the law is exact only then.
    - `kind`: `"linear"` or `"quadratic"`.
    - `continuous`: also record the drives of the continuous forms of a quadratic
      charge (for `lnn.optim.continuous_charge`); off by default, so the tracker
      computes only what the exact law needs: the charge, and for a quadratic charge
      one quadratic form of the update (two under Nesterov's momentum).

    **Returns:** an `lnn.optim.ChargeLaw`: pass it to `lnn.optim.run(...,
    track={"law": law})`, then `law.predict(run.tracked["law"], Q0)` gives the
    measured and the predicted charges, equal to rounding.

    **Example:**

    ```python
    chain = lnn.optim.sgd_chain(0.1, momentum=0.9, weight_decay=1e-3)
    gen = lnn.nn.scale_invariance(model)
    law = lnn.optim.charge_law(chain, gen, "quadratic")
    out = lnn.optim.run(chain.optimizer, loss, model, 100, track={"Q": law},
                        batches=batches)
    Q0 = lnn.optim.charge(gen, "quadratic", model)
    measured, predicted = law.predict(out.tracked["Q"], Q0)
    ```
    """
    _check_generator(generator, kind)
    if not isinstance(optimizer, SGDChain):
        raise NoExactLaw(
            f"no exact law for `optimizer`, a {type(optimizer).__name__} (not an "
            "`lnn.optim.sgd_chain`): `lnn.optim` has exact "
            "charge laws only for SGD chains described by `lnn.optim.sgd_chain` "
            "(optax transforms are opaque closures, and adaptive ones such as "
            "`optax.adam` rescale each coordinate, so a charge has no closed law). "
            "Measure its drift with `lnn.optim.charge_tracker` and "
            "`lnn.optim.charge_drift` instead."
        )
    if not isinstance(continuous, bool):
        raise ValueError(f"`continuous` must be a bool; got {continuous!r}.")
    return ChargeLaw(optimizer, generator, kind, continuous)


def charge(generator: Generator, kind: str, params):
    r"""The charge $Q(w)$ of a generator: $\langle\xi, w\rangle$ (`"linear"`) or
    $\langle w, \xi(w)\rangle$ (`"quadratic"`)."""
    _check_generator(generator, kind)
    xi = _xi(generator, params)
    return tree_dot(xi, params) if kind == "linear" else tree_dot(params, xi)


class ChargeTracker(eqx.Module):
    """Tracker of $Q(w_{k+1})$ for any optimiser; see `charge_tracker`."""

    generator: Generator
    kind: str = eqx.field(static=True)

    def __call__(self, step: Step):
        return charge(self.generator, self.kind, step.q)


def charge_tracker(generator: Generator, kind: str) -> ChargeTracker:
    """A tracker recording the charge $Q(w_{k+1})$ after every step, for any optimiser
    (one without an exact law, such as `optax.adam`, included). See `charge_drift`."""
    _check_generator(generator, kind)
    return ChargeTracker(generator, kind)


def charge_drift(charges, initial):
    r"""$\max_k |Q_k - Q_0| / |Q_0|$: how far a charge moved during a run, from the
    output of a `charge_tracker` and `initial` $= Q(w_0)$."""
    charges = jnp.asarray(charges)
    initial = jnp.asarray(initial, charges.dtype)
    if not bool(initial != 0):
        raise ValueError(
            "`initial` must be non-zero to measure a relative drift; got 0."
        )
    return jnp.max(jnp.abs(charges - initial)) / jnp.abs(initial)
