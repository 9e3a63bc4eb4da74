r"""Kunin et al.'s continuous forms of the charges under SGD with weight decay and
momentum ("Neural Mechanics", ICLR 2021), with time $t = \eta k$, and their $O(\eta)$
corrections for Nesterov's momentum and decoupled decay.

**Modified equation.** Write $a = 1 - d$ and $\Delta_k = w_{k+1} - w_k$. Heavy-ball SGD
with coupled decay is $\Delta_k - \beta\Delta_{k-1} = -\eta a(g_k + \lambda w_k)$; with
$w_k = \theta(\eta k)$, $\Delta_k \pm \beta\Delta_{k-1}$ expanded to second order in
$\eta$, it is (Kunin et al.)

$$m\ddot\theta + (1-\beta)\dot\theta + a\lambda\theta = -a g,
\qquad m = \tfrac{\eta(1+\beta)}{2}.$$

The other chains of `lnn.optim.sgd_chain` have further terms of the same order as
$m\ddot\theta$:

- Nesterov: $\Delta_k - \beta\Delta_{k-1} = -\eta a[(1+\beta)\tilde g_k -
  \beta\tilde g_{k-1}]$, so the right side gains $-a\beta\eta\dot g$ and the damping
  $a\beta\eta\lambda$ (coupled decay);
- decoupled decay: $(\Delta_k + \eta\lambda w_k) - \beta(\Delta_{k-1} +
  \eta\lambda w_{k-1}) = -\eta a g_k$ (heavy ball), so the stiffness is
  $(1-\beta)\lambda$ and the damping gains $\beta\eta\lambda$.

All in one: $m\ddot\theta + (1 - \beta + \beta\eta\lambda_n)\dot\theta + \kappa\theta =
-a(g + \nu\beta\eta\dot g)$ with $\kappa = a\lambda$ (coupled) or $(1-\beta)\lambda$
(decoupled), $\nu = 1$ for Nesterov (else 0), and $\lambda_n = \lambda$ (decoupled),
$a\lambda$ (Nesterov, coupled) or 0 (heavy ball, coupled: Kunin's case). Projected on a
charge, with $\langle A\theta, g\rangle = 0$ and hence
$\langle A\theta, \dot g\rangle = -\langle A\dot\theta, g\rangle$:

- translation ($Q = \langle s, \theta\rangle$): $\ddot Q + 2\gamma\dot Q + \omega^2 Q = 0$,
  $\gamma = \frac{1-\beta+\beta\eta\lambda_n}{\eta(1+\beta)}$,
  $\omega^2 = \frac{2\kappa}{\eta(1+\beta)}$;
- scale/rescale ($Q = \langle\theta, A\theta\rangle$): $\ddot Q + 2\gamma\dot Q +
  \omega^2 Q = 2\langle\dot\theta, A\dot\theta\rangle + \nu\frac{4a\beta}{1+\beta}
  \langle\dot\theta, Ag\rangle$, $\omega^2 = \frac{4\kappa}{\eta(1+\beta)}$.

The Nesterov drive $\langle\dot\theta, Ag\rangle$ is as large as the first one: without
it the form misses Nesterov's quadratic charges by a fixed fraction of their growth
(for gradients that are independent noise from step to step, at $\beta = 0.9$, the
drive $2\langle\dot\theta, A\dot\theta\rangle$ alone is 1.34 times too large). **Rest.** The run starts with an empty momentum buffer, $v_0 = 0$ (with PyTorch's
dampening the first step is undampened: as if $v_0 = (d/\beta)\tilde g_0$, see below),
i.e. $\Delta_{-1} + \eta\lambda_n w_{-1} \approx 0$ (for Nesterov with coupled decay
this is where its first step, $-\eta a(1+\beta)\tilde g_0$, puts the virtual
$\Delta_{-1}$); the discrete velocity $\Delta_{k-1}/\eta$ sits at the half step, so the
continuous form starts from $\dot Q + c\lambda_n Q = 0$ at $t = -\eta/2$ ($c = 1$
linear, 2 quadratic). PyTorch's undampened first step with coupled decay moves the
virtual $\Delta_{-1}$ by $-\eta\frac{d}{\beta}(1+\nu\beta)\tilde g_0$, whose projection
$\langle A\theta, \tilde g\rangle = \lambda Q$ makes the start $\dot Q + c\lambda_n Q =
-c\lambda\frac{d}{\beta}(1+\nu\beta)Q_0$ (decoupled decay: $\langle A\theta, g\rangle =
0$, no change). The solution is written as $Q = Q_0C + BS$ with
$C = e^{-\gamma t}\cosh\mu t$ and $S = e^{-\gamma t}\sinh(\mu t)/\mu$,
$\mu^2 = \gamma^2 - \omega^2$: entire in $\mu^2$, so it is computed to rounding
through critical damping. With `corrections=False` the forms are Kunin et al.'s as
published: heavy-ball constants ($\lambda_n = 0$, $\nu = 0$) for every chain, at rest
at $t = 0$; their gap to the exact law is $O(\eta)$ too, but with a large constant for
Nesterov (an $O(1)$ error in the drive of an $O(\eta)$ effect) and for small $1 - \beta$.

Kunin et al. write $\gamma = \frac{1-\beta}{\eta(1-d)(1+\beta)}$ and
$\omega^2 = \frac{4\lambda}{\eta(1-d)(1+\beta)}$: the same equation in the time
$\tau = (1-d)\eta k$ (with $d = 0$ they coincide). Without momentum the first-order
forms are $Q(t) = e^{-\kappa t}Q_0$ and
$Q(t) = e^{-2\kappa t}(Q_0 + \eta a^2\int_0^t e^{2\kappa\tau}\langle g, Ag\rangle d\tau)$
(Kunin's $|W|^2$ law for $a = 1$). The drives are taken from the run (`ChargeLaw`'s
`gAg`; with momentum `dAd` $=\langle\delta, A\delta\rangle$ and `dAg`
$=\langle\delta, Ag\rangle$, $\delta_k = (w_k - w_{k+1})/\eta \approx -\dot\theta$),
the integrals by the rectangle rule on the step grid. These forms differ from the exact
discrete law by $O(\eta)$.
"""

