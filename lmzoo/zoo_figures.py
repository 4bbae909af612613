"""The model zoo's figures: a dev-score heatmap over the grid per model and task, a loss curve per pretraining run.

Heatmaps read honestly: the colour scale runs from what a constant prediction scores on the task (the majority
class; 0 for a correlation) to the best cell, so noise near the top is not stretched over the whole scale; with
several seeds each cell prints its spread, and cells within the seed spread of the best are marked.
"""

import os
import tempfile

from .glue_tasks import TASKS
from .zoo_grid import (GLUE_TABLE_TASKS, GridCell, best_cells, file_safe, format_lr, format_number, glue_models, pretrain_runs,
                       record_status, within_seed_spread)

def save_figure(figure, path: str) -> None:
    """savefig to a temporary name beside `path`, then rename: a reader never sees half a PNG."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=".png")
    os.close(fd)
    try:
        figure.savefig(tmp, format="png", dpi=100, bbox_inches="tight")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on servers
    import matplotlib.pyplot as plt

    return plt


def heatmap_cell_text(cell: GridCell | None) -> str:
    """The cell's mean score x100, with its seed spread underneath when it has several seeds."""
    if cell is None:
        return "not run"
    if cell.score is None:
        return cell.status
    return f"{100 * cell.score:.2f}" + (f"\n\u00b1{100 * cell.spread:.2f}" if cell.spread is not None else "")


def colour_range(task: str, cells: list[GridCell]) -> tuple[float, float]:
    """The colour scale: from what a constant prediction scores on the task to the best cell. Anchoring the low end
    there (not at the worst cell) keeps two cells a fraction of a point apart from looking far apart."""
    floor = TASKS[task].constant_score
    best = max((c.score for c in cells if c.score is not None), default=floor)
    return floor, max(best, floor + 0.01)  # a grid at chance level still gets a scale one point wide


def heatmap_text_style(cell: GridCell | None, low: float, high: float) -> dict:
    """Failed, diverged and missing points in bold red; scores in white on viridis' dark end, black on its light end."""
    if cell is None or cell.score is None:
        return {"color": "firebrick", "fontweight": "bold"}
    dark = (cell.score - low) / (high - low) < 0.5
    return {"color": "white" if dark else "black"}


def outline(ax, row: int, column: int, style: str) -> None:
    from matplotlib.patches import Rectangle

    ax.add_patch(Rectangle((column - 0.46, row - 0.46), 0.92, 0.92, fill=False, linestyle=style, linewidth=2,
                           edgecolor="crimson"))


def heatmap_panel(ax, by_point: dict, batch_sizes: list, rates: list, epochs: float, low: float, high: float,
                  best: GridCell | None):
    """One epoch count's batch size x learning rate grid; returns the image (for the colour bar). The best cell
    gets a solid outline, the cells within the seed spread of it a dashed one."""
    import numpy as np

    grid = np.full((len(batch_sizes), len(rates)), np.nan)  # NaN: drawn grey, the "bad" colour
    for i, bs in enumerate(batch_sizes):
        for j, lr in enumerate(rates):
            cell = by_point.get((bs, lr, epochs))
            if cell is not None and cell.score is not None:
                grid[i, j] = 100 * cell.score
                if cell is best:
                    outline(ax, i, j, "-")
                elif within_seed_spread(cell, best):
                    outline(ax, i, j, "--")
            ax.text(j, i, heatmap_cell_text(cell), ha="center", va="center", fontsize=8,
                    **heatmap_text_style(cell, low, high))
    colormap = pyplot().get_cmap("viridis").with_extremes(bad="lightgrey")
    image = ax.imshow(np.ma.masked_invalid(grid), cmap=colormap, vmin=100 * low, vmax=100 * high, aspect="auto")
    ax.set_xticks(range(len(rates)), [format_lr(r) for r in rates])
    ax.set_yticks(range(len(batch_sizes)), [str(b) for b in batch_sizes])
    ax.set_xlabel("learning rate")
    ax.set_title(f"{format_number(epochs)} epoch{'' if epochs == 1 else 's'}", fontsize=9)
    return image


