"""The figures a run writes, inspected as figures: one colour per loss term across panels, a
marker where Adam hands over to L-BFGS, y-labels, histogram tick labels that do not overlap, and a
fields title that names the run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from matplotlib.colors import to_rgba

from pinnrun import plots

TERMS = ["pde", "ic", "bc"]


def history(steps: range) -> list[tuple[int, dict[str, float]]]:
    """A made-up metric history with every loss, MSE and rel-L2 key."""
    rows = []
    for step in steps:
        row = {f"{kind}/{term}": 1.0 / (step + i + 1) for kind in ("loss", "mse") for i, term in enumerate(TERMS)}
        rows.append((step, {**row, "loss/total": 3.0 / (step + 1), "l2_rel": 1.0 / (step + 1)}))
    return rows


def curves(ax) -> dict[str, tuple]:
    """Label -> RGBA colour of the data lines of an axes (phase markers left out)."""
    return {line.get_label(): to_rgba(line.get_color()) for line in ax.get_lines() if not line.get_label().startswith("→")}


def markers(ax) -> list[float]:
    """The x positions of the phase hand-over markers of an axes."""
    return [line.get_xdata()[0] for line in ax.get_lines() if line.get_label().startswith("→")]


def test_each_term_has_one_colour_in_both_loss_panels_and_the_panels_have_y_labels() -> None:
    fig = plots.losses_figure(history(range(0, 200, 10)), TERMS, [(100, "lbfgs")])
    weighted, raw = fig.axes
    assert set(curves(weighted)) == {"total", *TERMS} and set(curves(raw)) == set(TERMS)
    for term in TERMS:
        assert curves(weighted)[term] == curves(raw)[term]
    assert len({curves(weighted)[term] for term in ["total", *TERMS]}) == 4  # distinct terms, distinct colours
    assert weighted.get_ylabel() and raw.get_ylabel()
    assert markers(weighted) == markers(raw) == [100]
    plots.pyplot().close(fig)


def test_the_l2_plot_marks_the_hand_over() -> None:
    fig = plots.l2_figure(history(range(0, 200, 10)), [(120, "lbfgs")])
    assert markers(fig.axes[0]) == [120]
    assert any("lbfgs at step 120" in text.get_text() for text in fig.axes[0].get_legend().get_texts())
    plots.pyplot().close(fig)


def test_written_plots_mark_the_adam_to_lbfgs_step(make_cfg, tmp_path: Path, monkeypatch) -> None:
    """A real run: the marker sits at the step the Adam phase ended."""
    from pinnrun.engine import run

    seen = {}
    original = plots.losses_figure

    def keep(history, terms, phase_starts=()):
        seen["starts"] = list(phase_starts)
        return original(history, terms, phase_starts)

    monkeypatch.setattr(plots, "losses_figure", keep)
    run(make_cfg("optimizer=adam_lbfgs", "optimizer.adam.steps=7", "optimizer.lbfgs.steps=3", "train.log_every=5",
                 "device=cpu", "problem.eval_grid=[16,8]", quick=False))
    assert seen["starts"] == [(7, "lbfgs")]
    assert (tmp_path / "out" / "plots" / "losses.png").stat().st_size > 0


def overlapping_labels(fig) -> list[tuple[str, str]]:
    """Pairs of visible x tick labels, within one axes, whose drawn boxes overlap."""
    renderer = fig.canvas.get_renderer()
    fig.canvas.draw()
    pairs = []
    for ax in fig.axes:
        labels = [t for t in ax.get_xticklabels(minor=False) + ax.get_xticklabels(minor=True)
                  if t.get_visible() and t.get_text() and ax.get_xlim()[0] <= t.get_position()[0] <= ax.get_xlim()[1]]
        boxes = [(t.get_text(), t.get_window_extent(renderer)) for t in labels]
        pairs += [(a, b) for i, (a, box_a) in enumerate(boxes) for b, box_b in boxes[i + 1:] if box_a.overlaps(box_b)]
    return pairs


@pytest.mark.parametrize("spread", ["narrow", "one decade", "twelve decades"])
def test_weight_histogram_tick_labels_do_not_overlap(spread: str) -> None:
    rng = np.random.default_rng(0)
    weights = {"narrow": {"pde": rng.uniform(0.8, 1.3, 500), "ic": rng.uniform(95, 105, 100), "bc": rng.uniform(0.5, 0.9, 200)},
               "one decade": {"pde": rng.uniform(1, 10, 500), "ic": rng.uniform(20, 150, 100), "bc": rng.uniform(0.3, 2, 200)},
               "twelve decades": {"pde": 10 ** rng.uniform(-8, 4, 500), "ic": 10 ** rng.uniform(-2, 3, 100),
                                  "bc": 10 ** rng.uniform(-6, 0, 200)}}[spread]
    fig = plots.weight_histograms_figure(weights, 100)
    assert overlapping_labels(fig) == []
    for ax in fig.axes:
        assert sum(bool(t.get_text()) for t in ax.get_xticklabels()) >= 2  # still readable: two or more labels
    plots.pyplot().close(fig)


def test_fields_figure_is_titled_with_problem_scheme_seed_and_rel_l2() -> None:
    x = np.stack(np.meshgrid(np.linspace(-1, 1, 8), np.linspace(0, 1, 4), indexing="ij"), -1).reshape(-1, 2)
    u = np.sin(x[:, 0])
    fig = plots.fields_figure(x, u + 1e-3, u, (8, 4), ["x", "t"], plots.fields_title("burgers", "sapinn", 3, 7.94e-4))
    assert fig._suptitle.get_text() == "burgers, sapinn, seed 3: rel-L2 7.94e-04"
    plots.pyplot().close(fig)
