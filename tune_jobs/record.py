"""The study record, `study.json`: which study, with which data, optimised how, its state, the
options and space it was started with (what `--resume` compares, `tune_jobs.resume`), the
command that resumes it and the process that runs it. Written by the runner when the study
starts, when it is interrupted and when it ends; built without Ray or torch."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from typing import Any

from core.columns import (
    DRIVER,
    RESUME_COMMAND,
    STATE_FINISHED,
    STUDY_FILE,
    STUDY_OPTIONS,
    STUDY_ROBUSTNESS_EPOCHS,
    STUDY_SELECTION_METRIC,
    STUDY_SELECTION_MODE,
    STUDY_SPACE,
    STUDY_STATE,
    TRIALS,
)
from tune_jobs.options import JobOptions
from tune_jobs.resume import defining_options, json_round_trip, resume_command
from tune_jobs.study import Study, robustness_epochs, selection


def study_record(
    study: Study, opts: JobOptions, state: str = STATE_FINISHED, **more: Any
) -> dict[str, Any]:
    """What `study.json` says about a study: which one, with which data, optimised how; its
    state (`core.columns.STUDY_STATES`), the options and space it was started with (what
    `--resume` compares), the command that resumes it and the process that runs it. `more`
    adds what only the runner can say: what produced the study (core.columns.PROVENANCE, from
    core.provenance, which asks torch about CUDA: this module imports neither torch nor Ray)."""
    info = {
        "study": study.name,
        "name": opts.experiment_name,
        "dataset": opts.dataset,
        "smoke": opts.smoke,
        "preset": opts.preset,
        "metric": study.metric,
        "mode": study.mode,
        STUDY_SELECTION_METRIC: selection(study)[0],
        STUDY_SELECTION_MODE: selection(study)[1],
        STUDY_ROBUSTNESS_EPOCHS: list(robustness_epochs(study, opts)),
        **study.info,
    }
    if study.make_search_alg is not None:
        info["optuna_study"] = opts.experiment_name  # the Optuna study in optuna.db
    info |= {
        STUDY_STATE: state,
        TRIALS: study.trial_count,
        STUDY_OPTIONS: defining_options(study, opts),
        STUDY_SPACE: json_round_trip(study.space),
        RESUME_COMMAND: resume_command(study, opts),
        DRIVER: {"host": socket.gethostname(), "pid": os.getpid()},
        **more,
    }
    return info


def write_study_json(
    folder: Path, study: Study, opts: JobOptions, state: str = STATE_FINISHED, **more: Any
) -> Path:
    path = folder / STUDY_FILE
    path.write_text(json.dumps(study_record(study, opts, state, **more), indent=2))
    return path
