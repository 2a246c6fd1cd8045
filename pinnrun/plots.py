"""Figures written at the end of a run: loss curves, rel-L2 history, prediction fields."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

History = Sequence[tuple[int, Mapping[str, float]]]
PhaseStarts = Sequence[tuple[int, str]]
"""(step, phase name) where each optimizer phase after the first began."""
MAX_LOG_TICKS = 6  # decade labels on a log axis before the locator thins them


def pyplot():
    """matplotlib.pyplot on the non-interactive Agg backend, imported on first use: a run pays the
    import (about 0.4 s) when it draws its first figure, not before its first step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def series(history: History, key: str) -> tuple[np.ndarray, np.ndarray]:
    """Steps and values of one metric across the logged history."""
    pairs = [(step, values[key]) for step, values in history if key in values]
    if not pairs:
        return np.empty(0), np.empty(0)
    steps, values = zip(*pairs)
    return np.asarray(steps), np.asarray(values)


def save(fig, path: Path, dpi: int = 110) -> None:
    """Write a figure (tight layout) and free it."""
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    pyplot().close(fig)


def term_colours(terms: Sequence[str]) -> dict[str, str]:
    """One colour per loss term, the same in every panel and figure: black for the total, then
    matplotlib's default cycle in the problem's term order."""
    return {"total": "k", **{term: f"C{i}" for i, term in enumerate(terms)}}


def mark_phases(ax, phase_starts: PhaseStarts) -> None:
    """A dashed vertical line, labelled, where each optimizer phase after the first took over
    (Adam -> L-BFGS), so a bend in a curve can be read against the hand-over."""
    for step, name in phase_starts:
        ax.axvline(step, color="0.4", linestyle="--", linewidth=1, label=f"→ {name} at step {step}")


def losses_figure(history: History, terms: Sequence[str], phase_starts: PhaseStarts = ()):
    """Weighted loss and raw MSE per term against step (log scale), each term one colour in both."""
    plt = pyplot()
    colours = term_colours(terms)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharex=True)
    for ax, kind in zip(axes, ("loss", "mse")):
        for term in ["total", *terms] if kind == "loss" else terms:
            steps, values = series(history, f"{kind}/{term}")
            if steps.size:
                ax.semilogy(steps, values, label=term, color=colours[term])
        mark_phases(ax, phase_starts)
        ax.set_title("weighted loss" if kind == "loss" else "raw MSE per term")
        ax.set_ylabel("weighted loss term" if kind == "loss" else "mean squared residual")
        ax.set_xlabel("step")
        ax.legend()
    return fig


def plot_losses(history: History, terms: Sequence[str], path: Path, phase_starts: PhaseStarts = ()) -> None:
    """losses.png: `losses_figure`."""
    save(losses_figure(history, terms, phase_starts), path)


def l2_figure(history: History, phase_starts: PhaseStarts = ()):
    """Relative L2 error against step, the optimizer hand-overs marked."""
    plt = pyplot()
    steps, values = series(history, "l2_rel")
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.semilogy(steps, values, marker="o", markersize=3, label="rel-L2")
    mark_phases(ax, phase_starts)
    ax.set_xlabel("step")
    ax.set_ylabel("relative L2 error")
    ax.grid(True, which="both", alpha=0.3)
    if phase_starts:
        ax.legend()
    return fig


def plot_l2(history: History, path: Path, phase_starts: PhaseStarts = ()) -> None:
    """l2_rel.png: `l2_figure`."""
    save(l2_figure(history, phase_starts), path)


def fields_figure(inputs: np.ndarray, u_pred: np.ndarray, u_ref: np.ndarray, shape: tuple[int, ...],
                  names: Sequence[str], title: str):
    """Prediction, reference and absolute error: images for 2-D inputs, curves for 1-D; `title`
    names the run (problem, scheme, seed, rel-L2), so a figure copied out of its run still says
    what it shows."""
    plt = pyplot()
    error = np.abs(u_pred - u_ref)
    if len(shape) == 1:
        fig, axes = plt.subplots(1, 2, figsize=(10, 4))
        axes[0].plot(inputs[:, 0], u_ref, "k-", label="reference")
        axes[0].plot(inputs[:, 0], u_pred, "r--", label="prediction")
        axes[0].legend()
        axes[1].semilogy(inputs[:, 0], error + 1e-300)
        axes[1].set_title("absolute error")
        for ax in axes:
            ax.set_xlabel(names[0])
    else:
        extent = [inputs[:, 1].min(), inputs[:, 1].max(), inputs[:, 0].min(), inputs[:, 0].max()]
        fig, axes = plt.subplots(1, 3, figsize=(15, 4))
        for ax, field, panel in zip(axes, (u_pred, u_ref, error), ("prediction", "reference", "absolute error")):
            image = ax.imshow(field.reshape(shape[:2]), origin="lower", aspect="auto", extent=extent, cmap="viridis" if panel == "absolute error" else "RdBu_r")
            ax.set_title(panel)
            ax.set_xlabel(names[1])
            ax.set_ylabel(names[0])
            fig.colorbar(image, ax=ax)
    fig.suptitle(title)
    return fig


def plot_fields(inputs: np.ndarray, u_pred: np.ndarray, u_ref: np.ndarray, shape: tuple[int, ...],
                names: Sequence[str], title: str, path: Path) -> None:
    """fields.png: `fields_figure`."""
    save(fields_figure(inputs, u_pred, u_ref, shape, names, title), path)


