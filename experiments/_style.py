"""One matplotlib style for every experiment figure.

Paper-like type (STIX serif text and maths, 8–9 pt at the printed size), figure widths of
a journal page (`SINGLE` and `DOUBLE` columns, in inches), and one colour-blind-safe
colour per algorithm, the same in every figure (the Okabe–Ito palette, which stays
distinguishable under the common colour-vision deficiencies):

| algorithm | colour |
| --- | --- |
| GF | blue |
| GD | sky blue |
| ND | vermillion |
| eq. 21 (discrete ND) | orange |
| NAGF | bluish green |
| NAGD (eq. 20) | reddish purple |

The line grammar is shared too: a measured quantity is a solid line in its algorithm's
colour, what a law or bound predicts is a thin black dashed line (`PREDICTED`), and a
negative control is dotted (`CONTROL`, in grey unless it belongs to one algorithm).
Series that are not algorithms (layers, matrix entries, masses) use `shades`.
"""

import contextlib
import functools
import re
import textwrap
from pathlib import Path

SINGLE = 3.4  # inches: one column of a two-column paper
DOUBLE = 7.0  # inches: the full text width

# Okabe & Ito (2008), "Color Universal Design"
OKABE_ITO = {
    "black": "#000000",
    "orange": "#E69F00",
    "sky blue": "#56B4E9",
    "bluish green": "#009E73",
    "yellow": "#F0E442",
    "blue": "#0072B2",
    "vermillion": "#D55E00",
    "reddish purple": "#CC79A7",
}
COLORS = {
    "GF": OKABE_ITO["blue"],
    "GD": OKABE_ITO["sky blue"],
    "ND": OKABE_ITO["vermillion"],
    "eq. 21": OKABE_ITO["orange"],
    "NAGF": OKABE_ITO["bluish green"],
    "NAGD": OKABE_ITO["reddish purple"],
}
_ALIASES = {
    "gf": "GF",
    "gd": "GD",
    "nd": "ND",
    "dnd": "eq. 21",
    "eq21": "eq. 21",
    "nagf": "NAGF",
    "nagd": "NAGD",
    "dnagd": "NAGD",
}
GREY = "0.45"
# keyword arguments of the shared line grammar
PREDICTED = {"color": "black", "linestyle": (0, (4, 2)), "linewidth": 0.9}
CONTROL = {"color": GREY, "linestyle": ":", "linewidth": 1.3}
DISCRETE = {"linestyle": (0, (1.5, 1.2)), "linewidth": 1.4}

RC = {
    "figure.dpi": 100,
    "savefig.dpi": 220,
    "savefig.bbox": "tight",
    "savefig.pad_inches": 0.03,
    "figure.constrained_layout.use": True,
    "figure.constrained_layout.h_pad": 0.04,
    "figure.constrained_layout.w_pad": 0.04,
    "font.family": ["STIXGeneral", "DejaVu Serif", "DejaVu Sans"],
    "mathtext.fontset": "stix",
    "font.size": 8.5,
    "axes.titlesize": 8.5,
    "axes.labelsize": 8.5,
    "figure.titlesize": 9.5,
    "legend.fontsize": 7.5,
    "xtick.labelsize": 7.5,
    "ytick.labelsize": 7.5,
    "axes.linewidth": 0.6,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.titlepad": 4.0,
    "axes.labelpad": 2.0,
    "axes.formatter.limits": (-3, 4),
    "axes.formatter.use_mathtext": True,
    "xtick.major.width": 0.6,
    "ytick.major.width": 0.6,
    "xtick.minor.width": 0.4,
    "ytick.minor.width": 0.4,
    "xtick.major.size": 3.0,
    "ytick.major.size": 3.0,
    "xtick.direction": "out",
    "ytick.direction": "out",
    "lines.linewidth": 1.3,
    "lines.markersize": 4.0,
    "legend.frameon": False,
    "legend.handlelength": 2.2,
    "legend.borderaxespad": 0.3,
    "legend.labelspacing": 0.3,
    "pdf.fonttype": 42,  # TrueType in the PDF: editable, accepted by publishers
    "ps.fonttype": 42,
}
# the default colour cycle, for the rare series that are neither algorithms nor shades
CYCLE = [
    OKABE_ITO[k]
    for k in ("blue", "vermillion", "bluish green", "orange", "reddish purple", "black")
]


