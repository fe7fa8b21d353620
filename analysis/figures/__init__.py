"""Figure builders: each takes tidy frames (analysis.tidy) and returns a plotly Figure.

A figure's page notes (how many trials were excluded and why) are in
`fig.layout.meta["notes"]`; read them with `analysis.figures.style.get_notes`.
"""

from analysis.figures.alpha_gamma import HEATMAP_METRICS, alpha_gamma_heatmap, alpha_gamma_table
from analysis.figures.ensemble_size import LINE_METRICS, ensemble_size_lines, ensemble_size_table
from analysis.figures.optimizers import optimizer_curves, optimizer_table
from analysis.figures.robustness import (
    ROBUSTNESS_FIGURE_METRICS,
    ROBUSTNESS_TABLE_METRICS,
    corruption_heatmap,
    corruption_table,
)
from analysis.figures.search import importance_figure, pareto_front_figure, pareto_table
from analysis.figures.seeds_and_best import best_trial_curves, seed_boxes, seed_table
from analysis.figures.sharing import sharing_boxes, sharing_table

__all__ = [
    "HEATMAP_METRICS",
    "LINE_METRICS",
    "ROBUSTNESS_FIGURE_METRICS",
    "ROBUSTNESS_TABLE_METRICS",
    "alpha_gamma_heatmap",
    "alpha_gamma_table",
    "best_trial_curves",
    "corruption_heatmap",
    "corruption_table",
    "ensemble_size_lines",
    "ensemble_size_table",
    "importance_figure",
    "optimizer_curves",
    "optimizer_table",
    "pareto_front_figure",
    "pareto_table",
    "seed_boxes",
    "seed_table",
    "sharing_boxes",
    "sharing_table",
]
