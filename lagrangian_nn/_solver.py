"""Tsit5 as a diffrax solver whose stage arithmetic XLA fuses into one pass over the
state per stage, without copying the buffer of stage derivatives."""

from collections.abc import Callable
from typing import ClassVar

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import jax.tree_util as jtu
from jax.extend import core as jex_core

from ._custom_types import PyTree
from ._tree import tree_size

_TABLEAU = diffrax.Tsit5.tableau
# The stage loop below relies on these two properties of Tsitouras' tableau: the first
# stage of a step is the last stage of the previous one (FSAL), and the last stage is
# evaluated at the solution `y1` itself (SSAL).
assert _TABLEAU.fsal and _TABLEAU.ssal
_A = tuple(tuple(float(a) for a in row) for row in _TABLEAU.a_lower)
_C = tuple(float(c) for c in _TABLEAU.c)
_B_ERROR = tuple(float(b) for b in _TABLEAU.b_error)
_UNROLL_FROM = 2**16  # state size from which `unroll_stages=None` always unrolls
_LOOPS = frozenset({"while", "scan"})


def _has_loop(jaxpr) -> bool:
    """Whether a jaxpr (or any jaxpr inside it) contains a `while` or `scan`."""
    return any(eqn.primitive.name in _LOOPS for eqn in jaxpr.eqns) or any(
        _has_loop(sub) for sub in jex_core.subjaxprs(jaxpr)
    )


def _combine(y0, coefficients, fs, dt):
    """`y0 + dt * sum_j coefficients[j] * fs[j]` leaf by leaf (`dt * sum ...` when `y0`
    is None), skipping zero coefficients: one elementwise expression per leaf, which XLA
    compiles to one loop."""

    def leaf(y, *f):
        total = None
        for c, fj in zip(coefficients, f):
            if c != 0.0:
                total = c * fj if total is None else total + c * fj
        return total * dt if y is None else y + total * dt

    if y0 is None:
        return jtu.tree_map(lambda *f: leaf(None, *f), *fs)
    return jtu.tree_map(leaf, y0, *fs)


class _StagewiseInterpolation(diffrax.AbstractLocalInterpolation):
    """diffrax's Tsit5 interpolant, built from the seven stage derivatives `fs` kept as
    a tuple: they are scaled by the step and stacked only when the interpolant is
    evaluated (when a save time falls inside the step), not at every step."""

    t0: jax.Array
    t1: jax.Array
    y0: PyTree
    y1: PyTree
    fs: tuple
    control: jax.Array

    def evaluate(self, t0, t1=None, left=True):
        k = jtu.tree_map(lambda *fs: jnp.stack(fs) * self.control, *self.fs)
        interpolation = diffrax.Tsit5.interpolation_cls(
            t0=self.t0, t1=self.t1, y0=self.y0, y1=self.y1, k=k
        )
        return interpolation.evaluate(t0, t1, left)


