"""How a study job ends other than with every trial finished: a refused option or state, an
interrupted run, errored trials, a `--resume` with nothing to resume. `tune_jobs.cli` turns
each into its exit status and line. Free of Ray and torch, like the checks that raise them."""

from __future__ import annotations


class JobError(Exception):
    """A bad option or state found before (or instead of) starting any trial."""


class StudyInterrupted(Exception):
    """The Tuner stopped before every trial finished; the experiment can be resumed."""


class StudyFailed(Exception):
    """The study ran to its end, files written, but some trials errored; the message names how
    many, each distinct error once and where a trial's traceback is."""


class NothingToResume(Exception):
    """`--resume` of a study that finished: its results are there, nothing is run."""
