r"""The explicit (Störmer–Verlet) step of the trapezoid rule, and when it applies.

The trapezoid discrete Lagrangian of

$$L_0(t, q, \dot q) = \tfrac12\dot q^\top M(t)\,\dot q + b(t)\cdot\dot q
  - V(t, q)$$

(a diagonal mass that does not depend on $q$ or $\dot q$, and a potential that does
not depend on $\dot q$) has discrete Euler–Lagrange equations that are linear in
$q_{k+1}$ with a diagonal matrix: the step is a division, one gradient of the
potential per step, no root solve. Whether a Lagrangian has this form is decided at
trace time from what it *is*, not from its Python type:

- the mass is the one it declares (`AbstractLagrangian.mass_matrix`, as
  `lnn.euler_lagrange` uses it) or, for a plain function, the diagonal read from its
  traced Hessian-vector product (`_mass_solve.read_diagonal`);
- the traced programs of the mass, of $\partial L_0/\partial\dot q$ and of
  $\partial L_0/\partial q$ are read for their dependencies: the mass may depend on
  $t$ only, $\partial L_0/\partial\dot q$ not on $q$, $\partial L_0/\partial q$ not on
  $\dot q$ (so $\partial^2 L_0/\partial q\,\partial\dot q = 0$).

Anything the reading cannot prove (a loop, a conditional, an unknown primitive on the
way) leaves the Lagrangian on the general, implicit path, which is exact too.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import lineax as lx
from jax.extend import core as jex_core

from .._euler_lagrange import declared_mass
from .._mass_solve import read_diagonal

# primitives whose body is a plain sub-program with the same inputs and outputs
_CALLS = frozenset(
    {
        "jit",
        "pjit",
        "closed_call",
        "core_call",
        "custom_jvp_call",
        "custom_vjp_call",
        "remat",
        "checkpoint",
    }
)


def _body(eqn):
    for key in ("jaxpr", "call_jaxpr"):
        sub = eqn.params.get(key)
        jaxpr = getattr(sub, "jaxpr", sub)
        if (
            isinstance(jaxpr, jex_core.Jaxpr)
            and len(jaxpr.invars) == len(eqn.invars)
            and len(jaxpr.outvars) == len(eqn.outvars)
        ):
            return jaxpr
    return None


def _reaches(jaxpr, marked) -> list:
    """For each output of `jaxpr`, whether it depends on an input flagged in `marked`
    (conservatively: any operation other than a plain call passes a dependency from
    any of its inputs to all of its outputs)."""
    tainted = {v for v, m in zip(jaxpr.invars, marked, strict=True) if m}

    def hit(v):
        return not isinstance(v, jex_core.Literal) and v in tainted

    for eqn in jaxpr.eqns:
        flags = [hit(v) for v in eqn.invars]
        if not any(flags):
            continue
        body = _body(eqn) if eqn.primitive.name in _CALLS else None
        outs = [True] * len(eqn.outvars) if body is None else _reaches(body, flags)
        tainted.update(v for v, o in zip(eqn.outvars, outs, strict=True) if o)
    return [hit(v) for v in jaxpr.outvars]


def depends(fn, args, on) -> bool:
    """Whether any output of `fn(*args)` depends on the arguments flagged in `on`
    (one flag per argument, each a pytree), read from the traced program."""
    closed = jax.make_jaxpr(fn)(*args)
    marked = []
    for arg, flag in zip(args, on, strict=True):
        marked += [flag] * len(jax.tree.leaves(arg))
    return any(_reaches(closed.jaxpr, marked))


class Separable(eqx.Module):
    r"""$L_0 = \tfrac12\dot q^\top M(t)\dot q + b(t)\cdot\dot q - V(t, q)$: how to
    evaluate $M$ and $b$, and which of them change with time. Built by `separable`."""

    inner: object
    declared: bool = eqx.field(static=True)
    mass_varies: bool = eqx.field(static=True)
    offset_varies: bool = eqx.field(static=True)

    def mass(self, t, q):
        """The diagonal of $M(t)$ as a pytree like `q` (each leaf a scalar or an array
        of its leaf's shape)."""
        return _mass_tree(self.inner, self.declared, t, q)

    def offset(self, t, q):
        r"""$b(t) = \partial L_0/\partial\dot q$ at $\dot q = 0$."""
        zeros = jax.tree.map(jnp.zeros_like, q)
        return jax.grad(self.inner, argnums=2)(t, q, zeros)

    def force(self, t, q):
        r"""$\partial L_0/\partial q = -\nabla V(t, q)$."""
        zeros = jax.tree.map(jnp.zeros_like, q)
        return jax.grad(self.inner, argnums=1)(t, q, zeros)


def _mass_tree(inner, declared, t, q):
    zeros = jax.tree.map(jnp.zeros_like, q)
    if declared:
        mass = declared_mass(inner, t, q, zeros)
        if eqx.is_array_like(mass) and jnp.ndim(mass) == 0:
            return jax.tree.map(lambda _: mass, q)
        return mass
    coeffs = read_diagonal(inner, t, q, zeros)
    return jax.tree.unflatten(jax.tree.structure(q), coeffs)


def _valid_mass(mass, q) -> bool:
    """A scalar, or a pytree like `q` of scalars or arrays of each leaf's shape."""
    if mass is None or isinstance(mass, lx.AbstractLinearOperator):
        return False
    if eqx.is_array_like(mass) and jnp.ndim(mass) == 0:
        return True
    if jax.tree.structure(mass) != jax.tree.structure(q):
        return False
    return all(
        eqx.is_array_like(m) and jnp.shape(m) in ((), jnp.shape(x))
        for m, x in zip(jax.tree.leaves(mass), jax.tree.leaves(q), strict=True)
    )


def separable(inner, t, q):
    """A `Separable` description of `inner` if its trapezoid step is explicit (see
    the module's docstring), else `None`. Runs at trace time only."""
    zeros = jax.tree.map(jnp.zeros_like, q)
    try:
        mass = declared_mass(inner, t, q, zeros)
        declared = mass is not None
        if declared:
            if not _valid_mass(mass, q):
                return None
        elif read_diagonal(inner, t, q, zeros) is None:
            return None
        args = (t, q, zeros)
        mass_of = lambda t, q, v: _mass_tree(inner, declared, t, q)
        if depends(lambda t, q, v: _mass_on(inner, declared, t, q, v), args, (0, 1, 1)):
            return None
        if depends(jax.grad(inner, argnums=2), args, (0, 1, 0)):
            return None
        if depends(jax.grad(inner, argnums=1), args, (0, 0, 1)):
            return None
        mass_varies = depends(mass_of, args, (1, 0, 0))
        offset_varies = depends(jax.grad(inner, argnums=2), args, (1, 0, 0))
    except Exception:  # noqa: BLE001
        # the reading is an optimisation: whatever it cannot follow takes the
        # general path
        return None
    return Separable(inner, declared, mass_varies, offset_varies)


def _mass_on(inner, declared, t, q, v):
    """The mass read at a general `(t, q, v)` (its dependence on `q` and `v` is what
    is checked)."""
    if declared:
        return declared_mass(inner, t, q, v)
    return read_diagonal(inner, t, q, v)


def constant_diagonal(inner, t, q):
    r"""The diagonal of $M = \partial^2 L_0/\partial\dot q^2$ at `(t, q)` as a
    pytree like `q`, if it is read from the program and does not depend on the
    velocity (the kinetic term is then quadratic: the Legendre transform is a
    division); else `None`. Trace time only."""
    zeros = jax.tree.map(jnp.zeros_like, q)
    try:
        if read_diagonal(inner, t, q, zeros) is None:
            return None
        on_v = lambda v: read_diagonal(inner, t, q, v)
        if depends(on_v, (zeros,), (1,)):
            return None
    except Exception:  # noqa: BLE001
        return None
    return _mass_tree(inner, False, t, q)