def heatmap_caption(low: float, high: float, mine: list[GridCell], best: GridCell | None) -> str:
    seeds = {len(c.usable_runs) for c in mine if c.usable_runs}
    lines = [f"colour: from a constant prediction's score ({100 * low:.2f}) to the best ({100 * high:.2f}); "
             "below the constant's score is the darkest colour"]
    if best is None:
        lines.append("no grid point has a score")
    elif any(c.spread is not None for c in mine):
        lines.append("solid box: the best; dashed: within the seed spread (sd) of the best, not told apart from it")
    else:
        lines.append(f"solid box: the best; {max(seeds)} seed per point, so the seed spread is unknown and "
                     "differences of a few points may be noise")
    return "\n".join(lines)


def plot_heatmap(model: str, task: str, cells: dict[tuple, GridCell], path: str) -> None:
    """Dev score over batch size (rows) x learning rate (columns), one panel per epoch count; failures marked."""
    plt = pyplot()
    mine = [c for c in cells.values() if (c.model, c.task) == (model, task)]
    batch_sizes = sorted({c.batch_size for c in mine})
    rates = sorted({c.learning_rate for c in mine})
    epoch_counts = sorted({c.epochs for c in mine})
    by_point = {(c.batch_size, c.learning_rate, c.epochs): c for c in mine}
    scored = [c for c in mine if c.score is not None]
    best = best_cells({key: c for key, c in cells.items() if c in mine}).get((model, task))
    low, high = colour_range(task, mine)
    figure, axes = plt.subplots(1, len(epoch_counts), squeeze=False,
                                figsize=(1.4 * len(rates) * len(epoch_counts) + 1.8, 0.6 * len(batch_sizes) + 1.6))
    for ax, epochs in zip(axes[0], epoch_counts):
        image = heatmap_panel(ax, by_point, batch_sizes, rates, epochs, low, high, best)
    axes[0][0].set_ylabel("batch size")
    extend = "min" if any(c.score < low for c in scored) else "neither"
    figure.colorbar(image, ax=axes[0].tolist(), label="dev score x100", extend=extend)
    figure.suptitle(f"{model} on {TASKS[task].folder}: dev score over the grid", fontsize=10, y=1.03)
    figure.text(0.0, -0.02, heatmap_caption(low, high, mine, best), fontsize=7, va="top")
    save_figure(figure, path)
    plt.close(figure)


def plot_loss_curve(record: dict, path: str) -> None:
    """Train and eval loss against tokens seen, from the pretraining record's loss_curve."""
    plt = pyplot()
    curve = record.get("loss_curve") or []
    figure, ax = plt.subplots(figsize=(6, 3.6))
    for key, label, style in (("loss", "train loss", "-"), ("eval_loss", "eval loss", "o-")):
        points = [(p["tokens"], p[key]) for p in curve if key in p]
        if points:
            ax.plot(*zip(*points), style, label=label, markersize=4)
    ax.set_xlabel("tokens seen")
    ax.set_ylabel("loss")
    ax.set_title(f"{record['model']}: pretraining loss ({record_status(record)})", fontsize=10)
    if ax.get_legend_handles_labels()[0]:
        ax.legend()
    ax.grid(alpha=0.3)
    save_figure(figure, path)
    plt.close(figure)


def draw_figures(records: list[dict], cells: dict[tuple, GridCell], figures_dir: str) -> dict[str, dict[str, str]]:
    """Write every figure; returns section title -> {figure title: path}."""
    loss_curves, heatmaps = {}, {}
    for record in pretrain_runs(records):
        path = os.path.join(figures_dir, f"pretrain_{file_safe(record['model'])}_loss.png")
        plot_loss_curve(record, path)
        loss_curves[f"{record['model']} loss"] = path
    for model in glue_models(cells):
        for task in GLUE_TABLE_TASKS:
            if any((c.model, c.task) == (model, task) for c in cells.values()):
                path = os.path.join(figures_dir, f"glue_{file_safe(model)}_{task}.png")
                plot_heatmap(model, task, cells, path)
                heatmaps[f"{model} {TASKS[task].folder}"] = path
    return {"Pretraining loss curves": loss_curves, "GLUE dev score over the grid": heatmaps}
