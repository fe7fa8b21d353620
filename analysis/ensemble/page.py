"""The ensemble page of a report (and of the folder `python -m analysis.ensemble` writes): an
ensemble assembled greedily from a study's own trials."""

from __future__ import annotations

from analysis import figures
from analysis.ensemble.tables import (
    DEFAULT_MAX_SIZE,
    DEFAULT_METRIC,
    EnsembleTables,
    ensemble_tables,
)
from analysis.ensemble.trials import Candidates, load_candidates, prediction_files
from analysis.errors import ReportInputError
from analysis.figures import ensemble as EF
from analysis.load import Experiment
from analysis.plan import SMOKE_NOTE, Page, Plan, is_smoke

SLUG = "ensemble"
TITLE = "Ensembles from the study's own trials (hyper-deep ensembles)"


def description(metric: str, max_size: int) -> str:
    name = figures.ensemble.METRIC_TEXT[metric]
    return (
        f"Greedy forward selection with replacement (Caruana et al. 2004, as uncertainty-"
        f"baselines' hyper-deep ensembles) on the validation {name}: it starts from the best "
        f"single trial by validation {name} and adds, at each step, the trial (any usable one: "
        "finished, not diverged, with predictions; again one already in) whose addition most "
        f"improves the validation {name} of the averaged probabilities, up to {max_size} "
        f"members; the size is the step with the best validation {name}. Its test accuracy, "
        "NLL and ECE are set against the best single trial and the best ensemble-kind trial "
        f"(batch or deep), both also chosen by validation {name}. Trials of different "
        "hyperparameters averaged this way are the hyper-deep ensembles of Wenzel et al. 2020."
    )


NOTES = (
    "Each trial's probabilities are those it kept (predictions.npz): the mean over its own "
    "members, at the epoch of its best validation accuracy, stored in float16; every metric "
    "here, the single trials' too, is computed from them, so they can differ from the "
    "results' test metrics in the last digits.",
    "Disagreement: over the distinct trials of the ensemble, the share of test examples on "
    "which two trials' argmax differ, averaged over all pairs (0 for one trial); not shown "
    "for a single trial, whose members' own predictions are not kept. ECE: 15 equal-width "
    "confidence bins, as core.metrics.",
)


def ensemble_page(
    cand: Candidates, tables: EnsembleTables, metric: str, max_size: int, smoke: bool
) -> Page:
    notes = ([SMOKE_NOTE] if smoke else []) + list(cand.notes) + list(NOTES)
    notes.append(f"{len(cand.rows)} trial(s) could be picked.")
    return Page(
        slug=SLUG,
        title=TITLE,
        description=description(metric, max_size),
        figures=[
            EF.comparison_figure(tables.comparison, metric),
            EF.selection_figure(tables.steps, metric),
            EF.members_figure(tables.members),
        ],
        notes=notes,
        tables=list(tables.files()),
    )


def plan_ensemble(
    exp: Experiment, metric: str = DEFAULT_METRIC, max_size: int = DEFAULT_MAX_SIZE
) -> tuple[Page, EnsembleTables]:
    """The page and tables of `exp`'s ensemble; ReportInputError when it cannot be made."""
    cand = load_candidates(exp)
    tables = ensemble_tables(cand, metric, max_size)
    return ensemble_page(cand, tables, metric, max_size, is_smoke(exp.meta)), tables


def add_ensemble_page(plan: Plan, exp: Experiment) -> None:
    """The report's ensemble page, when the study's trials kept predictions (else nothing:
    a study from before them has no page, and says nothing); an ensemble that cannot be made
    (no validation split, no usable trial) is listed as not drawn, with why."""
    if not prediction_files(exp):
        return
    try:
        page, tables = plan_ensemble(exp)
    except ReportInputError as exc:
        plan.skipped.append(f"ensemble page: {str(exc).split(': ', 1)[-1]}")
        return
    plan.pages.append(page)
    plan.tables.update(tables.files())
