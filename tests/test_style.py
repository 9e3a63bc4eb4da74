"""The shared figure style: fixed, distinct algorithm colours and captions that no
figure legend covers."""

import matplotlib.colors as mcolors
import pytest

from experiments import _style as st


def test_each_algorithm_has_its_own_colour_under_every_alias():
    names = ["GF", "GD", "ND", "eq. 21", "NAGF", "NAGD"]
    colours = [mcolors.to_hex(st.color(n)) for n in names]
    assert len(set(colours)) == len(names)
    for alias, name in (("gf", "GF"), ("dnd", "eq. 21"), ("dnagd", "NAGD")):
        assert st.color(alias) == st.color(name)


def test_unknown_algorithm_is_refused_with_its_name():
    with pytest.raises(ValueError, match="`algorithm`.*'Adam'"):
        st.color("Adam")


def test_shades_refuse_zero():
    with pytest.raises(ValueError, match="`n`.*0"):
        st.shades(0)


def test_caption_lies_below_a_figure_legend_in_the_saved_file(tmp_path):
    plt = st.use()
    fig, ax = plt.subplots(figsize=(3, 2))
    ax.plot([0, 1], label="a")
    ax.set_ylabel("y")
    legend = fig.legend(loc="outside lower center")
    st.caption(fig, "A caption with maths $\\|w\\|^2$ " * 6)
    seen = []

    def record(event):  # positions while the file is written, in its tight box
        r = event.renderer
        seen.append(
            (
                fig.texts[-1].get_window_extent(r),
                legend.get_window_extent(r),
                ax.get_tightbbox(r),
            )
        )

    fig.canvas.mpl_connect("draw_event", record)
    st.save(fig, tmp_path, "f")
    assert seen
    for caption, leg, axes in seen:
        assert caption.y1 <= leg.y0
        assert caption.y1 <= axes.y0
