"""The table of `conservation_counts`: its counts and times next to the published
ones (Marcotte et al.'s SageMath notebooks, 64 cores)."""

# the published times, in seconds
PUBLISHED = {
    "gf_relu_50": (34 * 60, 113 * 60),
    "momentum_linear_20": 139,
    "momentum_relu_20": 63,
}


def table_markdown(res) -> str:
    m, c = res["metrics"], res["config"]
    pub = PUBLISHED
    nr, nm = len(m["relu_architectures"]), len(m["momentum_relu_architectures"])
    rows = [
        "| result | architectures | reproduced | our time (2-core CPU) | published time "
        "(64 cores, SageMath) |",
        "| --- | --- | --- | --- | --- |",
        f"| GF, deep ReLU, no biases / biases: N = Σ hidden widths | {nr} "
        f"(depth 2–4, widths 2–9; {m['refused_by_section']['relu']} refused) | "
        f"{nr - m['relu_mismatches']}/{nr} and {nr - m['relu_bias_mismatches']}/{nr} | "
        f"{m['relu_sweep_seconds']:.0f} s (both) | {pub['gf_relu_50'][0] // 60} min to "
        f"{pub['gf_relu_50'][1] // 60} min per sweep |",
        f"| GF, deep linear: N = rank of the known laws | {c['n_linear']} | "
        f"{c['n_linear'] - m['linear_mismatches']}/{c['n_linear']} | "
        f"{m['linear_sweep_seconds']:.0f} s | – |",
        f"| ND, heavy ball, NAGF, deep ReLU: N = 0 | {nm} "
        f"({m['refused_by_section']['momentum_relu']} refused) | "
        f"max N = {m['momentum_relu_max_count']} | "
        f"{m['momentum_relu_sweep_seconds']:.0f} s (3 flows) | "
        f"{pub['momentum_relu_20']} s |",
        f"| ND, heavy ball, NAGF, deep linear: N = degree-2 laws = Noether charges of "
        f"so(d_h) | {c['n_momentum_linear']} | "
        f"{3 * c['n_momentum_linear'] - m['momentum_linear_mismatches']}/"
        f"{3 * c['n_momentum_linear']} | {m['momentum_linear_sweep_seconds']:.0f} s "
        f"(3 flows) | {pub['momentum_linear_20']} s |",
        f"| largest two-layer ReLU net certified in < 1 min | width "
        f"{m['largest_certified_width']} ({m['largest_certified_parameters']} "
        f"parameters) | N = width | {m['largest_certified_seconds']:.1f} s | widths ≤ 9 |",
    ]
    return "\n".join(rows)