import jax.numpy as jnp
import numpy as np
import scipy.signal

from ._chains import KINDS, SGDChain


def _check(chain, kind):
    if not isinstance(chain, SGDChain):
        raise ValueError(
            f"`chain` must be an `lnn.optim.SGDChain` from `lnn.optim.sgd_chain`; got "
            f"{chain!r}."
        )
    if kind not in KINDS:
        raise ValueError(f"`kind` must be 'linear' or 'quadratic'; got {kind!r}.")


def _check_corrections(corrections):
    if not isinstance(corrections, bool):
        raise ValueError(f"`corrections` must be a bool; got {corrections!r}.")


def _equation(chain, kind, corrections):
    """η, β, a, the stiffness κ, λ_n (0 without corrections), Nesterov's ν and the
    factor c (1 linear, 2 quadratic)."""
    eta, beta = float(chain.lr), float(chain.momentum)
    a, lam = float(chain.gain), float(chain.weight_decay)
    coupled = chain.decay == "coupled"
    kappa = a * lam if coupled else (1.0 - beta) * lam
    if not corrections:
        lam_n = 0.0
    elif coupled:
        lam_n = a * lam if chain.nesterov else 0.0
    else:
        lam_n = lam
    nu = 1.0 if (corrections and chain.nesterov) else 0.0
    factor = 1.0 if kind == "linear" else 2.0
    return eta, beta, a, kappa, lam_n, nu, factor