def use():
    """Selects the Agg backend, applies the style and returns `matplotlib.pyplot`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from cycler import cycler

    plt.rcParams.update({**RC, "axes.prop_cycle": cycler(color=CYCLE)})
    _share_mathtext_parses()
    return plt


def _share_mathtext_parses(size: int = 4096):
    """Parses each piece of maths once per resolution, not once per renderer. Every
    tick label is maths here (`axes.formatter.use_mathtext`); matplotlib remembers a
    parse per parser, and each renderer makes a parser of its own (a PDF is drawn by
    two), remembering at most 50 of them: a figure's labels were parsed again on
    nearly every pass (layout, tight box, drawing). Parsing is a pure function of the
    text, resolution, font and output kind, so sharing the parses changes no pixel."""
    from matplotlib.mathtext import MathTextParser

    cached = MathTextParser.__dict__.get("_parse_cached")
    parse = getattr(cached, "__wrapped__", None)
    if parse is None or getattr(cached, "_shared", False):
        return  # another matplotlib, or done already
    parsers = {"vector": MathTextParser("path"), "raster": MathTextParser("agg")}

    @functools.lru_cache(size)
    def shared(output_type, s, dpi, prop, antialiased, load_glyph_flags):
        return parse(parsers[output_type], s, dpi, prop, antialiased, load_glyph_flags)

    def _parse_cached(self, s, dpi, prop, antialiased, load_glyph_flags):
        if self._output_type not in parsers:
            return parse(self, s, dpi, prop, antialiased, load_glyph_flags)
        return shared(self._output_type, s, dpi, prop, antialiased, load_glyph_flags)

    _parse_cached._shared = True
    _parse_cached.cache_info = shared.cache_info
    MathTextParser._parse_cached = _parse_cached


def color(algorithm: str) -> str:
    """The fixed colour of `algorithm`: one of GF, GD, ND, eq. 21, NAGF, NAGD (any case;
    `dnd` and `dnagd`, the experiments' keys for the discrete runs, also work)."""
    key = (
        _ALIASES.get(algorithm.lower(), algorithm)
        if isinstance(algorithm, str)
        else None
    )
    if key not in COLORS:
        raise ValueError(
            f"`algorithm` must be one of {sorted(COLORS)}; got {algorithm!r}."
        )
    return COLORS[key]


def shades(n: int, algorithm: str | None = None) -> list:
    """`n` distinguishable shades for series that are not algorithms: light to dark
    versions of `algorithm`'s colour, or a dark blue to khaki ramp (cividis, stopped
    short of its pale yellow end, which a thin line on white would lose) without
    one."""
    import matplotlib.colors as mcolors
    import numpy as np

    if n < 1:
        raise ValueError(f"`n` must be at least 1; got {n!r}.")
    fractions = np.linspace(0.0, 1.0, n) if n > 1 else np.array([1.0])
    if algorithm is None:
        import matplotlib

        cmap = matplotlib.colormaps["cividis"]
        return [cmap(0.02 + 0.64 * f) for f in fractions]
    base = np.array(mcolors.to_rgb(color(algorithm)))
    light, dark = base + (1 - base) * 0.45, base * 0.45
    return [tuple(float(x) for x in light + (dark - light) * f) for f in fractions]


def caption(fig, text: str, *, width: int | None = None):
    """Adds `text` as a caption below the figure (kept by the tight bounding box the
    figures are saved with). The text is wrapped to the figure's width. Call it last,
    after every axis and legend is in place."""
    w_in = fig.get_figwidth()
    width = width or max(40, int(w_in * 21))
    # keep maths ($...$) in one piece when wrapping, counted at its printed length
    parts = text.split("$")
    maths = {}
    for k in range(1, len(parts), 2):
        shown = re.sub(r"\\[a-zA-Z]+", "x", parts[k])
        shown = re.sub(r"[{}^_\\!,]", "", shown)
        token = chr(0xE000 + k) + "\x02" * max(0, len(shown) - 1)
        maths[token] = "$" + parts[k] + "$"
        parts[k] = token
    wrapped = "\n".join(
        textwrap.fill(p, width, break_long_words=False)
        for p in "".join(parts).split("\n")
    )
    for token, math in maths.items():
        wrapped = wrapped.replace(token, math)
    # below everything already drawn (a legend under the axes included), once the
    # layout is settled and frozen (`settle`), so that saving does not move the axes
    # over the caption
    settle(fig)
    renderer = fig.canvas.get_renderer()
    box = fig.get_tightbbox(renderer)
    fig.text(
        max(box.x0, 0.0) / w_in,
        box.y0 / fig.get_figheight() - 0.01,
        wrapped,
        ha="left",
        va="top",
        fontsize=7.5,
        color="0.15",
    )


def settle(fig):
    """Settles the layout of `fig` and freezes it: what `caption` and `save` do first
    (once; later calls do nothing). 3-D axes change their extent on their first draw,
    and constrained layout needs a second pass once the axes have moved; settling needs
    the sizes of the texts, not their pixels, so nothing is rendered. Figure legends
    are then pinned where they are: saving with a tight box would otherwise move them
    to the bottom of the enlarged box."""
    if getattr(fig, "_style_settled", False):
        return
    fig.draw_without_rendering()  # the layout, then the 3-D axes' extents
    engine = fig.get_layout_engine()
    if engine is not None:
        engine.execute(fig)  # its second pass, once the axes have moved
    fig.set_layout_engine("none")
    renderer = fig.canvas.get_renderer()
    for legend in fig.legends:
        ext = legend.get_window_extent(renderer).transformed(fig.transFigure.inverted())
        legend.set_loc("center")
        legend.set_bbox_to_anchor(ext, transform=fig.transFigure)
    fig._style_settled = True


def note(ax, text: str, *, loc: str = "lower right"):
    """Writes a short `text` (a measured number, say) in a corner of `ax`."""
    x = 0.98 if "right" in loc else 0.02
    y = 0.04 if "lower" in loc else 0.96
    ax.text(
        x,
        y,
        text,
        transform=ax.transAxes,
        ha="right" if "right" in loc else "left",
        va="bottom" if "lower" in loc else "top",
        fontsize=7.5,
    )


def headroom(ax, fraction: float = 0.35):
    """Raises the top of `ax`'s y range by `fraction` of its span (linear axes), so a
    legend in the top corner does not cover the data."""
    lo, hi = ax.get_ylim()
    ax.set_ylim(lo, hi + fraction * (hi - lo))


def panel_labels(axes, *, start="a"):
    """Bold panel letters (a), (b), … in the top-left corner of each of `axes`."""
    for i, ax in enumerate(axes):
        ax.set_title(f"({chr(ord(start) + i)})", loc="left", fontweight="bold")


def save(fig, folder, stem: str):
    """Writes `stem.png` and `stem.pdf` into `folder` and closes the figure.

    Both files show the figure's tight bounding box, measured once at the PNG's
    resolution (the layout settled and frozen first, see `settle`), so neither save
    lays out or measures the figure again. The PNG has `savefig.dpi` (220), or
    `DRAFT_DPI` inside `draft()`."""
    import matplotlib.pyplot as plt

    folder = Path(folder)
    settle(fig)
    dpi = _draft_dpi or plt.rcParams["savefig.dpi"]
    shown = fig.dpi
    fig.dpi = dpi  # text is measured at the resolution it is drawn at
    try:
        box = fig.get_tightbbox(fig.canvas.get_renderer())
    finally:
        fig.dpi = shown
    box = box.padded(plt.rcParams["savefig.pad_inches"])
    # without a layout engine (not even the frozen placeholder `settle` leaves),
    # savefig draws the figure once per file, not twice; within the rc context, for
    # savefig puts back the figure's engine after each file
    layout = {"figure.autolayout": False, "figure.constrained_layout.use": False}
    with plt.rc_context(layout):
        if not any(ax.get_axes_locator() for ax in fig.axes):
            fig.set_layout_engine(None)
        fig.savefig(folder / f"{stem}.png", dpi=dpi, bbox_inches=box)
        fig.savefig(folder / f"{stem}.pdf", bbox_inches=box)
    plt.close(fig)


DRAFT_DPI = 110  # PNG resolution of quick runs (`draft`): half of `savefig.dpi`
_draft_dpi = None


@contextlib.contextmanager
def draft(on: bool = True):
    """Within it, `save` writes PNGs at `DRAFT_DPI` instead of `savefig.dpi` (when
    `on`): the runner draws quick runs so. The PDFs are unchanged."""
    global _draft_dpi
    previous = _draft_dpi
    _draft_dpi = DRAFT_DPI if on else previous
    try:
        yield
    finally:
        _draft_dpi = previous
