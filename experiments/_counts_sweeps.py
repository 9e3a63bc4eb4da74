"""The machinery of `conservation_counts`' sweeps: random architectures, the networks,
counting with every refusal recorded, and the scaling sweep."""

import time

import numpy as np

from . import _networks as N
from ._common import progress

MOMENTUM = ("nd", "heavy_ball", "nagf")


def _arch(rng, depths, widths):
    depth = int(rng.integers(depths[0], depths[1] + 1))
    return [int(w) for w in rng.integers(widths[0], widths[1] + 1, size=depth + 1)]


def _net(sizes, act, *, bias=False, seed=0, first=None):
    from lagrangian_nn import nn

    acts = [act] * (len(sizes) - 2) + [nn.Identity()]
    if first is not None:
        acts[0] = first
    return N.build(sizes, acts, bias=bias, seed=seed)


class Counter:
    """`count_laws` with the configuration's `n_points` and `damping`; every count the
    certificate refuses is recorded in `refused` (a failure of its claim)."""

    def __init__(self, cfg, key):
        self.cfg, self.key = cfg, key
        self.refused = []

    def count(self, section, sizes, **kw):
        """`count_laws(...).count`, or None (recorded in `refused`) when refused."""
        from lagrangian_nn import symmetry as sy

        try:
            return sy.count_laws(n_points=self.cfg["n_points"], **kw).count
        except sy.LawCountError as e:
            self.refused.append({"section": section, "sizes": sizes, "error": str(e)})
            return None

    def count_momentum(self, section, sizes, model, k):
        """The counts of the momentum flows on `model` (keyed by flow), and their mean
        time."""
        t0 = time.perf_counter()
        counts = {
            f: self.count(
                f"{section}_{f}",
                sizes,
                model=model,
                flow=f,
                key=self.key(k),
                damping=self.cfg["damping"],
            )
            for f in MOMENTUM
        }
        return counts, (time.perf_counter() - t0) / len(MOMENTUM)

    @staticmethod
    def misses(counts, expected):
        """Counts that differ from the prediction, refusals included."""
        return int(sum(c is None or c != e for c, e in zip(counts, expected)))


def scaling(cfg, counter):
    """GF counts of two-layer ReLU networks of growing width, until one is wrong,
    refused or over the time budget: (arrays, metrics of the largest certified)."""
    import jax

    from lagrangian_nn import nn

    sc_w, sc_t, sc_c, sc_d = [], [], [], []
    for w in progress(cfg["scaling_widths"], desc="scaling"):
        sizes = [cfg["scaling_d0"], w, cfg["scaling_d_out"]]
        net = _net(sizes, nn.ReLU(), seed=w)
        t0 = time.perf_counter()
        c = counter.count("scaling", sizes, model=net, key=counter.key(w))
        dt = time.perf_counter() - t0
        c = -1 if c is None else c
        n_par = sum(int(np.size(x)) for x in jax.tree.leaves(net))
        sc_w.append(w), sc_t.append(dt), sc_c.append(c), sc_d.append(n_par)
        if c != w or dt > cfg["scaling_budget_s"]:
            break
    arrays = dict(
        scaling_width=np.array(sc_w),
        scaling_seconds=np.array(sc_t),
        scaling_count=np.array(sc_c),
        scaling_parameters=np.array(sc_d),
    )
    ok = [
        i
        for i in range(len(sc_w))
        if sc_c[i] == sc_w[i] and sc_t[i] <= cfg["scaling_budget_s"]
    ]
    big = ok[-1] if ok else None
    metrics = dict(
        largest_certified_width=sc_w[big] if ok else 0,
        largest_certified_parameters=sc_d[big] if ok else 0,
        largest_certified_seconds=sc_t[big] if ok else float("nan"),
    )
    return arrays, metrics