def fields_title(problem: str, weighting: str, seed: int, l2_rel: float) -> str:
    """`burgers, sapinn, seed 0: rel-L2 7.94e-04`."""
    return f"{problem}, {weighting}, seed {seed}: rel-L2 {l2_rel:.2e}"


def plot_points(points: Mapping[str, np.ndarray], names: Sequence[str], step: int, path: Path) -> None:
    """Every term's point cloud at one step: a scatter of the first two inputs (a strip plot in 1-D)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 5))
    for term, x in points.items():
        y = x[:, 1] if x.shape[1] > 1 else np.zeros(len(x))
        ax.scatter(x[:, 0], y, s=1.5 if len(x) > 2000 else 4, alpha=0.6, label=f"{term} ({len(x)})", linewidths=0)
    ax.set_xlabel(names[0])
    ax.set_ylabel(names[1] if len(names) > 1 else "")
    ax.set_title(f"collocation points at step {step}")
    ax.legend(loc="upper right", markerscale=4)
    save(fig, path)


def weight_histograms_figure(weights: Mapping[str, np.ndarray], step: int):
    """One histogram of the per-point weights per term (log-spaced bins, log counts)."""
    plt = pyplot()
    fig, axes = plt.subplots(1, len(weights), figsize=(4.5 * len(weights), 3.6), squeeze=False)
    for ax, (term, w) in zip(axes[0], weights.items()):
        positive = w[w > 0]
        low, high = (positive.min(), positive.max()) if positive.size else (1e-3, 1.0)
        bins = np.geomspace(low, max(high, low * 1.0001), 50)
        ax.hist(positive, bins=bins, log=True)
        decade_axis(ax, low, high)
        ax.set_title(f"{term}: {w.size} points, max/mean {w.max() / max(w.mean(), 1e-300):.3g}")
        ax.set_xlabel("weight")
    axes[0][0].set_ylabel("points")
    fig.suptitle(f"per-point weights at step {step}")
    return fig


def plot_weight_histograms(weights: Mapping[str, np.ndarray], step: int, path: Path) -> None:
    """The histogram artifact: `weight_histograms_figure`."""
    save(weight_histograms_figure(weights, step), path, dpi=100)


def decade_axis(ax, low: float, high: float) -> None:
    """A log x-axis from the decade below `low` to the decade above `high`, labelled at decades
    only (at most MAX_LOG_TICKS of them). Matplotlib labels the minor ticks of a log axis that spans
    less than a decade or so, and those labels (2x10^0, 3x10^0, ...) run into each other."""
    from matplotlib.ticker import LogLocator, NullFormatter

    ax.set_xscale("log")
    first, last = np.floor(np.log10(low)), np.ceil(np.log10(max(high, low)))
    ax.set_xlim(10.0**first, 10.0 ** max(last, first + 1))
    ax.xaxis.set_major_locator(LogLocator(base=10, numticks=MAX_LOG_TICKS))
    ax.xaxis.set_minor_formatter(NullFormatter())


def plot_weight_map(points: Mapping[str, np.ndarray], weights: Mapping[str, np.ndarray], names: Sequence[str],
                    step: int, path: Path) -> None:
    """Each term's points over the domain coloured by weight (log colour scale): where the problem is
    hard lights up. 2-D inputs: names[1] across, names[0] up (x-t maps as in the PINN papers);
    1-D inputs: weight against the coordinate."""
    plt = pyplot()
    from matplotlib.colors import LogNorm

    fig, axes = plt.subplots(1, len(weights), figsize=(5 * len(weights), 4), squeeze=False)
    for ax, (term, w) in zip(axes[0], weights.items()):
        x = points[term]
        if x.shape[1] == 1:
            ax.semilogy(x[:, 0], w, ".", markersize=3)
            ax.set_xlabel(names[0])
            ax.set_ylabel("weight")
        else:
            positive = w[w > 0]
            norm = LogNorm(positive.min(), max(positive.max(), positive.min() * 1.0001)) if positive.size else None
            order = np.argsort(w)
            image = ax.scatter(x[order, 1], x[order, 0], c=w[order], s=4, cmap="inferno", norm=norm)
            ax.set_xlabel(names[1])
            ax.set_ylabel(names[0])
            fig.colorbar(image, ax=ax)
        ax.set_title(term)
    fig.suptitle(f"weights over the domain at step {step}")
    save(fig, path, dpi=100)


def plot_causal_chunks(weights: np.ndarray, losses: np.ndarray, span: tuple[float, float], chunks: int,
                       filled: np.ndarray, path: Path) -> None:
    """Causal training's chunk weights w_k and chunk losses L(k) against time (Wang et al. 2024):
    the weights fall to 0 past the time up to which the residual is already small."""
    plt = pyplot()
    low, high = span
    t = low + (np.flatnonzero(filled) + 0.5) * (high - low) / chunks
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(6, 4.8), sharex=True)
    top.step(t, weights, where="mid")
    top.set_ylabel("chunk weight w_k")
    top.set_ylim(-0.05, 1.05)
    bottom.semilogy(t, np.maximum(losses, 1e-300), marker=".")
    bottom.set_ylabel("chunk loss L(k)")
    bottom.set_xlabel("t")
    for ax in (top, bottom):
        ax.grid(True, which="both", alpha=0.3)
    save(fig, path, dpi=100)
