"""Rendering discovered symmetries as conservation laws, with numerical checks."""

import dataclasses

import jax
import jax.numpy as jnp

from .._noether import Generator
from .._tree import tree_dot
from ._discover import Discovery


def is_gradient_field(gen: Generator, q, *, key=None, tol: float = 1e-10) -> bool:
    r"""Whether the linear field $\xi(q) = Aq$ is symmetric ($A = A^\top$), checked as
    $\langle\xi(u), v\rangle = \langle u, \xi(v)\rangle$ at random $u, v$. Then
    $\xi = \tfrac12\nabla C$ with $C(q) = \langle q, \xi(q)\rangle$, and the gradient-flow
    law integrates to $C = $ const."""
    key = jax.random.key(0) if key is None else key
    leaves, tree = jax.tree.flatten(q)
    ks = jax.random.split(key, 2 * len(leaves))
    u = jax.tree.unflatten(
        tree, [jax.random.normal(k, x.shape, x.dtype) for k, x in zip(ks[::2], leaves)]
    )
    v = jax.tree.unflatten(
        tree, [jax.random.normal(k, x.shape, x.dtype) for k, x in zip(ks[1::2], leaves)]
    )
    t = jnp.zeros(())
    a, b = tree_dot(gen.xi(t, u), v), tree_dot(u, gen.xi(t, v))
    return bool(jnp.abs(a - b) <= tol * (jnp.abs(a) + jnp.abs(b) + 1e-300))


@dataclasses.dataclass(frozen=True)
class Law:
    """One conservation law in its four forms, with the numerical checks."""

    expression: str
    integrable: bool
    gf: str
    nd: str
    nagf: str
    general: str
    gf_drift: float
    nd_residual: float

    def row(self):
        return [
            self.expression,
            self.gf,
            self.nd,
            self.nagf,
            self.general,
            f"{self.gf_drift:.1e}",
            f"{self.nd_residual:.1e}",
        ]


@dataclasses.dataclass(frozen=True)
class ConservationTable:
    laws: list

    HEADER = (
        "symmetry ξ",
        "gradient flow",
        "ND",
        "NAGF",
        "general dynamics",
        "GF check",
        "ND check",
    )

    def markdown(self) -> str:
        lines = [
            "| " + " | ".join(self.HEADER) + " |",
            "|" + " --- |" * len(self.HEADER),
        ]
        lines += ["| " + " | ".join(law.row()) + " |" for law in self.laws]
        return "\n".join(lines)

    def text(self) -> str:
        out = []
        for i, law in enumerate(self.laws, 1):
            out.append(f"[{i}] ξ = {law.expression}")
            for name, form in (
                ("GF", law.gf),
                ("ND", law.nd),
                ("NAGF", law.nagf),
                ("general", law.general),
            ):
                out.append(f"    {name:8s} {form}")
            out.append(
                f"    checked: GF drift {law.gf_drift:.1e}, ND residual {law.nd_residual:.1e}"
            )
        return "\n".join(out)

    def __str__(self):
        return self.text()


def _quadratic_form(expression: str) -> str:
    terms = []
    for part in expression.replace("- ", "+ -").split("+ "):
        part = part.strip()
        if not part:
            continue
        coef, _, name = (
            part.rpartition("*")
            if "*" in part
            else ("-" if part.startswith("-") else "", "", part.lstrip("-"))
        )
        terms.append(f"{coef}‖{name}‖²")
    return " + ".join(terms).replace("+ -", "− ").replace("+ −", "− ") + " = const"


def conservation_table(
    discovery: Discovery,
    loss,
    q,
    *,
    t1: float = 0.5,
    rtol: float = 1e-8,
    atol: float = 1e-10,
) -> ConservationTable:
    r"""Renders each discovered generator as a conservation law in the four forms of
    the paper (GF, ND, NAGF, general dynamics) and checks it numerically along short
    GF and ND trajectories from `q` (ND from rest):

    - GF: integrated, $C(q) = \langle q, \xi(q)\rangle = $ const, when $\xi$ is a
      symmetric linear field (all rescalings); otherwise $\langle\xi(q), \dot q\rangle = 0$.
      Checked: the largest drift of $C$ (or of $\langle\xi, \dot q\rangle$) along GF,
      relative to $|C(q_0)|$ + the change of $\|q\|^2$.
    - ND $\langle\xi(q), \ddot q\rangle = 0$, NAGF $\langle\xi(q), \ddot q + \tfrac3t\dot q\rangle
      = 0$, general $\langle\xi(q), \kappa_2\ddot q + \kappa_1\dot q\rangle = 0$ (eq. 17).
      Checked: the ND form along ND with the Euler–Lagrange acceleration, relative to
      $\|\xi\|\|\ddot q\|$.

    **Returns:** a `ConservationTable` with `.text()` and `.markdown()`.
    """
    import lagrangian_nn as lnn
    from lagrangian_nn import dynamics

    ts = jnp.linspace(0.0, t1, 11)
    gf = lnn.simulate(
        dynamics.gradient_flow(loss), q, t0=0.0, t1=t1, ts=ts, rtol=rtol, atol=atol
    )
    L = dynamics.newtonian(loss)
    nd = lnn.simulate(
        L,
        q,
        jax.tree.map(jnp.zeros_like, q),
        t0=0.0,
        t1=t1,
        ts=ts,
        rtol=rtol,
        atol=atol,
    )
    # The ND accelerations once for all laws (the expensive, compiled part), then each
    # law's generator along the same path.
    accel = nd.evaluate(lnn.euler_lagrange(L))
    accel_norm = jnp.sqrt(jax.vmap(lambda a: tree_dot(a, a))(accel))
    laws = []
    norm2 = jax.vmap(lambda z: tree_dot(z, z))(gf.q)
    for expr, gen in zip(discovery.describe(), discovery.generators):
        integrable = is_gradient_field(gen, q)
        if integrable:
            C = jax.vmap(lambda z: tree_dot(z, gen.xi(0.0, z)))(gf.q)
            drift = float(jnp.max(jnp.abs(C - C[0])) / (jnp.abs(C[0]) + jnp.ptp(norm2)))
            gf_form = _quadratic_form(expr)
        else:
            vals = jax.vmap(lambda t, z, v: tree_dot(gen.xi(t, z), v))(
                gf.ts, gf.q, gf.qdot
            )
            drift = float(jnp.max(jnp.abs(vals)) / jnp.sqrt(jnp.max(norm2)))
            gf_form = "⟨ξ(w), ẇ⟩ = 0"
        xi = jax.vmap(gen.xi)(nd.ts, nd.q)
        overlap = jnp.abs(jax.vmap(tree_dot)(xi, accel))
        xi_norm = jnp.sqrt(jax.vmap(lambda x: tree_dot(x, x))(xi))
        nd_res = float(jnp.max(overlap / (xi_norm * accel_norm + 1e-300)))
        laws.append(
            Law(
                expr,
                integrable,
                gf_form,
                "⟨ξ(w), ẅ⟩ = 0",
                "⟨ξ(w), ẅ + (3/t)ẇ⟩ = 0",
                "⟨ξ(w), κ2ẅ + κ1ẇ⟩ = 0",
                drift,
                nd_res,
            )
        )
    return ConservationTable(laws)