def kunin_constants(chain: SGDChain, kind: str, *, corrections: bool = True) -> dict:
    r"""The constants of the continuous charge equation, time $t = \eta k$ (see the
    module's derivation).

    **Arguments:**

    - `chain`: an `lnn.optim.SGDChain`.
    - `kind`: `"linear"` (translation) or `"quadratic"` (scale, rescale).
    - `corrections`: include the $O(\eta)$ terms of Nesterov and decoupled decay in
      $\gamma$ (default); `False` gives Kunin et al.'s heavy-ball $\gamma$.

    **Returns:** a dict with `rate` (the decay rate of $Q$ without momentum:
    $\kappa$ for a linear charge, $2\kappa$ for a quadratic one) and, with momentum,
    `gamma` $= \frac{1-\beta+\beta\eta\lambda_n}{\eta(1+\beta)}$ and `omega`
    $= \sqrt{c\kappa/(\eta(1+\beta))}$ with $c = 2$ (linear) or 4 (quadratic), and
    `regime`: `"underdamped"` ($\gamma < \omega$), `"critical"` or `"overdamped"`.
    """
    _check(chain, kind)
    _check_corrections(corrections)
    eta, beta, _, kappa, lam_n, _, factor = _equation(chain, kind, corrections)
    out = {"rate": factor * kappa}
    if beta:
        gamma = (1 - beta + beta * eta * lam_n) / (eta * (1 + beta))
        omega = float(np.sqrt(2 * factor * kappa / (eta * (1 + beta))))
        regime = (
            "underdamped"
            if gamma < omega
            else ("critical" if gamma == omega else "overdamped")
        )
        out.update(gamma=gamma, omega=omega, regime=regime)
    return out


def _drive(tracked, name, steps):
    if name not in tracked:
        raise ValueError(
            f"`tracked` must hold {name!r} (the output of an `lnn.optim.ChargeLaw` "
            "tracker built with `charge_law(..., continuous=True)`, which records the "
            f"drives of the continuous forms); got the keys {sorted(tracked)}."
        )
    drive = np.asarray(tracked[name], np.float64)
    if drive.shape != (steps,):
        raise ValueError(
            f"`tracked[{name!r}]` must have shape ({steps},) for `steps` = "
            f"{steps}; got {drive.shape}."
        )
    return drive


def continuous_charge(
    chain: SGDChain,
    kind: str,
    initial,
    steps: int,
    tracked: dict | None = None,
    *,
    corrections: bool = True,
):
    r"""The continuous prediction of a charge at $t_k = \eta k$, $k = 0, \ldots,$
    `steps`, for a run started from rest with $Q(0) =$ `initial`: Kunin et al.'s form
    with the $O(\eta)$ corrections of Nesterov's momentum and decoupled decay (see the
    module's derivation).

    **Arguments:**

    - `chain`: the `lnn.optim.SGDChain` that was run.
    - `kind`: `"linear"` (translation) or `"quadratic"` (scale, rescale).
    - `initial`: $Q(w_0)$.
    - `steps`: the number of steps.
    - `tracked`: for `"quadratic"`, the output of the `lnn.optim.ChargeLaw` tracker of
      the run built with `charge_law(..., continuous=True)`, whose `gAg` (without
      momentum) or `dAd` (and `dAg` under Nesterov's momentum) are the drives.
    - `corrections`: `True` (default) for the corrected form; `False` for Kunin et
      al.'s heavy-ball form as published, applied to any chain (no Nesterov drive, no
      $O(\eta\lambda)$ damping, at rest at $t = 0$).

    **Returns:** an array of length `steps + 1`.
    """
    _check(chain, kind)
    _check_corrections(corrections)
    if not isinstance(steps, int) or steps <= 0:
        raise ValueError(f"`steps` must be a positive int; got {steps!r}.")
    if kind == "quadratic" and tracked is None:
        raise ValueError(
            "`tracked` (the `ChargeLaw` tracker's output) is required for a quadratic "
            "charge: its drive is measured along the run; got None."
        )
    eta, beta, a, kappa, lam_n, nu, factor = _equation(chain, kind, corrections)
    Q0 = np.asarray(initial, np.float64)
    t = eta * np.arange(steps + 1)
    if kind == "quadratic" and not beta:
        source = eta * a**2 * _drive(tracked, "gAg", steps)
    elif kind == "quadratic":
        # 2⟨θ', Aθ'⟩ + ν 4aβ/(1+β) ⟨θ', Ag⟩ with θ' = -δ
        source = 2.0 * _drive(tracked, "dAd", steps)
        if nu:
            source = source - nu * 4 * a * beta / (1 + beta) * _drive(
                tracked, "dAg", steps
            )
    else:
        source = np.zeros(steps)
    if not beta:
        r = -factor * kappa
        out = np.exp(r * t) * Q0 + eta * _kernel_sum(np.exp(r * t), source)
        return jnp.asarray(out)
    c = kunin_constants(chain, kind, corrections=corrections)
    gamma, omega = c["gamma"], c["omega"]
    mu2 = (gamma - omega) * (gamma + omega)  # μ² = γ² - ω², any sign
    # rest: dQ/dt + c λ_n Q = -σ Q_0 at t = -h (h = η/2 with corrections, else 0);
    # σ ≠ 0 only for PyTorch's undampened first step with coupled decay, whose
    # virtual buffer before the first step is v_0 = (d/β) g̃_0 (heavy ball) or
    # Δ_{-1} gains -η d(1+β)/β g̃_0 (Nesterov)
    h, rho = (eta / 2, factor * lam_n) if corrections else (0.0, 0.0)
    sigma = 0.0
    if corrections and "dampening" in chain.structure and chain.decay == "coupled":
        lam, d = float(chain.weight_decay), float(chain.dampening)
        sigma = factor * lam * d * (1.0 + nu * beta) / beta
    # Q(t) = Q_0 C(t) + B S(t) with C = e^{-γt} cosh(μt), S = e^{-γt} sinh(μt)/μ,
    # entire in μ², so the critically damped case needs no special value of μ
    ch, sh = _cosh_sinhc(mu2, h)
    B = (-sigma * Q0 * np.exp(-gamma * h) - Q0 * ((rho - gamma) * ch - mu2 * sh)) / (
        ch + (gamma - rho) * sh
    )
    C, S = _damped_pair(gamma, omega, t)
    hom = Q0 * C + B * S
    # impulse response K(s) = S(s) on the step grid, summed by one convolution
    drive = _kernel_sum(S, source)
    return jnp.asarray(hom + eta * drive)


