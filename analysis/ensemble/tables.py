"""An experiment's ensemble from its own trials, as tables: the greedy selection step by step,
the members and how often each was picked, and the comparison on the test split with the best
single trial and the best ensemble-kind trial (each chosen on validation)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from analysis.ensemble import selection as S
from analysis.ensemble.trials import Candidates
from analysis.tidy import varying_columns
from core import columns as C
from core.spec import ENSEMBLES

DEFAULT_METRIC = "nll"
DEFAULT_MAX_SIZE = 20
# TrialConfig.ensemble values that are ensembles themselves (every kind but `single`)
ENSEMBLE_KINDS = tuple(k for k in ENSEMBLES if k != "single")
# Output tables (CSV files of the page) and their columns.
SELECTION_CSV = "ensemble_selection.csv"
MEMBERS_CSV = "ensemble_members.csv"
COMPARISON_CSV = "ensemble_comparison.csv"
STEP, ADDED, SIZE, CHOSEN = "step", "added_trial_id", "size", "chosen"
TIMES_PICKED, WEIGHT = "times_picked", "weight"
ENTRY, TRIALS, DISTINCT = "entry", "trial_ids", "distinct_trials"
GREEDY = "greedy ensemble of trials"
BEST_SINGLE = "best single trial"
BEST_KIND = "best ensemble-kind trial (batch or deep)"
SCORES = {"acc": S.accuracy, "nll": S.nll, "ece": S.ece}  # reported on each split


def split_column(split: str, key: str) -> str:
    return C.split_metric(split, key)


@dataclasses.dataclass(frozen=True)
class EnsembleTables:
    selection: S.Selection
    steps: pd.DataFrame  # SELECTION_CSV
    members: pd.DataFrame  # MEMBERS_CSV
    comparison: pd.DataFrame  # COMPARISON_CSV

    def files(self) -> dict[str, pd.DataFrame]:
        return {
            COMPARISON_CSV: self.comparison,
            SELECTION_CSV: self.steps,
            MEMBERS_CSV: self.members,
        }


def ensemble_tables(
    cand: Candidates, metric: str = DEFAULT_METRIC, max_size: int = DEFAULT_MAX_SIZE
) -> EnsembleTables:
    """Greedy selection on the validation split by `metric`, every figure of the tables."""
    sel = S.greedy_select(cand.probs[C.VAL], cand.labels[C.VAL], metric, max_size)
    return EnsembleTables(
        sel, _steps(cand, sel), _members(cand, sel), _comparison(cand, sel, metric)
    )


def _scores(cand: Candidates, members: tuple[int, ...] | list[int]) -> dict[str, float]:
    """acc, nll and ece of the averaged probabilities on each split; the test disagreement
    between the distinct trials (mean over pairs of the share of differing argmax; 0 for one
    trial; NaN for a single trial's row, whose own members' predictions are not kept)."""
    out = {}
    for split in (C.VAL, C.TEST):
        ens = S.average(cand.probs[split], members)
        for key, f in SCORES.items():
            out[split_column(split, key)] = f(ens, cand.labels[split])
    distinct = sorted(set(members))
    out[split_column(C.TEST, "disagreement")] = S.disagreement(cand.probs[C.TEST][distinct])
    return out


def _steps(cand: Candidates, sel: S.Selection) -> pd.DataFrame:
    ids = cand.trial_ids
    rows = []
    for k in range(1, len(sel.picks) + 1):
        row = {STEP: k, ADDED: ids[sel.picks[k - 1]], SIZE: k, CHOSEN: k == sel.size}
        row.update(_scores(cand, sel.picks[:k]))
        rows.append(row)
    return pd.DataFrame(rows)


def _members(cand: Candidates, sel: S.Selection) -> pd.DataFrame:
    counts = sel.counts()
    rows = cand.rows.iloc[sorted(counts)]
    config = [c for c in varying_columns(cand.rows) if c in rows]
    out = rows[[C.TRIAL_ID, *config]].copy()
    out[TIMES_PICKED] = [counts[i] for i in sorted(counts)]
    out[WEIGHT] = out[TIMES_PICKED] / sel.size
    return out.sort_values([TIMES_PICKED, C.TRIAL_ID], ascending=[False, True])


def best_single(cand: Candidates, metric: str, among: np.ndarray | None = None) -> int | None:
    """The index of the best trial by the validation `metric` of its own probabilities (the
    first of equals), among the candidates where `among` is True; None when none is."""
    f, larger = S.METRICS[metric]
    idx = np.flatnonzero(np.ones(len(cand.rows), bool) if among is None else among)
    if len(idx) == 0:
        return None
    scores = np.array([f(cand.probs[C.VAL][i], cand.labels[C.VAL]) for i in idx])
    return int(idx[np.argmax(scores) if larger else np.argmin(scores)])


def _comparison(cand: Candidates, sel: S.Selection, metric: str) -> pd.DataFrame:
    ids = cand.trial_ids
    entries = [(GREEDY, sel.members)]
    single = best_single(cand, metric)
    entries.append((BEST_SINGLE, (single,)))
    if "ensemble" in cand.rows:
        kind = best_single(cand, metric, cand.rows["ensemble"].isin(ENSEMBLE_KINDS).to_numpy())
        if kind is not None:
            entries.append((BEST_KIND, (kind,)))
    rows = []
    for name, members in entries:
        row = {ENTRY: name, TRIALS: ";".join(ids[i] for i in members)}
        row[DISTINCT], row[SIZE] = len(set(members)), len(members)
        row.update(_scores(cand, members))
        if name != GREEDY:
            row[split_column(C.TEST, "disagreement")] = np.nan
        rows.append(row)
    return pd.DataFrame(rows)