class FusedTsit5(diffrax.AbstractAdaptiveSolver):
    r"""Tsitouras' 5(4) Runge–Kutta method (the tableau of `diffrax.Tsit5`), with the
    arithmetic of each stage fused into one pass over the state.

    `diffrax.Tsit5` runs its stages in a loop that reads and rewrites a buffer of all
    seven stage derivatives at every stage; XLA copies that buffer, so for a
    network-sized state the solver's own arithmetic can cost more than the network.
    Here each stage value $y_i = y_0 + \Delta t \sum_{j<i} a_{ij} f_j$ is one
    elementwise expression over the stage derivatives it needs, and the buffer is
    updated in place, so a step costs its six new right-hand sides plus a few passes
    over the state. Measured with a trivial right-hand side on a 477,600-float state
    (2-core CPU, `python benchmarks/run.py --rows g`): 0.87 ms per step with the stages
    unrolled and 3.9 ms looped, against 11.7 ms for `diffrax.Tsit5`.

    It takes the same steps and gives the same solution as `diffrax.Tsit5` up to
    rounding (the same tableau, error estimate, error order and interpolant), so it can
    replace it wherever an ODE is solved with `diffrax.diffeqsolve`. It is the default
    solver of `lnn.simulate`.

    **Arguments:**

    - `unroll_stages`: if `False`, the stages run in a loop that holds one copy of the
      vector field, so the compile time is that of `diffrax.Tsit5`. If `True`, the six
      stages are written out one after the other: the program holds six copies of the
      vector field and takes about twice as long to compile, and each step is faster
      (for the paper's 238,800-parameter network, `lnn.simulate` took 1.66 s against
      2.07 s looped and 2.49 s with `diffrax.Tsit5`; 2-core CPU). The default `None`
      unrolls unless the vector field contains a loop (`while` or `scan`, such as the
      CG solve of a non-diagonal mass matrix) and the state holds fewer than 65,536
      numbers: only then does compile time outweigh the faster steps. (A Table-1
      network on 9,672 parameters: 0.147 s unrolled against 0.192 s looped per
      `lnn.simulate`, and the same compile time.)

    For ODEs (`diffrax.ODETerm`) only. Differentiable and batched by `vmap` like any
    diffrax solver.

    **Example:**

    ```python
    sol = diffrax.diffeqsolve(diffrax.ODETerm(f), lnn.FusedTsit5(), t0, t1, None, y0,
                              stepsize_controller=diffrax.PIDController(1e-6, 1e-8))
    ```
    """

    unroll_stages: bool | None = eqx.field(default=None, static=True)

    term_structure: ClassVar = diffrax.ODETerm
    interpolation_cls: ClassVar[Callable[..., _StagewiseInterpolation]] = (
        _StagewiseInterpolation
    )

    def order(self, terms):
        return 5

    def init(self, terms, t0, t1, y0, args):
        # The first stage of the first step; later steps reuse their last stage.
        return terms.vf(t0, y0, args)

    def step(self, terms, t0, t1, y0, args, solver_state, made_jump):
        f0 = solver_state
        if made_jump is not False:
            # After a discontinuity the stored last stage belongs to the other side.
            f0 = jax.lax.cond(made_jump, lambda: terms.vf(t0, y0, args), lambda: f0)
        # `dt` multiplies the vector field (negative when integrating backwards);
        # `t1 - t0` advances diffrax's internal time, which always increases.
        dt = terms.contr(t0, t1)
        h = t1 - t0
        unroll = self.unroll_stages
        if unroll is None:
            # Six copies of a vector field with a loop inside (such as the CG solve of
            # a non-diagonal mass matrix) double the compile time; straight-line code
            # (a Table-1 network, whose mass matrix is divided out) compiles about as
            # fast either way, and unrolled steps are faster.
            unroll = tree_size(y0) >= _UNROLL_FROM or not _has_loop(
                jax.make_jaxpr(lambda y: terms.vf(t0, y, args))(y0).jaxpr
            )
        if unroll:
            fs = [f0]
            for a, c in zip(_A, _C):
                yi = _combine(y0, a, fs, dt)
                fs.append(terms.vf(t1 if c == 1.0 else t0 + c * h, yi, args))
            fs = tuple(fs)
            y1 = yi  # SSAL: the last stage value is the solution
        else:
            fs = _stage_loop(terms, t0, t1, y0, args, f0, dt)
            y1 = _combine(y0, _A[-1], fs[:-1], dt)
        y_error = _combine(None, _B_ERROR, fs, dt)
        dense_info = dict(y0=y0, y1=y1, fs=fs, control=dt)
        return y1, y_error, dense_info, fs[-1], diffrax.RESULTS.successful

    def func(self, terms, t0, y0, args):
        return terms.vf(t0, y0, args)


def _stage_loop(terms, t0, t1, y0, args, f0, dt):
    """The six new stages in a `fori_loop` over a buffer of stage derivatives (one copy
    of the vector field in the program); returns the seven derivatives as a tuple."""
    stages = len(_A)
    buffer = jtu.tree_map(
        lambda f: jnp.zeros((stages + 1,) + f.shape, f.dtype).at[0].set(f), f0
    )

    def stage_value(i, buffer):
        fs = tuple(jtu.tree_map(lambda x: x[j], buffer) for j in range(i + 1))
        return _combine(y0, _A[i], fs, dt)

    branches = [lambda buffer, i=i: stage_value(i, buffer) for i in range(stages)]
    c = jnp.asarray(_C, jnp.result_type(t1 - t0))

    def body(i, buffer):
        yi = jax.lax.switch(i, branches, buffer)
        ti = jnp.where(c[i] == 1.0, t1, t0 + c[i] * (t1 - t0))
        fi = terms.vf(ti, yi, args)
        # A plain dynamic-update-slice, which XLA does in place (`.at[].set` adds an
        # out-of-bounds select that rewrites the whole buffer at every stage).
        return jtu.tree_map(
            lambda x, f: jax.lax.dynamic_update_index_in_dim(x, f, i + 1, 0),
            buffer,
            fi,
        )

    buffer = jax.lax.fori_loop(0, stages, body, buffer)
    return tuple(jtu.tree_map(lambda x: x[j], buffer) for j in range(stages + 1))