def _cosh_sinhc(mu2, t):
    r"""$\cosh(\mu t)$ and $\sinh(\mu t)/\mu$ for $\mu^2$ of any sign (cos and sin
    for $\mu^2 < 0$), without cancellation as $\mu \to 0$."""
    if mu2 > 0:
        mu = np.sqrt(mu2)
        return np.cosh(mu * t), (np.sinh(mu * t) / mu if mu * t != 0 else t)
    nu = np.sqrt(-mu2)
    return np.cos(nu * t), t * np.sinc(nu * t / np.pi)


def _damped_pair(gamma, omega, t):
    r"""$C(t) = e^{-\gamma t}\cosh(\mu t)$ and $S(t) = e^{-\gamma t}\sinh(\mu t)/\mu$,
    $\mu^2 = \gamma^2 - \omega^2$, on the grid `t` $\ge 0$: stable through critical
    damping ($\mu \to 0$), for $\omega \ll \gamma$ (the slow rate as
    $\omega^2/(\gamma + \mu)$) and for large $\mu t$ (no overflowing cosh times an
    underflowing exponential)."""
    mu2 = (gamma - omega) * (gamma + omega)
    if mu2 > 0:  # overdamped: the rates γ ∓ μ
        mu = np.sqrt(mu2)
        slow, fast = omega**2 / (gamma + mu), gamma + mu
        C = 0.5 * (np.exp(-slow * t) + np.exp(-fast * t))
        S = np.exp(-slow * t) * -np.expm1(-2 * mu * t) / (2 * mu)
        return C, S
    nu = np.sqrt(-mu2)  # underdamped, or critical (ν = 0)
    decay = np.exp(-gamma * t)
    return decay * np.cos(nu * t), decay * t * np.sinc(nu * t / np.pi)


def _kernel_sum(kernel, source):
    r"""$D_k = \sum_{j<k} K_{k-j}\,x_j$, $k = 0, \ldots, n$, from the kernel on the
    step grid, `kernel` $= (K_0, K_1, \ldots, K_n)$ ($K_0$ unused), and `source`
    $= (x_0, \ldots, x_{n-1})$: one convolution (`scipy.signal.convolve`, direct or by
    FFT, whichever is faster for the length), no per-step Python loop. Each $D_k$ is
    a sum of accurately computed terms, so no error accumulates from step to step as
    in a recursion."""
    source = np.asarray(source, np.float64)
    n = len(source)
    out = np.zeros(n + 1)
    if n:
        out[1:] = scipy.signal.convolve(source, np.asarray(kernel[1 : n + 1]))[:n]
    return out
