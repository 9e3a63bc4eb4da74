r"""Kunin et al.'s continuous forms of the charges under SGD with weight decay and
momentum ("Neural Mechanics", ICLR 2021), with time $t = \eta k$.

**Modified equation.** Heavy-ball SGD, $w_{k+1} - w_k = \beta(w_k - w_{k-1})
- \eta a(g_k + \lambda w_k)$ with $a = 1 - d$, expanded to second order in $\eta$ with
$w_k = \theta(\eta k)$, is

$$\tfrac{\eta(1+\beta)}{2}\ddot\theta + (1-\beta)\dot\theta + \kappa\theta = -a g,$$

with $\kappa = a\lambda$ for coupled decay and $\kappa = (1-\beta)\lambda$ for
decoupled decay (to leading order). Projected on a charge,

- translation ($Q = \langle s, \theta\rangle$): $\ddot Q + 2\gamma\dot Q + \omega^2 Q = 0$
  with $\gamma = \frac{1-\beta}{\eta(1+\beta)}$, $\omega^2 = \frac{2\kappa}{\eta(1+\beta)}$;
- scale/rescale ($Q = \langle\theta, A\theta\rangle$):
  $\ddot Q + 2\gamma\dot Q + \omega^2 Q = 2\langle\dot\theta, A\dot\theta\rangle$ with
  $\omega^2 = \frac{4\kappa}{\eta(1+\beta)}$.

Kunin et al. write $\gamma = \frac{1-\beta}{\eta(1-d)(1+\beta)}$ and
$\omega^2 = \frac{4\lambda}{\eta(1-d)(1+\beta)}$: the same equation in the time
$\tau = (1-d)\eta k$ (with $d = 0$ they coincide). Without momentum the first-order
forms are $Q(t) = e^{-\kappa t}Q_0$ and
$Q(t) = e^{-2\kappa t}(Q_0 + \eta a^2\int_0^t e^{2\kappa\tau}\langle g, Ag\rangle d\tau)$
(Kunin's $|W|^2$ law for $a = 1$). The drive is taken from the run (`ChargeLaw`'s
`gAg`, or `dAd` $=\langle\dot\theta, A\dot\theta\rangle$ with momentum), the integrals
by the rectangle rule on the step grid. These forms differ from the exact discrete law
by $O(\eta)$.
"""

import jax.numpy as jnp
import numpy as np

from ._chains import KINDS, SGDChain


def _check(chain, kind):
    if not isinstance(chain, SGDChain):
        raise ValueError(
            f"`chain` must be an `lnn.optim.SGDChain` from `lnn.optim.sgd_chain`; got "
            f"{chain!r}."
        )
    if kind not in KINDS:
        raise ValueError(f"`kind` must be 'linear' or 'quadratic'; got {kind!r}.")


def _stiffness(chain):
    a, lam = float(chain.gain), float(chain.weight_decay)
    if chain.decay == "coupled":
        return a * lam
    return (1.0 - float(chain.momentum)) * lam


def kunin_constants(chain: SGDChain, kind: str) -> dict:
    r"""The constants of the continuous charge equation, time $t = \eta k$.

    **Returns:** a dict with `rate` (the decay rate of $Q$ without momentum:
    $\kappa$ for a linear charge, $2\kappa$ for a quadratic one) and, with momentum,
    `gamma` $= \frac{1-\beta}{\eta(1+\beta)}$ and `omega`
    $= \sqrt{c\kappa/(\eta(1+\beta))}$ with $c = 2$ (linear) or 4 (quadratic), and
    `regime`: `"underdamped"` ($\gamma < \omega$), `"critical"` or `"overdamped"`.
    """
    _check(chain, kind)
    kappa = _stiffness(chain)
    factor = 1.0 if kind == "linear" else 2.0
    out = {"rate": factor * kappa}
    beta, eta = float(chain.momentum), float(chain.lr)
    if beta:
        gamma = (1 - beta) / (eta * (1 + beta))
        omega = float(np.sqrt(2 * factor * kappa / (eta * (1 + beta))))
        regime = (
            "underdamped"
            if gamma < omega
            else ("critical" if gamma == omega else "overdamped")
        )
        out.update(gamma=gamma, omega=omega, regime=regime)
    return out


def continuous_charge(
    chain: SGDChain, kind: str, initial, steps: int, tracked: dict | None = None
):
    r"""Kunin et al.'s continuous prediction of a charge at $t_k = \eta k$,
    $k = 0, \ldots,$ `steps`, starting from rest with $Q(0) =$ `initial`.

    **Arguments:**

    - `chain`: the `lnn.optim.SGDChain` that was run.
    - `kind`: `"linear"` (translation) or `"quadratic"` (scale, rescale).
    - `initial`: $Q(w_0)$.
    - `steps`: the number of steps.
    - `tracked`: for `"quadratic"`, the output of the `lnn.optim.ChargeLaw` tracker of
      the run, whose `gAg` (without momentum) or `dAd` (with momentum) is the drive.

    **Returns:** an array of length `steps + 1`.
    """
    _check(chain, kind)
    if not isinstance(steps, int) or steps <= 0:
        raise ValueError(f"`steps` must be a positive int; got {steps!r}.")
    if kind == "quadratic" and tracked is None:
        raise ValueError(
            "`tracked` (the `ChargeLaw` tracker's output) is required for a quadratic "
            "charge: its drive is measured along the run; got None."
        )
    eta, beta, a = float(chain.lr), float(chain.momentum), float(chain.gain)
    c = kunin_constants(chain, kind)
    Q0 = np.asarray(initial, np.float64)
    t = eta * np.arange(steps + 1)
    if kind == "quadratic":
        name = "dAd" if beta else "gAg"
        drive = np.asarray(tracked[name], np.float64)
        if drive.shape != (steps,):
            raise ValueError(
                f"`tracked[{name!r}]` must have shape ({steps},) for `steps` = "
                f"{steps}; got {drive.shape}."
            )
        # source term of the equation for Q, at the steps' times
        source = (2.0 * drive) if beta else (eta * a**2 * drive)
    else:
        source = np.zeros(steps)
    lag = t[:, None] - t[None, :-1]  # t_k - t_j for j < k
    mask = lag > 0
    if not beta:
        r = c["rate"]
        kernel = np.where(mask, np.exp(-r * np.where(mask, lag, 0.0)), 0.0)
        out = np.exp(-r * t) * Q0 + eta * kernel @ source
        return jnp.asarray(out)
    gamma, omega = c["gamma"], c["omega"]
    mu = np.sqrt(complex(gamma**2 - omega**2))
    mu = mu if abs(mu) > 1e-6 * gamma else 1e-6 * gamma  # the critical case
    r1, r2 = -gamma + mu, -gamma - mu
    # Q(0) = Q0, dQ/dt(0) = 0; impulse response K(s) = (e^{r1 s} - e^{r2 s})/(r1 - r2)
    hom = (-r2 * Q0 * np.exp(r1 * t) + r1 * Q0 * np.exp(r2 * t)) / (r1 - r2)
    s = np.where(mask, lag, 0.0)
    kernel = np.where(mask, (np.exp(r1 * s) - np.exp(r2 * s)) / (r1 - r2), 0.0)
    out = hom + eta * kernel @ source
    return jnp.asarray(np.real(out))
